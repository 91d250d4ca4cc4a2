"""Client subcommands of the ``rps`` console script: register, wait, status, test-points,
explain, explain-batch, suspicious.

``rps.cli`` mounts them with ``add_client_commands(subparsers)``. Every command talks to a
running service: the URL comes from ``--url`` or ``RPS_URL`` (default
``http://127.0.0.1:8000``), the key from ``--api-key`` or ``RPS_API_KEY``. Tables are printed
for people; ``--json`` prints the service's body unchanged for scripts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import typing
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from rps.client import Client, ServiceError, WaitTimeoutError
from rps.spec import Method, leaves

__all__ = ["add_client_commands"]

DEFAULT_URL = "http://127.0.0.1:8000"
WAIT_TIMEOUT_S = 3600.0
RECORD_WIDTH = 60

_METHODS = [method.value for method in Method]
_LABEL_RANKINGS = ["confidence", "confidence_oof", "cleanlab", "fusion", "adaptive"]
"""Label-error rankings of ``GET /debug/suspicious`` beside the methods' self-scores."""

Handler = Callable[[argparse.Namespace], int]


def add_client_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``register``, ``wait``, ``status``, ``test-points``, ``explain``, ``explain-batch`` and ``suspicious``
    to ``subparsers``.

    Each parser gets ``func`` set to its handler, which returns the exit code.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=os.environ.get("RPS_URL", DEFAULT_URL),
        help="service base URL (env RPS_URL; default %(default)s)",
    )
    common.add_argument(
        "--api-key",
        default=os.environ.get("RPS_API_KEY"),
        help="API key, sent as a Bearer token (env RPS_API_KEY)",
    )
    common.add_argument("--json", action="store_true", help="print the raw JSON body")
    _add_register(subparsers, common)
    _add_wait(subparsers, common)
    _add_status(subparsers, common)
    _add_test_points(subparsers, common)
    _add_explain(subparsers, common)
    _add_suspicious(subparsers, common)
    _add_explain_batch(subparsers, common)
    from rps.review_commands import add_review_commands  # it imports this module's helpers

    add_review_commands(subparsers, common)


# -- parsers ------------------------------------------------------------------------------


def _add_register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "register",
        parents=[common],
        help="register a model from .npy files (linear or xgboost)",
        description="Register a linear head (--weights, --train-features) or an XGBoost booster "
        "(--booster, --train-inputs). Arrays are .npy files; ids and records JSON files.",
    )
    parser.add_argument(
        "--spec",
        type=_spec_argument,
        help="the spec (rps.spec.ModelSpec) as inline JSON or a JSON file; every field is "
        "sent unchanged, and the flags below override its fields",
    )
    _add_spec_flags(parser)
    parser.add_argument("--weights", type=Path, help="(k, d) .npy: linear head weights")
    parser.add_argument("--bias", type=Path, help="(k,) .npy")
    parser.add_argument("--train-features", type=Path, help="(n, d) .npy: the head's inputs")
    parser.add_argument("--test-features", type=Path, help="(m, d) .npy")
    parser.add_argument("--booster", type=Path, help="XGBoost model, .json or .ubj")
    parser.add_argument("--train-inputs", type=Path, help="(n, p) .npy: raw rows for the booster")
    parser.add_argument("--test-inputs", type=Path, help="(m, p) .npy")
    parser.add_argument("--train-labels", type=Path, required=True, help="(n,) .npy of ints")
    parser.add_argument("--test-labels", type=Path, help="(m,) .npy of ints")
    for part in ("train-ids", "train-records", "test-ids", "test-records"):
        parser.add_argument(f"--{part}", type=Path, help="JSON file holding an array")
    parser.add_argument("--wait", action="store_true", help="wait until the model is ready")
    parser.add_argument(
        "--timeout", type=float, default=WAIT_TIMEOUT_S, help="seconds --wait waits"
    )
    parser.set_defaults(func=_register)


def _add_wait(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "wait", parents=[common], help="wait until a model is ready (progress bar)"
    )
    parser.add_argument("model_id")
    parser.add_argument("--timeout", type=float, default=WAIT_TIMEOUT_S)
    parser.set_defaults(func=_wait)


def _add_status(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "status", parents=[common], help="show one model, or list all models"
    )
    parser.add_argument("model_id", nargs="?")
    parser.set_defaults(func=_status)


def _add_test_points(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "test-points", parents=[common], help="stored test points with label and prediction"
    )
    parser.add_argument("model_id")
    parser.add_argument("--label", type=int, help="only points with this label")
    outcome = parser.add_mutually_exclusive_group()
    outcome.add_argument(
        "--correct", dest="correct", action="store_const", const=True, help="only right ones"
    )
    outcome.add_argument(
        "--wrong", dest="correct", action="store_const", const=False, help="only wrong ones"
    )
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--offset", type=int, default=0)
    parser.set_defaults(func=_test_points)


def _add_explain(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "explain", parents=[common], help="explain a stored test point or rows of a .npy"
    )
    parser.add_argument("model_id")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--test-id", help="id of a stored test point")
    source.add_argument("--features", type=Path, help="(m, d) .npy of φ rows (linear models)")
    source.add_argument("--inputs", type=Path, help="(m, p) .npy of raw rows (xgboost models)")
    parser.add_argument(
        "-k", "--k", type=int, default=10, help="points per side (default %(default)s)"
    )
    parser.add_argument("--method", default=Method.LJE.value, choices=_METHODS)
    parser.add_argument("--target", default="predicted", help="predicted, label, or a class index")
    parser.set_defaults(func=_explain)


def _add_explain_batch(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "explain-batch",
        parents=[common],
        help="explain many stored test points (progress bar), as JSON lines or CSV",
        description="Explain stored test points through POST /explain/batch and write one "
        "JSON line per explanation, or one CSV row per training point of each explanation.",
    )
    parser.add_argument("model_id")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--test-ids", type=_comma_list, help="comma-separated test ids")
    source.add_argument(
        "--ids-file", type=Path, help="a file of test ids, one per line ('-': standard input)"
    )
    source.add_argument("--all", action="store_true", help="every stored test point")
    parser.add_argument("-k", "--k", type=int, default=10, help="points per side")
    parser.add_argument("--method", default=Method.LJE.value, choices=_METHODS)
    parser.add_argument("--target", default="predicted", help="predicted, label, or a class index")
    parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    parser.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    parser.add_argument(
        "--chunk", type=int, default=100, help="ids per request (at most 1000; default 100)"
    )
    parser.set_defaults(func=_explain_batch)


def _add_suspicious(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "suspicious", parents=[common], help="training points most likely mislabelled"
    )
    parser.add_argument("model_id")
    parser.add_argument(
        "--method",
        default=None,
        choices=[*_METHODS, *_LABEL_RANKINGS],
        help="the ranking (default: the service's default label-error ranking)",
    )
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument(
        "--unreviewed", action="store_true", help="hide points that already have a review"
    )
    parser.set_defaults(func=_suspicious)


# -- handlers -----------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Client:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request is noise here
    return Client(args.url, api_key=args.api_key)


def _guarded(handler: Handler) -> Handler:
    """Turn service errors and unreachable servers into a message and exit code 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except ServiceError as error:
            print(f"error: {error}", file=sys.stderr)
            if args.json:
                print(json.dumps(error.problem, indent=2), file=sys.stderr)
            return 1
        except WaitTimeoutError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        except httpx.TransportError as error:
            print(f"error: cannot reach {args.url}: {error}", file=sys.stderr)
            return 1
        except (OSError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1

    run.__name__ = handler.__name__
    return run


def _load_npy(path: Path | None) -> np.ndarray | None:
    return None if path is None else np.load(path, allow_pickle=False)


def _require_npy(path: Path | None, option: str) -> np.ndarray:
    if path is None:
        raise ValueError(f"{option} is required for this model")
    return np.load(path, allow_pickle=False)


def _load_json(path: Path | None) -> Any:
    return None if path is None else json.loads(path.read_text())


def _spec_argument(text: str) -> dict[str, Any]:
    """``--spec``: inline JSON (``{...}``) or the path of a JSON file holding an object."""
    raw = text if text.lstrip().startswith("{") else Path(text).read_text()
    try:
        value = json.loads(raw)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("the spec must be a JSON object")
    return value


_FLAG_ALIASES = {"xgboost.embedding": ("--embedding",)}


def _spec_flag(path: str) -> str:
    return "--" + path.replace(".", "-").replace("_", "-")


def _add_spec_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per spec setting (``--lje-lr``, ``--queue``, ...), from ``rps.spec``.

    A setting added to the spec gets its flag here with no change to this file.
    """
    for leaf in leaves():
        if leaf.path == "kind":
            continue  # --booster or --weights says it
        described = f"{leaf.description} (spec {leaf.path}; default {json.dumps(leaf.default)})"
        options: dict[str, Any] = {
            "dest": f"spec:{leaf.path}",
            "metavar": leaf.path.rsplit(".", 1)[-1].upper(),
            "help": described.replace("%", "%%"),
        }
        if typing.get_origin(leaf.annotation) in (tuple, list):
            options.update(type=_comma_list, metavar="A,B,...")
        elif isinstance(leaf.annotation, type) and issubclass(leaf.annotation, Enum):
            choices = [choice.value for choice in leaf.annotation]
            options.update(choices=choices, metavar="{" + ",".join(choices) + "}")
        elif leaf.annotation is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif leaf.annotation in (int, float):
            options["type"] = leaf.annotation
        parser.add_argument(_spec_flag(leaf.path), *_FLAG_ALIASES.get(leaf.path, ()), **options)
    for name, paths in _shared_settings().items():
        leaf = next(leaf for leaf in leaves() if leaf.path == paths[0])
        shared: dict[str, Any] = {
            "dest": f"shared:{name}",
            "metavar": name.upper(),
            "help": f"sets {', '.join(paths)} at once (their own flags win)",
        }
        if isinstance(leaf.annotation, type) and issubclass(leaf.annotation, Enum):
            shared["choices"] = [choice.value for choice in leaf.annotation]
        elif leaf.annotation in (int, float):
            shared["type"] = leaf.annotation
        parser.add_argument(_spec_flag(name), **shared)


def _shared_settings() -> dict[str, list[str]]:
    """Settings that several method sections have (``hessian``: lje and influence)."""
    by_name: dict[str, list[str]] = {}
    methods = {method.value for method in Method}
    for leaf in leaves():
        section, _, name = leaf.path.rpartition(".")
        if section in methods:
            by_name.setdefault(name, []).append(leaf.path)
    return {name: paths for name, paths in by_name.items() if len(paths) > 1}


def _comma_list(text: str) -> list[str]:
    return [piece.strip() for piece in text.split(",") if piece.strip()]


def _merged_spec(args: argparse.Namespace) -> dict[str, Any]:
    """``--spec`` with every given spec flag over it; nothing is dropped or defaulted."""
    spec = json.loads(json.dumps(args.spec or {}))
    given = [
        (path, getattr(args, f"shared:{name}", None))
        for name, paths in _shared_settings().items()
        for path in paths
    ]
    given += [(leaf.path, getattr(args, f"spec:{leaf.path}", None)) for leaf in leaves()]
    for path, value in given:
        if value is None:
            continue
        *sections, name = path.split(".")
        target = spec
        for section in sections:
            if not isinstance(target.get(section), dict):
                target[section] = {}
            target = target[section]
        target[name] = value
    return spec


@_guarded
def _register(args: argparse.Namespace) -> int:
    spec = _merged_spec(args)
    common = dict(
        spec=spec,
        test_labels=_load_npy(args.test_labels),
        train_ids=_load_json(args.train_ids),
        train_records=_load_json(args.train_records),
        test_ids=_load_json(args.test_ids),
        test_records=_load_json(args.test_records),
    )
    is_xgboost = args.booster is not None or spec.get("kind") == "xgboost"
    with _client(args) as client:
        if is_xgboost:
            if args.booster is None or args.train_inputs is None:
                raise ValueError("an xgboost model needs --booster and --train-inputs")
            model = client.register_xgboost(
                args.booster,
                _require_npy(args.train_inputs, "--train-inputs"),
                _require_npy(args.train_labels, "--train-labels"),
                test_inputs=_load_npy(args.test_inputs),
                **common,
            )
        else:
            if args.weights is None or args.train_features is None:
                raise ValueError(
                    "a linear model needs --weights and --train-features (or --booster)"
                )
            model = client.register_linear(
                _require_npy(args.weights, "--weights"),
                _require_npy(args.bias, "--bias"),
                _require_npy(args.train_features, "--train-features"),
                _require_npy(args.train_labels, "--train-labels"),
                test_features=_load_npy(args.test_features),
                **common,
            )
        if args.wait:
            model = client.wait_ready(model["id"], timeout=args.timeout, progress=not args.json)
    _print_model(model, as_json=args.json)
    return 0


@_guarded
def _wait(args: argparse.Namespace) -> int:
    with _client(args) as client:
        model = client.wait_ready(args.model_id, timeout=args.timeout, progress=not args.json)
    _print_model(model, as_json=args.json)
    return 0


@_guarded
def _status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.model_id:
            _print_model(client.get_model(args.model_id), as_json=args.json)
            return 0
        models = client.list_models()
    if args.json:
        print(_dumps(models))
        return 0
    rows = [
        [
            m.get("id"),
            m.get("name") or "",
            m.get("kind"),
            m.get("status"),
            _percent(m.get("progress")),
            m.get("n_train"),
            ",".join(m.get("methods") or []),
        ]
        for m in models
    ]
    print(_table(["id", "name", "kind", "status", "progress", "n_train", "methods"], rows))
    return 0


@_guarded
def _test_points(args: argparse.Namespace) -> int:
    with _client(args) as client:
        body = client.test_points(
            args.model_id,
            limit=args.limit,
            offset=args.offset,
            label=args.label,
            correct=args.correct,
        )
    if args.json:
        print(_dumps(body))
        return 0
    items = body.get("items") or []
    print(f"model {body.get('model_id')}  {len(items)} of {body.get('total')} test points")
    rows = [
        [
            item.get("test_id"),
            item.get("label"),
            item.get("predicted_class"),
            _short(item.get("record")),
        ]
        for item in items
    ]
    print(_table(["test_id", "label", "predicted", "record"], rows))
    return 0


@_guarded
def _explain(args: argparse.Namespace) -> int:
    target: str | int = int(args.target) if args.target.lstrip("-").isdigit() else args.target
    with _client(args) as client:
        answer = client.explain(
            args.model_id,
            test_id=args.test_id,
            features=_load_npy(args.features),
            inputs=_load_npy(args.inputs),
            k=args.k,
            method=args.method,
            target=target,
        )
    if args.json:
        print(_dumps(answer))
        return 0
    for body in answer if isinstance(answer, list) else [answer]:
        _print_explanation(body)
    return 0


def _batch_ids(args: argparse.Namespace, client: Client) -> list[str]:
    if args.test_ids is not None:
        return list(args.test_ids)
    if args.ids_file is not None:
        text = sys.stdin.read() if str(args.ids_file) == "-" else args.ids_file.read_text()
        return [line.strip() for line in text.splitlines() if line.strip()]
    ids: list[str] = []
    while True:
        page = client.test_points(args.model_id, limit=1000, offset=len(ids))
        ids += [point.test_id for point in page.items]
        if not page.items or len(ids) >= page.total:
            return ids


@_guarded
def _explain_batch(args: argparse.Namespace) -> int:
    import csv

    from tqdm.auto import tqdm

    if not 1 <= args.chunk <= 1000:
        raise ValueError("--chunk must be in 1..1000")
    target: str | int = int(args.target) if args.target.lstrip("-").isdigit() else args.target
    out = args.output.open("w", newline="") if args.output else sys.stdout
    try:
        with _client(args) as client:
            ids = _batch_ids(args, client)
            writer = None
            with tqdm(total=len(ids), desc="explain", unit="pt", file=sys.stderr) as bar:
                for start in range(0, len(ids), args.chunk):
                    chunk = ids[start : start + args.chunk]
                    answers = client.explain_batch(
                        args.model_id, chunk, k=args.k, method=args.method, target=target
                    )
                    for answer in answers:
                        if args.format == "jsonl":
                            out.write(json.dumps(answer.raw) + "\n")
                            continue
                        rows = answer.rows()
                        for row in rows:
                            row["record"] = json.dumps(row["record"])
                        if writer is None and rows:
                            writer = csv.DictWriter(out, fieldnames=list(rows[0]))
                            writer.writeheader()
                        if writer is not None:
                            writer.writerows(rows)
                    bar.update(len(chunk))
    finally:
        if args.output:
            out.close()
    return 0


@_guarded
def _suspicious(args: argparse.Namespace) -> int:
    with _client(args) as client:
        body = client.suspicious(
            args.model_id,
            method=args.method,
            limit=args.limit,
            offset=args.offset,
            reviewed=False if args.unreviewed else None,
        )
    if args.json:
        print(_dumps(body))
        return 0
    print(
        f"model {body.get('model_id')}  method {body.get('method')}  "
        f"{len(body.get('items') or [])} of {body.get('total')} training points"
    )
    rows = [
        [
            item.get("rank"),
            item.get("train_id"),
            item.get("label"),
            item.get("predicted_class"),
            _number(item.get("score")),
            item.get("suggested_label"),
            _number(item.get("label_error_probability")),
            _short(item.get("record")),
        ]
        for item in body.get("items") or []
    ]
    print(
        _table(
            ["rank", "train_id", "label", "predicted", "score", "suggested", "p(error)", "record"],
            rows,
        )
    )
    return 0


# -- printing -----------------------------------------------------------------------------


def _dumps(value: Any) -> str:
    """JSON of a result (its body as the service sent it), of a list of them, or of JSON."""
    return json.dumps(value, indent=2, default=lambda result: result.raw)


def _print_model(model: Any, *, as_json: bool) -> None:
    if as_json:
        print(_dumps(model))
        return
    keys = [
        "id",
        "name",
        "kind",
        "status",
        "progress",
        "attempts",
        "num_classes",
        "feature_dim",
        "n_train",
        "n_test",
        "methods",
        "created_at",
        "ready_at",
    ]
    rows = [
        [key, _percent(model.get(key)) if key == "progress" else _short(model.get(key))]
        for key in keys
        if key in model
    ]
    for key, value in (model.get("diagnostics") or {}).items():
        rows.append([f"diagnostics.{key}", _number(value)])
    if model.get("error"):
        rows.append(["error", _short(model["error"], width=200)])
    print(_table(["field", "value"], rows))


def _print_explanation(body: Any) -> None:
    prediction = body.get("prediction") or {}
    decomposition = body.get("decomposition") or {}
    print(
        f"model {body.get('model_id')}  test {body.get('test_id', '-')}  method {body.get('method')}  "
        f"target class {body.get('target_class')}  predicted {prediction.get('predicted_class')}  "
        f"p=[{', '.join(_number(p) for p in prediction.get('probabilities') or [])}]"
    )
    print(
        f"output {_number(decomposition.get('model_output'))} = sum of contributions "
        f"{_number(decomposition.get('sum_of_contributions'))} + residual {_number(decomposition.get('residual'))}"
    )
    for side, meaning in (("positive", "toward"), ("negative", "against")):
        rows = [
            [
                item.get("rank"),
                item.get("train_id"),
                item.get("label"),
                _number(item.get("contribution")),
                _short(item.get("record")),
            ]
            for item in body.get(side) or []
        ]
        print(f"\n{side}: training points pushing {meaning} class {body.get('target_class')}")
        print(_table(["rank", "train_id", "label", "contribution", "record"], rows))
    print()


def _number(value: Any) -> str:
    return (
        f"{value:.6g}"
        if isinstance(value, (int, float)) and not isinstance(value, bool)
        else _short(value)
    )


def _percent(value: Any) -> str:
    return f"{100 * value:.0f}%" if isinstance(value, (int, float)) else _short(value)


def _short(value: Any, *, width: int = RECORD_WIDTH) -> str:
    if value is None:
        return "-"
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        value = ", ".join(value)
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain left-aligned text table."""
    cells = [[str(header) for header in headers]] + [
        ["-" if cell is None else str(cell) for cell in row] for row in rows
    ]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
