"""Whole-model goldens: a transformers model patched to use ropelab gives the same logits.

Tiny random-weight configs only; nothing is downloaded. The tolerance is 1e-4 (float32) rather
than tighter because ropelab's float64 angles are more exact than transformers' float32 ones.
Each patched model also proves that what patch put in is in the forward path: rebased through
ropelab, its logits move; put back, they return exactly.
"""

import copy

import hf_zoo
import pytest
import torch
import transformers

from ropelab import RopeConfig
from ropelab.integrations.hf import HFRotaryAdapter, PatchError, patch, unpatch

# Patched logits match transformers' to this (absolute; the logits are of order 0.1 to 1).
TOLERANCE = 1e-4
TINY = dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4)


def _llama(rope_parameters, max_positions=32):
    return transformers.LlamaConfig(
        **TINY, num_key_value_heads=2, max_position_embeddings=max_positions, rope_parameters=rope_parameters
    )


def _phi3_longrope():
    pairs = 8  # head_dim 16
    return transformers.Phi3Config(
        **TINY,
        num_key_value_heads=2,
        max_position_embeddings=64,
        original_max_position_embeddings=16,
        pad_token_id=0,
        rope_parameters={
            "rope_type": "longrope",
            "rope_theta": 10000.0,
            "short_factor": [1.0 + 0.1 * i for i in range(pairs)],
            "long_factor": [1.0 + 2.0 * i for i in range(pairs)],
        },
    )


LLAMA3 = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8,
}
CASES = {
    "llama-default": (lambda: _llama({"rope_type": "default", "rope_theta": 10000.0}), 24),
    "llama-linear": (lambda: _llama({"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}), 24),
    "llama-dynamic-below": (lambda: _llama({"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 4.0}), 24),
    "llama-dynamic-above": (lambda: _llama({"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 4.0}), 80),
    "llama-yarn": (
        lambda: _llama(
            {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 8}
        ),
        40,
    ),
    "llama-llama3": (lambda: _llama(LLAMA3, 64), 40),
    "phi3-longrope-below": (_phi3_longrope, 12),
    "phi3-longrope-above": (_phi3_longrope, 40),
    "gpt-neox-partial-0.25": (
        lambda: transformers.GPTNeoXConfig(
            vocab_size=97,
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=64,
            partial_rotary_factor=0.25,
        ),
        24,
    ),
    "gptj-interleaved-partial": (
        lambda: transformers.GPTJConfig(vocab_size=97, n_embd=64, n_layer=2, n_head=4, rotary_dim=8, n_positions=64),
        24,
    ),
    "qwen2": (
        lambda: transformers.Qwen2Config(
            **TINY,
            num_key_value_heads=2,
            max_position_embeddings=64,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6},
        ),
        24,
    ),
    "gemma": (
        lambda: transformers.GemmaConfig(**TINY, num_key_value_heads=1, head_dim=32, max_position_embeddings=64),
        24,
    ),
}

# Families beyond the required list, to catch a config convention ropelab reads differently.
EXTRA_FAMILIES = {
    "mistral": lambda: transformers.MistralConfig(**TINY, num_key_value_heads=2, max_position_embeddings=64),
    "phi-partial-0.5": lambda: transformers.PhiConfig(**TINY, max_position_embeddings=64, partial_rotary_factor=0.5),
    "stablelm": lambda: transformers.StableLmConfig(
        **TINY, num_key_value_heads=2, max_position_embeddings=64, partial_rotary_factor=0.25
    ),
    "qwen3": lambda: transformers.Qwen3Config(**TINY, num_key_value_heads=2, head_dim=24, max_position_embeddings=64),
    "olmo": lambda: transformers.OlmoConfig(**TINY, num_key_value_heads=2, max_position_embeddings=64),
    "cohere-interleaved": lambda: transformers.CohereConfig(**TINY, num_key_value_heads=2, max_position_embeddings=64),
    "granite": lambda: transformers.GraniteConfig(**TINY, num_key_value_heads=2, max_position_embeddings=64),
}


def _model(config):
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()


def _logits(model, input_ids, **kwargs):
    with torch.no_grad():
        return model(input_ids=input_ids, **kwargs).logits


def _assert_patched_matches(config, seq_len, **kwargs):
    model = _model(config)
    input_ids = torch.randint(1, 97, (2, seq_len))
    reference = _logits(model, input_ids, **kwargs)
    patched = patch(copy.deepcopy(model))
    got = _logits(patched, input_ids, **kwargs)
    error = (got - reference).abs().max().item()
    assert error <= TOLERANCE, error
    _assert_patch_is_in_the_forward_path(patched, got, lambda: _logits(patched, input_ids, **kwargs))
    return model, patched, input_ids


def _assert_patch_is_in_the_forward_path(patched, got, run):
    """What patch put in (adapters' RopeConfigs, GPT-J ``embed_positions`` tables) decides the output:
    rebased to base 2 through ropelab, ``run()`` moves away from ``got``; put back, it returns to it
    exactly. A patch whose replacement the forward never reads would leave ``run()`` unmoved. The move
    must exceed twice ``TOLERANCE``, so the comparison with transformers would see a RoPE this wrong
    (random tiny models attend almost uniformly: another base moves their logits by 5e-4 to 1e-2).
    Every module or table patch records as replaced is no longer the original object."""
    for name, original in patched._ropelab_originals.items():
        parent, _, attribute = name.rpartition(".")
        assert getattr(patched.get_submodule(parent), attribute) is not original, f"{name} was not replaced"
    with hf_zoo.rebased(patched) as changed:
        assert changed >= 1, "patch left nothing holding ropelab's RoPE"
        moved = (run() - got).abs().max().item()
    assert moved > 2 * TOLERANCE, moved
    assert torch.equal(run(), got)


@pytest.mark.parametrize("name", list(CASES))
def test_patched_model_matches_transformers(name):
    make_config, seq_len = CASES[name]
    _assert_patched_matches(make_config(), seq_len)


@pytest.mark.parametrize("name", list(EXTRA_FAMILIES))
def test_patched_model_matches_more_families(name):
    _assert_patched_matches(EXTRA_FAMILIES[name](), 24)


def test_patch_changes_the_rope_and_unpatch_restores_it():
    model, patched, input_ids = _assert_patched_matches(CASES["llama-yarn"][0](), 40)
    # With a different RoPE forced in, the logits move: the patch really is in the forward path.
    forced = patch(
        copy.deepcopy(model),
        RopeConfig(head_dim=16, base=10.0, original_max_position_embeddings=8, max_position_embeddings=32),
        verify=False,
    )
    assert (_logits(forced, input_ids) - _logits(model, input_ids)).abs().max().item() > 1e-2
    restored = unpatch(patched)
    assert not any(isinstance(m, HFRotaryAdapter) for m in restored.modules())
    assert torch.equal(_logits(restored, input_ids), _logits(model, input_ids))


def test_patched_model_with_kv_cache_offsets_matches():
    """Generation through the cache: positions continue from the prompt, as in serving."""
    model = _model(CASES["llama-llama3"][0]())
    patched = patch(copy.deepcopy(model))
    prompt = torch.randint(1, 97, (1, 12))

    def generate(m):
        with torch.no_grad():
            out = m.generate(
                prompt, max_new_tokens=8, do_sample=False, output_scores=True, return_dict_in_generate=True
            )
        return out.sequences, torch.stack(out.scores)  # [1, 20], [8, 1, vocab]: the logits of each step

    want, got = generate(model), generate(patched)
    assert torch.equal(want[0], got[0])
    # The cached steps read ropelab's RoPE too: rebased, every step's logits move; restored, they return.
    _assert_patch_is_in_the_forward_path(patched, got[1], lambda: generate(patched)[1])


def test_patch_refuses_a_model_it_cannot_reproduce():
    model = _model(CASES["llama-default"][0]())
    wrong = RopeConfig(head_dim=16, base=10000.0, layout="half", rotary_dim=8)
    with pytest.raises(PatchError, match="does not reproduce"):
        patch(model, wrong)
    with pytest.raises(PatchError, match="no rotary embedding"):
        patch(torch.nn.Linear(2, 2))


class _PairTableRotaryEmbedding(torch.nn.Module):
    """A GPT-J-style rotary module: one value per pair (``[B, S, R/2]``), returned as ``(cos, sin)``
    or, as GPT-J and CodeGen do from transformers 5.25 on, as ``(sin, cos)``. ``alpha``: learned
    per-pair frequency scales ``exp(alpha)``, as Mistral Large 4's (a Parameter since 5.25)."""

    def __init__(self, sin_first: bool, alpha: torch.Tensor | None = None):
        super().__init__()
        self.sin_first = sin_first
        self.inv_freq = torch.nn.Buffer(1.0 / 10000.0 ** (torch.arange(0, 16, 2, dtype=torch.float32) / 16))
        self.alpha = None if alpha is None else torch.nn.Parameter(alpha)

    def forward(self, x, position_ids):
        inv_freq = self.inv_freq if self.alpha is None else self.inv_freq * self.alpha.exp()
        angles = position_ids[..., None].float() * inv_freq
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        return (sin, cos) if self.sin_first else (cos, sin)


def _holder(rotary: torch.nn.Module) -> torch.nn.Module:
    holder = torch.nn.Module()
    holder.rotary_emb = rotary
    return holder


PAIR_TABLES = RopeConfig(head_dim=16, base=10000.0, layout="interleaved")


@pytest.mark.parametrize("sin_first", [False, True], ids=["cos-sin", "sin-cos"])
def test_patch_returns_the_pair_in_the_order_the_module_did(sin_first):
    original = _PairTableRotaryEmbedding(sin_first)
    patched = patch(_holder(copy.deepcopy(original)), PAIR_TABLES)
    assert isinstance(patched.rotary_emb, HFRotaryAdapter) and patched.rotary_emb.sin_first is sin_first
    positions = torch.arange(40)[None] + 3
    x = torch.zeros(1)
    want, got = original(x, positions), patched.rotary_emb(x, positions)
    for w, g in zip(want, got):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=0)


def test_patch_refuses_learned_frequency_scales_and_accepts_them_at_zero():
    at_zero = patch(_holder(_PairTableRotaryEmbedding(False, torch.zeros(8))), PAIR_TABLES)
    assert isinstance(at_zero.rotary_emb, HFRotaryAdapter)
    learned = _holder(_PairTableRotaryEmbedding(False, torch.linspace(-0.5, 0.5, 8)))
    with pytest.raises(PatchError, match=r"trained parameters \(alpha\)"):
        patch(learned, PAIR_TABLES)


def test_pair_order_probe_reads_position_zero():
    """At position 0 sin is exactly 0 and cos is the attention factor: the probe's evidence."""
    from ropelab.integrations.hf.verify import _sin_first

    positions = torch.arange(5)[None]
    cos, sin = _PairTableRotaryEmbedding(False)(torch.zeros(1), positions)
    assert not _sin_first((cos, sin), positions)
    assert _sin_first((sin, cos), positions)
    assert not _sin_first((sin, cos), positions + 1)  # no position 0 in the probe: no evidence, default order
