"""What a plugin does wrong without failing to load: seen while the registry loads it.

- a function named like a hook of :mod:`zoo_core.hookspecs` without ``@zoo_core.hookimpl``
  (pluggy ignores it: the plugin registers nothing, silently);
- torch, timm or torchvision imported by importing the plugin or calling its hook (every
  ``zoo list`` would pay for it).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

__all__ = ["HEAVY_MODULES", "heavy_import_message", "heavy_loaded", "unmarked_hooks"]

# libraries whose import makes `zoo list` slow: registering a plugin must not import them
HEAVY_MODULES = ("torch", "torchvision", "timm")


def heavy_loaded() -> set[str]:
    return {m for m in HEAVY_MODULES if m in sys.modules}


def unmarked_hooks(obj: object, who: str) -> list[str]:
    """A warning per hook of ``zoo_core.hookspecs`` that ``obj`` (the plugin ``who``)
    defines without ``@hookimpl``: pluggy skips such a function silently, so the plugin
    registers nothing."""
    from zoo_core import hookspecs

    marker = f"{hookspecs.PROJECT_NAME}_impl"
    names = [n for n, f in vars(hookspecs).items()
             if callable(f) and hasattr(f, f"{hookspecs.PROJECT_NAME}_spec")]
    return [f"{who} defines {n}() without @zoo_core.hookimpl, so pluggy ignores it and the "
            "plugin registers no models; decorate it with @zoo_core.hookimpl"
            for n in names
            if callable(getattr(obj, n, None)) and not hasattr(getattr(obj, n), marker)]


def heavy_import_message(name: str, dist: str, version: str, heavy: Iterable[str]) -> str:
    return (f"loading plugin {name!r} ({dist} {version}) imports "
            f"{', '.join(heavy)}: importing its module and calling "
            "register_backbones must stay cheap (`zoo list` pays for it); move heavy imports "
            "into the builder function")
