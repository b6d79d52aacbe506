"""Presentation on top of ropelab.analysis: explain, compare, tour and the interactive explorer."""
