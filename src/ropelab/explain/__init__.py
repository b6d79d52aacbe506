"""Presentation of RoPE's geometry, on top of :mod:`ropelab.analysis` (maths) and :mod:`ropelab.plots` (figures).

- :mod:`.cards`: a model card's RoPE as data (:class:`CardSummary`) and its verdict in words;
- :mod:`.tour`: the 14-step learning path and its self-contained ``tour.html``;
- :mod:`.cli`: ``ropelab explain``, ``compare`` and ``tour`` (argument parsing and printing only);
- :mod:`.explorer`: ``ropelab explore``, the interactive page whose numbers are the library's.
"""

from ropelab.explain.cards import CardSummary, card_summary, compare_rows, load_config, verdict
from ropelab.explain.tour import STEPS, run_tour

__all__ = ["STEPS", "CardSummary", "card_summary", "compare_rows", "load_config", "run_tour", "verdict"]
