"""The PhAI phase network (Larsen, Rekis & Madsen, Science 385, 522, 2024), re-implemented.

Input: amplitudes and phases (degrees, 0 or −180) on the half grid h ∈ [−m, m], k, l ∈ [0, m]
(tensors (B, 2m+1, m+1, m+1)). Output: logits (B, 2, R) for the R in-sphere reflections in PhAI
order; class 0 is φ = π (−180°), class 1 is φ = 0, i.e. φ = argmax·180° − 180°.

Layout (names, Sequential slots and shapes) is that of the published model, so its checkpoint
(42,443,882 parameters, 158 tensors with the default configuration) loads with strict=True:
  net_a / net_p              [reshape, Conv3d(1→F), GELU, GroupNorm(F, F)]
  net_convolution_layers.i.0 conv1, norm1, conv2, norm2 (Conv3d F→F, GELU, GroupNorm; + identity)
  net_projection_layer       [flatten grid, Linear(grid → dim)]             → F tokens of width dim
  net_mixer_layers.i.0 / .1  token / channel MLP: norm1 (GroupNorm over tokens), layer1, layer2
  net_mixer_layers.{depth}   LayerNorm(dim)
  net_output                 [transpose, AdaptiveAvgPool1d(1), squeeze, Linear(dim → 2R), split]
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class PhAIConfig:
    max_index: int = 10
    filters: int = 96
    kernel_size: int = 3
    cnn_depth: int = 6
    dim: int = 1024
    dim_exp: int = 2048
    dim_token_exp: int = 512
    mlp_depth: int = 8
    reflections: int = 1205

    @classmethod
    def published(cls) -> "PhAIConfig":
        return cls()

    @classmethod
    def small(cls) -> "PhAIConfig":
        """A CPU-trainable variant (about 1.2 M parameters) with the same grid and output."""
        return cls(filters=16, cnn_depth=2, dim=192, dim_exp=384, dim_token_exp=32, mlp_depth=2)

    @classmethod
    def from_dict(cls, d: dict) -> "PhAIConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown PhAI model setting(s): {', '.join(sorted(unknown))}")
        return cls(**{k: int(v) for k, v in d.items()})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        m = self.max_index
        return (2 * m + 1, m + 1, m + 1)


class AddChannel(nn.Module):
    """(B, X, Y, Z) → (B, 1, X, Y, Z)."""

    def forward(self, x):
        return x.unsqueeze(1)


class FlattenGrid(nn.Module):
    """(B, C, X, Y, Z) → (B, C, X·Y·Z)."""

    def forward(self, x):
        return x.flatten(2)


class SwapLastTwo(nn.Module):
    def forward(self, x):
        return x.transpose(1, 2)


class SqueezeLast(nn.Module):
    def forward(self, x):
        return x.squeeze(-1)


class SplitClasses(nn.Module):
    """(B, 2R) → (B, 2, R): the first R logits are class 0."""

    def __init__(self, reflections: int):
        super().__init__()
        self.reflections = reflections

    def forward(self, x):
        return x.reshape(x.shape[0], -1, self.reflections)


class ResidualConvBlock(nn.Module):
    def __init__(self, filters: int, kernel_size: int):
        super().__init__()
        pad = (kernel_size - 1) // 2
        self.act = nn.GELU()
        self.conv1 = nn.Conv3d(filters, filters, kernel_size, padding=pad)
        self.conv2 = nn.Conv3d(filters, filters, kernel_size, padding=pad)
        self.norm1 = nn.GroupNorm(filters, filters)
        self.norm2 = nn.GroupNorm(filters, filters)

    def forward(self, x):
        y = self.norm1(self.act(self.conv1(x)))
        y = self.norm2(self.act(self.conv2(y)))
        return x + y


class MixerLayer(nn.Module):
    """Pre-normalised residual MLP mixing tokens (Conv1d k=1 across the token axis) or channels (Linear)."""

    def __init__(self, tokens: int, dim: int, hidden: int, kind: str):
        super().__init__()
        self.act = nn.GELU()
        self.norm1 = nn.GroupNorm(tokens, tokens)
        if kind == "token":
            self.layer1 = nn.Conv1d(tokens, hidden, kernel_size=1)
            self.layer2 = nn.Conv1d(hidden, tokens, kernel_size=1)
        elif kind == "channel":
            self.layer1 = nn.Linear(dim, hidden)
            self.layer2 = nn.Linear(hidden, dim)
        else:
            raise ValueError(kind)
        self.kind = kind

    def forward(self, x):
        return x + self.layer2(self.act(self.layer1(self.norm1(x))))


class PhAI(nn.Module):
    def __init__(self, config: PhAIConfig = PhAIConfig()):
        super().__init__()
        self.config = config
        c = config
        pad = (c.kernel_size - 1) // 2

        def stem():
            return nn.Sequential(AddChannel(), nn.Conv3d(1, c.filters, c.kernel_size, padding=pad), nn.GELU(),
                                 nn.GroupNorm(c.filters, c.filters))

        self.net_a = stem()
        self.net_p = stem()
        self.net_convolution_layers = nn.Sequential(
            *[nn.Sequential(ResidualConvBlock(c.filters, c.kernel_size)) for _ in range(c.cnn_depth)])
        gx, gy, gz = c.grid_shape
        self.net_projection_layer = nn.Sequential(FlattenGrid(), nn.Linear(gx * gy * gz, c.dim))
        self.net_mixer_layers = nn.Sequential(
            *[nn.Sequential(MixerLayer(c.filters, c.dim, c.dim_token_exp, "token"),
                            MixerLayer(c.filters, c.dim, c.dim_exp, "channel")) for _ in range(c.mlp_depth)],
            nn.LayerNorm(c.dim))
        self.net_output = nn.Sequential(SwapLastTwo(), nn.AdaptiveAvgPool1d(1), SqueezeLast(),
                                        nn.Linear(c.dim, 2 * c.reflections), SplitClasses(c.reflections))

    def forward(self, amplitudes: torch.Tensor, phases: torch.Tensor) -> torch.Tensor:
        """amplitudes, phases (degrees): (B, 2m+1, m+1, m+1) → logits (B, 2, R)."""
        x = self.net_a(amplitudes) + self.net_p(phases)
        x = self.net_convolution_layers(x)
        x = self.net_projection_layer(x)
        x = self.net_mixer_layers(x)
        return self.net_output(x)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def decode_phases(logits: torch.Tensor) -> torch.Tensor:
    """Logits (B, 2, R) → phases in degrees (B, R): 0 or −180."""
    return torch.argmax(logits, dim=1).to(torch.float32) * 180.0 - 180.0
