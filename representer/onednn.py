"""oneDNN's float32 matrix product on plain tensors, where this PyTorch has it.

On this project's AMD Zen 5 machine MKL's SGEMM does not use AVX-512 and runs at about half
oneDNN's speed (one thread: (6,670 × 1,024) @ (1,024 × 1,000) 137 ms against 59 ms). The
kernel is reached through ``torch.ops.mkldnn._linear_pointwise``, which multiplies the plain
strided tensors (no reorder into oneDNN's layout, no copy); it is probed once at import, and
every caller falls back to ``@`` where it is missing.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["ONEDNN_LINEAR", "linear_nt"]


def _probe() -> Any | None:
    """oneDNN's fp32 linear, or None where this PyTorch lacks it or it answers wrongly."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        linear = torch.ops.mkldnn._linear_pointwise
        probe = linear(torch.ones(1, 3), torch.ones(2, 3), None, "none", [], "")
    except (AttributeError, RuntimeError):
        return None
    return linear if probe.shape == (1, 2) and bool((probe == 3.0).all()) else None


ONEDNN_LINEAR = _probe()
"""``(left, right, None, "none", [], "")`` ↦ left @ rightᵀ, float32, or None."""


def linear_nt(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """left @ rightᵀ by oneDNN for left (a, c) and right (b, c), float32, contiguous, CPU."""
    assert ONEDNN_LINEAR is not None
    result: torch.Tensor = ONEDNN_LINEAR(left, right, None, "none", [], "")
    return result
