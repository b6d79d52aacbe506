"""A small pre-norm decoder-only byte LM whose attention calls only the encoding interface.

Data flow, top to bottom (shapes: B batch, S sequence, C width, H heads, Dh = C / H)::

    tokens [B, S] --embedding--> x [B, S, C] --encoding.embed--> x
    for each block:  x = x + attention(norm(x));  x = x + mlp(norm(x))
        attention:   q, k, v [B, H, S, Dh] -> encoding.transform_qk(q, k)
                     softmax(q k^T / sqrt(Dh) + encoding.score_bias + causal mask) v
    norm(x) --tied embedding--> logits [B, S, 256]

Pre-norm as in GPT-2 (Radford et al. 2019, sec. 2.3); the score bias is computed once per forward
and shared by every layer (as T5 does for its relative bias).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ropelab.encodings import PositionEncoding, build_encoding, check_encoding_name
from ropelab.lab import LabError

__all__ = ["ModelConfig", "DecoderLM", "causal_lm_loss", "require_positive"]


def require_positive(**values: int) -> None:
    """Raise :class:`LabError` naming the first of ``values`` that is not a positive number."""
    for key, value in values.items():
        if not value > 0:
            raise LabError(f"{key}={value} is invalid: expected a positive integer")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model (stored in every checkpoint), validated at construction.

    ``max_positions`` is the training length ``L``: the learned table's size and the RoPE
    extension methods' "original" length. ``encoding_options`` go to :func:`build_encoding`.
    ``embedding_std`` is the token table's initial standard deviation: 0.02 as in GPT-2 (Radford
    et al. 2019), or ``dim ** -0.5`` as fairseq's transformer initialises the table that the
    sinusoidal encoding scales by ``sqrt(dim)`` (Vaswani et al. 2017, sec. 3.4), so that tokens and
    the sinusoids (norm ``sqrt(dim / 2)``) start at comparable sizes.
    A model's config is never edited: a changed model (e.g. an extended RoPE) is a new config
    (``dataclasses.replace``) and a new :class:`DecoderLM`.

    Raises:
        EncodingError: ``encoding`` is not one of :data:`ropelab.encodings.ENCODINGS` (the one
            place the lab checks the name).
        LabError: a non-positive size, or heads that are not of an even width ``dim / num_heads``.
    """

    encoding: str = "rope"
    num_layers: int = 3
    dim: int = 128
    num_heads: int = 4
    max_positions: int = 128
    vocab_size: int = 256
    mlp_ratio: int = 4
    encoding_options: dict = field(default_factory=dict)
    embedding_std: float = 0.02

    def __post_init__(self) -> None:
        check_encoding_name(self.encoding)
        require_positive(
            length=self.max_positions,
            dim=self.dim,
            num_heads=self.num_heads,
            vocab_size=self.vocab_size,
            mlp_ratio=self.mlp_ratio,
        )
        if not self.embedding_std > 0:
            raise LabError(f"embedding_std={self.embedding_std} is invalid: expected a positive number")
        if self.num_layers < 0:
            raise LabError(f"num_layers={self.num_layers} is invalid: expected a non-negative integer")
        if self.dim % self.num_heads or (self.dim // self.num_heads) % 2:
            raise LabError(
                f"dim={self.dim}, num_heads={self.num_heads} is invalid: expected an even head width dim / num_heads"
            )

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    def to_dict(self) -> dict:
        return asdict(self)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.out = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(self, x, encoding: PositionEncoding, positions, bias):
        """x ``[B, S, C]``, bias ``None`` or ``[(B,) H, S, S]`` -> ``[B, S, C]``."""
        batch, seq, width = x.shape
        q, k, v = self.qkv(x).view(batch, seq, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)  # 3 x [B, H, S, Dh]
        q, k = encoding.transform_qk(q, k, positions)
        if bias is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.out(y.transpose(1, 2).reshape(batch, seq, width))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(cfg.dim), nn.LayerNorm(cfg.dim)
        self.attention = Attention(cfg)
        hidden = cfg.mlp_ratio * cfg.dim
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, hidden), nn.GELU(), nn.Linear(hidden, cfg.dim))

    def forward(self, x, encoding, positions, bias):
        x = x + self.attention(self.norm1(x), encoding, positions, bias)
        return x + self.mlp(self.norm2(x))


def causal_bias(bias: torch.Tensor | None, seq: int, device) -> torch.Tensor | None:
    """Add the causal mask (``-inf`` above the diagonal) to a score bias ``[(B,) H, S, S]``."""
    if bias is None:
        return None
    future = torch.ones(seq, seq, dtype=torch.bool, device=device).triu(1)
    return bias.masked_fill(future, float("-inf"))


class DecoderLM(nn.Module):
    """``forward(tokens [B, S] int64, positions [S] or [B, S] | None) -> logits [B, S, vocab]``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.encoding = build_encoding(
            cfg.encoding, dim=cfg.dim, num_heads=cfg.num_heads, max_positions=cfg.max_positions, **cfg.encoding_options
        )
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.norm = nn.LayerNorm(cfg.dim)
        self.blocks.apply(_init_weights)  # the encoding initialises its own parameters
        nn.init.normal_(self.embedding.weight, std=cfg.embedding_std)
        for block in self.blocks:  # GPT-2 (Radford et al. 2019, sec. 2.3): scale residual projections by 1/sqrt(N)
            nn.init.normal_(block.attention.out.weight, std=0.02 / math.sqrt(2 * cfg.num_layers))

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        seq = tokens.shape[-1]
        if positions is None:
            positions = torch.arange(seq, device=tokens.device)
        x = self.encoding.embed(self.embedding(tokens), positions)
        bias = causal_bias(self.encoding.score_bias(positions, positions), seq, tokens.device)
        for block in self.blocks:
            x = block(x, self.encoding, positions, bias)
        return self.norm(x) @ self.embedding.weight.T


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def causal_lm_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of next bytes: logits ``[B, S, V]``, targets ``[B, S]`` -> scalar (or ``[B, S]``)."""
    loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction=reduction)
    return loss if reduction == "mean" else loss.view_as(targets)
