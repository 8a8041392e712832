"""Mistakes a plugin author makes that still build: checked by ``check_plugin`` (and, the
cheap ones, by ``build_model``), each naming the plugin, its distribution and the model.

- the head or a stage names no module: found right after the builder runs, before any
  weights are matched (otherwise the file's head keys look like a wrong variant);
- ``default_weights`` names no weights tag (``weights="default"`` would load nothing);
- a stage is a module inside a block (``stage1.conv1``) whose later layers would train
  with the next stage;
- ``DataConfig.first_conv`` names no module, or not a convolution;
- loading the plugin imports torch, timm or torchvision (seen in a fresh process);
- a hook function without ``@zoo_core.hookimpl`` (the plugin then registers nothing).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from zoo_core._specs import BackboneSpec
from zoo_core.errors import SpecError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from zoo_core.registry._registry import Registry

__all__ = ["check_declared_modules", "default_weights_problem", "registration_problems",
           "structure_problems"]


def who(spec: BackboneSpec) -> str:
    dist = f"{spec.distribution} {spec.distribution_version}".strip() or "no distribution"
    return f"plugin {spec.plugin!r} ({dist}), model {spec.name!r}"


def check_declared_modules(model: nn.Module, spec: BackboneSpec) -> None:
    """The head and every stage exist in the built model (a dict lookup: cheap enough to
    run on every build, before the weights are matched)."""
    modules = dict(model.named_modules())
    missing = [p for p in (spec.head, *spec.stages) if p not in modules]
    if missing:
        top = ", ".join(n for n in modules if n and "." not in n)
        raise SpecError(
            f"{who(spec)}: declares module(s) {', '.join(map(repr, missing))}, but the built "
            f"model has no such module (top-level modules: {top}); fix the head/stages in "
            "the plugin's spec")


def default_weights_problem(spec: BackboneSpec) -> str | None:
    """``default_weights`` names a tag the spec does not have."""
    if spec.default_weights is None or spec.weights_tag(spec.default_weights) is not None:
        return None
    tags = ", ".join(w.tag for w in spec.weights) or "none"
    return (f"default_weights={spec.default_weights!r} is not one of its weights tags "
            f"({tags}); name one of them, or leave default_weights=None for the first")


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def structure_problems(model: nn.Module, spec: BackboneSpec) -> list[str]:
    """Nested stages and a ``first_conv`` that is not a convolution."""
    from torch import nn

    modules = dict(model.named_modules())
    problems = []
    declared = set(spec.stages)
    for stage in spec.stages:
        parent, _, leaf = stage.rpartition(".")
        if not parent or parent not in modules:
            continue
        siblings = [n for n, _ in modules[parent].named_children()]
        if sum(f"{parent}.{n}" in declared for n in siblings) > 1:
            continue  # a container of stages (stages.0, stages.1, ...): fine
        later = [n for n in siblings[siblings.index(leaf) + 1:]
                 if _has_params(modules[parent].get_submodule(n))
                 and f"{parent}.{n}" != spec.head
                 and not any(s.startswith(f"{parent}.{n}.") for s in spec.stages)]
        if later:
            problems.append(
                f"stage {stage!r} is a layer inside block {parent!r}, whose later layers "
                f"({', '.join(later)}) would train with the next stage: partial:K would split "
                f"the block; declare {parent!r}, the whole block, as the stage")
    configs = [("data_config", spec.data_config)] + [
        (f"weights {w.tag!r} data_config", w.data_config) for w in spec.weights if w.data_config]
    for where, config in configs:
        name = config.first_conv
        if not name:
            continue
        module = modules.get(name)
        if module is None:
            problems.append(f"{where}.first_conv={name!r} names no module of the built model; "
                            "name its input convolution (in_chans= adapts it)")
        elif not isinstance(module, nn.modules.conv._ConvNd):
            problems.append(f"{where}.first_conv={name!r} is a {type(module).__name__}, not a "
                            "convolution; name the input convolution itself (in_chans= "
                            "adapts its weight)")
    return problems


_PROBE = """
import json, sys
from zoo_core.registry._plugin_health import HEAVY_MODULES
from zoo_core.registry._registry import Registry
before = {m for m in HEAVY_MODULES if m in sys.modules}
Registry(strict=False)
print(json.dumps(sorted({m for m in HEAVY_MODULES if m in sys.modules} - before)))
"""


_probed: dict[tuple[str, str, str], tuple[str, ...] | None] = {}


def _heavy_in_fresh_process(name: str, dist: str, version: str) -> tuple[str, ...] | None:
    """What loading plugin ``name`` alone imports, in a new interpreter (this one may
    have imported torch already); once per plugin version. None when it cannot tell."""
    key = (name, dist, version)
    if key not in _probed:
        _probed[key] = _probe(name)
    return _probed[key]


def _probe(name: str) -> tuple[str, ...] | None:
    from zoo_core.registry._registry import ENV_ALLOW, ENV_BLOCK

    env = {**os.environ, ENV_ALLOW: name}
    env.pop(ENV_BLOCK, None)
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                             text=True, timeout=120, check=False)
        return tuple(json.loads(out.stdout.strip().splitlines()[-1]))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def registration_problems(registry: Registry, name: str, info: Any) -> list[str]:
    """Problems of plugin ``name`` as a whole (``info`` is its ``PluginInfo``)."""
    from zoo_core.registry._registry import heavy_import_message

    warnings, heavy = registry.plugin_diagnosis(name)
    problems = list(warnings)
    if heavy is None and info.distribution != "<explicit>":
        heavy = _heavy_in_fresh_process(name, info.distribution, info.version)
        if heavy:
            problems.append(heavy_import_message(name, info.distribution, info.version, heavy))
    if info.num_models == 0 and not warnings:
        problems.append(f"plugin {name!r} ({info.distribution} {info.version}) registers no "
                        "models: its register_backbones(register) never calls register(spec)")
    return problems
