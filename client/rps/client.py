"""A small synchronous Python client for the explanation service (docs/api.md).

Typical use::

    with Client("http://127.0.0.1:8000") as client:
        model = client.register_linear(weights, bias, train_features, train_labels, name="m")
        client.wait_ready(model["id"])
        body = client.explain(model["id"], test_id="17", k=5)

Arrays travel as ``.npy`` parts written with ``allow_pickle=False``; every error the
service answers (``application/problem+json``) is raised as one ``ServiceError``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from rps.spec import Method, ModelSpec, as_json, json_name

__all__ = ["Client", "ServiceError", "ModelFailedError", "WaitTimeoutError"]

DEFAULT_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.25
LIST_PAGE_SIZE = 500
BOOSTER_SUFFIXES = (".json", ".ubj")

JsonBody = dict[str, Any]


class ServiceError(Exception):
    """The service answered an error (problem+json, RFC 9457).

    Attributes
    ----------
    status : int
        The HTTP status code (or the failed job's problem status).
    problem : dict
        The problem body: ``type``, ``title``, ``status``, ``detail``, maybe ``errors``.
    """

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        title = self.problem.get("title") or "error"
        detail = self.problem.get("detail")
        message = f"{status} {title}" + (f": {detail}" if detail else "")
        for error in self.problem.get("errors") or []:
            message += f"\n  - {_describe_field_error(error)}"
        super().__init__(message)


class ModelFailedError(ServiceError):
    """The model's precompute job failed; ``problem`` is the job's recorded error body."""

    def __init__(self, model: Mapping[str, Any]) -> None:
        self.model = dict(model)
        problem = self.model.get("error") or {"title": "precompute failed"}
        if not isinstance(problem, Mapping):
            problem = {"title": "precompute failed", "detail": str(problem)}
        super().__init__(int(problem.get("status") or 500), problem)


class WaitTimeoutError(TimeoutError):
    """The model did not become ready within the allowed time; ``model`` is its last status."""

    def __init__(self, model: Mapping[str, Any], timeout: float) -> None:
        self.model = dict(model)
        super().__init__(
            f"model {model.get('id')} still {model.get('status')!r} "
            f"(progress {model.get('progress')}) after {timeout:g} s"
        )


def _describe_field_error(error: Any) -> str:
    if not isinstance(error, Mapping):
        return str(error)
    where = error.get("loc") or error.get("field") or error.get("part") or error.get("name")
    if isinstance(where, (list, tuple)):
        where = ".".join(str(piece) for piece in where)
    message = error.get("msg") or error.get("message") or error.get("detail") or ""
    return f"{where}: {message}" if where else str(message or error)


def _npy_part(
    name: str, array: Any, *, integer: bool = False
) -> tuple[str, tuple[str, bytes, str]]:
    """Encode ``array`` as a ``.npy`` file part: int64 labels when ``integer``, else floats."""
    values = np.asarray(array)
    if integer:
        if not np.issubdtype(values.dtype, np.integer):
            rounded = np.rint(values)
            if not np.array_equal(rounded, values):
                raise ValueError(f"{name} must hold integers, got dtype {values.dtype}")
            values = rounded
        values = values.astype(np.int64, copy=False)
    elif not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(values), allow_pickle=False)
    return name, (f"{name}.npy", buffer.getvalue(), "application/octet-stream")


def _booster_part(booster: Any) -> tuple[str, tuple[str, bytes, str]]:
    """The booster as a ``.json``/``.ubj`` file part (never a pickle)."""
    if isinstance(booster, (str, Path)):
        path = Path(booster)
        if path.suffix.lower() not in BOOSTER_SUFFIXES:
            raise ValueError(f"booster must be a .json or .ubj file, got {path.name}")
        return "booster", (path.name, path.read_bytes(), "application/octet-stream")
    if not hasattr(booster, "save_raw"):
        raise TypeError("booster must be an xgboost.Booster or a path to a .json/.ubj file")
    return "booster", (
        "booster.ubj",
        bytes(booster.save_raw(raw_format="ubj")),
        "application/octet-stream",
    )


def _json_list(values: Iterable[Any]) -> str:
    return json.dumps([_plain(value) for value in values])


def _plain(value: Any) -> Any:
    """Numpy scalars and arrays inside records turned into JSON-ready Python values."""
    if isinstance(value, Enum) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
        return as_json(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


SPEC_FIELDS = tuple(json_name(item) for item in dataclasses.fields(ModelSpec))
"""The top-level spec fields ``register_*`` take as keyword arguments."""


def _build_spec(
    kind: str, spec: ModelSpec | Mapping[str, Any] | None, settings: Mapping[str, Any]
) -> str:
    """The ``spec`` part: ``spec`` with ``settings`` (top-level fields) over it, unchanged.

    Nothing is dropped or defaulted here: the service validates the spec (``rps.spec``) and
    answers 422 naming the field. A section given both ways is merged key by key.
    """
    document: dict[str, Any] = (
        spec.to_json() if isinstance(spec, ModelSpec) else dict(_plain(spec or {}))
    )
    for key, value in settings.items():
        if key not in SPEC_FIELDS:
            raise TypeError(f"unknown spec field {key!r}; the spec has {', '.join(SPEC_FIELDS)}")
        if value is None:
            continue
        value = _plain(value)
        if isinstance(value, Mapping) and isinstance(document.get(key), Mapping):
            value = {**document[key], **value}
        document[key] = value
    if document.get("kind", kind) != kind:
        raise ValueError(f"spec kind {document['kind']!r} does not fit a {kind} registration")
    return json.dumps({"kind": kind, **document})


class Client:
    """Synchronous client of one service instance; also a context manager.

    Parameters
    ----------
    base_url : str
        E.g. ``"http://127.0.0.1:8000"``.
    api_key : str, optional
        Sent as ``Authorization: Bearer <api_key>``; omit when auth is off.
    timeout : float
        Seconds for each HTTP request.
    """

    def __init__(
        self, base_url: str, *, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._http.close()

    # -- plumbing -------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ServiceError(response.status_code, _problem_of(response))
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    def health(self) -> bool:
        """True when ``GET /healthz`` answers 2xx; False when nothing answers."""
        try:
            return self._http.get("/healthz").status_code < 300
        except httpx.TransportError:
            return False

    # -- registration ---------------------------------------------------------------------

    def register_linear(
        self,
        weights: np.ndarray,
        bias: np.ndarray | None,
        train_features: np.ndarray,
        train_labels: np.ndarray,
        *,
        spec: ModelSpec | Mapping[str, Any] | None = None,
        train_ids: Sequence[str] | None = None,
        train_records: Sequence[Any] | None = None,
        test_features: np.ndarray | None = None,
        test_labels: np.ndarray | None = None,
        test_ids: Sequence[str] | None = None,
        test_records: Sequence[Any] | None = None,
        **settings: Any,
    ) -> JsonBody:
        """Register a linear head over given features; returns the status body (queued).

        Parameters
        ----------
        weights : array of shape (k, d), float
            k = 1 is a binary sigmoid head, k >= 2 a softmax head.
        bias : array of shape (k,), float, or None (zeros)
        train_features : array of shape (n, d), float
            φ(x_i), the head's input for every training point.
        train_labels : array of shape (n,), int in 0..num_classes-1
        test_features : array of shape (m, d), float, optional
            A stored test set, so ``explain(test_id=...)`` works; with ``test_labels`` (m,).
        train_ids, test_ids : sequences of distinct str, optional
        train_records, test_records : sequences of JSON values, optional
        spec : rps.spec.ModelSpec or its JSON dict, optional
            The model spec; ``kind`` is set for you.
        **settings
            Top-level spec fields over ``spec`` (``name``, ``class_names``, ``methods``,
            ``lje``, ``l2``, ``influence``, ``queue``, ... see ``rps.spec.ModelSpec``),
            sent unchanged; a section given here and in ``spec`` is merged key by key.
        """
        files = [
            _npy_part("weights", weights),
            _npy_part("train_features", train_features),
            _npy_part("train_labels", train_labels, integer=True),
        ]
        if bias is not None:
            files.append(_npy_part("bias", bias))
        if test_features is not None:
            files.append(_npy_part("test_features", test_features))
        return self._register(
            _build_spec("linear", spec, settings),
            files,
            test_labels=test_labels,
            ids_and_records={
                "train_ids": train_ids,
                "train_records": train_records,
                "test_ids": test_ids,
                "test_records": test_records,
            },
        )

    def register_xgboost(
        self,
        booster: Any,
        train_inputs: np.ndarray,
        train_labels: np.ndarray,
        *,
        test_inputs: np.ndarray | None = None,
        test_labels: np.ndarray | None = None,
        spec: ModelSpec | Mapping[str, Any] | None = None,
        embedding: str | None = None,
        train_ids: Sequence[str] | None = None,
        train_records: Sequence[Any] | None = None,
        test_ids: Sequence[str] | None = None,
        test_records: Sequence[Any] | None = None,
        **settings: Any,
    ) -> JsonBody:
        """Register an XGBoost booster; the service computes φ from the raw rows itself.

        Parameters
        ----------
        booster : xgboost.Booster or path to a ``.json``/``.ubj`` file
        train_inputs : array of shape (n, p), float
            The raw rows the booster takes.
        train_labels : array of shape (n,), int
        test_inputs : array of shape (m, p), float, optional; with ``test_labels`` (m,)
        embedding : "tree_margins" (the default) or "leaf_onehot"
            Shorthand of ``xgboost={"embedding": ...}``.
        spec, **settings
            As in ``register_linear``.
        """
        files = [
            _booster_part(booster),
            _npy_part("train_inputs", train_inputs),
            _npy_part("train_labels", train_labels, integer=True),
        ]
        if test_inputs is not None:
            files.append(_npy_part("test_inputs", test_inputs))
        if embedding is not None:
            settings = {
                **settings,
                "xgboost": {**(settings.get("xgboost") or {}), "embedding": embedding},
            }
        return self._register(
            _build_spec("xgboost", spec, settings),
            files,
            test_labels=test_labels,
            ids_and_records={
                "train_ids": train_ids,
                "train_records": train_records,
                "test_ids": test_ids,
                "test_records": test_records,
            },
        )

    def _register(self, spec: str, files: list, *, test_labels, ids_and_records) -> JsonBody:
        if test_labels is not None:
            files.append(_npy_part("test_labels", test_labels, integer=True))
        fields = {"spec": spec}
        for part, values in ids_and_records.items():
            if values is None:
                continue
            if part.endswith("_ids"):
                values = [str(value) for value in values]
            fields[part] = _json_list(values)
        return self._json("POST", "/models", data=fields, files=files)

    # -- models ---------------------------------------------------------------------------

    def get_model(self, model_id: str) -> JsonBody:
        """The model's status body (``GET /models/{id}``)."""
        return self._json("GET", f"/models/{model_id}")

    def list_models(self) -> list[JsonBody]:
        """Every model of this tenant (``GET /models``, all pages)."""
        models: list[JsonBody] = []
        while True:
            body = self._json(
                "GET", "/models", params={"limit": LIST_PAGE_SIZE, "offset": len(models)}
            )
            if not isinstance(body, Mapping):  # an unpaginated list
                return list(body)
            page = list(body.get("items") or [])
            models.extend(page)
            if not page or len(models) >= int(body.get("total", len(models))):
                return models

    def delete_model(self, model_id: str) -> None:
        """Remove the model, its rows and its artifacts."""
        self._request("DELETE", f"/models/{model_id}")

    def wait_ready(
        self,
        model_id: str,
        *,
        timeout: float = 600.0,
        progress: bool = True,
        poll_interval: float = POLL_INTERVAL_S,
    ) -> JsonBody:
        """Poll until the model is ready; returns its status body.

        Raises
        ------
        ModelFailedError
            The precompute failed; carries the recorded problem body.
        WaitTimeoutError
            Still not ready after ``timeout`` seconds.
        """
        from tqdm.auto import tqdm

        deadline = time.monotonic() + timeout
        with tqdm(
            total=100, desc=f"model {model_id[:8]}", unit="%", disable=not progress, leave=False
        ) as bar:
            while True:
                model = self.get_model(model_id)
                done = round(100 * float(model.get("progress") or 0.0))
                bar.set_postfix_str(str(model.get("status")), refresh=False)
                bar.update(max(0, min(100, done) - bar.n))
                if model.get("status") == "ready":
                    bar.update(100 - bar.n)
                    return model
                if model.get("status") == "failed":
                    raise ModelFailedError(model)
                if time.monotonic() >= deadline:
                    raise WaitTimeoutError(model, timeout)
                time.sleep(poll_interval)

    # -- queries --------------------------------------------------------------------------

    def explain(
        self,
        model_id: str,
        *,
        test_id: str | None = None,
        features: np.ndarray | None = None,
        inputs: np.ndarray | None = None,
        k: int = 10,
        method: str = Method.LJE.value,
        target: str | int = "predicted",
    ) -> JsonBody | list[JsonBody]:
        """Explain a stored test point (one body) or submitted rows (a list of bodies, in order).

        Give exactly one of ``test_id`` (``GET /explain``), ``features`` (φ rows of shape
        (m, d) for linear models) or ``inputs`` (raw rows of shape (m, p) for XGBoost models).
        """
        given = [
            name
            for name, value in (("test_id", test_id), ("features", features), ("inputs", inputs))
            if value is not None
        ]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of test_id, features, inputs; got {given or 'none'}"
            )
        method = getattr(method, "value", method)
        if test_id is not None:
            params = {
                "model_id": model_id,
                "test_id": str(test_id),
                "k": k,
                "method": method,
                "target": target,
            }
            return self._json("GET", "/explain", params=params)
        rows = np.atleast_2d(
            np.asarray(features if features is not None else inputs, dtype=np.float64)
        )
        if not np.all(np.isfinite(rows)):
            raise ValueError(f"{given[0]} holds NaN or infinite values")
        payload = {
            "model_id": model_id,
            given[0]: rows.tolist(),
            "k": k,
            "method": method,
            "target": target,
        }
        return self._json("POST", "/explain", json=payload)["explanations"]

    def test_points(
        self,
        model_id: str,
        *,
        limit: int = 50,
        offset: int = 0,
        label: int | None = None,
        correct: bool | None = None,
    ) -> JsonBody:
        """A page of the model's stored test points (id, label, predicted class, record),
        optionally only those with ``label`` or predicted right (``correct=True``) or wrong."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if label is not None:
            params["label"] = int(label)
        if correct is not None:
            params["correct"] = "true" if correct else "false"
        return self._json("GET", f"/models/{model_id}/test-points", params=params)

    def suspicious(
        self, model_id: str, *, method: str | None = None, limit: int = 50, offset: int = 0
    ) -> JsonBody:
        """Training points most likely mislabelled first.

        ``method``: lje | l2 | influence (self-contribution) or confidence | confidence_oof |
        cleanlab | fusion (label-error rankings); None: the service's default, named in the
        answer's ``method``.
        """
        params: dict[str, Any] = {"model_id": model_id, "limit": limit, "offset": offset}
        if method is not None:
            params["method"] = getattr(method, "value", method)
        return self._json("GET", "/debug/suspicious", params=params)


def _problem_of(response: httpx.Response) -> JsonBody:
    """The problem body of an error response, or a synthetic one if it is not JSON."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        return dict(body)
    return {
        "title": response.reason_phrase,
        "status": response.status_code,
        "detail": response.text[:500],
    }
