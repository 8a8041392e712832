"""What the registry says when a name is unknown, taken twice, or shadowed.

Each message names the model, the plugins and distributions involved, and what to do.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def unknown_message(name: str, plugin: str | None, blocked: str | None, *,
                    plugins: Mapping[str, Any], names_of: Callable[[Any], Iterable[str]],
                    failed: list[str]) -> str:
    """``name`` resolves to no model: say why (a blocked or failed plugin) or suggest."""
    off = [p for p in plugins.values() if p.status == "blocked"]
    likely = [p for p in off if p.name == blocked or (
        blocked is None and plugin is None and name.lower().startswith(p.name.lower()))]
    if likely:  # zoonet_s, or zoonet/zoonet_s, and a blocked plugin "zoonet"
        return (f"model {name!r} is not available: it is "
                f"{'' if blocked else 'probably '}a model of plugin "
                f"{likely[0].name!r}, which is installed but {likely[0].error}")
    if plugin is not None:
        msg = (f"unknown plugin {plugin!r} in {name!r}; plugins: "
               f"{', '.join(sorted(plugins)) or 'none'}")
    else:
        everything = {n for p in plugins.values() for n in names_of(p)}
        close = difflib.get_close_matches(name.lower(), everything, n=5, cutoff=0.6)
        msg = f"unknown model {name!r}."
        msg += f" Did you mean: {', '.join(close)}?" if close else " See `zoo list`."
        if off:
            msg += (" Blocked plugins (their models are not available): "
                    + "; ".join(f"{p.name} ({p.error})" for p in off) + ".")
    if failed:
        msg += (f" Plugins that failed to load (their models are missing): "
                f"{', '.join(failed)}; see `zoo plugins`.")
    return msg


def duplicate_message(name: str, distributions: Mapping[str, str]) -> str:
    """Several plugins register ``name`` and ``[plugins] prefer`` picks none of them."""
    providers = list(distributions)
    both = ", ".join(f"{p} (distribution {d})" for p, d in distributions.items())
    return (f"model name {name!r} is registered by several plugins: {both}. Use a "
            f"plugin-qualified name such as {providers[0] + '/' + name!r}, or order them "
            "with [plugins] prefer in registry.toml")


def shadowed_message(name: str, winner: str, losers: list[str],
                     versions: Mapping[str, tuple[str, str]]) -> str:
    """A plugin outside ``[plugins] prefer`` lost the bare ``name`` to ``winner``."""

    def who(p: str) -> str:
        distribution, version = versions[p]
        return f"plugin {p!r} (distribution {distribution} {version})".rstrip()

    lost = ", ".join(f"{who(p)} as {p + '/' + name!r}" for p in losers)
    return (f"model name {name!r} is registered by {who(winner)} and by {lost}; {name!r} "
            f"means {winner + '/' + name!r} ([plugins] prefer in registry.toml). Use "
            f"{losers[0] + '/' + name!r} for the other, or list {losers[0]!r} before "
            f"{winner!r} in [plugins] prefer (ZOO_CORE_REGISTRY=your.toml)")
