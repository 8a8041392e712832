"""One loaded plugin's record in the registry: what it registered and how it fared."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zoo_core._specs import BackboneFamily, BackboneSpec, PluginInfo

__all__ = ["_Plugin"]


@dataclass
class _Plugin:
    name: str
    distribution: str
    version: str
    status: str = "ok"
    error: str | None = None
    specs: dict[str, BackboneSpec] = field(default_factory=dict)
    families: list[BackboneFamily] = field(default_factory=list)
    # filled lazily from the on-disk name cache: model name -> (family, pretrained tags)
    family_names: dict[str, tuple[BackboneFamily, tuple[str, ...]]] | None = None
    warnings: list[str] = field(default_factory=list)  # see _plugin_health
    heavy_imports: tuple[str, ...] | None = None  # torch... it imported (None: unknown)
    # Registry._names_of's memo: (the family_names it was built from, len(specs), names)
    names_memo: tuple[Any, int, dict[str, tuple[str, ...]]] | None = None

    def info(self, num_models: int) -> PluginInfo:
        error = self.error or ("warning: " + "; ".join(self.warnings) if self.warnings else None)
        return PluginInfo(self.name, self.distribution, self.version, self.status,
                          error, num_models,
                          tuple(f"{f.name} {f.version}" for f in self.families))
