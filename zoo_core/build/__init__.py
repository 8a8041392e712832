"""``build_model``: resolve -> construct (meta) -> load (fast path) -> head -> strategy.

Owns the builder itself, the fast construct-and-load path (meta, aligned read) and the plugin
contract checks (``check_plugin``, ``hash_file``). It may import every part below it:
:mod:`zoo_core.saved`, :mod:`zoo_core.strategies`, :mod:`zoo_core.layout`,
:mod:`zoo_core.registry`, :mod:`zoo_core.weights` and the top-level modules.
"""
