"""Which models ``zoo rank`` can score right now: every listed model and weights tag whose
pretrained weights can be had without waiting on a network that is not there.

Availability is decided from what is on disk first, never by attempting a download:

| source | available when |
|---|---|
| ``pkg:`` | the installed package ships the file (and its sha256 pin matches) |
| a local path, ``file://`` | the file or directory exists |
| ``http(s)://`` | it is in zoo_core's download cache, or its host answers a TCP connect |
| ``hf-hub:`` | it is in huggingface_hub's cache, or (not ``HF_HUB_OFFLINE``) the Hub answers |

A host is probed once per run, with one connect of at most ``PROBE_TIMEOUT_S`` (no
retries), so an offline machine skips a thousand Hub-hosted candidates in well under a
second. Candidates are ordered with those on disk first, so a ``--budget`` is spent on
what costs no download.
"""

from __future__ import annotations

import fnmatch
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from zoo_core._specs import BackboneSpec, WeightsSpec

PROBE_TIMEOUT_S = 2.0
ON_DISK = ("pkg", "local", "cached")


@dataclass(frozen=True)
class Candidate:
    """One (model, weights tag) to score; ``how`` says where its weights come from."""

    name: str  # "arch.tag" (plugin-qualified "plugin/arch.tag" when the name is ambiguous)
    model: str  # the name as listed (build_model's first argument)
    tag: str
    how: str  # pkg | local | cached | download


@dataclass(frozen=True)
class Skipped:
    """A listed model (or tag) that cannot be ranked, and why."""

    name: str
    reason: str
    count: int = 1  # models this entry stands for ("1118 models of plugin timm")


def _entry_path(url: str) -> Path:
    """zoo_core's download-cache path for ``url`` (the module moved once; accept both)."""
    try:
        from zoo_core.weights._weights_cache import entry_path  # type: ignore[import-not-found]
    except ImportError:
        from zoo_core.weights._weights import _entry_path as entry_path
    return Path(entry_path(url))


class _Hosts:
    """TCP reachability of hosts (or the proxy for them), probed once each with a hard
    deadline (:func:`zoo_core.weights._offline.probe`)."""

    def __init__(self, timeout: float = PROBE_TIMEOUT_S) -> None:
        self.timeout = timeout
        self.known: dict[tuple[str, int], bool] = {}

    def reachable(self, url: str) -> bool:
        from zoo_core.weights._offline import probe, target

        key = target(url)
        if key is None:
            return False
        if key not in self.known:
            self.known[key] = probe(*key, timeout=self.timeout, dns_timeout=self.timeout)[0]
        return self.known[key]


def availability(wspec: WeightsSpec, hosts: _Hosts) -> tuple[str | None, str]:
    """``(how, note)``: how the weights can be had now, or ``(None, why not)``."""
    source = wspec.source
    if source.startswith("pkg:"):
        from zoo_core.errors import ZooError
        from zoo_core.weights._weights import fetch_weights

        try:
            fetch_weights(source, sha256=wspec.sha256, filename=wspec.filename)
        except ZooError as exc:
            return None, str(exc)
        return "pkg", source
    if source.startswith(("http://", "https://")):
        entry = _entry_path(source)
        if wspec.extra.get("format") == "torch-pickle":  # stored converted, as .safetensors
            entry = entry.with_name(entry.name.rsplit(".", 1)[0] + ".safetensors")
        if entry.is_file():
            return "cached", str(entry)
        if hosts.reachable(source):
            return "download", source
        host = urllib.parse.urlsplit(source).netloc
        return None, (f"not in the download cache and {host} cannot be reached (offline?); "
                      "fetch it once with network access, or pin a local copy in "
                      "ZOO_CORE_REGISTRY")
    if source.startswith("hf-hub:"):
        return _hub_availability(wspec, hosts)
    path = source[len("file://"):] if source.startswith("file://") else source
    if Path(path).expanduser().exists():
        return "local", source
    return None, f"weights file {path} does not exist"


def _hub_availability(wspec: WeightsSpec, hosts: _Hosts) -> tuple[str | None, str]:
    from huggingface_hub import constants, try_to_load_from_cache

    repo, _, inline_rev = wspec.source[len("hf-hub:"):].strip().partition("@")
    revision = inline_rev or wspec.revision
    try:
        found = try_to_load_from_cache(repo.strip("/"), wspec.filename, revision=revision)
    except Exception:  # a malformed repo id: let the build say so precisely
        found = None
    if isinstance(found, str):
        return "cached", found
    if constants.HF_HUB_OFFLINE:
        return None, "not in the Hugging Face cache, and HF_HUB_OFFLINE is set"
    if hosts.reachable(constants.ENDPOINT):
        return "download", wspec.source
    return None, (f"not in the Hugging Face cache, and "
                  f"{urllib.parse.urlsplit(constants.ENDPOINT).netloc} cannot be reached "
                  "(offline?)")


def _arch_pattern(pattern: str) -> str:
    """The part of ``pattern`` that names architectures (``zoonet_s.digits04`` ->
    ``zoonet_s``; a pattern without a tag is its own)."""
    base = pattern.rpartition("/")[2]
    prefix = pattern[: len(pattern) - len(base)]
    return prefix + base.partition(".")[0] if "." in base else pattern


def _listed_tags(reg: Any) -> dict[str, tuple[str, ...]]:
    """Model name -> its weights tags, from the listing (no model described)."""
    out: dict[str, tuple[str, ...]] = {}
    for plugin in reg._plugins.values():
        for name, tags in reg._names_of(plugin).items():
            out[name] = out.get(name, ()) + tuple(tags)
    return out


def _family_listed(reg: Any) -> dict[str, str]:
    """Model name -> plugin, for models listed lazily by a ``BackboneFamily`` (timm,
    torchvision): describing one means importing and instantiating it (about a second)."""
    out: dict[str, str] = {}
    for plugin in reg._plugins.values():
        if plugin.status == "ok" and plugin.families:
            out.update(dict.fromkeys(reg._family_names(plugin), plugin.name))
    return out


def find_candidates(patterns: Sequence[str] | None = None, *, progress: bool = False) -> tuple[
        list[Candidate], list[Skipped]]:
    """Every (model, tag) matching ``patterns`` whose weights are available now.

    A pattern matches the architecture (``'zoonet*'``: every tag of it) or the
    ``arch.tag`` name (``'*.digits04'``). Returns the candidates, on-disk ones first,
    and the skipped names with their reasons (plugins that failed to load included).

    Without patterns, models of lazily listed families (timm's ~1,200 architectures,
    torchvision's) are not described one by one (about a second each): they are counted
    as skipped, with the advice to name them (``--models 'resnet*'``).
    """
    import sys

    from tqdm import tqdm

    from zoo_core.errors import ZooError
    from zoo_core.registry._registry import get_registry

    reg = get_registry()
    hosts = _Hosts()
    pats = list(patterns) if patterns else ["*"]
    tags = _listed_tags(reg)
    names: dict[str, None] = {}
    for pat in pats:
        for name in reg.list_models(_arch_pattern(pat), pretrained=True):
            listed = tags.get(name.rpartition("/")[2], ())
            if fnmatch.fnmatchcase(name, pat) or any(
                    fnmatch.fnmatchcase(f"{name}.{t}", pat) for t in listed):
                names.setdefault(name)  # described below only if a tag can match
    found: list[Candidate] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    if not patterns:
        lazy = _family_listed(reg)
        per_plugin: dict[str, int] = {}
        for name in [n for n in names if n.rpartition("/")[2] in lazy]:
            del names[name]
            plugin = lazy[name.rpartition("/")[2]]
            per_plugin[plugin] = per_plugin.get(plugin, 0) + 1
        skipped += [Skipped(f"{n} models of plugin {p}", "listed lazily and costly to "
                            "describe one by one (about a second each): name the ones to "
                            "rank, e.g. --models 'resnet*'", count=n)
                    for p, n in per_plugin.items()]
    for name in tqdm(list(names), desc="rank: finding weights", unit="model", leave=False,
                     disable=True if not progress or len(names) < 20 else None,
                     file=sys.stderr):
        try:
            spec: BackboneSpec = reg.resolve(name).spec
        except ZooError as exc:
            skipped.append(Skipped(name, f"cannot be described: {exc}"))
            continue
        for w in spec.weights:
            full = f"{name}.{w.tag}"
            if full in seen or not any(fnmatch.fnmatchcase(full, p) or fnmatch.fnmatchcase(
                    name, p) for p in pats):
                continue
            seen.add(full)
            how, note = availability(w, hosts)
            if how is None:
                skipped.append(Skipped(full, note))
            else:
                found.append(Candidate(full, name, w.tag, how))
    for p in reg.plugins():
        if p.status == "failed":
            skipped.append(Skipped(f"plugin {p.name}", f"failed to load, its models are "
                                   f"missing: {p.error}"))
    found.sort(key=lambda c: c.how not in ON_DISK)  # stable: listing order within each
    return found, skipped

