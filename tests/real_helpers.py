"""Tiny random models and a byte-level tokenizer for the real-model tests (no download)."""

from __future__ import annotations

from pathlib import Path


def extend_refuses(capsys, out: Path, argv: list[str], *needles: str) -> str:
    """``ropelab extend ARGV --out OUT --quiet`` exits 2 with one error line that holds every one of
    ``needles``, and writes nothing at ``out``; returns that line."""
    from ropelab.cli import main

    capsys.readouterr()  # drop what building the fixtures printed
    code = main(["extend", *argv, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("ropelab extend: error:"), err
    for needle in needles:
        assert needle in err, err
    assert not out.exists()
    return err


def byte_tokenizer(folder: Path, bos: bool = False):
    """A byte-level BPE tokenizer with a few merges, saved in ``folder``; ``bos``: it puts ``<s>`` before
    every text, as Llama 3's and Gemma's tokenizers put theirs."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(
        ["def f(x):\n    return x + 1\n", "The grass is green. The sky is blue. The pass key is 12345."] * 20, trainer
    )
    if bos:
        tok.add_special_tokens(["<s>"])
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", bos_token="<s>" if bos else None)
    fast.save_pretrained(folder)
    return fast


def tiny_llama(folder: Path, max_positions: int = 64, rope_theta: float = 100.0, seed: int = 0) -> Path:
    """A random 2-layer Llama (head_dim 16, GQA 4/2) trained at ``max_positions``, saved with its tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = byte_tokenizer(folder)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def tiny_gemma3(
    folder: Path, max_positions: int = 64, window: int = 16, full_attention: dict | None = None, seed: int = 0
) -> Path:
    """A random 2-layer Gemma 3 text model (head_dim 16), a sliding-window layer of ``window`` positions
    (base 1e4) then a full-attention one (``full_attention``'s rope parameters, default base 1e6), trained
    at ``max_positions``, saved with its tokenizer."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tokenizer = byte_tokenizer(folder)
    torch.manual_seed(seed)
    rope = {
        "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        "full_attention": full_attention or {"rope_type": "default", "rope_theta": 1_000_000.0},
    }
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=max_positions,
        sliding_window=window,
        layer_types=["sliding_attention", "full_attention"],
        rope_parameters=rope,
        initializer_range=0.2,
        tie_word_embeddings=False,
    )
    Gemma3ForCausalLM(config).save_pretrained(folder)
    return folder


def tiny_gpt2(folder: Path) -> Path:
    """A random GPT-2 (learned absolute positions, no RoPE)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    byte_tokenizer(folder)
    GPT2LMHeadModel(GPT2Config(vocab_size=320, n_embd=32, n_layer=1, n_head=2, n_positions=64)).save_pretrained(folder)
    return folder
