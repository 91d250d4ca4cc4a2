"""A torch classifier as "features + linear head" (docs/math.md §1).

The features φ(x) are the *input* of the network's final ``nn.Linear``, captured with a
forward hook; the head is that Linear's weight and bias. Then ``features @ W.T + b``
reproduces the Linear's output, i.e. the network's logits when the Linear is the last layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from representer.errors import InvalidInputError
from representer.head import LinearHead

__all__ = ["extract_features", "head_from_linear", "linear_layer_names"]

_INPUT_KEY = "input"


def head_from_linear(linear: nn.Linear) -> LinearHead:
    """The linear head of an ``nn.Linear``.

    Parameters
    ----------
    linear : nn.Linear
        A layer with ``out_features`` outputs and ``in_features`` inputs.
        ``out_features == 1`` is a binary sigmoid head; ``>= 2`` a softmax head
        (2 outputs stay a 2-class softmax head).

    Returns
    -------
    LinearHead
        weights (out_features, in_features) float64, bias (out_features,) float64
        (zeros when the layer has no bias).
    """
    if not isinstance(linear, nn.Linear):
        raise InvalidInputError(
            f"linear must be a torch.nn.Linear, got {type(linear).__name__}", argument="linear"
        )
    weights = linear.weight.detach().to("cpu", torch.float64).numpy().copy()
    if linear.bias is None:
        bias = np.zeros(weights.shape[0], dtype=np.float64)
    else:
        bias = linear.bias.detach().to("cpu", torch.float64).numpy().copy()
    return LinearHead(weights=weights, bias=bias)


def linear_layer_names(module: nn.Module) -> list[str]:
    """Dotted names (as in ``module.named_modules()``) of every ``nn.Linear`` in ``module``."""
    return [name for name, child in module.named_modules() if isinstance(child, nn.Linear)]


def extract_features(
    module: nn.Module,
    layer: str,
    data: DataLoader | torch.Tensor | np.ndarray,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
    progress: bool = True,
) -> tuple[np.ndarray, LinearHead]:
    """Run ``module`` over ``data`` and capture the input of its final Linear ``layer``.

    Parameters
    ----------
    module : nn.Module
        The trained classifier. It runs in eval mode under ``torch.no_grad``; its training
        flag and device are restored afterwards.
    layer : str
        Dotted name of the final ``nn.Linear`` (a key of ``dict(module.named_modules())``).
    data : DataLoader, Tensor or ndarray
        A DataLoader whose batches are tensors, tuples/lists whose first element is the
        input, or dicts with key ``"input"``; or a tensor / array of inputs, shape (n, ...),
        cut into batches of ``batch_size`` rows.
    device : str or torch.device, default "cpu"
        Where the forward passes run.
    batch_size : int, default 256
        Rows per forward pass when ``data`` is a tensor or array.
    progress : bool, default True
        Show a tqdm progress bar over batches.

    Returns
    -------
    features : ndarray of shape (n, d), float32
        The Linear's input φ(x) for every row, in data order.
    head : LinearHead
        The Linear's weights (k_out, d) and bias (k_out,), float64.

    Raises
    ------
    InvalidInputError
        ``argument`` names the culprit: ``module``, ``layer``, ``data``, ``device`` or
        ``batch_size``.
    """
    if not isinstance(module, nn.Module):
        raise InvalidInputError(
            f"module must be a torch.nn.Module, got {type(module).__name__}", argument="module"
        )
    linear = _find_linear(module, layer)
    torch_device = _check_device(device)
    batches = _input_batches(data, batch_size=batch_size)
    captured: list[torch.Tensor] = []
    with _eval_on_device(module, torch_device), _capture_input(linear, layer, captured):
        for batch in tqdm(batches, total=_batch_count(data, batch_size), disable=not progress):
            calls_before = len(captured)
            module(batch.to(torch_device))
            _check_one_call(layer, len(captured) - calls_before)
    if sum(batch.shape[0] for batch in captured) == 0:
        raise InvalidInputError("data holds no rows", argument="data")
    features = torch.cat(captured).numpy()  # (n, d)
    if not np.all(np.isfinite(features)):
        raise InvalidInputError(
            f"the input of layer {layer!r} holds NaN or infinite values for some rows of data",
            argument="data",
        )
    return features, head_from_linear(linear)


def _find_linear(module: nn.Module, layer: str) -> nn.Linear:
    children = dict(module.named_modules())
    found = linear_layer_names(module)
    if not isinstance(layer, str) or layer not in children:
        raise InvalidInputError(
            f"layer {layer!r} is not a submodule of the module; Linear layers found: {found}",
            argument="layer",
        )
    if not isinstance(children[layer], nn.Linear):
        raise InvalidInputError(
            f"layer {layer!r} is a {type(children[layer]).__name__}, not a torch.nn.Linear; "
            f"Linear layers found: {found}",
            argument="layer",
        )
    return children[layer]


def _check_device(device: str | torch.device) -> torch.device:
    try:
        torch_device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise InvalidInputError(
            f"device {device!r} is not a torch device: {error}", argument="device"
        ) from error
    available = {
        "cpu": lambda: True,
        "cuda": torch.cuda.is_available,
        "mps": lambda: hasattr(torch.backends, "mps") and torch.backends.mps.is_available(),
    }
    if not available.get(torch_device.type, lambda: False)():
        raise InvalidInputError(
            f"device {device!r} is not available on this machine", argument="device"
        )
    if torch_device.type == "cuda":
        if (torch_device.index or 0) >= torch.cuda.device_count():
            raise InvalidInputError(
                f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA device(s) visible",
                argument="device",
            )
        if torch_device.index is None:  # "cuda" means the current one; tensors report "cuda:i"
            torch_device = torch.device("cuda", torch.cuda.current_device())
    return torch_device


def _input_batches(data: object, *, batch_size: int) -> Iterable[torch.Tensor]:
    """Validate ``data`` and return an iterable over its input batches."""
    if isinstance(data, DataLoader):
        return (_batch_input(batch) for batch in data)
    if not (isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size > 0):
        raise InvalidInputError(
            f"batch_size must be an integer > 0, got {batch_size!r}", argument="batch_size"
        )
    if isinstance(data, np.ndarray):
        if data.dtype == object or not (np.issubdtype(data.dtype, np.number) or data.dtype == bool):
            raise InvalidInputError(
                f"data must be numeric, got dtype {data.dtype}", argument="data"
            )
        data = torch.from_numpy(np.ascontiguousarray(data))
        if data.is_floating_point():
            data = data.to(torch.float32)
    if not isinstance(data, torch.Tensor):
        raise InvalidInputError(
            f"data must be a DataLoader, a torch.Tensor or a numpy array, got {type(data).__name__}",
            argument="data",
        )
    if data.ndim == 0 or data.shape[0] == 0:
        raise InvalidInputError(f"data holds no rows (shape {tuple(data.shape)})", argument="data")
    return (data[start : start + batch_size] for start in range(0, data.shape[0], batch_size))


def _batch_input(batch: object) -> torch.Tensor:
    """The model input of one DataLoader batch: the tensor, its first element, or ``batch["input"]``."""
    if isinstance(batch, (tuple, list)) and batch:
        batch = batch[0]
    elif isinstance(batch, dict):
        if _INPUT_KEY not in batch:
            raise InvalidInputError(
                f"dict batches must hold the key {_INPUT_KEY!r}, got keys {sorted(batch)}",
                argument="data",
            )
        batch = batch[_INPUT_KEY]
    if not isinstance(batch, torch.Tensor):
        raise InvalidInputError(
            f"every batch must be (or start with) a torch.Tensor, got {type(batch).__name__}",
            argument="data",
        )
    return batch


def _batch_count(data: object, batch_size: int) -> int | None:
    if isinstance(data, DataLoader):
        try:
            return len(data)
        except TypeError:  # an iterable-style dataset has no length
            return None
    return -(-len(data) // batch_size)  # type: ignore[arg-type]  # a Dataset or a sized array


def _check_one_call(layer: str, calls: int) -> None:
    if calls != 1:
        raise InvalidInputError(
            f"layer {layer!r} ran {calls} times in one forward pass; it must run exactly once "
            "(the final Linear of the classifier)",
            argument="layer",
        )


def _module_device(module: nn.Module) -> torch.device | None:
    """The one device holding the module's parameters and buffers (None if it has none)."""
    devices = {tensor.device for tensor in [*module.parameters(), *module.buffers()]}
    if len(devices) > 1:
        raise InvalidInputError(
            f"module's parameters live on several devices {sorted(map(str, devices))}; "
            "move it to one device first",
            argument="module",
        )
    return next(iter(devices), None)


@contextmanager
def _eval_on_device(module: nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode, no_grad, on ``device``; restore the training flags and device after."""
    training_flags = {name: child.training for name, child in module.named_modules()}
    original_device = _module_device(module)
    moved = original_device is not None and original_device != device
    if moved:
        module.to(device)
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for name, child in module.named_modules():
            child.training = training_flags.get(name, child.training)
        if moved:
            module.to(original_device)


@contextmanager
def _capture_input(linear: nn.Linear, layer: str, captured: list[torch.Tensor]) -> Iterator[None]:
    """Append the (batch, in_features) input of every call of ``linear`` to ``captured``."""

    def hook(_linear: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        features = inputs[0]
        if features.ndim != 2:
            raise InvalidInputError(
                f"the input of layer {layer!r} has shape {tuple(features.shape)}; it must be 2-d "
                "(batch, in_features), one feature vector per row",
                argument="layer",
            )
        captured.append(features.detach().to("cpu", torch.float32))

    handle = linear.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()
