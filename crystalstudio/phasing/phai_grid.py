"""PhAI reflection list, input grids, the origin-invariant loss and phase metrics (P2₁/c).

Reflections: h ∈ [−m, m], k, l ∈ [0, m], h² + k² + l² ≤ m², 000 excluded, ordered h, k, l ascending
(1205 for m = 10). Grid slot of (h, k, l) is [h + m, k, l]; slots outside the sphere stay 0.
Amplitudes are |F| scaled to max 1 over the list; phases are in degrees (0 or −180 on input).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..crystal.reflections import index_sphere_half_grid
from ..crystal.symmetry import SpaceGroup

P21C_ORIGINS = np.array([[a, b, c] for a in (0, 0.5) for b in (0, 0.5) for c in (0, 0.5)])


@functools.lru_cache(maxsize=8)
def phai_reflections(max_index: int = 10) -> np.ndarray:
    return index_sphere_half_grid(max_index)


@dataclass(frozen=True)
class PhAIGrid:
    max_index: int = 10

    @property
    def hkl(self) -> np.ndarray:
        return phai_reflections(self.max_index)

    @property
    def n(self) -> int:
        return len(self.hkl)

    @property
    def shape(self) -> tuple[int, int, int]:
        m = self.max_index
        return (2 * m + 1, m + 1, m + 1)

    @functools.cached_property
    def flat_index(self) -> torch.Tensor:
        """Position of each listed reflection in the flattened grid."""
        h = self.hkl
        m = self.max_index
        return torch.as_tensor(((h[:, 0] + m) * (m + 1) + h[:, 1]) * (m + 1) + h[:, 2], dtype=torch.long)

    @functools.cached_property
    def absent(self) -> np.ndarray:
        """P2₁/c systematic absences (h0l with l odd, 0k0 with k odd)."""
        return SpaceGroup.from_name("P21/c").is_absent(self.hkl)

    def to_grid(self, values: torch.Tensor) -> torch.Tensor:
        """(B, R) → (B, 2m+1, m+1, m+1), zero outside the list."""
        B = values.shape[0]
        out = values.new_zeros((B, int(np.prod(self.shape))))
        out[:, self.flat_index.to(values.device)] = values
        return out.reshape((B,) + self.shape)

    def from_grid(self, grid: torch.Tensor) -> torch.Tensor:
        return grid.reshape(grid.shape[0], -1)[:, self.flat_index.to(grid.device)]


def scale_amplitudes(F: torch.Tensor, threshold: float = 0.01) -> torch.Tensor:
    """|F| (B, R) with values ≤ threshold set to 0, then scaled to max 1 per row (the published encoding)."""
    F = torch.where(F > threshold, F, torch.zeros_like(F))
    return F / F.amax(dim=1, keepdim=True).clamp_min(1e-12)


def phase_classes(phases_deg: torch.Tensor) -> torch.Tensor:
    """Phases (degrees) → class 1 for φ ≈ 0, class 0 for φ ≈ ±180 (centrosymmetric)."""
    return (torch.cos(torch.deg2rad(phases_deg)) > 0).long()


def origin_shifted(phases_deg: torch.Tensor, hkl: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
    """(B, R) phases shifted by each origin (O, 3) → (B, O, R): φ − 360° h·s."""
    shift = 360.0 * (hkl.to(phases_deg.dtype) @ origins.to(phases_deg.dtype).T).T  # (O, R)
    return phases_deg[:, None, :] - shift[None]


def origin_invariant_loss(logits: torch.Tensor, target_deg: torch.Tensor, weights: torch.Tensor, hkl: torch.Tensor,
                          origins: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Cross-entropy per reflection weighted by `weights` (R,) or (B, R), averaged over reflections, the
    minimum over the permissible origins, mean over the batch."""
    if origins is None:
        origins = torch.as_tensor(P21C_ORIGINS, dtype=torch.float32, device=logits.device)
    cls = phase_classes(origin_shifted(target_deg, hkl.to(logits.device), origins))  # (B, O, R)
    logp = torch.log_softmax(logits.float(), dim=1)  # (B, 2, R)
    nll = -torch.gather(logp[:, None].expand(-1, cls.shape[1], -1, -1), 2, cls[:, :, None, :]).squeeze(2)  # (B, O, R)
    w = weights if weights.dim() == 2 else weights[None]
    w = w[:, None, :]
    per_origin = (nll * w).sum(-1) / w.sum(-1).clamp_min(1e-12)
    return per_origin.min(dim=1).values.mean()


@dataclass
class PhaseMetrics:
    accuracy: float  # fraction of weighted, non-absent reflections with the right phase (best origin)
    phase_error: float  # amplitude-weighted mean |Δφ| in degrees (best origin)
    map_r: float  # Σ|F|² cos Δφ / Σ|F|² (best origin)


def phase_metrics(pred_deg: torch.Tensor, target_deg: torch.Tensor, amplitudes: torch.Tensor, hkl: torch.Tensor,
                  mask: Optional[torch.Tensor] = None, origins: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, ...]:
    """Per-structure (accuracy, mean phase error °, map r), each maximised over origins by map r."""
    if origins is None:
        origins = torch.as_tensor(P21C_ORIGINS, dtype=torch.float32, device=pred_deg.device)
    F = amplitudes.float()
    if mask is not None:
        F = F * mask
    tgt = origin_shifted(target_deg.float(), hkl.to(pred_deg.device), origins)  # (B, O, R)
    d = torch.deg2rad(pred_deg.float()[:, None, :] - tgt)
    w2 = F[:, None, :] ** 2
    r = (w2 * torch.cos(d)).sum(-1) / w2.sum(-1).clamp_min(1e-12)  # (B, O)
    best = r.argmax(dim=1)
    rows = torch.arange(len(best), device=best.device)
    dbest = torch.atan2(torch.sin(d[rows, best]), torch.cos(d[rows, best])).abs()
    err = torch.rad2deg((F * dbest).sum(-1) / F.sum(-1).clamp_min(1e-12))
    correct = (dbest < np.pi / 2).float()
    present = (F > 0).float()
    acc = (correct * present).sum(-1) / present.sum(-1).clamp_min(1)
    return acc, err, r[rows, best]


def average_weights(amplitudes: torch.Tensor, absent: np.ndarray) -> torch.Tensor:
    """Per-reflection loss weights: mean scaled |F| over a set of structures, 0 on absences."""
    w = amplitudes.float().mean(dim=0)
    w[torch.as_tensor(absent, device=w.device)] = 0.0
    return w / w.max().clamp_min(1e-12)
