"""Transfer-learning strategies: the freeze recipes, the table, auto's decision.

Owns parsing a strategy name, the table that hints one from data size and domain,
``param_groups``/``apply_strategy`` (what trains, at which learning rate) and the pure
Python ``auto`` decision (:mod:`._decide`). It may import :mod:`zoo_core.layout`
(stage groups), :mod:`zoo_core.registry` (the catalog's thresholds) and the top-level
modules, nothing above.
"""
