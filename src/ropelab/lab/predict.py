"""Predict where a lab model breaks past ``L``, from its own q and k on windows of ``L`` bytes.

Forward hooks on each block's ``qkv`` projection read the pre-rotation q and k of a batch of
validation windows no longer than ``L``; :func:`ropelab.analysis.breaks.predict_break` does the rest.
"""

from __future__ import annotations

import torch

from ropelab.analysis.breaks import BreakPrediction, predict_breaks
from ropelab.config import RopeConfig
from ropelab.lab.model import DecoderLM

__all__ = ["gather_qk", "predict_lab"]


def gather_qk(
    model: DecoderLM, windows: torch.Tensor, queries: int = 24, keys: int = 24, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per block, ``(q [H, queries, Dh], k [H, keys, Dh])`` float32, pre-rotation, pooled over
    ``windows [B, S]`` (int64, ``S <= L``): queries from the second half of each window, keys from
    anywhere (window starts included), sampled with ``seed``."""
    batch, seq = windows.shape
    cfg = model.cfg
    captured, handles = {}, []
    for index, block in enumerate(model.blocks):

        def hook(_module, _inputs, output, index=index):
            q, k, _ = (
                output.detach().float().view(batch, seq, 3, cfg.num_heads, cfg.head_dim).unbind(2)
            )  # [B, S, H, Dh]
            captured[index] = (q, k)

        handles.append(block.attention.qkv.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model.eval()
            model(windows)
    finally:
        for handle in handles:
            handle.remove()
    generator = torch.Generator().manual_seed(seed)
    late = torch.arange(seq // 2, seq)
    q_rows = (
        torch.randint(batch, (queries,), generator=generator),
        late[torch.randint(late.numel(), (queries,), generator=generator)],
    )
    k_rows = torch.randint(batch, (keys,), generator=generator), torch.randint(seq, (keys,), generator=generator)
    k_rows[1][0] = 0
    out = []
    for index in range(len(model.blocks)):
        q, k = captured[index]
        out.append((q[q_rows].transpose(0, 1).contiguous(), k[k_rows].transpose(0, 1).contiguous()))
    return out


def predict_lab(
    model: DecoderLM, windows: torch.Tensor, trained_cfg: RopeConfig, configs: dict[str, RopeConfig], target: int
) -> dict[str, BreakPrediction]:
    """Rule (c) for each of ``configs`` (name -> RoPE evaluated to ``target``), from ``windows [B, S <= L]``."""
    L = model.cfg.max_positions
    if windows.shape[-1] > L:
        raise ValueError(f"windows of {windows.shape[-1]} bytes is invalid: expected at most L={L}")
    layers = gather_qk(model, windows)
    return predict_breaks(layers, trained_cfg, configs, L, target)
