"""The lab: train tiny byte-level language models short, test them long, extend RoPE, write a report.

Modules, in the order data flows: :mod:`~ropelab.lab.data` (corpora, passkey prompts),
:mod:`~ropelab.lab.model` (the decoder), :mod:`~ropelab.lab.train`, :mod:`~ropelab.lab.evaluate`,
:mod:`~ropelab.lab.extend`, :mod:`~ropelab.lab.report`, :mod:`~ropelab.lab.cli`.
"""

class LabError(ValueError):
    """A user error in the lab (bad path, bad length, wrong or corrupt checkpoint); one clear line."""


__all__ = ["LabError"]
