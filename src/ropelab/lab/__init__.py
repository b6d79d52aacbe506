"""The lab: train tiny byte-level language models short, test them long, extend RoPE, write a report.

Modules, in the order data flows: :mod:`~ropelab.lab.data` (corpora, passkey prompts),
:mod:`~ropelab.lab.model` (the decoder), :mod:`~ropelab.lab.train`, :mod:`~ropelab.lab.evaluate`,
:mod:`~ropelab.lab.extend`, :mod:`~ropelab.lab.report`, :mod:`~ropelab.lab.cli`.
"""

from ropelab.errors import LabError

__all__ = ["LabError"]
