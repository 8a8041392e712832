"""The plugin contract, checked: at build time (cheap checks) and by ``check_plugin``.

Every check names the plugin, its distribution and the model, and says what to fix:

- the builder returns an ``nn.Module`` (a builder that raises or returns None is a
  :class:`SpecError`, never a bare ValueError or AttributeError);
- the head and every stage exist, no stage sits inside another or inside the head;
- stages run input -> output: in module registration order (checked at build time, it
  is what ``partial:K`` groups by) and in the order a meta-device forward runs them
  (``check_plugin``);
- the head is the final classifier: its output width is ``num_classes``;
- weights that are local (a path, ``file://``, ``pkg:``) exist, match their sha256 pin,
  and their tensor shapes fit the model (``check_plugin``).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zoo_core._specs import BackboneSpec, DataConfig, WeightsSpec
from zoo_core.build._author_checks import (
    default_weights_problem,
    registration_problems,
    structure_problems,
)
from zoo_core.build._swallowed import ignored_known_args
from zoo_core.errors import SpecError, UnknownModelError, ZooError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from zoo_core.registry._registry import Registry

__all__ = ["ModelCheck", "call_builder", "check_plugin", "check_spec", "hash_file",
           "meta_model", "validate_built"]

PLUGIN_ROW = "(plugin)"  # ModelCheck.model of problems of the plugin as a whole
_PROBE_CLASSES = 7919  # a prime no architecture uses as a width: the head must carry it


def _who(spec: BackboneSpec) -> str:
    dist = f"{spec.distribution} {spec.distribution_version}".strip() or "no distribution"
    return f"plugin {spec.plugin!r} ({dist}), model {spec.name!r}"


def call_builder(spec: BackboneSpec, builder: Callable[..., Any], num_classes: int,
                 kwargs: Mapping[str, Any]) -> nn.Module:
    """Call the plugin's builder; anything but an ``nn.Module`` is the plugin's bug."""
    import torch.nn as nn

    try:
        model = builder(num_classes=num_classes, **kwargs)
    except ZooError:
        raise
    except MemoryError:
        raise
    except Exception as exc:
        raise SpecError(
            f"{_who(spec)}: builder {spec.builder!r} raised {type(exc).__name__}: {exc}; "
            "fix the builder (it is called as builder(num_classes=N, **builder_kwargs))"
        ) from exc
    if not isinstance(model, nn.Module):
        raise SpecError(
            f"{_who(spec)}: builder {spec.builder!r} returned {type(model).__name__}, not a "
            "torch.nn.Module; make it return the model it builds"
        )
    return model


def meta_model(spec: BackboneSpec, builder: Callable[..., Any], num_classes: int) -> nn.Module:
    """The spec's model with its parameters on the meta device, builder faults as
    ``SpecError`` (build_on_meta's fallback for builders that compute with real tensors
    sees the builder's own exception first)."""
    from zoo_core.layout._layout import build_on_meta

    def on_meta(**kwargs: Any) -> Any:
        return build_on_meta(lambda: builder(**kwargs))

    return call_builder(spec, on_meta, num_classes, spec.builder_kwargs)


def _layout_problems(model: nn.Module, spec: BackboneSpec, num_classes: int | None) -> list[str]:
    modules = dict(model.named_modules())
    order = {name: i for i, name in enumerate(modules)}
    problems = []
    missing = [p for p in (spec.head, *spec.stages) if p not in modules]
    if missing:
        top = ", ".join(n for n in modules if n and "." not in n)
        problems.append(
            f"declares module(s) {', '.join(map(repr, missing))}, but the built model has no "
            f"such module (top-level modules: {top}); fix the head/stages in the plugin's spec")
        return problems
    if not spec.stages:
        problems.append("declares no stages; list the backbone's resolution stages, input "
                        "to output (partial:K trains the last K)")
    if len(set(spec.stages)) != len(spec.stages):
        problems.append(f"lists a stage twice: {spec.stages}")

    def inside(path: str, root: str) -> bool:
        return root == "" or path.startswith(root + ".")

    for stage in spec.stages:
        if inside(spec.head, stage) or inside(stage, spec.head) or stage == spec.head:
            problems.append(f"stage {stage!r} overlaps the head {spec.head!r}")
        nested = [s for s in spec.stages if s != stage and inside(s, stage)]
        if nested:
            problems.append(f"stage {nested[0]!r} sits inside stage {stage!r}; declare "
                            "sibling modules, one per resolution stage")
    positions = [order[s] for s in spec.stages]
    if positions != sorted(positions):
        in_order = ", ".join(sorted(spec.stages, key=order.__getitem__))
        problems.append(
            f"stages {', '.join(spec.stages)} are not in input -> output order (the model "
            f"defines them as {in_order}); partial:K would freeze the wrong modules")
    if num_classes is not None:
        width = head_width(modules[spec.head])
        if width is None:
            problems.append(f"head {spec.head!r} has no weight; name the classifier layer "
                            "itself (e.g. 'fc' or 'head.fc')")
        elif width != num_classes:
            problems.append(
                f"head {spec.head!r} outputs {width} features but num_classes is {num_classes}; "
                "the head must be the final classifier, built with num_classes outputs")
    return problems


def head_width(head: nn.Module) -> int | None:
    """Output width of a classifier module: its last layer's ``weight.shape[0]``."""
    width = None
    for module in head.modules():
        weight = getattr(module, "weight", None)
        shape = getattr(weight, "shape", None)
        if shape is not None and len(shape) >= 1:
            width = int(shape[0])
    return width


def validate_built(model: object, spec: BackboneSpec, num_classes: int | None) -> None:
    """Build-time checks (no forward pass): raise one ``SpecError`` listing every problem."""
    import torch.nn as nn

    if not isinstance(model, nn.Module):
        raise SpecError(f"{_who(spec)}: builder {spec.builder!r} returned "
                        f"{type(model).__name__}, not a torch.nn.Module")
    problems = _layout_problems(model, spec, num_classes)
    if problems:
        raise SpecError(f"{_who(spec)}: " + "; ".join(problems))


@dataclass(frozen=True)
class ModelCheck:
    """What :func:`check_plugin` found for one model."""

    model: str
    plugin: str
    distribution: str
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    checked: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "plugin": self.plugin, "distribution": self.distribution,
                "ok": self.ok, "problems": list(self.problems), "notes": list(self.notes),
                "checked": list(self.checked)}


def _is_local(source: str) -> bool:
    return not source.startswith(("hf-hub:", "http://", "https://"))


def _weights_problems(model_for: Callable[[int], nn.Module], spec: BackboneSpec,
                      wspec: WeightsSpec) -> tuple[list[str], list[str]]:
    from safetensors import safe_open

    from zoo_core.weights._weights import fetch_weights

    where = f"weights {wspec.tag!r} ({wspec.source})"
    notes = [] if wspec.sha256 else [f"{where}: not pinned; run `zoo hash FILE` and set "
                                     "WeightsSpec(sha256=...)"]
    try:
        path = fetch_weights(wspec.source, sha256=wspec.sha256, filename=wspec.filename,
                             progress=False)
    except ZooError as exc:
        return [f"{where}: {exc}"], notes
    with safe_open(str(path), framework="pt") as fh:
        shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}  # noqa: SIM118
    classes = wspec.num_classes
    model = model_for(classes if classes is not None else _PROBE_CLASSES)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    head = spec.head + "."
    if classes is None:  # the file's head width is unknown: compare the backbone only
        shapes = {k: v for k, v in shapes.items() if not k.startswith(head)}
        expected = {k: v for k, v in expected.items() if not k.startswith(head)}
    problems = []
    missing = sorted(set(expected) - set(shapes))
    extra = sorted(set(shapes) - set(expected))
    wrong = sorted(k for k in set(shapes) & set(expected) if shapes[k] != expected[k])
    if missing:
        problems.append(f"{where}: {len(missing)} tensor(s) the model needs are missing, "
                        f"e.g. {missing[0]!r}")
    if extra:
        problems.append(f"{where}: {len(extra)} tensor(s) the model has no place for, e.g. "
                        f"{extra[0]!r}")
    if wrong:
        k = wrong[0]
        problems.append(f"{where}: {len(wrong)} shape mismatch(es), e.g. {k!r} is "
                        f"{list(shapes[k])} in the file, {list(expected[k])} in the model")
    return problems, notes


def check_spec(spec: BackboneSpec, *, weights: bool = True) -> ModelCheck:
    """Every check for one resolved spec, on the meta device. Never raises for the spec's
    own faults: they land in ``ModelCheck.problems``."""
    from zoo_core.layout._layout import forward_order
    from zoo_core.registry._registry import resolve_builder

    checked = ["builder", "head and stages exist", "registration order", "head width",
               "nested stages", "first_conv", "default_weights", "ignored model arguments"]
    problems: list[str] = []
    notes: list[str] = []
    result = ModelCheck(spec.name, spec.plugin, spec.distribution)
    try:
        builder = resolve_builder(spec)

        def model_for(num_classes: int) -> nn.Module:
            return meta_model(spec, builder, num_classes)

        model = model_for(_PROBE_CLASSES)
    except SpecError as exc:
        return ModelCheck(spec.name, spec.plugin, spec.distribution, (str(exc),), (),
                          ("builder",))
    problems += _layout_problems(model, spec, _PROBE_CLASSES)
    if not problems:
        problems += structure_problems(model, spec)
        ignored = ignored_known_args(spec, builder, _PROBE_CLASSES)
        if ignored:
            notes.append(f"its builder takes **kwargs and ignores {', '.join(ignored)} (the "
                         "model is the same with any value): build_model refuses them")
    default_problem = default_weights_problem(spec)
    if default_problem:
        problems.append(default_problem)
    if spec.data_config == DataConfig() and not any(w.data_config for w in spec.weights):
        notes.append("data_config is all defaults (3x224x224, ImageNet mean/std, bicubic); "
                     "declare DataConfig(...) if the model expects other input")
    if not problems:
        checked.append("forward order")
        try:
            ran = forward_order(model, (*spec.stages, spec.head), spec.data_config.input_size)
        except Exception as exc:  # a model the meta device cannot run: not the spec's fault
            notes.append(f"meta-device forward failed ({type(exc).__name__}: {exc}); stage "
                         "order checked by registration order only")
        else:
            declared = [p for p in (*spec.stages, spec.head) if p in ran]
            if ran != declared:
                problems.append(f"a forward pass runs {', '.join(ran)}, but the spec declares "
                                f"{', '.join(declared)}; list stages input -> output and the "
                                "head last")
            skipped = [p for p in (*spec.stages, spec.head) if p not in ran]
            if skipped:
                problems.append(f"a forward pass never runs {', '.join(skipped)}")
    if weights and not problems:
        checked.append("weights")
        remote = [w.tag for w in spec.weights if not _is_local(w.source)]
        if remote:
            notes.append(f"{len(remote)} remote weights tag(s) not downloaded, checked when "
                         f"built: {', '.join(remote)}")
        for wspec in (w for w in spec.weights if _is_local(w.source)):
            try:
                more, extra_notes = _weights_problems(model_for, spec, wspec)
            except Exception as exc:
                more, extra_notes = [f"weights {wspec.tag!r}: {type(exc).__name__}: {exc}"], []
            problems += more
            notes += extra_notes
    return ModelCheck(result.model, result.plugin, result.distribution, tuple(problems),
                      tuple(notes), tuple(checked))


def check_plugin(name: str, *, pattern: str | None = None, weights: bool = True,
                 registry: Registry | None = None, raise_on_error: bool = True
                 ) -> list[ModelCheck]:
    """Validate every model a plugin registers (building each on the meta device).

    For a plugin's own test suite: raises one :class:`SpecError` listing every problem
    (``raise_on_error=False`` returns them instead). Problems of the plugin as a whole (a
    hook without ``@hookimpl``, torch imported while registering, checked in a fresh
    process) come first, as a row whose ``model`` is ``"(plugin)"``. ``pattern`` limits
    the models checked (a large family such as timm's takes a while).

    >>> [c.ok for c in check_plugin("zoonet")]
    [True, True]
    """
    from zoo_core.registry._registry import get_registry

    reg = registry or get_registry()
    plugins = {p.name: p for p in reg.plugins()}
    if name not in plugins:
        raise UnknownModelError(f"no plugin named {name!r}; plugins: "
                                f"{', '.join(sorted(plugins)) or 'none'} (see `zoo plugins`)")
    if plugins[name].status != "ok":
        raise SpecError(f"plugin {name!r} did not load ({plugins[name].status}): "
                        f"{plugins[name].error}")
    names = [n.partition("/")[2] or n
             for n in reg.list_models(plugin=name)
             if pattern is None or fnmatch.fnmatchcase(n, pattern)]
    results = []
    for model_name in names:
        try:
            spec = reg.resolve(f"{name}/{model_name}").spec
        except ZooError as exc:
            results.append(ModelCheck(model_name, name, plugins[name].distribution,
                                      (str(exc),)))
            continue
        results.append(check_spec(spec, weights=weights))
    plugin_problems = registration_problems(reg, name, plugins[name])
    if plugin_problems:  # the plugin as a whole: a row of its own, first
        results.insert(0, ModelCheck(PLUGIN_ROW, name, plugins[name].distribution,
                                     tuple(plugin_problems), (), ("registration",)))
    bad = [r for r in results if not r.ok]
    if bad and raise_on_error:
        lines = [f"{r.model}: {p}" for r in bad for p in r.problems]
        raise SpecError(f"plugin {name!r} ({plugins[name].distribution}): "
                        f"{len(bad)} of {len(results)} model(s) fail the contract:\n  "
                        + "\n  ".join(lines))
    return results


def hash_file(path: str | os.PathLike[str]) -> str:
    """The sha256 to pin in ``WeightsSpec(sha256=...)`` or registry.toml.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "x.bin"; _ = f.write_bytes(b"zoo")
    >>> hash_file(f)[:16]
    '24fe93c9e17cb804'
    """
    from zoo_core.errors import InvalidArgumentError
    from zoo_core.weights._digests import sha256_file

    if not os.path.isfile(path):
        raise InvalidArgumentError(f"{os.fspath(path)!r} is not a file; give the path of the "
                                   "weights file to hash")
    return sha256_file(path)
