"""``rank_models``: which backbone of the zoo to fine-tune for this data.

It may import :mod:`zoo_core.train` (probes, cached features) and every part below it,
never the CLI (``zoo rank`` is :mod:`zoo_core.cli.rank`).

- :mod:`._candidates`    every listed model and weights tag whose weights can be had now
- :mod:`._ranking`       ``rank_models``: build, extract, score (probe, LogME, gain), decide
- :mod:`._report`        what it returns (:class:`Ranking`), the table, the confidence line

Nothing here imports torch or numpy at import time.
"""

from __future__ import annotations

from zoo_core.rank._ranking import parse_budget, rank_models
from zoo_core.rank._report import Ranking, Scored

__all__ = ["Ranking", "Scored", "parse_budget", "rank_models"]
