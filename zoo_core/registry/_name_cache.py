"""Plugin families' name lists, cached on disk so ``zoo list`` never imports torch.

The cache key is the plugin distribution's version and the family's ``version``: a new
timm release lists its names once, then every listing reads the JSON file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from zoo_core._specs import BackboneFamily
from zoo_core.errors import ZooError

__all__ = ["cached_family_list"]

log = logging.getLogger("zoo_core.registry")


def _cache_root() -> Path:
    from zoo_core.weights._weights import cache_dir

    return cache_dir()


def cached_family_list(plugin: str, distribution: str, version: str,
                       family: BackboneFamily) -> Mapping[str, list[str]]:
    """The family's name list, rebuilt only when the plugin or family version changes."""
    key = [distribution, version, family.name, family.version]
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
    try:
        path = _cache_root() / "names" / f"{plugin}-{family.name}-{digest}.json"
    except ZooError as exc:  # an unusable cache root only costs speed here; a download
        log.info("name cache not used: %s", exc)  # that needs it says so
        return {str(k): list(v) for k, v in family.list_names().items()}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("key") == key and isinstance(data.get("names"), dict):
            return data["names"]  # type: ignore[no-any-return]
    except (OSError, ValueError):
        pass
    names = {str(k): list(v) for k, v in family.list_names().items()}
    try:
        import tempfile

        from zoo_core._safefs import make_dirs

        make_dirs(path.parent)  # 0700 unless shared; the temp file is created exclusively
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"key": key, "names": names}, fh)
        os.replace(tmp, path)  # readers never see a half-written list
    except OSError as exc:  # a read-only cache only costs speed
        log.info("could not write name cache %s: %s", path, exc)
    return names
