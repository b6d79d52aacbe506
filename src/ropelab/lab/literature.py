"""The published numbers the tasks report sets beside ours, each with its table and section.

Only numbers read in the source text are here; anything we could not verify is left out.

- Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces"
  (arXiv:2312.00752), Table 11 (App. E.1; Table 2 of sec. 4.1.2 is its plot): induction heads,
  2-layer models, 8 heads, width 128 for attention, vocabulary 16 (sec. 4.1.2), trained at
  ``2^8 = 256`` with batch 8 for 204,800 steps (MHA-Abs) or 409,600 steps (MHA-RoPE, MHA-xPos)
  (App. E.1). Test accuracy (%) at ``2^8 .. 2^14``; attention ran out of memory past ``2^14``.
  The text does not say which absolute embedding "MHA-Abs" uses.
- Kazemnejad et al. 2023, "The Impact of Positional Encoding on Length Generalization in
  Transformers" (NeurIPS 2023, arXiv:2305.19466), Figure 1 (sec. 1): mean reciprocal rank of
  each encoding across their 10 tasks (copy, reverse, addition, ... ; sec. 3, Table 1), decoder-
  only models of about 107M weights trained at ``L = 20`` and tested to ``2L``; their APE is the
  sinusoidal one (sec. 3). Higher is better.
"""

from __future__ import annotations

__all__ = [
    "MAMBA_TABLE_11",
    "MAMBA_SOURCE",
    "MAMBA_OURS",
    "KAZEMNEJAD_FIGURE_1",
    "KAZEMNEJAD_SOURCE",
    "KAZEMNEJAD_OURS",
]

MAMBA_SOURCE = "Gu & Dao 2023 (Mamba), Table 11, App. E.1 (plotted as Table 2, sec. 4.1.2); trained at 256"
# test length / training length (256) -> accuracy (%), per model.
MAMBA_TABLE_11 = {
    "MHA-Abs": {1: 100.0, 2: 58.6, 4: 26.6, 8: 18.8, 16: 9.8, 32: 10.9, 64: 7.8},
    "MHA-RoPE": {1: 100.0, 2: 83.6, 4: 31.3, 8: 18.4, 16: 8.6, 32: 9.0, 64: 5.5},
    "MHA-xPos": {1: 100.0, 2: 99.6, 4: 67.6, 8: 25.4, 16: 7.0, 32: 9.0, 64: 7.8},
}
# Our encoding set beside each of their rows (their "Abs" kind is not stated: we show sinusoidal and learned).
MAMBA_OURS = {"MHA-Abs": ("sinusoidal", "learned"), "MHA-RoPE": ("rope",), "MHA-xPos": ("xpos",)}

KAZEMNEJAD_SOURCE = (
    "Kazemnejad et al. 2023, Figure 1 (sec. 1): mean reciprocal rank over 10 tasks, trained at L = 20, tested to 2L"
)
KAZEMNEJAD_FIGURE_1 = {"NoPE": 0.69, "T5's Relative PE": 0.55, "ALiBi": 0.50, "Rotary": 0.33, "APE (sinusoidal)": 0.22}
KAZEMNEJAD_OURS = {
    "NoPE": "nope",
    "T5's Relative PE": "t5",
    "ALiBi": "alibi",
    "Rotary": "rope",
    "APE (sinusoidal)": "sinusoidal",
}
