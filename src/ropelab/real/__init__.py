"""Real pretrained RoPE models: load (transformers folder, GGUF, hub id, or the embedded SmolLM2),
extend past the trained length, evaluate zero-shot, decide, hand over a config, report.

- :mod:`ropelab.real.load`     model + tokenizer through transformers' own loaders;
- :mod:`ropelab.real.evaluate` chunked loss per position, perplexity per segment, passkey in tokens;
- :mod:`ropelab.real.extend`   predict / measure / verdict / config for ``ropelab extend``;
- :mod:`ropelab.real.report`   results.json, results.csv, report.html;
- :mod:`ropelab.real.cli`      the ``ropelab extend`` command and the demo's real-model section.
"""
