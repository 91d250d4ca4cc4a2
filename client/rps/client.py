"""The Python client of the explanation service: ``Client`` (sync) and ``AsyncClient``.

Typical use::

    from rps.client import Client

    with Client.from_env() as client:  # RPS_URL, RPS_API_KEY
        model = client.register_linear(weights, bias, train_features, train_labels, name="m")
        client.wait_ready(model.id)
        explanation = client.explain(model.id, test_id="17", k=5)
        print(explanation.decomposition.residual, explanation.positive[0].train_id)
        explanation.to_frame()  # with pandas installed

Answers are typed (``rps.results``: ``Model``, ``Explanation``, ``SuspiciousPage``, ...; each
also answers ``result["key"]`` from its JSON body). Every error the service answers
(``application/problem+json``) is raised as the ``rps.errors`` class of its status
(``NotFound``, ``Conflict``, ``Unprocessable``, ``TooManyRequests``, ...), all subclasses of
``ServiceError``. Arrays travel as ``.npy`` parts written with ``allow_pickle=False``.
``AsyncClient`` has the same methods, to be awaited.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
import numpy as np

from rps.errors import (
    BadRequest,
    Conflict,
    InternalServerError,
    ModelFailedError,
    NotFound,
    PayloadTooLarge,
    ServiceError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
    WaitTimeoutError,
    error_for,
)
from rps.results import (
    Contribution,
    Explanation,
    Model,
    SuspiciousItem,
    SuspiciousPage,
    TestPoint,
    TestPointPage,
)
from rps.spec import Method, ModelSpec, as_json, json_name

__all__ = [
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "Contribution",
    "Explanation",
    "InternalServerError",
    "Model",
    "ModelFailedError",
    "NotFound",
    "PayloadTooLarge",
    "ServiceError",
    "ServiceUnavailable",
    "SuspiciousItem",
    "SuspiciousPage",
    "TestPoint",
    "TestPointPage",
    "TooManyRequests",
    "Unauthorized",
    "Unprocessable",
    "UnsupportedMediaType",
    "WaitTimeoutError",
]

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.25
LIST_PAGE_SIZE = 500
MAX_BATCH_IDS = 1000  # what POST /explain/batch takes at once
BOOSTER_SUFFIXES = (".json", ".ubj")

JsonBody = dict[str, Any]
T = TypeVar("T")


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


@dataclasses.dataclass(frozen=True)
class _Call(Generic[T]):
    """One HTTP request and how its answer becomes a result."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


def _json_body(response: httpx.Response) -> Any:
    return response.json()


def _raise_for_problem(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise error_for(
            response.status_code,
            _problem_of(response),
            retry_after=response.headers.get("retry-after"),
        )


def _explain_params(
    model_id: str,
    *,
    test_id: str | None,
    features: np.ndarray | None,
    inputs: np.ndarray | None,
    k: int,
    method: str,
    target: str | int,
) -> _Call[Explanation] | _Call[list[Explanation]]:
    given = [
        name
        for name, value in (("test_id", test_id), ("features", features), ("inputs", inputs))
        if value is not None
    ]
    if len(given) != 1:
        raise ValueError(f"give exactly one of test_id, features, inputs; got {given or 'none'}")
    method = getattr(method, "value", method)
    if test_id is not None:
        params = {
            "model_id": model_id,
            "test_id": str(test_id),
            "k": k,
            "method": method,
            "target": target,
        }
        return _Call(
            "GET", "/explain", lambda r: Explanation.from_json(r.json()), {"params": params}
        )
    rows = np.atleast_2d(np.asarray(features if features is not None else inputs, dtype=np.float64))
    if not np.all(np.isfinite(rows)):
        raise ValueError(f"{given[0]} holds NaN or infinite values")
    payload = {
        "model_id": model_id,
        given[0]: rows.tolist(),
        "k": k,
        "method": method,
        "target": target,
    }
    return _Call("POST", "/explain", _explanation_list, {"json": payload})


def _explanation_list(response: httpx.Response) -> list[Explanation]:
    return [Explanation.from_json(body) for body in response.json()["explanations"]]


class _Requests:
    """What both clients send and how they read the answers; the subclasses do the I/O."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: Any = None,
    ) -> None:
        self.headers = {"Accept": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.transport = transport

    @classmethod
    def from_env(cls, **kwargs: Any) -> Any:
        """A client of ``RPS_URL`` (default http://127.0.0.1:8000) with key ``RPS_API_KEY``."""
        kwargs.setdefault("api_key", os.environ.get("RPS_API_KEY") or None)
        return cls(os.environ.get("RPS_URL") or DEFAULT_URL, **kwargs)

    # -- request builders -----------------------------------------------------------------

    def _register_call(
        self, spec: str, files: list, *, test_labels: Any, ids_and_records: Mapping[str, Any]
    ) -> _Call[Model]:
        if test_labels is not None:
            files.append(_npy_part("test_labels", test_labels, integer=True))
        data = {"spec": spec}
        for part, values in ids_and_records.items():
            if values is None:
                continue
            if part.endswith("_ids"):
                values = [str(value) for value in values]
            data[part] = _json_list(values)
        return _Call(
            "POST", "/models", lambda r: Model.from_json(r.json()), {"data": data, "files": files}
        )

    def _linear_call(
        self,
        weights: Any,
        bias: Any,
        train_features: Any,
        train_labels: Any,
        *,
        spec: Any,
        test_features: Any,
        test_labels: Any,
        ids_and_records: Mapping[str, Any],
        settings: Mapping[str, Any],
    ) -> _Call[Model]:
        files = [
            _npy_part("weights", weights),
            _npy_part("train_features", train_features),
            _npy_part("train_labels", train_labels, integer=True),
        ]
        if bias is not None:
            files.append(_npy_part("bias", bias))
        if test_features is not None:
            files.append(_npy_part("test_features", test_features))
        return self._register_call(
            _build_spec("linear", spec, settings),
            files,
            test_labels=test_labels,
            ids_and_records=ids_and_records,
        )

    def _xgboost_call(
        self,
        booster: Any,
        train_inputs: Any,
        train_labels: Any,
        *,
        spec: Any,
        embedding: Any,
        test_inputs: Any,
        test_labels: Any,
        ids_and_records: Mapping[str, Any],
        settings: Mapping[str, Any],
    ) -> _Call[Model]:
        files = [
            _booster_part(booster),
            _npy_part("train_inputs", train_inputs),
            _npy_part("train_labels", train_labels, integer=True),
        ]
        if test_inputs is not None:
            files.append(_npy_part("test_inputs", test_inputs))
        if embedding is not None:
            section = {**(settings.get("xgboost") or {}), "embedding": embedding}
            settings = {**settings, "xgboost": section}
        return self._register_call(
            _build_spec("xgboost", spec, settings),
            files,
            test_labels=test_labels,
            ids_and_records=ids_and_records,
        )

    @staticmethod
    def _model_call(model_id: str) -> _Call[Model]:
        return _Call("GET", f"/models/{model_id}", lambda r: Model.from_json(r.json()))

    @staticmethod
    def _models_page_call(offset: int) -> _Call[tuple[list[Model], int]]:
        def parse(response: httpx.Response) -> tuple[list[Model], int]:
            body = response.json()
            items = [Model.from_json(item) for item in body.get("items") or []]
            return items, int(body.get("total", offset + len(items)))

        return _Call(
            "GET", "/models", parse, {"params": {"limit": LIST_PAGE_SIZE, "offset": offset}}
        )

    @staticmethod
    def _delete_call(model_id: str) -> _Call[None]:
        return _Call("DELETE", f"/models/{model_id}", lambda r: None)

    @staticmethod
    def _batch_call(
        model_id: str, test_ids: Sequence[str], *, k: int, method: str, target: str | int
    ) -> _Call[list[Explanation]]:
        payload = {
            "model_id": model_id,
            "test_ids": [str(test_id) for test_id in test_ids],
            "k": k,
            "method": getattr(method, "value", method),
            "target": target,
        }
        return _Call("POST", "/explain/batch", _explanation_list, {"json": payload})

    @staticmethod
    def _test_points_call(
        model_id: str, *, limit: int, offset: int, label: int | None, correct: bool | None
    ) -> _Call[TestPointPage]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if label is not None:
            params["label"] = int(label)
        if correct is not None:
            params["correct"] = "true" if correct else "false"
        return _Call(
            "GET",
            f"/models/{model_id}/test-points",
            lambda r: TestPointPage.from_json(r.json()),
            {"params": params},
        )

    @staticmethod
    def _suspicious_call(
        model_id: str, *, method: str | None, limit: int, offset: int, reviewed: bool | None = None
    ) -> _Call[SuspiciousPage]:
        params: dict[str, Any] = {"model_id": model_id, "limit": limit, "offset": offset}
        if method is not None:
            params["method"] = getattr(method, "value", method)
        if reviewed is not None:  # False: hide reviewed points; True: only reviewed ones
            params["reviewed"] = "true" if reviewed else "false"
        return _Call(
            "GET",
            "/debug/suspicious",
            lambda r: SuspiciousPage.from_json(r.json()),
            {"params": params},
        )

    @staticmethod
    def _review_call(
        model_id: str, train_id: str, decision: str, *, label: int | None, note: str
    ) -> _Call[JsonBody]:
        return _Call(
            "PUT",
            f"/models/{model_id}/reviews/{train_id}",
            _json_body,
            {"json": _review_body(decision, label, note)},
        )

    @staticmethod
    def _reviews_call(model_id: str, *, format: str) -> _Call[Any]:
        return _Call(
            "GET",
            f"/models/{model_id}/reviews",
            _reviews_answer(format),
            {"params": {"format": format}},
        )

    @staticmethod
    def _refit_call(model_id: str, *, name: str | None) -> _Call[JsonBody]:
        body = {} if name is None else {"name": name}
        return _Call("POST", f"/models/{model_id}/refit", _json_body, {"json": body})


def _review_body(decision: str, label: int | None, note: str) -> JsonBody:
    body: JsonBody = {"decision": getattr(decision, "value", decision), "note": note}
    if label is not None:
        body["label"] = int(label)
    return body


def _reviews_answer(format: str) -> Callable[[httpx.Response], Any]:
    return lambda response: response.text if format == "csv" else response.json()


def _chunks(values: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _progress(total: int, *, desc: str, enabled: bool, unit: str = "it") -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=False)


def _wait_step(model: Model, bar: Any, deadline: float, timeout: float) -> bool:
    """Update the bar; True when ready, raise when failed or out of time."""
    done = round(100 * float(model.progress or 0.0))
    bar.set_postfix_str(str(model.status), refresh=False)
    bar.update(max(0, min(100, done) - bar.n))
    if model.status == "ready":
        bar.update(100 - bar.n)
        return True
    if model.status == "failed":
        raise ModelFailedError(model)
    if time.monotonic() >= deadline:
        raise WaitTimeoutError(model, timeout)
    return False


_REGISTER_DOC = """
        Parameters
        ----------
        spec : rps.spec.ModelSpec or its JSON dict, optional
            The model spec; ``kind`` is set for you.
        train_ids, test_ids : sequences of distinct str, optional
        train_records, test_records : sequences of JSON values, optional
        **settings
            Top-level spec fields over ``spec`` (``name``, ``class_names``, ``methods``,
            ``lje``, ``l2``, ``influence``, ``queue``, ... see ``rps.spec.ModelSpec``), sent
            unchanged; a section given here and in ``spec`` is merged key by key.
"""


class Client(_Requests):
    """Synchronous client of one service instance; also a context manager.

    Parameters
    ----------
    base_url : str
        E.g. ``"http://127.0.0.1:8000"``; ``Client.from_env()`` reads ``RPS_URL``.
    api_key : str, optional
        Sent as ``Authorization: Bearer <api_key>``; omit when auth is off.
    timeout : float
        Seconds for each HTTP request.
    transport : httpx.BaseTransport, optional
        For tests and proxies.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key=api_key, timeout=timeout, transport=transport)
        self._http = httpx.Client(
            base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._http.close()

    def _run(self, call: _Call[T]) -> T:
        return call.parse(self._request(call.method, call.path, **call.kwargs))

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; an answered error is raised as its ``rps.errors`` class."""
        response = self._http.request(method, path, **kwargs)
        _raise_for_problem(response)
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
    ) -> Model:
        """Register a linear head over given features; returns its status (queued).

        weights (k, d), bias (k,) or None, train_features (n, d), train_labels (n,) ints;
        k = 1 is a binary sigmoid head. ``test_features`` (m, d) with ``test_labels`` (m,)
        are a stored test set, so ``explain(test_id=...)`` works.
        """
        return self._run(
            self._linear_call(
                weights,
                bias,
                train_features,
                train_labels,
                spec=spec,
                test_features=test_features,
                test_labels=test_labels,
                ids_and_records=_ids_and_records(train_ids, train_records, test_ids, test_records),
                settings=settings,
            )
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
    ) -> Model:
        """Register an XGBoost booster (an ``xgboost.Booster`` or a ``.json``/``.ubj`` path);
        the service computes φ from the raw rows (n, p) itself. ``embedding`` is short for
        ``xgboost={"embedding": ...}``."""
        return self._run(
            self._xgboost_call(
                booster,
                train_inputs,
                train_labels,
                spec=spec,
                embedding=embedding,
                test_inputs=test_inputs,
                test_labels=test_labels,
                ids_and_records=_ids_and_records(train_ids, train_records, test_ids, test_records),
                settings=settings,
            )
        )

    register_linear.__doc__ = (register_linear.__doc__ or "") + _REGISTER_DOC
    register_xgboost.__doc__ = (register_xgboost.__doc__ or "") + _REGISTER_DOC

    # -- models ---------------------------------------------------------------------------

    def get_model(self, model_id: str) -> Model:
        """The model's status (``GET /models/{id}``)."""
        return self._run(self._model_call(model_id))

    def iter_models(self) -> Iterator[Model]:
        """Every model of this tenant, page after page (``GET /models``)."""
        offset = 0
        while True:
            page, total = self._run(self._models_page_call(offset))
            yield from page
            offset += len(page)
            if not page or offset >= total:
                return

    def list_models(self) -> list[Model]:
        """Every model of this tenant (all pages)."""
        return list(self.iter_models())

    def delete_model(self, model_id: str) -> None:
        """Remove the model, its rows and its artifacts."""
        self._run(self._delete_call(model_id))

    def wait_ready(
        self,
        model_id: str,
        *,
        timeout: float = 600.0,
        progress: bool = True,
        poll_interval: float = POLL_INTERVAL_S,
    ) -> Model:
        """Poll until the model is ready (a tqdm bar while ``progress``); returns its status.

        Raises ``ModelFailedError`` (the recorded problem) or ``WaitTimeoutError``.
        """
        deadline = time.monotonic() + timeout
        with _progress(100, desc=f"model {model_id[:8]}", enabled=progress, unit="%") as bar:
            while True:
                model = self.get_model(model_id)
                if _wait_step(model, bar, deadline, timeout):
                    return model
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
    ) -> Any:
        """Explain a stored test point (one ``Explanation``) or submitted rows (a list, in order).

        Give exactly one of ``test_id`` (``GET /explain``), ``features`` (φ rows of shape
        (m, d) for linear models) or ``inputs`` (raw rows of shape (m, p) for XGBoost models).
        """
        call: Any = _explain_params(
            model_id,
            test_id=test_id,
            features=features,
            inputs=inputs,
            k=k,
            method=method,
            target=target,
        )
        return self._run(call)

    def explain_batch(
        self,
        model_id: str,
        test_ids: Iterable[str],
        *,
        k: int = 10,
        method: str = Method.LJE.value,
        target: str | int = "predicted",
        progress: bool = False,
    ) -> list[Explanation]:
        """Explanations of many stored test points, in order (``POST /explain/batch``, in
        requests of up to 1000 ids; a tqdm bar while ``progress``)."""
        ids = [str(test_id) for test_id in test_ids]
        answers: list[Explanation] = []
        with _progress(len(ids), desc="explain", enabled=progress) as bar:
            for chunk in _chunks(ids, MAX_BATCH_IDS):
                batch: list[Explanation] = self._run(
                    self._batch_call(model_id, chunk, k=k, method=method, target=target)
                )
                answers.extend(batch)
                bar.update(len(chunk))
        return answers

    def test_points(
        self,
        model_id: str,
        *,
        limit: int = 50,
        offset: int = 0,
        label: int | None = None,
        correct: bool | None = None,
    ) -> TestPointPage:
        """A page of the model's stored test points (id, label, predicted class, record),
        optionally only those with ``label`` or predicted right (``correct=True``) or wrong."""
        return self._run(
            self._test_points_call(
                model_id, limit=limit, offset=offset, label=label, correct=correct
            )
        )

    def suspicious(
        self,
        model_id: str,
        *,
        method: str | None = None,
        limit: int = 50,
        offset: int = 0,
        reviewed: bool | None = None,
    ) -> SuspiciousPage:
        """A page of training points, most likely mislabelled first.

        ``method``: lje | l2 | influence (self-contribution) or confidence | confidence_oof |
        cleanlab | fusion | adaptive (label-error rankings); None: the service's default, named in the
        answer's ``method``.
        """
        return self._run(
            self._suspicious_call(
                model_id, method=method, limit=limit, offset=offset, reviewed=reviewed
            )
        )

    def iter_suspicious(
        self,
        model_id: str,
        *,
        method: str | None = None,
        page_size: int = 500,
        reviewed: bool | None = None,
    ) -> Iterator[SuspiciousItem]:
        """The whole ranking, page after page."""
        offset = 0
        while True:
            page = self.suspicious(
                model_id, method=method, limit=page_size, offset=offset, reviewed=reviewed
            )
            yield from page.items
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return

    # -- reviews --------------------------------------------------------------------------

    def review(
        self,
        model_id: str,
        train_id: str,
        decision: str,
        *,
        label: int | None = None,
        note: str = "",
    ) -> JsonBody:
        """Set the review of one training point: ``keep``, ``relabel`` (with ``label``) or
        ``remove``; setting it again replaces it."""
        return self._run(self._review_call(model_id, train_id, decision, label=label, note=note))

    def reviews(self, model_id: str, *, format: str = "json") -> Any:
        """Every review of the model: the JSON body, or the CSV text with ``format="csv"``."""
        return self._run(self._reviews_call(model_id, format=format))

    def refit(self, model_id: str, *, name: str | None = None) -> JsonBody:
        """Register a new model whose head is refit on the reviewed labels (``parent_id`` =
        ``model_id``); wait for it with ``wait_ready``: its ``diagnostics`` give the test
        accuracy before and after (``refit_test_accuracy_*``)."""
        return self._run(self._refit_call(model_id, name=name))


class AsyncClient(_Requests):
    """The same methods as ``Client``, to be awaited; ``async with AsyncClient(...)``."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key=api_key, timeout=timeout, transport=transport)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the underlying connection pool."""
        await self._http.aclose()

    async def _run(self, call: _Call[T]) -> T:
        response = await self._http.request(call.method, call.path, **call.kwargs)
        _raise_for_problem(response)
        return call.parse(response)

    async def health(self) -> bool:
        try:
            return (await self._http.get("/healthz")).status_code < 300
        except httpx.TransportError:
            return False

    async def register_linear(
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
    ) -> Model:
        """As ``Client.register_linear``."""
        return await self._run(
            self._linear_call(
                weights,
                bias,
                train_features,
                train_labels,
                spec=spec,
                test_features=test_features,
                test_labels=test_labels,
                ids_and_records=_ids_and_records(train_ids, train_records, test_ids, test_records),
                settings=settings,
            )
        )

    async def register_xgboost(
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
    ) -> Model:
        """As ``Client.register_xgboost``."""
        return await self._run(
            self._xgboost_call(
                booster,
                train_inputs,
                train_labels,
                spec=spec,
                embedding=embedding,
                test_inputs=test_inputs,
                test_labels=test_labels,
                ids_and_records=_ids_and_records(train_ids, train_records, test_ids, test_records),
                settings=settings,
            )
        )

    async def get_model(self, model_id: str) -> Model:
        return await self._run(self._model_call(model_id))

    async def iter_models(self) -> AsyncIterator[Model]:
        offset = 0
        while True:
            page, total = await self._run(self._models_page_call(offset))
            for model in page:
                yield model
            offset += len(page)
            if not page or offset >= total:
                return

    async def list_models(self) -> list[Model]:
        return [model async for model in self.iter_models()]

    async def delete_model(self, model_id: str) -> None:
        await self._run(self._delete_call(model_id))

    async def wait_ready(
        self,
        model_id: str,
        *,
        timeout: float = 600.0,
        progress: bool = False,
        poll_interval: float = POLL_INTERVAL_S,
    ) -> Model:
        """As ``Client.wait_ready`` (no progress bar unless asked)."""
        deadline = time.monotonic() + timeout
        with _progress(100, desc=f"model {model_id[:8]}", enabled=progress, unit="%") as bar:
            while True:
                model = await self.get_model(model_id)
                if _wait_step(model, bar, deadline, timeout):
                    return model
                await asyncio.sleep(poll_interval)

    async def explain(
        self,
        model_id: str,
        *,
        test_id: str | None = None,
        features: np.ndarray | None = None,
        inputs: np.ndarray | None = None,
        k: int = 10,
        method: str = Method.LJE.value,
        target: str | int = "predicted",
    ) -> Any:
        """As ``Client.explain``."""
        call: Any = _explain_params(
            model_id,
            test_id=test_id,
            features=features,
            inputs=inputs,
            k=k,
            method=method,
            target=target,
        )
        return await self._run(call)

    async def explain_batch(
        self,
        model_id: str,
        test_ids: Iterable[str],
        *,
        k: int = 10,
        method: str = Method.LJE.value,
        target: str | int = "predicted",
    ) -> list[Explanation]:
        """As ``Client.explain_batch``."""
        ids = [str(test_id) for test_id in test_ids]
        answers: list[Explanation] = []
        for chunk in _chunks(ids, MAX_BATCH_IDS):
            batch: list[Explanation] = await self._run(
                self._batch_call(model_id, chunk, k=k, method=method, target=target)
            )
            answers.extend(batch)
        return answers

    async def test_points(
        self,
        model_id: str,
        *,
        limit: int = 50,
        offset: int = 0,
        label: int | None = None,
        correct: bool | None = None,
    ) -> TestPointPage:
        return await self._run(
            self._test_points_call(
                model_id, limit=limit, offset=offset, label=label, correct=correct
            )
        )

    async def suspicious(
        self,
        model_id: str,
        *,
        method: str | None = None,
        limit: int = 50,
        offset: int = 0,
        reviewed: bool | None = None,
    ) -> SuspiciousPage:
        return await self._run(
            self._suspicious_call(
                model_id, method=method, limit=limit, offset=offset, reviewed=reviewed
            )
        )

    async def iter_suspicious(
        self, model_id: str, *, method: str | None = None, page_size: int = 500
    ) -> AsyncIterator[SuspiciousItem]:
        offset = 0
        while True:
            page = await self.suspicious(model_id, method=method, limit=page_size, offset=offset)
            for item in page.items:
                yield item
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return

    async def review(
        self,
        model_id: str,
        train_id: str,
        decision: str,
        *,
        label: int | None = None,
        note: str = "",
    ) -> JsonBody:
        """As ``Client.review``."""
        return await self._run(
            self._review_call(model_id, train_id, decision, label=label, note=note)
        )

    async def reviews(self, model_id: str, *, format: str = "json") -> Any:
        """As ``Client.reviews``."""
        return await self._run(self._reviews_call(model_id, format=format))

    async def refit(self, model_id: str, *, name: str | None = None) -> JsonBody:
        """As ``Client.refit``."""
        return await self._run(self._refit_call(model_id, name=name))


def _ids_and_records(
    train_ids: Any, train_records: Any, test_ids: Any, test_records: Any
) -> dict[str, Any]:
    return {
        "train_ids": train_ids,
        "train_records": train_records,
        "test_ids": test_ids,
        "test_records": test_records,
    }
