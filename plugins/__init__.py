"""First-party zoo_core plugins, discovered through the ``zoo_core`` entry-point group."""
