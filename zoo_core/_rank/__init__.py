"""``zoo rank``: which backbone of the zoo to fine-tune for this data.

- :mod:`.candidates`     every listed model and weights tag whose weights can be had now
- :mod:`.feature_cache`  sample features per (model, weights sha256, data hash), safetensors
- :mod:`.ranking`        ``rank_models``: build, extract, score (probe, LogME, gain), decide
- :mod:`.report`         the table and the confidence line
- :mod:`.cli`            ``zoo rank``

Nothing here imports torch or numpy at import time.
"""

from __future__ import annotations

from zoo_core._rank.cli import add_cli
from zoo_core._rank.ranking import Ranking, Scored, parse_budget, rank_models

__all__ = ["Ranking", "Scored", "add_cli", "parse_budget", "rank_models"]
