"""The head's Hessian and its exact solve (docs/math.md §1).

H(Θ) = (1/n) Σ_i (diag P_i − P_i P_iᵀ) ⊗ φ̃_i φ̃_iᵀ, row-major vec(Θ) (index c·D + j),
accumulated in float64 block row by block row with large GEMMs. For a softmax head the
system solved is H + J ⊗ C + δI (J = 1 1ᵀ/k, C = mean φ̃φ̃ᵀ + tiny ridge): for every
right-hand side with zero class-sum its solution is H⁺b. A sigmoid head solves H + δI.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from representer.errors import MemoryLimitError, SingularSystemError

__all__ = [
    "HessianFactor",
    "accumulate_hessian_block",
    "check_hessian_memory",
    "factorize_hessian",
    "mirror_upper_blocks",
    "symmetrise_in_place",
]

C_RIDGE = 1e-8
"""Ridge added to C, relative to its mean diagonal, so that C is positive definite."""
PIVOT_RTOL = 1e-12
"""Smallest squared pivot of the equilibrated Cholesky factor accepted as non-singular
(a reciprocal-condition estimate); below it solves would lose most digits."""
FACTOR_COPIES = 2
"""The Hessian (then its factor, in the same memory) and the inverse are held at once."""
INVERSE_BLOCK = 1024
"""Columns solved at a time when forming the inverse."""


def check_hessian_memory(num_outputs: int, dim: int, *, memory_budget_bytes: int) -> None:
    """Raise ``MemoryLimitError`` when the exact (k_out·D)² Hessian would not fit."""
    size = num_outputs * dim
    needed = FACTOR_COPIES * size * size * 8
    if needed > memory_budget_bytes:
        raise MemoryLimitError(
            f"the exact Hessian of a {num_outputs}x{dim} head is {size}x{size} float64 and needs "
            f"{needed / 1024**2:.0f} MiB with its factor, more than "
            f"memory_budget_bytes={memory_budget_bytes} ({memory_budget_bytes / 1024**2:.0f} MiB); "
            "raise memory_budget_bytes or reduce the feature dimension",
            argument="memory_budget_bytes",
        )


def accumulate_hessian_block(
    hessian: torch.Tensor, block: torch.Tensor, probabilities: torch.Tensor
) -> None:
    """Add Σ_rows (diag P − P Pᵀ) ⊗ φ̃ φ̃ᵀ to the upper block rows of ``hessian`` (unscaled).

    Only the blocks (c, c') with c' >= c are written, one GEMM per block row c:
    Φ̃ᵀ [w_cc φ̃ … w_ck φ̃] with w_cc'[i] = P_ic (δ_cc' − P_ic'); ``mirror_upper_blocks``
    fills the rest.

    Parameters
    ----------
    hessian : Tensor of shape (k_out·D, k_out·D), float64, updated in place
    block : Tensor of shape (b, D), float64
        Rows of Φ̃.
    probabilities : Tensor of shape (b, k_out), float64
    """
    rows, dim = block.shape
    num_outputs = probabilities.shape[1]
    if num_outputs == 1:
        weights = probabilities[:, 0] * (1.0 - probabilities[:, 0])  # (b,)
        hessian.addmm_(block.T, block * weights[:, None])  # (D, D)
        return
    scaled = torch.empty((rows, num_outputs, dim), dtype=block.dtype, device=block.device)
    for c in range(num_outputs):
        weights = -probabilities[:, c : c + 1] * probabilities[:, c:]  # (b, k − c)
        weights[:, 0] += probabilities[:, c]
        torch.mul(weights[:, :, None], block[:, None, :], out=scaled[:, c:])  # (b, k − c, D)
        upper_rows = hessian[c * dim : (c + 1) * dim, c * dim :]  # (D, (k − c)·D) view
        upper_rows.addmm_(block.T, scaled[:, c:].reshape(rows, -1))


def mirror_upper_blocks(hessian: torch.Tensor, num_outputs: int) -> None:
    """Copy block (c, c') to (c', c)ᵀ for c' > c and symmetrise the diagonal blocks, in place."""
    dim = hessian.shape[0] // num_outputs
    for c in range(num_outputs):
        rows = slice(c * dim, (c + 1) * dim)
        diagonal = hessian[rows, rows]
        diagonal.copy_(0.5 * (diagonal + diagonal.T))
        for c_other in range(c + 1, num_outputs):
            cols = slice(c_other * dim, (c_other + 1) * dim)
            hessian[cols, rows] = hessian[rows, cols].T


@dataclass(frozen=True)
class HessianFactor:
    """Cholesky factor of the equilibrated system S A S = L Lᵀ, S = diag(A)^(-1/2).

    Attributes
    ----------
    cholesky : Tensor of shape (k_out·D, k_out·D), float64, lower triangular
    scale : Tensor of shape (k_out·D,), float64
        The diagonal of S.
    """

    cholesky: torch.Tensor
    scale: torch.Tensor

    def solve(self, rhs: torch.Tensor) -> torch.Tensor:
        """A⁻¹ b for rows b of ``rhs`` (q, k_out·D); shape (q, k_out·D)."""
        scaled = (rhs * self.scale[None, :]).T  # (k_out·D, q)
        return (torch.cholesky_solve(scaled, self.cholesky) * self.scale[:, None]).T

    def whiten(self, rhs: torch.Tensor) -> torch.Tensor:
        """L⁻¹ S b for rows b of ``rhs`` (q, k_out·D), so ‖result‖² = bᵀ A⁻¹ b; shape (q, k_out·D)."""
        scaled = (rhs * self.scale[None, :]).T  # (k_out·D, q)
        return torch.linalg.solve_triangular(self.cholesky, scaled, upper=False).T

    def inverse(self) -> torch.Tensor:
        """M = A⁻¹ = S (L Lᵀ)⁻¹ S, shape (k_out·D, k_out·D), float64, exactly symmetric.

        Solved column block by column block (LAPACK's potri is far slower here), so the
        factor and M are the only (k_out·D)² buffers alive.
        """
        size = self.cholesky.shape[0]
        inverse = torch.empty_like(self.cholesky)
        identity_block = torch.zeros(
            (size, INVERSE_BLOCK), dtype=inverse.dtype, device=inverse.device
        )
        for start in range(0, size, INVERSE_BLOCK):
            stop = min(size, start + INVERSE_BLOCK)
            columns = identity_block[:, : stop - start]
            columns.zero_()
            columns[start:stop].fill_diagonal_(1.0)
            inverse[:, start:stop] = torch.cholesky_solve(columns, self.cholesky)  # (L Lᵀ)⁻¹ e_j
        for start in range(0, size, INVERSE_BLOCK):
            rows = slice(start, start + INVERSE_BLOCK)
            inverse[rows] *= torch.outer(self.scale[rows], self.scale)  # s_i s_j
        symmetrise_in_place(inverse)
        return inverse


def symmetrise_in_place(matrix: torch.Tensor) -> None:
    """matrix ← (matrix + matrixᵀ)/2, block by block, without a second full buffer."""
    size = matrix.shape[0]
    for start in range(0, size, INVERSE_BLOCK):
        rows = slice(start, start + INVERSE_BLOCK)
        diagonal = matrix[rows, rows]
        diagonal.copy_(0.5 * (diagonal + diagonal.T))
        for other in range(start + INVERSE_BLOCK, size, INVERSE_BLOCK):
            cols = slice(other, other + INVERSE_BLOCK)
            average = 0.5 * (matrix[rows, cols] + matrix[cols, rows].T)
            matrix[rows, cols] = average
            matrix[cols, rows] = average.T


def _singular(message: str) -> SingularSystemError:
    return SingularSystemError(
        f"the Hessian system is singular or ill-conditioned ({message}); "
        "raise `damping` (for example to 1e-3 times the mean feature scale squared)",
        argument="damping",
    )


def factorize_hessian(
    hessian: torch.Tensor,
    *,
    num_outputs: int,
    damping: float,
    second_moment: torch.Tensor | None,
) -> HessianFactor:
    """Factorise A = H + J ⊗ C + δI (softmax) or H + δI (sigmoid) in ``hessian``'s memory.

    Parameters
    ----------
    hessian : Tensor of shape (k_out·D, k_out·D), float64, symmetric
    num_outputs : int
        k_out.
    damping : float
        δ >= 0.
    second_moment : Tensor of shape (D, D), float64, or None
        Φ̃ᵀΦ̃/n, required for softmax heads.

    Raises
    ------
    SingularSystemError
        When A is not numerically positive definite.
    """
    system = hessian
    dim = system.shape[0] // num_outputs
    if num_outputs > 1:
        if second_moment is None:
            raise ValueError("a softmax head's system needs the second moment Φ̃ᵀΦ̃/n")
        mean_diagonal = float(torch.diagonal(second_moment).mean())
        ridge = C_RIDGE * max(mean_diagonal, 1e-300)
        coupling = second_moment + ridge * torch.eye(dim, dtype=system.dtype, device=system.device)
        coupling /= num_outputs  # J ⊗ C puts C/k in every block
        for c in range(num_outputs):
            for c_other in range(num_outputs):
                system[c * dim : (c + 1) * dim, c_other * dim : (c_other + 1) * dim] += coupling
    system.diagonal().add_(damping)
    diagonal = system.diagonal()
    if not bool(torch.isfinite(system).all()):
        raise _singular("it holds non-finite values")
    if float(diagonal.min()) <= 0.0:
        raise _singular(
            f"{int((diagonal <= 0).sum())} zero diagonal entries, e.g. constant-zero features"
        )
    scale = diagonal.rsqrt()
    system *= scale[:, None]
    system *= scale[None, :]
    info = torch.empty((), dtype=torch.int32, device=system.device)
    cholesky, info = torch.linalg.cholesky_ex(system, out=(system, info))  # in place: H is not kept
    if int(info) != 0:
        raise _singular(f"Cholesky failed at pivot {int(info)}")
    smallest_pivot = float(cholesky.diagonal().min()) ** 2
    if not smallest_pivot > PIVOT_RTOL:
        raise _singular(f"reciprocal condition estimate {smallest_pivot:.1e} < {PIVOT_RTOL:.0e}")
    return HessianFactor(cholesky=cholesky, scale=scale)
