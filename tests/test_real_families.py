"""The families users bring (tiny random builds of their published configs): each runs the whole
``ropelab extend`` pipeline, or is refused in one line before any forward; the hand-over reloads in plain
transformers with the same perplexity; every method's RoPE is transformers' own for the config written."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from real_families import FAMILIES, build_family, family_config, run_family  # noqa: E402

from ropelab.real.evaluate import corpus_documents, special_prefix, token_losses, use_rope  # noqa: E402
from ropelab.real.load import load_model  # noqa: E402
from ropelab.real.shipped import AS_IS, METHODS  # noqa: E402
from ropelab.real.stages import hf_config  # noqa: E402

# families whose RoPE transformers or ropelab cannot extend (none at present); each would be refused in one line
REFUSED: dict[str, str] = {}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_runs_the_whole_pipeline_and_its_handover_reloads(name, tmp_path):
    row = run_family(name, tmp_path)
    if row["status"] == "refused":
        assert "\n" not in row["reason"] and len(row["reason"]) < 400, row["reason"]
        assert name in REFUSED, f"{name} refused: {row['reason']}"
        assert not (tmp_path / "out").exists() and not (tmp_path / "handover").exists()
        return
    assert row["status"] == "ran"
    assert {AS_IS, f"{row['best'].removesuffix('+pose')}"} <= set(row["methods"])
    assert any(m.endswith("+pose") for m in row["methods"])  # the 2-step PoSE fine-tune ran
    assert row["reload_max_rel"] <= 1e-4, row["reload_ppl"]


SHIPPED_RULES = {  # family -> (rope type read, T, T0), from the shrunk published config
    "llama-3.1": ("llama3", 512, 32),
    "llama-3.2": ("llama3", 512, 32),
    "qwen2.5": ("default", 512, 512),
    "qwen2.5+yarn": ("yarn", 2048, 512),  # factor 4 x original 512, above max_position_embeddings 512
    "gemma-3": ("linear", 512, None),
    "phi-3-mini-128k": ("longrope", 512, 16),
    "smollm3": ("default", 512, 512),
}


@pytest.mark.parametrize("name", list(SHIPPED_RULES))
def test_as_is_is_the_model_as_shipped(name, tmp_path):
    """T is the context it ships for; as-is reproduces the unpatched model (its own scaling, NoPE layers)."""
    folder = build_family(name, tmp_path / "m")
    loaded = load_model(str(folder))
    shipped = loaded.rope
    rope_type, context, pretrained = SHIPPED_RULES[name]
    assert (shipped.long.rope_type, shipped.context, shipped.pretrained) == (rope_type, context, pretrained)
    if name == "smollm3":
        assert shipped.nope_layers == (3,) and "NoPE" in shipped.describe()
    ids = torch.randint(
        0, loaded.model.config.vocab_size, (2 * context + 1,), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        plain = token_losses(loaded.model, ids)
    use_rope(loaded.model, shipped.as_is)
    with torch.no_grad():
        patched = token_losses(loaded.model, ids)
    assert any(type(m).__name__ == "HFRotaryAdapter" for m in loaded.model.modules())
    torch.testing.assert_close(patched, plain, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "name", ["llama-3.1", "qwen2.5+yarn", "gemma-3", "phi-3-mini-128k", "smollm3", "mixtral (MoE)"]
)
def test_every_method_matches_transformers_own_implementation_of_the_config_it_writes(name, tmp_path):
    """Logits <= 1e-4 against transformers built from the written config.json, at 2T tokens."""
    from transformers import AutoModelForCausalLM

    folder = build_family(name, tmp_path / "m")
    loaded = load_model(str(folder))
    shipped = loaded.rope
    N = 2 * shipped.context
    ids = torch.randint(0, loaded.model.config.vocab_size, (N,), generator=torch.Generator().manual_seed(1))
    checked = 0
    for method in (AS_IS, *METHODS):
        if shipped.refusal(method):
            continue
        cfg = shipped.method_config(method, N)
        use_rope(loaded.model, cfg)
        with torch.no_grad():
            ours = loaded.model(ids[None]).logits
        written = type(loaded.model.config)(**hf_config(loaded.model.config, cfg))
        reference = AutoModelForCausalLM.from_pretrained(folder, config=written).eval()
        assert not any(type(m).__name__ == "HFRotaryAdapter" for m in reference.modules())
        with torch.no_grad():
            theirs = reference(ids[None]).logits
        assert (ours - theirs).abs().max().item() <= 1e-4, method
        checked += 1
    assert checked >= (2 if name in ("gemma-3", "phi-3-mini-128k") else 5)


def test_bos_follows_the_tokenizer(tmp_path):
    folder = build_family("llama-3.1", tmp_path / "m")
    loaded = load_model(str(folder))
    bos = loaded.tokenizer.convert_tokens_to_ids("<s>")
    assert special_prefix(loaded.tokenizer) == [bos]
    doc = corpus_documents(loaded.tokenizer, 300, 2)[0]
    assert all(d[0].item() == bos and d.numel() == 301 for d in doc)
    plain = build_family("qwen2.5", tmp_path / "q")
    assert special_prefix(load_model(str(plain)).tokenizer) == []


def test_family_configs_keep_the_published_rope_keys():
    config, source = family_config("llama-3.1", 320)
    assert config.rope_parameters["rope_type"] == "llama3" and config.rope_parameters["factor"] == 8.0
    assert config.rope_parameters["rope_theta"] == 500000.0 and "Llama-3.1-8B" in source


def test_passkey_cache_on_a_sliding_window_model_equals_a_fresh_forward(tmp_path):
    """Gemma 3 (5 sliding-window layers of 4 positions + 1 full): prefill in chunks on the passkey's cache, ask,
    crop back, prefill on, ask again; every answer's logits equal a fresh forward of the same prompt."""
    from transformers import DynamicCache

    from ropelab.real.evaluate import decoder_and_head

    loaded = load_model(str(build_family("gemma-3", tmp_path / "m")))
    model = loaded.model
    body, _ = decoder_and_head(model)
    ids = torch.randint(0, 300, (96,), generator=torch.Generator().manual_seed(3))
    question = torch.tensor([5, 6, 7, 8, 9])
    cache, done = DynamicCache(), 0
    with torch.no_grad():
        for end in (40, 96):
            body(
                input_ids=ids[None, done:end],
                past_key_values=cache,
                use_cache=True,
                cache_position=torch.arange(done, end),
            )
            done = end
            asked = model(
                input_ids=question[None],
                past_key_values=cache,
                use_cache=True,
                cache_position=torch.arange(end, end + 5),
            ).logits[0]
            cache.crop(end - cache.get_seq_length())
            assert cache.get_seq_length() == end
            fresh = model(input_ids=torch.cat((ids[:end], question))[None], use_cache=False).logits[0, -5:]
            torch.testing.assert_close(asked, fresh, atol=1e-4, rtol=1e-4)
