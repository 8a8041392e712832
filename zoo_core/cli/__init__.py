"""The ``zoo`` command: one module per subcommand, wired by :mod:`zoo_core.cli.main`.

Owns argument parsing and the one-line ``zoo: error: ...`` output of every subcommand:
:mod:`.models` (list, info, build, convert, hash), :mod:`.plugins`, :mod:`.push`,
:mod:`.cache`, :mod:`.evaluate` (eval, predict), :mod:`.finetune`, :mod:`.rank`.
The top layer: it may import any part of zoo_core; nothing in zoo_core imports it.
"""

from __future__ import annotations

from zoo_core.cli.main import main

__all__ = ["main"]
