"""Hook specifications for zoo_core plugins.

A plugin is a module (or object) exposed through the ``zoo_core`` entry-point group
whose functions are marked with :data:`hookimpl`. Built-in backbones use exactly the same
path as third-party packages.

A complete third-party plugin::

    # my_zoo_plugin.py  --  pyproject.toml:
    # [project.entry-points.zoo_core]
    # mynet = "my_zoo_plugin"
    import zoo_core

    @zoo_core.hookimpl
    def register_backbones(register):
        register(zoo_core.BackboneSpec(
            name="mynet_s",
            builder="my_zoo_plugin.arch:mynet_s",   # imported only when built
            head="fc",
            stages=("layer1", "layer2", "layer3"),  # one per resolution, input -> output
        ))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT_NAME = "zoo_core"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_backbones(register: Callable[[Any], None]) -> None:
    """Register backbones by calling ``register(spec)`` once per spec.

    ``spec`` is a :class:`zoo_core.BackboneSpec` (one architecture) or a
    :class:`zoo_core.BackboneFamily` (many architectures listed lazily, whose name list
    is cached on disk). Registering must be cheap: no downloads, and no import of torch,
    timm or torchvision just to list names; put heavy imports inside the builder
    (``check_plugin`` fails a plugin whose loading imports them). Without the
    ``@zoo_core.hookimpl`` marker pluggy ignores this function: ``zoo plugins`` warns.

    Registering a name twice within one plugin raises ``DuplicateModelError``; the same
    name from two plugins is allowed, but looking it up unqualified is then an error
    unless ``registry.toml`` ``[plugins] prefer`` lists one of them: the bare name then
    means the preferred plugin's model, with a ``ShadowedModelWarning`` (once) when the
    other plugin is not listed there.

    ``zoo_core.check_plugin(name)`` (``zoo plugins --check NAME``) validates every spec
    registered here against the model its builder builds, on the meta device.
    """
