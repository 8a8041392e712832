"""A saved model (a Hub repo or a local folder) as a source the builder reads.

Owns what a saved folder holds and the names that point at one (:mod:`._repo_format`),
opening a source and fetching its files (:mod:`._sources`), the bounded reading and
checking of its ``config.json`` (:mod:`._config_json`) and the plan the builder follows
to rebuild it (:mod:`._pretrained`). It sits below :mod:`zoo_core.build`: it may import
:mod:`zoo_core.strategies`, :mod:`zoo_core.layout`, :mod:`zoo_core.registry`,
:mod:`zoo_core.weights` and the top-level modules, never the builder.
"""
