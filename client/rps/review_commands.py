"""Review subcommands of the ``rps`` console script: review, reviews, refit."""

from __future__ import annotations

import argparse
import json

from rps.client_commands import WAIT_TIMEOUT_S, _client, _guarded, _short, _table

__all__ = ["add_review_commands"]


def add_review_commands(subparsers: argparse._SubParsersAction, common) -> None:
    """Add ``review``, ``reviews`` and ``refit`` to ``subparsers``."""
    review = subparsers.add_parser(
        "review", parents=[common], help="keep, relabel or remove one training point"
    )
    review.add_argument("model_id")
    review.add_argument("train_id")
    review.add_argument("decision", choices=["keep", "relabel", "remove"])
    review.add_argument("--label", type=int, help="the right class (relabel only)")
    review.add_argument("--note", default="")
    review.set_defaults(func=_review)
    listing = subparsers.add_parser("reviews", parents=[common], help="a model's reviews")
    listing.add_argument("model_id")
    listing.add_argument("--csv", action="store_true", help="print CSV")
    listing.set_defaults(func=_reviews)
    refit = subparsers.add_parser(
        "refit", parents=[common], help="register a model refit on the reviewed labels"
    )
    refit.add_argument("model_id")
    refit.add_argument("--name")
    refit.add_argument("--wait", action="store_true", help="wait until the new model is ready")
    refit.add_argument("--timeout", type=float, default=WAIT_TIMEOUT_S)
    refit.set_defaults(func=_refit)


@_guarded
def _review(args: argparse.Namespace) -> int:
    with _client(args) as client:
        body = client.review(
            args.model_id, args.train_id, args.decision, label=args.label, note=args.note
        )
    if args.json:
        print(json.dumps(body, indent=2))
    else:
        print(
            f"{body['train_id']}: {body['decision']} "
            f"(label {body['old_label']} -> {body['new_label']})"
        )
    return 0


@_guarded
def _reviews(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.csv:
            print(client.reviews(args.model_id, format="csv"), end="")
            return 0
        body = client.reviews(args.model_id)
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    rows = [
        [
            item["train_id"],
            item["old_label"],
            item["new_label"],
            item["decision"],
            _short(item["note"]),
            item["time"],
        ]
        for item in body["items"]
    ]
    print(f"model {body['model_id']}  {body['total']} reviews")
    print(_table(["train_id", "old", "new", "decision", "note", "time"], rows))
    return 0


@_guarded
def _refit(args: argparse.Namespace) -> int:
    with _client(args) as client:
        refit = client.refit(args.model_id, name=args.name)
        model = (
            client.wait_ready(refit["id"], timeout=args.timeout, progress=not args.json)
            if args.wait
            else None
        )
    if args.json:
        print(json.dumps({"refit": refit, "model": model}, indent=2, default=lambda r: r.raw))
        return 0
    print(
        f"model {refit['id']} (refit of {refit['parent_id']}): {refit['relabelled']} relabelled, "
        f"{refit['removed']} removed, {refit['kept']} kept; n_train {refit['n_train']}"
    )
    diagnostics = (model.diagnostics if model is not None else None) or {}
    if "refit_test_accuracy_before" in diagnostics:
        print(
            f"test accuracy {diagnostics['refit_test_accuracy_before']:.4f} -> "
            f"{diagnostics['refit_test_accuracy_after']:.4f} "
            f"({diagnostics['refit_test_accuracy_change']:+.4f})"
        )
    elif model is not None:
        print(f"status {model['status']} (no labelled test set: no accuracy change)")
    return 0
