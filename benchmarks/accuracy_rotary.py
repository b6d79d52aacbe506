"""Angle error of cos/sin against float64 at long positions (2**20, 2**24, and 2**31 - 1).

For each way of getting cos/sin it prints the largest angle error ``|atan2(sin, cos) - theta|``
(radians: the angle of ``(cos + i sin) / (cos64 + i sin64)``) and the largest ``|cos - cos64|``, ``|sin - sin64|`` over all 64
pairs and ``--window`` consecutive positions from each start, with ``theta = p * inv_freq`` formed
in float64 from ropelab's float64 ``inv_freq`` (Llama: head_dim 128):

- ``ropelab cache``: float32 tables from exact float64 angles (:func:`ropelab.rope_cos_sin`);
- ``ropelab in-kernel``: the Triton kernel computing cos/sin from positions (fixed-point exact
  reduction); run through Triton's interpreter when there is no GPU;
- ``ropelab in-kernel (torch)``: the same arithmetic in torch (:func:`cos_sin_fixed_point`);
- ``transformers fp32``: ``LlamaRotaryEmbedding``'s float32 cos/sin, which Liger-Kernel's
  ``liger_rotary_pos_emb`` consumes as given (so this is Liger's error too);
- ``fp32 p*inv_freq``: the naive in-kernel formula, float32 position times float32 frequency.

Usage: ``python benchmarks/accuracy_rotary.py [--window 512] [--base 10000 500000]``.
"""

from __future__ import annotations

import argparse
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before the kernel module is imported

import ropelab  # noqa: E402
from ropelab.kernels import cos_sin_fixed_point, triton_available, turns_fixed_point  # noqa: E402
from ropelab.rotary import rotate_qk_fused  # noqa: E402

HEAD_DIM = 128
STARTS = (2**20, 2**24, 2**31 - 1)


def angle_errors(cos: torch.Tensor, sin: torch.Tensor, theta: torch.Tensor) -> tuple[float, float, float]:
    """(max angle error, max |dcos|, max |dsin|) of float32 cos/sin ``[P, R/2]`` against float64 ``theta``."""
    cos, sin = cos.double().cpu(), sin.double().cpu()
    cos64, sin64 = torch.cos(theta), torch.sin(theta)
    # The angle of (cos + i sin) * conj(cos64 + i sin64): no subtraction of large angles.
    angle = torch.atan2(sin * cos64 - cos * sin64, cos * cos64 + sin * sin64)
    return angle.abs().max().item(), (cos - cos64).abs().max().item(), (sin - sin64).abs().max().item()


def kernel_cos_sin(positions: torch.Tensor, cfg: ropelab.RopeConfig):
    """cos/sin as the Triton kernel computes them: rotate the unit vector a = 1, b = 0."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    half = cfg.rotary_dim // 2
    x = torch.zeros(1, 1, positions.numel(), HEAD_DIM, device=device)
    x[..., :half] = 1.0
    out, _ = rotate_qk_fused(x, x[:, :0], positions.to(device), cfg)
    return out[0, 0, :, :half].cpu(), out[0, 0, :, half : 2 * half].cpu()


def transformers_cos_sin(positions: torch.Tensor, cfg: ropelab.RopeConfig):
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    config = LlamaConfig(
        hidden_size=2 * HEAD_DIM,
        num_attention_heads=2,
        head_dim=HEAD_DIM,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.base},
    )
    x = torch.zeros(1, dtype=torch.float32)
    cos, sin = LlamaRotaryEmbedding(config)(x, positions.unsqueeze(0))
    half = HEAD_DIM // 2
    return cos[0, :, :half], sin[0, :, :half]


def naive_fp32_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor):
    angles = positions.float().unsqueeze(-1) * inv_freq.float()
    return torch.cos(angles), torch.sin(angles)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--window", type=int, default=512)
    p.add_argument("--base", type=float, nargs="+", default=[10000.0, 500000.0])
    args = p.parse_args(argv)
    kernel_ok = triton_available("cuda" if torch.cuda.is_available() else "cpu")
    print(f"{'base':>8} {'start':>11} {'method':<26} {'max |dangle|':>12} {'max |dcos|':>11} {'max |dsin|':>11}")
    for base in args.base:
        cfg = ropelab.RopeConfig(head_dim=HEAD_DIM, base=base)
        inv_freq, _ = ropelab.rope_frequencies(cfg)
        for start in STARTS:
            positions = start + torch.arange(args.window)
            if start + args.window > 2**31:
                positions = start - torch.arange(args.window)
            theta = positions.double().unsqueeze(-1) * inv_freq
            methods = {"ropelab cache (fp32 table)": ropelab.rope_cos_sin(positions, cfg)}
            if kernel_ok:
                methods["ropelab in-kernel (triton)"] = kernel_cos_sin(positions, cfg)
            methods["ropelab in-kernel (torch)"] = cos_sin_fixed_point(positions, turns_fixed_point(inv_freq))
            methods["transformers fp32 / liger"] = transformers_cos_sin(positions, cfg)
            methods["fp32 p*inv_freq"] = naive_fp32_cos_sin(positions, inv_freq)
            for name, (cos, sin) in methods.items():
                err = angle_errors(cos, sin, theta)
                print(f"{base:>8.0f} {start:>11} {name:<26} {err[0]:>12.3e} {err[1]:>11.3e} {err[2]:>11.3e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
