"""Plugin discovery and name resolution.

Plugins come from the ``zoo_core`` entry-point group (first-party ones included) or are
passed in explicitly. One plugin failing to import, or raising in its hook, is recorded
and reported; every other plugin keeps working. Environment switches, in the spirit of
pytest's ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``:

- ``ZOO_CORE_STRICT_PLUGINS=1``: any plugin failure raises :class:`PluginLoadError`
- ``ZOO_CORE_PLUGINS=a,b``: load only these plugins (allow-list)
- ``ZOO_CORE_BLOCK_PLUGINS=a,b``: never load these plugins
- ``ZOO_CORE_DISABLE_PLUGIN_AUTOLOAD=1``: ignore entry points (only explicit plugins)
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata
import logging
import os
import threading
import traceback
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from zoo_core._specs import BackboneFamily, BackboneSpec, PluginInfo
from zoo_core.errors import (
    DuplicateModelError,
    InvalidArgumentError,
    PluginLoadError,
    ShadowedModelWarning,
    SpecError,
    UnknownModelError,
)
from zoo_core.registry._catalog import Catalog, apply_pins, block_reason, load_catalog
from zoo_core.registry._messages import duplicate_message, shadowed_message, unknown_message
from zoo_core.registry._name_cache import cached_family_list
from zoo_core.registry._plugin import _Plugin
from zoo_core.registry._plugin_health import heavy_import_message, heavy_loaded, unmarked_hooks

__all__ = ["ListedModel", "Registry", "get_model_info", "get_registry", "list_models",
           "list_plugins"]

log = logging.getLogger("zoo_core.registry")

ENTRY_POINT_GROUP = "zoo_core"
ENV_STRICT = "ZOO_CORE_STRICT_PLUGINS"
ENV_ALLOW = "ZOO_CORE_PLUGINS"
ENV_BLOCK = "ZOO_CORE_BLOCK_PLUGINS"
ENV_NO_AUTOLOAD = "ZOO_CORE_DISABLE_PLUGIN_AUTOLOAD"
HUB_PREFIX = "hf-hub:"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _env_list(name: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in os.environ.get(name, "").split(",") if p.strip())


@dataclass(frozen=True)
class Resolved:
    """A name resolved to one plugin's spec, plus a weights tag given in the name."""

    spec: BackboneSpec
    tag: str | None = None


@dataclass(frozen=True)
class ListedModel:
    """One row of ``zoo list``: the name to type, its plugin, its weights tags, and the
    other plugins' models of the same name (``shadows``) or the one that wins the bare
    name (``shadowed_by``)."""

    name: str
    plugin: str
    tags: tuple[str, ...] = ()
    shadows: tuple[str, ...] = ()
    shadowed_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "plugin": self.plugin, "tags": list(self.tags),
                "shadows": list(self.shadows), "shadowed_by": self.shadowed_by}


class Registry:
    """The set of loaded plugins and the models they register.

    ``plugins`` maps plugin names to modules, the same shape as the entry points of the
    ``zoo_core`` group (entry-point name -> module): a dict or ``(name, module)`` pairs,
    the module given as an object or as its import path (``"my_zoo_plugin"``), registered
    after the entry points. With ``autoload=False`` (or
    ``ZOO_CORE_DISABLE_PLUGIN_AUTOLOAD=1``) only these are loaded. ``strict=True``
    makes any plugin failure raise ``PluginLoadError``. Pass the registry to
    :func:`zoo_core.build_model` with ``registry=``.

    >>> import zoo_core_plugins.zoonet as zoonet
    >>> reg = Registry(plugins=[("zoonet", zoonet)], autoload=False)
    >>> reg.list_models()
    ['zoonet_m', 'zoonet_s']
    >>> reg.resolve("zoonet_s").spec.plugin
    'zoonet'
    >>> Registry(plugins={"zoonet": "zoo_core_plugins.zoonet"}, autoload=False).list_models()
    ['zoonet_m', 'zoonet_s']
    """

    def __init__(
        self,
        *,
        plugins: Iterable[tuple[str, object]] | Mapping[str, object] = (),
        autoload: bool | None = None,
        strict: bool | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        import pluggy

        from zoo_core import hookspecs

        self.catalog = catalog if catalog is not None else load_catalog()
        self.strict = _env_flag(ENV_STRICT) if strict is None else strict
        autoload = not _env_flag(ENV_NO_AUTOLOAD) if autoload is None else autoload
        self._allow = _env_list(ENV_ALLOW) or self.catalog.allow
        self._block = _env_list(ENV_BLOCK) + self.catalog.deny
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._plugins: dict[str, _Plugin] = {}
        self._lock = threading.RLock()
        self._spec_cache: dict[tuple[str, str], BackboneSpec] = {}
        self._warned_shadowed: set[str] = set()
        if autoload:
            for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP),
                             key=lambda e: e.name):
                dist = ep.dist.name if ep.dist is not None else "<unknown>"
                version = ep.dist.version if ep.dist is not None else ""
                self._add(ep.name, dist, version, ep.load)
        pairs = plugins.items() if isinstance(plugins, Mapping) else plugins
        for name, obj in pairs:
            # a string is a module path, as an entry point's value: imported here, with
            # the same failure isolation as an entry point
            load = ((lambda obj=obj: importlib.import_module(obj)) if isinstance(obj, str)
                    else (lambda obj=obj: obj))
            self._add(name, "<explicit>", "", load)

    # -- loading ---------------------------------------------------------------------

    def _add(self, name: str, dist: str, version: str, load: Callable[[], object]) -> None:
        if name in self._plugins:
            other = self._plugins[name]
            self._fail(_Plugin(name, dist, version),
                       f"plugin name {name!r} is already used by distribution "
                       f"{other.distribution!r}; rename one entry point")
            return
        plugin = _Plugin(name, dist, version)
        self._plugins[name] = plugin
        if (self._allow and name not in self._allow) or name in self._block:
            plugin.status = "blocked"
            plugin.error = block_reason(name, self.catalog, ENV_ALLOW, ENV_BLOCK)
            return
        stage = "importing"
        before = heavy_loaded()
        try:
            obj = load()
            stage = "validating hooks of"
            self._pm.register(obj, name=name)
            impls = [i for i in self._pm.hook.register_backbones.get_hookimpls()
                     if i.plugin_name == name]
            plugin.warnings += unmarked_hooks(obj, f"plugin {name!r} ({dist} {version})")
            stage = "calling register_backbones(register) of"
            for impl in impls:
                impl.function(register=lambda spec, p=plugin: self._register(p, spec))
            if not before:  # nothing heavy imported before: what loading it imported
                plugin.heavy_imports = tuple(sorted(heavy_loaded()))
                if plugin.heavy_imports:
                    plugin.warnings.append(heavy_import_message(name, dist, version,
                                                               plugin.heavy_imports))
        except Exception as exc:  # isolate: one broken plugin never takes the rest down
            plugin.specs.clear()
            plugin.families.clear()
            if self._pm.is_registered(self._pm.get_plugin(name)):
                self._pm.unregister(name=name)
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            self._fail(plugin, f"{stage} plugin {name!r} ({dist} {version}) failed: {detail}",
                       exc)

    def _fail(self, plugin: _Plugin, message: str, exc: BaseException | None = None) -> None:
        plugin.status = "failed"
        plugin.error = message
        self._plugins.setdefault(plugin.name, plugin)
        log.warning("%s", message)
        if self.strict:
            raise PluginLoadError(
                f"{message}\n(strict mode: unset {ENV_STRICT} to load the other plugins anyway)"
            ) from exc

    def _register(self, plugin: _Plugin, spec: object) -> None:
        if isinstance(spec, BackboneFamily):
            plugin.families.append(spec)
            return
        if not isinstance(spec, BackboneSpec):
            raise SpecError(
                f"plugin {plugin.name!r} called register() with {type(spec).__name__}; "
                "expected zoo_core.BackboneSpec or zoo_core.BackboneFamily"
            )
        if spec.name in plugin.specs:
            raise DuplicateModelError(
                f"plugin {plugin.name!r} ({plugin.distribution}) registers {spec.name!r} twice"
            )
        if not spec.name or "/" in spec.name or spec.name.startswith(HUB_PREFIX):
            raise SpecError(f"plugin {plugin.name!r} registers an invalid model name {spec.name!r}")
        plugin.specs[spec.name] = spec

    # -- family name lists, cached on disk ----------------------------------------------

    def _family_names(self, plugin: _Plugin) -> dict[str, tuple[BackboneFamily, tuple[str, ...]]]:
        with self._lock:
            if plugin.family_names is None:
                names: dict[str, tuple[BackboneFamily, tuple[str, ...]]] = {}
                for family in plugin.families:
                    try:
                        listed = cached_family_list(plugin.name, plugin.distribution,
                                                    plugin.version, family)
                    except Exception as exc:
                        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                        self._fail(plugin, f"listing family {family.name!r} of plugin "
                                           f"{plugin.name!r} failed: {detail}", exc)
                        continue
                    for model, tags in listed.items():
                        names.setdefault(model, (family, tuple(tags)))
                plugin.family_names = names
            return plugin.family_names

    def _names_of(self, plugin: _Plugin) -> dict[str, tuple[str, ...]]:
        """Every model name of one plugin, with its weights tags (pins included)."""
        if plugin.status != "ok":
            return {}
        family = self._family_names(plugin)
        # every build resolves its name through here: timm's 1,371 names are not rebuilt
        # each time (the key changes if specs were registered or the family list reloaded)
        memo = plugin.names_memo
        if memo is not None and memo[0] is family and memo[1] == len(plugin.specs):
            return memo[2]
        out = {name: tags for name, (_, tags) in family.items()}
        for name, spec in plugin.specs.items():
            out[name] = tuple(w.tag for w in spec.weights)
        for model, pins in self.catalog.weights.items():
            owner, _, base = model.rpartition("/")
            if base in out and owner in ("", plugin.name):
                out[base] = tuple(dict.fromkeys((*out[base], *pins)))
        plugin.names_memo = (family, len(plugin.specs), out)
        return out

    # -- queries ---------------------------------------------------------------------

    def plugin_diagnosis(self, name: str) -> tuple[list[str], tuple[str, ...] | None]:
        """Warnings about plugin ``name``, and the heavy libraries loading it imported
        (None: unknown, one was imported before)."""
        return list(self._plugins[name].warnings), self._plugins[name].heavy_imports

    def plugins(self) -> list[PluginInfo]:
        return [p.info(len(self._names_of(p))) for p in self._plugins.values()]

    def failed_plugins(self) -> list[str]:
        return [p.name for p in self._plugins.values() if p.status == "failed"]

    def providers(self, name: str) -> list[str]:
        return [p.name for p in self._plugins.values() if name in self._names_of(p)]

    def _choose(self, name: str, providers: list[str], *, warn: bool = True) -> str:
        if len(providers) == 1:
            return providers[0]
        for preferred in self.catalog.prefer:
            if preferred in providers:
                unordered = [p for p in providers if p not in self.catalog.prefer]
                if unordered and warn:
                    self._warn_shadowed(name, preferred, unordered)
                return preferred
        raise DuplicateModelError(duplicate_message(
            name, {p: self._plugins[p].distribution for p in providers}))

    def _warn_shadowed(self, name: str, winner: str, losers: list[str]) -> None:
        """Once per name: a plugin outside ``[plugins] prefer`` lost the bare name."""
        with self._lock:
            if name in self._warned_shadowed:
                return
            self._warned_shadowed.add(name)

        versions = {p: (self._plugins[p].distribution, self._plugins[p].version)
                    for p in [winner, *losers]}
        warnings.warn(shadowed_message(name, winner, losers, versions),
                      ShadowedModelWarning, stacklevel=4)

    def models(self, pattern: str | None = None, *, pretrained: bool | None = None,
               plugin: str | None = None, tags: bool = False) -> list[ListedModel]:
        """Rows of ``zoo list``: every name to type, sorted; with ``tags=True`` one row
        per ``name.tag`` (timm's ``list_models(pretrained=True)`` spelling)."""
        if plugin is not None and plugin not in self._plugins:
            raise UnknownModelError(f"no plugin named {plugin!r}; plugins: "
                                    f"{', '.join(sorted(self._plugins)) or 'none'}")
        per_plugin = {p.name: self._names_of(p) for p in self._plugins.values()
                      if plugin is None or p.name == plugin}
        owners: dict[str, list[str]] = {}
        for pname, names in per_plugin.items():
            for name in names:
                owners.setdefault(name, []).append(pname)
        rows: list[ListedModel] = []
        for name, provs in owners.items():
            try:
                chosen = self._choose(name, provs)
            except DuplicateModelError:
                rows += [ListedModel(f"{p}/{name}", p, per_plugin[p][name]) for p in provs]
                continue
            losers = [p for p in provs if p != chosen]
            rows.append(ListedModel(name, chosen, per_plugin[chosen][name],
                                    shadows=tuple(f"{p}/{name}" for p in losers)))
            rows += [ListedModel(f"{p}/{name}", p, per_plugin[p][name],
                                 shadowed_by=f"{chosen}/{name}")
                     for p in losers if p not in self.catalog.prefer]
        out: list[ListedModel] = []
        for row in rows:
            if plugin is not None and row.plugin != plugin:
                continue
            if pretrained is not None and pretrained != bool(row.tags):
                continue
            base = row.name.rpartition("/")[2]
            labels = [(f"{row.name}.{t}", (t,)) for t in row.tags] if tags else [
                (row.name, row.tags)]
            for label, row_tags in labels:
                if pattern and not fnmatch.fnmatchcase(label, pattern) \
                        and not fnmatch.fnmatchcase(base, pattern) \
                        and not fnmatch.fnmatchcase(label.rpartition("/")[2], pattern):
                    continue
                out.append(ListedModel(label, row.plugin, row_tags, row.shadows,
                                       row.shadowed_by))
        return sorted(out, key=lambda r: r.name)

    def list_models(self, pattern: str | None = None, *, pretrained: bool | None = None,
                    plugin: str | None = None, tags: bool = False) -> list[str]:
        return [row.name for row in self.models(pattern, pretrained=pretrained, plugin=plugin,
                                                tags=tags)]

    def resolve(self, name: str) -> Resolved:
        """Map a user-facing name to one plugin's spec (aliases, ``plugin/``, ``.tag``)."""
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgumentError(f"model name must be a non-empty string, got {name!r}")
        seen = {name}
        while name in self.catalog.aliases:
            name = self.catalog.aliases[name]
            if name in seen:
                raise InvalidArgumentError(f"alias loop in registry.toml [aliases] at {name!r}")
            seen.add(name)
        if "/" in name:
            pname, _, base = name.partition("/")
            if pname not in self._plugins:
                raise UnknownModelError(self._unknown_message(name, plugin=pname))
            if self._plugins[pname].status == "blocked":
                raise UnknownModelError(self._unknown_message(name, blocked=pname))
            names = self._names_of(self._plugins[pname])

            def providers(n: str) -> list[str]:
                return [pname] if n in names else []
        else:
            base = name
            providers = self.providers
        candidates = providers(base)
        tag = None
        if not candidates and "." in base:  # timm-style arch.tag
            arch, _, maybe_tag = base.partition(".")
            if providers(arch):
                base, tag, candidates = arch, maybe_tag, providers(arch)
        if not candidates:
            raise UnknownModelError(self._unknown_message(name))
        chosen = self._choose(base, candidates)
        spec = self._spec(self._plugins[chosen], base)
        if tag is not None and spec.weights_tag(tag) is None:
            raise UnknownModelError(
                f"model {spec.qualified_name!r} has no weights tag {tag!r}; tags: "
                f"{', '.join(w.tag for w in spec.weights) or 'none (no pretrained weights)'}"
            )
        return Resolved(spec, tag)

    def _unknown_message(self, name: str, plugin: str | None = None,
                         blocked: str | None = None) -> str:
        return unknown_message(name, plugin, blocked, plugins=self._plugins,
                               names_of=self._names_of, failed=self.failed_plugins())

    def _spec(self, plugin: _Plugin, name: str) -> BackboneSpec:
        key = (plugin.name, name)
        with self._lock:
            if key in self._spec_cache:
                return self._spec_cache[key]
            if name in plugin.specs:
                spec = plugin.specs[name]
            else:
                family, _ = self._family_names(plugin)[name]
                try:
                    spec = family.get_spec(name)
                except Exception as exc:
                    raise SpecError(f"plugin {plugin.name!r} could not describe model "
                                    f"{name!r}: {exc}") from exc
            spec = spec.replace(plugin=plugin.name, distribution=plugin.distribution,
                                distribution_version=plugin.version)
            spec = apply_pins(spec, self.catalog.pins_for(plugin.name, name))
            if spec.default_weights is None and spec.weights:  # what "default" loads, named
                spec = spec.replace(default_weights=spec.weights[0].tag)
            self._spec_cache[key] = spec
            return spec


# -- the default registry, built on first use -------------------------------------------

_default: Registry | None = None
_default_lock = threading.Lock()


def get_registry() -> Registry:
    global _default
    with _default_lock:
        if _default is None:
            _default = Registry()
        return _default


def reset_registry(registry: Registry | None = None) -> None:
    """Drop (or replace) the default registry; the next call rebuilds it."""
    global _default
    with _default_lock:
        _default = registry


def list_models(pattern: str | None = None, *, pretrained: bool | None = None,
                plugin: str | None = None, tags: bool = False) -> list[str]:
    """Model names, optionally filtered by a wildcard pattern, weights and plugin.

    With ``tags=True`` every pretrained ``name.tag`` is listed instead (timm's spelling).
    A name that a plugin outside ``[plugins] prefer`` also registers is listed twice:
    bare (the preferred plugin's) and ``plugin/name`` (the shadowed one).

    >>> list_models("zoonet_*")
    ['zoonet_m', 'zoonet_s']
    >>> "zoonet_s" in list_models(pretrained=True, plugin="zoonet")
    True
    >>> list_models("zoonet_s", tags=True)
    ['zoonet_s.digits04', 'zoonet_s.glyphs']
    """
    return get_registry().list_models(pattern, pretrained=pretrained, plugin=plugin, tags=tags)


def get_model_info(name: str) -> BackboneSpec:
    """The resolved spec of one model: plugin, weights tags, head, stages, data config.

    >>> info = get_model_info("zoonet_s")
    >>> info.plugin, info.head, info.data_config.input_size
    ('zoonet', 'head', (3, 32, 32))
    """
    return get_registry().resolve(name).spec


def list_plugins() -> list[PluginInfo]:
    """Every plugin found, with its distribution, version, status and model count.

    >>> [p.status for p in list_plugins() if p.name == "zoonet"]
    ['ok']
    """
    return get_registry().plugins()


def resolve_builder(spec: BackboneSpec) -> Callable[..., Any]:
    """Import a lazy ``"module:function"`` builder, with an error naming the plugin."""
    if callable(spec.builder):
        return spec.builder
    module, _, attr = str(spec.builder).partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise SpecError(
            f"plugin {spec.plugin!r} ({spec.distribution}) declares builder {spec.builder!r} "
            f"for {spec.name!r}, which cannot be imported: {exc}"
        ) from exc
    if not callable(obj):
        raise SpecError(f"builder {spec.builder!r} of plugin {spec.plugin!r} is not callable")
    return obj  # type: ignore[no-any-return]
