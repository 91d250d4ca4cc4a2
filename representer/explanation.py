"""What one explanation of one test point holds (docs/math.md §2.5, §5)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DENSE_SOLVE", "Explanation", "SolverReport"]


@dataclass(frozen=True)
class SolverReport:
    """How the H⁺ term of an explanation was solved (docs/math.md §10.3).

    Attributes
    ----------
    name : str
        ``"dense"`` (a product with the factorised inverse, or no Hessian at all: RPS-l2)
        or ``"pcg"`` (block-preconditioned conjugate gradients on the exact H).
    iterations : int
        PCG iterations (0 for dense).
    relative_residual : float
        ‖b − Hx‖/‖b‖ reached by PCG; 0.0 for dense (a direct solve, not measured).
    """

    name: str
    iterations: int
    relative_residual: float


DENSE_SOLVE = SolverReport(name="dense", iterations=0, relative_residual=0.0)


@dataclass(frozen=True)
class Explanation:
    """The explanation of one test point toward one target class.

    Attributes
    ----------
    target_class : int
        The class the contributions are signed toward (docs/math.md §5).
    logits : ndarray of shape (k_out,), float64
        The original head's output Θ†φ̃_t (binary: one logit).
    probabilities : ndarray of shape (k_out,), float64
        σ(z) for binary, softmax(z) otherwise.
    predicted_class : int
        The head's predicted class.
    model_output : float
        The target class's score under the original head (binary class 0: −z).
    sum_of_contributions : float
        Σ_i c_i(t) toward the target class.
    residual : float
        ``model_output − sum_of_contributions`` (docs/math.md §2.5); reported, never hidden.
    positive_indices, negative_indices : ndarray of shape (top_k,), int64
        Training rows with the largest / smallest contributions, best first.
    positive_contributions, negative_contributions : ndarray of shape (top_k,), float64
        Their signed contributions toward ``target_class``.
    solver : SolverReport
        Which solver produced the contributions, with its iterations and residual.
    """

    target_class: int
    logits: np.ndarray
    probabilities: np.ndarray
    predicted_class: int
    model_output: float
    sum_of_contributions: float
    residual: float
    positive_indices: np.ndarray
    positive_contributions: np.ndarray
    negative_indices: np.ndarray
    negative_contributions: np.ndarray
    solver: SolverReport
