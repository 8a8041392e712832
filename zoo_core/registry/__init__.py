"""The registry: plugin discovery, names, the registry.toml catalog, the name cache.

Owns entry-point discovery and isolation of plugins, name and tag resolution
(``list_models``, ``get_model_info``, :class:`Registry`), the declarative catalog read
from ``registry.toml`` (:mod:`._catalog`) and the on-disk cache of family name lists
that keeps ``zoo list`` torch-free; what it says about an unknown, duplicate or
shadowed name is :mod:`._messages`. It may import :mod:`zoo_core.weights` (for the cache
folder) and the top-level modules (errors, hookspecs, specs), nothing above.
"""
