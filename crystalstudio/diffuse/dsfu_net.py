"""DSFU-Net (IUCrJ 11, 34, 2024): two Pix2Pix GANs factorising diffuse scattering, re-implemented.

Generator: U-Net 256 → 4×4 with 4×4 kernels, convolutions without bias; down 64-128-256-512-512-512
(LeakyReLU 0.2, InstanceNorm except the first and last, dropout 0.5 on down4–6), up 512-512-256-128-64
with skip connections (ReLU, InstanceNorm, dropout on up3–4), final Upsample×2, ZeroPad(1,0,1,0),
Conv 128→1 (k4, with bias), Tanh. Discriminator: PatchGAN on [component, clean scattering]
(2 channels) 64-128-256-512, 16×16 output, no sigmoid. Module names and Sequential slots follow the
published state dicts (down1…down6, up3…up7, final; model.0/2/5/8/12), so published weights load with
strict=True: 29,232,129 and 2,763,712 parameters at width 64. `width` scales all channel counts for
smaller CPU variants.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..errors import ModelFileError, torch_load_error


class UNetDown(nn.Module):
    def __init__(self, cin: int, cout: int, normalize: bool = True, dropout: float = 0.0):
        super().__init__()
        layers = [nn.Conv2d(cin, cout, 4, 2, 1, bias=False)]
        if normalize:
            layers.append(nn.InstanceNorm2d(cout))
        layers.append(nn.LeakyReLU(0.2))
        if dropout:
            layers.append(nn.Dropout(dropout))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class UNetUp(nn.Module):
    def __init__(self, cin: int, cout: int, dropout: float = 0.0):
        super().__init__()
        layers = [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.InstanceNorm2d(cout), nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        self.model = nn.Sequential(*layers)

    def forward(self, x, skip):
        return torch.cat((self.model(x), skip), 1)


class DSFUGenerator(nn.Module):
    def __init__(self, width: int = 64, in_channels: int = 1, out_channels: int = 1):
        super().__init__()
        w = width
        self.width = width
        self.down1 = UNetDown(in_channels, w, normalize=False)
        self.down2 = UNetDown(w, 2 * w)
        self.down3 = UNetDown(2 * w, 4 * w)
        self.down4 = UNetDown(4 * w, 8 * w, dropout=0.5)
        self.down5 = UNetDown(8 * w, 8 * w, dropout=0.5)
        self.down6 = UNetDown(8 * w, 8 * w, normalize=False, dropout=0.5)
        self.up3 = UNetUp(8 * w, 8 * w, dropout=0.5)
        self.up4 = UNetUp(16 * w, 8 * w, dropout=0.5)
        self.up5 = UNetUp(16 * w, 4 * w)
        self.up6 = UNetUp(8 * w, 2 * w)
        self.up7 = UNetUp(4 * w, w)
        self.final = nn.Sequential(nn.Upsample(scale_factor=2), nn.ZeroPad2d((1, 0, 1, 0)),
                                   nn.Conv2d(2 * w, out_channels, 4, padding=1), nn.Tanh())

    def forward(self, x):
        d1 = self.down1(x)
        d2 = self.down2(d1)
        d3 = self.down3(d2)
        d4 = self.down4(d3)
        d5 = self.down5(d4)
        d6 = self.down6(d5)
        u = self.up3(d6, d5)
        u = self.up4(u, d4)
        u = self.up5(u, d3)
        u = self.up6(u, d2)
        u = self.up7(u, d1)
        return self.final(u)


class DSFUDiscriminator(nn.Module):
    def __init__(self, width: int = 64, in_channels: int = 1):
        super().__init__()
        w = width

        def block(cin, cout, norm=True):
            layers = [nn.Conv2d(cin, cout, 4, stride=2, padding=1)]
            if norm:
                layers.append(nn.InstanceNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            return layers

        self.model = nn.Sequential(*block(2 * in_channels, w, norm=False), *block(w, 2 * w), *block(2 * w, 4 * w),
                                   *block(4 * w, 8 * w), nn.ZeroPad2d((1, 0, 1, 0)),
                                   nn.Conv2d(8 * w, 1, 4, padding=1, bias=False))

    def forward(self, component, condition):
        return self.model(torch.cat((component, condition), 1))


def count_parameters(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def width_of(sd: dict) -> int:
    try:
        return int(sd["down1.model.0.weight"].shape[0])
    except KeyError:
        raise ModelFileError(None, "not a DSFU-Net generator state dict (no down1.model.0.weight)") from None


def load_generator(path, device=None, expected_width: Optional[int] = None) -> DSFUGenerator:
    """A DSFU-Net generator from a published .pth (state dict) or a CrystalStudio checkpoint entry, loaded
    with weights_only=True and strict=True."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(p, "model file does not exist")
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise torch_load_error(p, exc) from None
    sd = obj.get("model", obj) if isinstance(obj, dict) else obj
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelFileError(p, "file holds no state dict of tensors")
    sd = {re.sub(r"^(module\.|_orig_mod\.)", "", k): v for k, v in sd.items()}
    try:
        w = width_of(sd)
    except ModelFileError as exc:
        raise ModelFileError(p, exc.problem) from None
    if expected_width is not None and w != expected_width:
        raise ModelFileError(p, f"generator width {w} differs from the expected {expected_width}")
    g = DSFUGenerator(w)
    try:
        g.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(p, "state dict does not fit the DSFU-Net generator: " + str(exc).split("\n")[0][:300]) from None
    return g.to(device or "cpu").eval()


@dataclass
class Factorisation:
    ff: torch.Tensor  # (B, 1, N, N) network output in [−1, 1], mean over the passes
    sro: torch.Tensor
    ff_std: Optional[torch.Tensor] = None  # spread over the N passes (network units); not a calibrated σ
    sro_std: Optional[torch.Tensor] = None
    ff_passes: Optional[torch.Tensor] = None  # (passes, B, 1, N, N) when asked for
    sro_passes: Optional[torch.Tensor] = None


BLOCKS = ("down1", "down2", "down3", "down4", "down5", "down6", "up3", "up4", "up5", "up6", "up7", "final")


@torch.no_grad()
def factorise(gen_ff: DSFUGenerator, gen_sro: DSFUGenerator, x: torch.Tensor, passes: int = 1,
              dropout: bool = False, keep_passes: bool = False, progress=None, cancel=None) -> Factorisation:
    """Deterministic (eval, dropout off, passes=1) or N-pass stochastic inference with dropout on
    (the published behaviour), returning mean and spread. `progress(fraction, message)` and `cancel`
    (``is_set()``) are honoured inside every pass, between the U-Net's blocks, so a cancel ends a pass of a
    published-size network within one block."""
    from ..jobs import check_cancel, report

    passes = max(1, int(passes))
    total = 2 * passes * len(BLOCKS)
    state = {"done": 0, "what": ""}

    def hook(_module, _inputs):
        check_cancel(cancel)
        state["done"] += 1
        if progress is not None:
            report(progress, state["done"] / total, state["what"])

    outs = {"ff": [], "sro": []}
    for g, key in ((gen_ff, "ff"), (gen_sro, "sro")):
        g.eval()
        if dropout:
            for m in g.modules():
                if isinstance(m, nn.Dropout):
                    m.train()
        handles = [getattr(g, name).register_forward_pre_hook(hook) for name in BLOCKS
                   if progress is not None or cancel is not None]
        try:
            for i in range(passes):
                state["what"] = f"I_{key.upper()} network, pass {i + 1} of {passes}"
                outs[key].append(g(x))
        finally:
            for hnd in handles:
                hnd.remove()
            g.eval()
    ff, sro = torch.stack(outs["ff"]), torch.stack(outs["sro"])
    many = ff.shape[0] > 1
    return Factorisation(ff.mean(0), sro.mean(0), ff.std(0) if many else None, sro.std(0) if many else None,
                         ff if keep_passes else None, sro if keep_passes else None)
