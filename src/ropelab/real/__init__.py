"""Real pretrained RoPE models: load one as shipped (transformers folder, GGUF, hub id, or the embedded
SmolLM2), plan the run, predict where it breaks, measure it past its context, fine-tune, decide, hand over.

``ropelab.real.extend(model, target=..., methods=..., finetune=...)`` runs it all and returns an
:class:`~ropelab.real.api.ExtendResult`; the stages, one module each:

- :mod:`ropelab.real.shipped`  the RoPE as shipped, the context T it ships for, what each method starts from;
- :mod:`ropelab.real.plan`     memory and time from the config alone, before any weight loads;
- :mod:`ropelab.real.load`     model + tokenizer through transformers' own loaders, in the run's dtype;
- :mod:`ropelab.real.predict`  the break predicted from the model's own q and k;
- :mod:`ropelab.real.evaluate` chunked loss per position, perplexity per segment;
- :mod:`ropelab.real.passkey`  passkey retrieval on a KV cache;
- :mod:`ropelab.real.stages`   predict / measure / verdict / config of each method;
- :mod:`ropelab.real.finetune` the PoSE fine-tune;
- :mod:`ropelab.real.handover` the model folder that plain transformers loads;
- :mod:`ropelab.real.report`   results.json, results.csv, report.html;
- :mod:`ropelab.real.api`      :func:`extend`, the one entry point; :mod:`ropelab.real.cli` is a thin shell on it.
"""

from ropelab.real.api import ExtendOptions, ExtendResult, Verdict, extend

__all__ = ["ExtendOptions", "ExtendResult", "Verdict", "extend"]
