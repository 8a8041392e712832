"""Hugging Face Hub round trip: ``save_pretrained``, ``push_to_hub`` and ``hf-hub:`` loading.

A saved / pushed model directory holds exactly three files:

* ``model.safetensors``: the state dict (contiguous, shared tensors cloned, metadata
  ``format=pt``). Never a pickle.
* ``config.json``: timm-compatible (``architecture``, ``num_classes``, ``num_features``,
  ``label_names``, ``pretrained_cfg`` with ``classifier``, ``first_conv``, ``input_size``,
  ``mean``, ``std``, ``interpolation``, ``crop_pct``, ``num_classes``; for timm
  architectures also timm's ``model_args``), with zoo_core's own fields under ONE key,
  ``"zoo_core"``. Keys sorted, indent 2.
* ``README.md``: a model card with YAML front matter, written afresh every time.

Loading (``build_model("hf-hub:org/name[@revision]")``) treats ``config.json`` as data,
never as code: it may only name a plugin and model that are installed and registered
(``zoo_core`` key), or a timm architecture (a repo pushed by timm's own
``push_to_hf_hub``, no ``zoo_core`` key). Weights come from ``model.safetensors`` of the
same commit as ``config.json``; pickled weights are refused.

Strategy when loading from the Hub (``strategy=None``, or ``"auto"`` without
``num_train_samples``/``similarity`` hints):

* same ``num_classes`` as the repo (or ``num_classes=None``): the head is kept and the
  strategy the model was pushed with is kept (a model pushed with ``scratch`` is loaded
  with ``finetune``: its trained weights, everything trainable); a repo without a recorded
  strategy (pushed by timm) is loaded with ``finetune``;
* another ``num_classes``: the pushed head is dropped (``model.zoo.dropped_head_keys``)
  and ``linear_probe`` is applied.

An explicit strategy always wins; ``"auto"`` with hints applies the transfer table.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo_core._registry import HUB_PREFIX
from zoo_core._specs import DataConfig, ModelInfo, WeightsSpec
from zoo_core.errors import (
    HubError,
    InvalidArgumentError,
    UnknownModelError,
    WeightsError,
    ZooError,
)

if TYPE_CHECKING:  # pragma: no cover
    import argparse

    from torch import nn

__all__ = ["add_cli", "build_from_hub", "push_to_hub", "save_pretrained"]

log = logging.getLogger("zoo_core.hub")

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
PICKLE_NAMES = ("pytorch_model.bin", "pytorch_model.pth", "model.pth", "model.pt")
ZOO_KEY = "zoo_core"
CONFIG_FORMAT = 1

_TIMM_BUILDER = "zoo_core_plugins.timm_plugin:create_model"
# timm.create_model keywords that load things or change what is built: never taken from a
# remote config.json's model_args.
_MODEL_ARGS_DENY = frozenset({
    "num_classes", "model_name", "pretrained", "pretrained_cfg", "pretrained_cfg_overlay",
    "checkpoint_path", "cache_dir", "features_only", "scriptable", "exportable", "no_jit",
    "pretrained_strict",
})
_NAME_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_RE = re.compile(rf"{_NAME_PART}/{_NAME_PART}")
_REPO_NAME_ONLY_RE = re.compile(_NAME_PART)
_REV_PART = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
_REV_RE = re.compile(rf"{_REV_PART}(?:/{_REV_PART})*")
_IDENT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?")
_SHA_RE = re.compile(r"[0-9a-f]{40}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
# License identifiers the Hub knows (the common ones); anything else becomes "other".
_HUB_LICENSES = frozenset({
    "apache-2.0", "mit", "bsd", "bsd-2-clause", "bsd-3-clause", "bsd-3-clause-clear",
    "cc0-1.0", "cc-by-2.0", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0",
    "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0", "cc-by-nc-nd-4.0",
    "cc-by-nc-sa-4.0", "gpl-2.0", "gpl-3.0", "lgpl-2.1", "lgpl-3.0", "agpl-3.0", "mpl-2.0",
    "afl-3.0", "artistic-2.0", "bsl-1.0", "ecl-2.0", "epl-2.0", "isc", "unlicense", "wtfpl",
    "openrail", "llama2", "llama3", "gemma", "unknown", "other",
})


# ------------------------------------------------------------------------ validation


def _check_repo_id(repo_id: object, *, allow_no_namespace: bool = False) -> str:
    """A Hub repo id, checked before it is used in a URL or a cache path."""
    if not isinstance(repo_id, str):
        raise InvalidArgumentError(f"repo id must be a string, got {type(repo_id).__name__}")
    ok = _REPO_RE.fullmatch(repo_id) or (
        allow_no_namespace and _REPO_NAME_ONLY_RE.fullmatch(repo_id)
    )
    if not ok or ".." in repo_id or "--" in repo_id or repo_id.endswith(".git"):
        form = "org/name or name" if allow_no_namespace else "org/name"
        raise InvalidArgumentError(
            f"invalid Hub repo id {repo_id!r}: expected {form} made of letters, digits, "
            "'-', '_' and '.' (no '..', '--', leading/trailing '.'/'-', absolute paths or "
            "extra '/')"
        )
    return repo_id


def _check_revision(revision: object) -> str:
    if not isinstance(revision, str):
        raise InvalidArgumentError(
            f"revision must be a string, got {type(revision).__name__}")
    if (not _REV_RE.fullmatch(revision) or ".." in revision or len(revision) > 255
            or revision.endswith((".lock", "."))):
        raise InvalidArgumentError(
            f"invalid revision {revision!r}: expected a branch, tag or commit sha made of "
            "letters, digits, '-', '_', '.' and '/' (no '..', no leading '/', '.' or '-')"
        )
    return revision


def parse_hub_name(name: str) -> tuple[str, str | None]:
    """``hf-hub:org/name[@rev]`` -> ``(repo_id, revision)``, validated.

    >>> parse_hub_name("hf-hub:org/model@v1")
    ('org/model', 'v1')
    >>> parse_hub_name("hf-hub:org/../etc")
    Traceback (most recent call last):
    ...
    zoo_core.errors.InvalidArgumentError: invalid Hub repo id 'org/../etc': ...
    """
    if not isinstance(name, str) or not name.startswith(HUB_PREFIX):
        raise InvalidArgumentError(f"expected hf-hub:org/name[@revision], got {name!r}")
    body = name[len(HUB_PREFIX):]
    repo_id, at, revision = body.partition("@")
    _check_repo_id(repo_id)
    if at:
        _check_revision(revision)
        return repo_id, revision
    return repo_id, None


# ------------------------------------------------------------------- save_pretrained


def save_pretrained(
    model: nn.Module,
    save_directory: str | os.PathLike[str],
    *,
    metrics: Mapping[str, Any] | None = None,
    training_data: str | Mapping[str, Any] | None = None,
    label_names: Sequence[str] | None = None,
    license: str | None = None,  # noqa: A002  (the Hub's name for it)
    model_card_extra: str | Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``README.md`` into ``save_directory``.

    ``model`` must have been built by :func:`zoo_core.build_model` (it reads ``model.zoo``).
    ``metrics`` (name -> value) and ``training_data`` (a description, or a mapping such as
    ``{"name": ..., "num_images": ...}``) go into the model card; ``label_names`` and
    ``license`` override what ``model.zoo`` says; ``model_card_extra`` is markdown appended
    to the card (a string) or extra YAML metadata (a mapping).

    The files are written into a temporary directory next to the target and moved into
    place only once all three are complete: a failure never leaves a half-written
    directory. Other files in an existing ``save_directory`` are left alone. Returns the
    directory.
    """
    return _save(model, Path(save_directory), metrics=metrics, training_data=training_data,
                 label_names=label_names, license=license, model_card_extra=model_card_extra)


def _save(
    model: Any,
    target: Path,
    *,
    metrics: Mapping[str, Any] | None,
    training_data: str | Mapping[str, Any] | None,
    label_names: Sequence[str] | None,
    license: str | None,  # noqa: A002
    model_card_extra: str | Mapping[str, Any] | None,
    repo_id: str | None = None,
) -> Path:
    info = _model_info(model)
    labels = _labels_for_save(info, label_names)
    _check_card_inputs(metrics, training_data, model_card_extra, license)
    target = target.expanduser()
    if target.exists() and not target.is_dir():
        raise HubError(f"cannot save into {target}: it exists and is not a directory")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; the saved folder is a normal one
    except OSError as exc:
        raise HubError(f"cannot create {target}: {exc}") from exc
    try:
        weights_sha = _write_weights(model, tmp / WEIGHTS_NAME)
        config = _config(model, info, labels, weights_sha, license, tmp)
        (tmp / CONFIG_NAME).write_text(
            json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
            encoding="utf-8")
        card = _model_card(info, config, labels, metrics=metrics, training_data=training_data,
                           license=license, extra=model_card_extra, repo_id=repo_id)
        (tmp / CARD_NAME).write_text(card, encoding="utf-8")
        _move_into_place(tmp, target)
    except ZooError:
        raise
    except OSError as exc:
        from zoo_core._safefs import disk_full_error, is_disk_full

        if is_disk_full(exc):
            full = disk_full_error(exc, target.parent, None, "the saved model",
                                   "Free space there and save again")
            raise HubError(f"{full}; nothing was written to {target}") from exc
        raise HubError(f"saving {info.name!r} to {target} failed: {exc}; nothing was "
                       "written there") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("saved %s to %s (weights sha256 %s)", info.name, target, weights_sha)
    return target


def _model_info(model: Any) -> ModelInfo:
    info = getattr(model, "zoo", None)
    if not isinstance(info, ModelInfo):
        raise HubError(
            f"{type(model).__name__} has no zoo_core metadata (model.zoo): save_pretrained / "
            "push_to_hub need a model built by zoo_core.build_model(...), which records the "
            "architecture, plugin, weights and strategy that the config and model card "
            "describe. Build the model with zoo_core.build_model and load your weights into it"
        )
    return info


def _labels_for_save(info: ModelInfo, label_names: Sequence[str] | None) -> list[str] | None:
    if label_names is None:
        return list(info.label_names) if info.label_names else None
    if isinstance(label_names, str):
        raise InvalidArgumentError("label_names must be a sequence of strings, not one string")
    labels = [str(x) for x in label_names]
    if len(labels) != info.num_classes:
        raise InvalidArgumentError(
            f"label_names has {len(labels)} entries but the model has {info.num_classes} "
            "classes")
    return labels


def _check_card_inputs(metrics: object, training_data: object, extra: object,
                       license: object) -> None:  # noqa: A002
    if metrics is not None and not isinstance(metrics, Mapping):
        raise InvalidArgumentError("metrics must be a mapping such as {'accuracy': 0.93}")
    if training_data is not None and not isinstance(training_data, (str, Mapping)):
        raise InvalidArgumentError("training_data must be a string or a mapping")
    if extra is not None and not isinstance(extra, (str, Mapping)):
        raise InvalidArgumentError(
            "model_card_extra must be markdown (str) or YAML metadata (mapping)")
    if license is not None and not isinstance(license, str):
        raise InvalidArgumentError("license must be a string such as 'apache-2.0'")


def _state_for_save(model: Any) -> dict[str, Any]:
    """The state dict as safetensors wants it: dense, contiguous, CPU, no shared storage."""
    import torch

    out: dict[str, Any] = {}
    seen: set[tuple[int, int]] = set()
    for key, value in model.state_dict().items():
        if not isinstance(value, torch.Tensor):
            raise HubError(f"state dict entry {key!r} is a {type(value).__name__}, not a "
                           "tensor; safetensors stores tensors only")
        if value.device.type == "meta":
            raise HubError(f"tensor {key!r} is on the meta device (never materialised); "
                           "there is nothing to save")
        if value.layout is not torch.strided:
            raise HubError(f"tensor {key!r} has layout {value.layout}; only dense tensors "
                           "can be saved as safetensors")
        t = value.detach()
        if t.device.type != "cpu":
            t = t.to("cpu")
        t = t.contiguous()
        storage = t.untyped_storage()
        ident = (storage.data_ptr(), storage.nbytes())
        if ident in seen or storage.nbytes() != t.numel() * t.element_size():
            t = t.clone()  # tied weights or a view into a bigger buffer (mmap'd file)
        elif t.numel():
            seen.add(ident)
        out[key] = t
    return out


def _write_weights(model: Any, path: Path) -> str:
    from safetensors.torch import save_file

    from zoo_core._weights import sha256_file

    state = _state_for_save(model)
    try:
        save_file(state, str(path), metadata={"format": "pt"})
    except Exception as exc:  # SafetensorError carries a full disk only as text
        from zoo_core._convert import write_error

        needed = sum(t.numel() * t.element_size() for t in state.values())
        raise HubError(f"{write_error(exc, path.parent.parent, needed, WEIGHTS_NAME)}; "
                       "nothing was saved") from exc
    return sha256_file(path)


def _is_timm_model(model: Any) -> bool:
    cfg = getattr(model, "pretrained_cfg", None)
    return (type(model).__module__.startswith("timm.") and isinstance(cfg, dict)
            and isinstance(cfg.get("architecture"), str))


def _public_source(source: str | None) -> str | None:
    """A weights source fit for a public config: no local paths, no URL credentials."""
    if source is None:
        return None
    if source.startswith((HUB_PREFIX, "pkg:")):
        return source
    if source.startswith(("http://", "https://")):
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(source)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    name = source.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]
    return f"local file {name}" if name else "local file"


def _hub_license(text: str | None) -> tuple[str | None, str | None]:
    """(Hub license id, free-text name when the id is "other")."""
    if not text:
        return None, None
    token = re.split(r"[\s(;,]", text.strip(), maxsplit=1)[0].lower()
    if token in _HUB_LICENSES:
        return token, None
    slug = re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")[:64] or "custom"
    return "other", slug


def _config(model: Any, info: ModelInfo, labels: list[str] | None, weights_sha: str,
            license: str | None, tmp: Path) -> dict[str, Any]:  # noqa: A002
    from zoo_core import __version__

    config: dict[str, Any] | None = None
    timm_model = _is_timm_model(model)
    if timm_model:
        config = _timm_config(model, tmp)
    dc = info.data_config
    data = {
        "input_size": list(dc.input_size),
        "mean": list(dc.mean),
        "std": list(dc.std),
        "interpolation": dc.interpolation,
        "crop_pct": dc.crop_pct,
    }
    lic = license or info.license
    if config is None:
        timm_model = False
        config = {"architecture": info.name, "pretrained_cfg": {}}
        num_features = getattr(model, "num_features", None)
        if isinstance(num_features, int) and not isinstance(num_features, bool):
            config["num_features"] = num_features
    pcfg = config["pretrained_cfg"]
    fixed = bool(pcfg.get("fixed_input_size"))
    for key, value in data.items():
        if key == "input_size" and fixed and "input_size" in pcfg:
            continue  # the architecture fixes it; timm's value is the truth
        pcfg[key] = value
    pcfg["classifier"] = info.head
    pcfg.setdefault("first_conv", dc.first_conv)
    if pcfg.get("first_conv") is None:
        pcfg.pop("first_conv")
    pcfg["num_classes"] = info.num_classes
    pcfg.pop("tag", None)  # timm's tag names ITS pretrained weights, not these
    pcfg.pop("label_names", None)
    if lic:
        pcfg["license"] = lic
    else:
        pcfg.pop("license", None)
    config["num_classes"] = info.num_classes
    if labels:
        config["label_names"] = labels
    else:
        config.pop("label_names", None)
    config[ZOO_KEY] = {
        "format": CONFIG_FORMAT,
        "plugin": info.plugin,
        "distribution": info.distribution,
        "distribution_version": info.distribution_version,
        "model": info.name,
        "strategy": info.strategy,
        "strategy_reason": info.strategy_reason,
        "base_weights": {
            "tag": info.weights_tag,
            "source": _public_source(info.weights_source),
            "sha256": info.weights_sha256,
        },
        "base_model": info.base_model,
        "weights_sha256": weights_sha,
        "zoo_core_version": __version__,
        "head": info.head,
        "stages": list(info.stages),
        "dropped_head_keys": list(info.dropped_head_keys),
        "license": lic,
        "library": "timm" if timm_model else "zoo_core",
    }
    return config


def _timm_config(model: Any, tmp: Path) -> dict[str, Any] | None:
    """timm's own config.json for this model (so plain timm can load the repo)."""
    try:
        from timm.models._hub import save_config_for_hf

        path = tmp / ".timm-config.json"
        save_config_for_hf(model, str(path))
        config = json.loads(path.read_text(encoding="utf-8"))
        path.unlink()
    except Exception as exc:  # an exotic timm model: fall back to the generic config
        log.warning("timm could not describe %s (%s); writing a generic config.json",
                    type(model).__name__, exc)
        return None
    if not isinstance(config.get("pretrained_cfg"), dict):
        return None
    return config  # type: ignore[no-any-return]


# ------------------------------------------------------------------------ model card


def _model_card(info: ModelInfo, config: Mapping[str, Any], labels: list[str] | None, *,
                metrics: Mapping[str, Any] | None, training_data: Any, license: str | None,
                extra: str | Mapping[str, Any] | None, repo_id: str | None) -> str:  # noqa: A002
    from huggingface_hub import ModelCardData

    zoo = config[ZOO_KEY]
    timm_lib = zoo["library"] == "timm"
    scratch = info.weights_source is None
    lic_text = license or info.license
    lic_id, lic_name = _hub_license(lic_text)
    base_repo = None
    if not scratch:
        for candidate in (info.base_model, info.weights_source):
            if candidate and candidate.startswith(HUB_PREFIX):
                base_repo = candidate[len(HUB_PREFIX):].partition("@")[0]
                break
    tags = ["image-classification", "zoo_core", f"zoo_core-plugin-{info.plugin}"]
    if timm_lib:
        tags.append("timm")
    tags.append("trained-from-scratch" if scratch else "transfer-learning")
    meta: dict[str, Any] = {
        "library_name": "timm" if timm_lib else "zoo_core",
        "pipeline_tag": "image-classification",
        "tags": tags,
    }
    if lic_id:
        meta["license"] = lic_id
        if lic_name:
            meta["license_name"] = lic_name
    if base_repo:
        meta["base_model"] = base_repo
    if isinstance(extra, Mapping):
        meta.update(extra)
    front = ModelCardData(**meta).to_yaml()

    title = repo_id.rsplit("/", 1)[-1] if repo_id else info.name
    arch = f"{info.plugin}/{info.name}"
    dist = f"{info.distribution} {info.distribution_version}".strip()
    lines = [f"# {title}", ""]
    if scratch:
        lines += [
            f"Image classifier with the `{arch}` architecture, **trained from scratch, no "
            "pretrained weights** (random initialisation), built with "
            "[zoo_core](https://pypi.org/project/zoo-core/).", "",
        ]
    else:
        lines += [
            f"Image classifier fine-tuned from `{arch}` with "
            "[zoo_core](https://pypi.org/project/zoo-core/).", "",
        ]
    lines += ["## Model", "", f"- Architecture: `{info.name}` from zoo_core plugin "
              f"`{info.plugin}` (distribution `{dist or 'unknown'}`)"]
    if scratch:
        lines.append("- Base weights: none: trained from scratch, no pretrained weights")
    else:
        lines.append(f"- Base weights: tag `{info.weights_tag}`, source "
                     f"`{zoo['base_weights']['source']}`")
        if info.weights_sha256:
            lines.append(f"  (sha256 `{info.weights_sha256}`)")
        if info.base_model:
            lines.append(f"- Base model: `{info.base_model}`")
    lines.append(f"- Weights of this repo: `{WEIGHTS_NAME}`, sha256 `{zoo['weights_sha256']}`")
    dc = info.data_config
    lines += [
        f"- Input: {'x'.join(str(d) for d in dc.input_size)}, mean {list(dc.mean)}, std "
        f"{list(dc.std)}, interpolation `{dc.interpolation}`, crop_pct {dc.crop_pct}",
        f"- Head: `{info.head}`, {info.num_classes} classes"
        + (f" (new head; the pretrained one was dropped: "
           f"{', '.join(f'`{k}`' for k in info.dropped_head_keys)})"
           if info.dropped_head_keys else ""),
        "", "## Training", "",
        f"- Strategy: `{info.strategy}`: {info.strategy_reason}",
    ]
    if training_data is not None:
        lines.append(f"- Training data: {_render(training_data)}")
    else:
        lines.append("- Training data: not documented")
    lines += ["", "## Labels", ""]
    if labels:
        lines += [f"{i}. {name}" for i, name in enumerate(labels)]
    else:
        lines.append(f"{info.num_classes} classes, names not given (class index only).")
    if metrics:
        lines += ["", "## Evaluation", "", "| metric | value |", "|---|---|"]
        lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in metrics.items()]
    lines += ["", "## License", ""]
    if lic_text:
        lines.append(f"{lic_text}")
    else:
        lines.append("Not specified: check the licenses of the architecture and of any "
                     "pretrained weights before use.")
    rid = repo_id or "ORG/NAME"
    lines += [
        "", "## How to use", "", "```python", "import zoo_core", "",
        f'model = zoo_core.build_model("hf-hub:{rid}")  # same head and labels',
        f'new = zoo_core.build_model("hf-hub:{rid}", num_classes=10)  # new head',
        "```",
    ]
    if timm_lib:
        lines += ["", "or with plain timm:", "", "```python", "import timm", "",
                  f'model = timm.create_model("hf-hub:{rid}", pretrained=True)', "```"]
    if isinstance(extra, str) and extra.strip():
        lines += ["", extra.strip()]
    return f"---\n{front}\n---\n\n" + "\n".join(lines) + "\n"


def _render(value: Any) -> str:
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {v}" for k, v in value.items())
    return str(value)


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


# ------------------------------------------------------------------ moving into place


def _move_into_place(tmp: Path, target: Path) -> None:
    """A new directory appears whole (one rename); in an existing one each file is
    replaced by a rename after all three were written completely."""
    if not target.exists():
        try:
            os.rename(tmp, target)
            return
        except OSError:
            if not target.is_dir():
                raise
            # created concurrently: fall through to per-file replacement
    for name in (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME):
        os.replace(tmp / name, target / name)


# ----------------------------------------------------------------------- push_to_hub


def push_to_hub(
    model: nn.Module,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    create_pr: bool = False,
    metrics: Mapping[str, Any] | None = None,
    training_data: str | Mapping[str, Any] | None = None,
    label_names: Sequence[str] | None = None,
    license: str | None = None,  # noqa: A002
    model_card_extra: str | Mapping[str, Any] | None = None,
) -> str:
    """Save the model (see :func:`save_pretrained`) and push it to ``repo_id`` in ONE commit.

    The repo is created if missing (``private`` applies then); ``revision`` is a branch,
    created from ``main`` if missing. Files whose content did not change are not uploaded
    again. Returns the commit URL (a ``huggingface_hub.CommitInfo``, a ``str`` that also
    has ``.oid`` and ``.pr_url``). The commit is atomic: when it fails, the remote repo is
    left unchanged and :class:`~zoo_core.HubError` says so (the cause is chained).
    """
    _check_repo_id(repo_id, allow_no_namespace=True)
    if revision is not None:
        _check_revision(revision)
    info = _model_info(model)
    from zoo_core._push_guard import push_tmpdir, sweep_push_leftovers

    sweep_push_leftovers()  # copies left by pushes that were killed
    with push_tmpdir() as tmpdir:
        folder = _save(model, Path(tmpdir) / "model", metrics=metrics,
                       training_data=training_data, label_names=label_names, license=license,
                       model_card_extra=model_card_extra, repo_id=repo_id)
        message = commit_message or f"Upload {info.plugin}/{info.name} ({info.strategy}) " \
                                    "with zoo_core"
        return _push_folder(folder, repo_id, private=private, revision=revision,
                            commit_message=message, token=token, create_pr=create_pr)


def _push_folder(folder: Path, repo_id: str, *, private: bool | None, revision: str | None,
                 commit_message: str, token: str | None, create_pr: bool) -> str:
    from huggingface_hub import HfApi

    from zoo_core import __version__

    api = HfApi(token=token, library_name="zoo_core", library_version=__version__)
    where = repo_id + (f"@{revision}" if revision else "")
    from zoo_core._push_guard import ENV_PUSH_TIMEOUT, push_timeout

    try:
        with push_timeout():
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            repo_id = url.repo_id or repo_id
            if revision not in (None, "main"):
                api.create_branch(repo_id, branch=revision, exist_ok=True)
    except Exception as exc:
        raise HubError(
            f"cannot create or reach Hub repo {where!r}: {exc}. Nothing was uploaded; check "
            "the repo id, your token (`hf auth login` or HF_TOKEN) and the network, then "
            "push again"
        ) from exc
    files = [n for n in (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME) if (folder / n).is_file()]
    seconds = 0.0
    try:
        with push_timeout() as seconds:
            return api.upload_folder(  # type: ignore[no-any-return]
                repo_id=repo_id, folder_path=str(folder), allow_patterns=files,
                revision=revision, commit_message=commit_message, create_pr=create_pr,
            )
    except Exception as exc:
        if "timeout" in type(exc).__name__.lower() or "timed out" in str(exc).lower():
            raise HubError(
                f"pushing to Hub repo {where!r} timed out: no answer within {seconds:g} s "
                f"({ENV_PUSH_TIMEOUT}, per request and retry). The commit is atomic, but the "
                "server may still apply it after this: look at the repo's history before "
                "pushing again (pushing the same files twice is harmless)") from exc
        raise HubError(
            f"pushing to Hub repo {where!r} failed: {exc}. The push is a single atomic "
            f"commit, so the remote repo was left unchanged ({', '.join(files)} were not "
            "committed; any file data that reached the server is not part of the repo). "
            "Fix the cause (network, token, permissions, server status) and push again: "
            "files already stored are not uploaded twice"
        ) from exc


# ---------------------------------------------------------------------- build_from_hub


def build_from_hub(
    name: str,
    num_classes: int | None = None,
    strategy: str | None = None,
    *,
    num_train_samples: int | None = None,
    similarity: float | None = None,
    label_names: Sequence[str] | None = None,
    fast: bool = True,
    device: Any = None,
    registry: Any = None,
) -> nn.Module:
    """Build a model from ``hf-hub:org/name[@revision]`` (see the module docstring)."""
    from zoo_core._builder import _check_num_classes, build_from_spec
    from zoo_core._config_json import check_config
    from zoo_core._registry import get_registry
    from zoo_core._strategies import decide_strategy, parse_strategy

    repo_id, revision = parse_hub_name(name)
    reg = registry or get_registry()
    _check_num_classes(num_classes, reg.catalog.max_num_classes)
    config_path = _download_config(repo_id, revision, name)
    commit = _commit_of(config_path)
    config = _read_config(config_path, name)
    check_config(config, name, max_num_classes=reg.catalog.max_num_classes)
    zoo = config.get(ZOO_KEY)
    spec = _resolve_spec(reg, config, zoo, name)
    spec = _with_model_args(spec, config, name)

    repo_classes = _positive_int(config.get("num_classes"), "num_classes", name)
    pcfg = config.get("pretrained_cfg")
    if repo_classes is None and isinstance(pcfg, Mapping):
        repo_classes = _positive_int(pcfg.get("num_classes"), "pretrained_cfg.num_classes",
                                     name)
    if repo_classes is None:
        raise HubError(f"config.json of {name} has no num_classes; it is not a classifier "
                       "repo zoo_core can load")
    target = repo_classes if num_classes is None else num_classes
    same_head = target == repo_classes

    if strategy is None or (strategy == "auto" and num_train_samples is None
                            and similarity is None):
        parsed, reason = _default_strategy(zoo, same_head, repo_classes, target, name)
    else:
        parsed = parse_strategy(strategy)
        reason = f"chosen by the caller: {parsed}"
        if parsed.kind == "auto":
            kind, reason = decide_strategy(
                has_pretrained=True, num_train_samples=num_train_samples,
                num_classes=target, similarity=similarity, thresholds=reg.catalog.auto)
            parsed = parse_strategy(kind)

    pin = zoo.get("weights_sha256") if isinstance(zoo, Mapping) else None
    if pin is not None and not (isinstance(pin, str) and _SHA256_RE.fullmatch(pin)):
        raise HubError(f"config.json of {name} has a malformed zoo_core.weights_sha256")
    wspec: WeightsSpec | None = None
    if parsed.kind != "scratch":
        at = commit or revision
        source = f"{HUB_PREFIX}{repo_id}" + (f"@{at}" if at else "")
        wspec = WeightsSpec(
            tag="hub",
            source=source,
            sha256=pin,
            filename=WEIGHTS_NAME,
            num_classes=repo_classes,
            label_names=_config_labels(config, repo_classes, name),
            license=_config_license(config, zoo),
            description=f"weights of {name}",
            data_config=_config_data_config(pcfg, spec.data_config, name),
        )
        _fetch_hub_weights(repo_id, at, name, pin)
    extra = {"hub": {"repo_id": repo_id, "revision": revision, "commit": commit}}
    model = build_from_spec(spec, target, parsed, reason, wspec, label_names=label_names,
                            fast=fast, device=device, base_model=name, extra=extra)
    if same_head and wspec is not None and model.zoo.dropped_head_keys:
        raise HubError(
            f"config.json of {name} says {repo_classes} classes, but the head of its "
            f"{WEIGHTS_NAME} has another shape ({', '.join(model.zoo.dropped_head_keys)}); "
            "the repo's files do not belong together: push the model again with "
            "zoo_core.push_to_hub")
    return model


def _hub_errors() -> Any:
    from huggingface_hub import errors

    return errors


def _download_config(repo_id: str, revision: str | None, name: str) -> Path:
    import huggingface_hub

    from zoo_core import __version__

    e = _hub_errors()
    try:
        return Path(huggingface_hub.hf_hub_download(
            repo_id, CONFIG_NAME, revision=revision, library_name="zoo_core",
            library_version=__version__))
    except e.RepositoryNotFoundError as exc:
        raise HubError(f"cannot load {name}: repository {repo_id!r} not found (or private: "
                       "log in with `hf auth login` or set HF_TOKEN)") from exc
    except e.RevisionNotFoundError as exc:
        raise HubError(f"cannot load {name}: revision {revision!r} not found in {repo_id!r}; "
                       "check the branch, tag or commit sha") from exc
    except (e.LocalEntryNotFoundError, e.OfflineModeIsEnabled) as exc:
        raise HubError(
            f"cannot load {name}: its config.json is not in the local Hugging Face cache and "
            "cannot be downloaded (offline: HF_HUB_OFFLINE=1, or the Hub is unreachable). "
            "Load it once with network access to cache it") from exc
    except e.EntryNotFoundError as exc:
        raise HubError(f"cannot load {name}: the repo has no config.json, so it is not a "
                       "model pushed by zoo_core or timm") from exc
    except e.HFValidationError as exc:
        raise InvalidArgumentError(f"invalid Hub name {name!r}: {exc}") from exc
    except (e.HfHubHTTPError, OSError) as exc:
        raise HubError(f"cannot download config.json of {name}: {exc}") from exc


def _commit_of(path: Path) -> str | None:
    """The commit the cached file belongs to (``.../snapshots/<sha>/config.json``)."""
    parent = path.parent
    if parent.parent.name == "snapshots" and _SHA_RE.fullmatch(parent.name):
        return parent.name
    return None


def _read_config(path: Path, name: str) -> dict[str, Any]:
    from zoo_core._config_json import read_config

    return read_config(path, name)


def _resolve_spec(reg: Any, config: Mapping[str, Any], zoo: Any, name: str) -> Any:
    if zoo is not None:
        if not isinstance(zoo, Mapping):
            raise HubError(f"config.json of {name}: the {ZOO_KEY!r} key is not an object")
        plugin, model = zoo.get("plugin"), zoo.get("model")
        for field, value in (("plugin", plugin), ("model", model)):
            if not isinstance(value, str) or not _IDENT_RE.fullmatch(value):
                raise HubError(f"config.json of {name}: {ZOO_KEY}.{field} is missing or not a "
                               f"valid name ({value!r})")
        dist = zoo.get("distribution")
        dist = dist if isinstance(dist, str) and _DIST_RE.fullmatch(dist) else None
        version = zoo.get("distribution_version")
        version = version if isinstance(version, str) and re.fullmatch(
            r"[A-Za-z0-9.+!_-]{1,64}", version) else None
        try:
            return reg.resolve(f"{plugin}/{model}").spec
        except UnknownModelError as exc:
            error = exc
        installed = {p.name: p for p in reg.plugins()}
        if plugin not in installed:
            from zoo_core._config_json import install_hint

            raise HubError(
                f"{name} was pushed with zoo_core plugin {plugin!r}, which is not installed. "
                f"{install_hint(dist, version, reg.catalog.known_distributions)}") from error
        info = installed[plugin]
        if info.status != "ok":
            raise HubError(f"{name} needs zoo_core plugin {plugin!r}, which is installed "
                           f"({info.distribution} {info.version}) but {info.status}: "
                           f"{info.error}; see `zoo plugins`") from error
        hint = (f"; the repo was pushed with {dist} {version}, installed is "
                f"{info.distribution} {info.version}: upgrade with pip install -U "
                f"{info.distribution}" if dist else "")
        raise HubError(f"{name} needs model {model!r} of plugin {plugin!r}, which that "
                       f"plugin does not register{hint}") from error
    arch = config.get("architecture")
    if not isinstance(arch, str) or not _IDENT_RE.fullmatch(arch) or not isinstance(
            config.get("pretrained_cfg"), Mapping):
        raise HubError(
            f"config.json of {name} has neither a {ZOO_KEY!r} key (a repo pushed by zoo_core) "
            "nor timm's 'architecture' + 'pretrained_cfg' (a repo pushed by timm); zoo_core "
            "cannot tell which architecture to build")
    try:
        return reg.resolve(f"timm/{arch}").spec
    except UnknownModelError as exc:
        error = exc
    installed = {p.name: p for p in reg.plugins()}
    if "timm" not in installed or installed["timm"].status != "ok":
        raise HubError(f"{name} is a timm repo (architecture {arch!r}) but the zoo_core timm "
                       "plugin is not available; see `zoo plugins`") from error
    import importlib.metadata

    raise HubError(
        f"{name} needs timm architecture {arch!r}, which the installed timm "
        f"{importlib.metadata.version('timm')} does not have; upgrade timm "
        "(pip install -U timm)") from error


def _with_model_args(spec: Any, config: Mapping[str, Any], name: str) -> Any:
    """timm's reconstruction arguments (img_size, in_chans, ...) as plain JSON values."""
    args = config.get("model_args")
    if args is None or spec.builder != _TIMM_BUILDER:
        return spec
    if not isinstance(args, Mapping):
        raise HubError(f"config.json of {name}: model_args is not an object")

    def plain(value: Any) -> bool:
        if isinstance(value, (list, tuple)):
            return len(value) <= 64 and all(plain(v) for v in value)
        return value is None or isinstance(value, (bool, int, float, str))

    kwargs = {}
    for key, value in args.items():
        if key in _MODEL_ARGS_DENY:
            continue
        if not isinstance(key, str) or not key.isidentifier() or not plain(value):
            raise HubError(f"config.json of {name}: model_args[{key!r}] is not a plain value")
        kwargs[key] = value
    return spec.replace(builder_kwargs={**spec.builder_kwargs, **kwargs}) if kwargs else spec


def _positive_int(value: Any, field: str, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HubError(f"config.json of {name}: {field} must be a positive integer, got "
                       f"{value!r}")
    return value


def _config_labels(config: Mapping[str, Any], num_classes: int,
                   name: str) -> tuple[str, ...] | None:
    labels = config.get("label_names")
    if labels is None and isinstance(config.get("pretrained_cfg"), Mapping):
        labels = config["pretrained_cfg"].get("label_names")
    if labels is None:
        return None
    if isinstance(labels, Mapping):  # timm allows {index: name}
        try:
            by_index = {int(k): v for k, v in labels.items()}
        except (TypeError, ValueError):
            by_index = {}
        labels = [by_index.get(i) for i in range(num_classes)]
    if not isinstance(labels, list) or len(labels) != num_classes or not all(
            isinstance(x, str) for x in labels):
        log.warning("config.json of %s: label_names do not match its %d classes; ignored",
                    name, num_classes)
        return None
    return tuple(labels)


def _config_license(config: Mapping[str, Any], zoo: Any) -> str | None:
    for value in ((zoo or {}).get("license") if isinstance(zoo, Mapping) else None,
                  (config.get("pretrained_cfg") or {}).get("license")
                  if isinstance(config.get("pretrained_cfg"), Mapping) else None):
        if isinstance(value, str) and value:
            return value[:200]
    return None


def _config_data_config(pcfg: Any, default: DataConfig, name: str) -> DataConfig:
    if not isinstance(pcfg, Mapping):
        return default

    def numbers(value: Any, n: int | None, kind: type) -> tuple[Any, ...] | None:
        if not isinstance(value, list) or (n is not None and len(value) != n) or not value:
            return None
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return None
        return tuple(kind(v) for v in value)

    input_size = numbers(pcfg.get("input_size"), 3, int) or default.input_size
    mean = numbers(pcfg.get("mean"), None, float) or default.mean
    std = numbers(pcfg.get("std"), None, float) or default.std
    interp = pcfg.get("interpolation")
    crop = pcfg.get("crop_pct")
    first = pcfg.get("first_conv")
    return DataConfig(
        input_size=input_size,  # type: ignore[arg-type]
        mean=mean,
        std=std,
        interpolation=interp if isinstance(interp, str) and len(interp) < 32 else
        default.interpolation,
        crop_pct=float(crop) if isinstance(crop, (int, float)) and not isinstance(crop, bool)
        and 0 < crop <= 2 else default.crop_pct,
        first_conv=first if isinstance(first, str) and _IDENT_RE.fullmatch(first) else
        default.first_conv,
    )


def _default_strategy(zoo: Any, same_head: bool, repo_classes: int, target: int,
                      name: str) -> tuple[Any, str]:
    from zoo_core._strategies import parse_strategy

    if not same_head:
        return parse_strategy("linear_probe"), (
            f"default for a new head on a Hub model: linear_probe ({name} has "
            f"{repo_classes} classes, {target} requested: the pushed head was dropped and the "
            "backbone frozen); pass strategy= to choose another")
    pushed = zoo.get("strategy") if isinstance(zoo, Mapping) else None
    try:
        kept = parse_strategy(pushed) if isinstance(pushed, str) else None
    except ZooError:
        kept = None
    if kept is None or kept.kind == "auto":
        return parse_strategy("finetune"), (
            f"same {target} classes as {name}, which records no strategy: its head is kept "
            "and everything is trainable (finetune); pass strategy= to choose another")
    if kept.kind == "scratch":
        return parse_strategy("finetune"), (
            f"{name} was trained from scratch (pushed with 'scratch'); its trained weights "
            "are loaded with everything trainable (finetune); pass strategy= to choose "
            "another")
    return kept, (f"kept the strategy {kept} that {name} was pushed with (same {target} "
                  "classes, head kept); pass strategy= to choose another")


def _fetch_hub_weights(repo_id: str, revision: str | None, name: str,
                       pin: str | None) -> None:
    """Download model.safetensors now, to turn a missing or foreign file into a clear
    message (``build_from_spec`` then finds it in the cache and checks it again)."""
    from zoo_core import _weights

    e = _hub_errors()
    source = f"{HUB_PREFIX}{repo_id}"
    try:
        path = _weights.fetch_weights(source, revision=revision, filename=WEIGHTS_NAME,
                                      progress=False)
    except WeightsError as exc:
        cause = exc.__cause__
        if isinstance(cause, e.EntryNotFoundError) and not isinstance(
                cause, e.LocalEntryNotFoundError):
            pickled = _pickled_files(repo_id, revision)
            raise HubError(
                f"{name} has no {WEIGHTS_NAME}"
                + (f"; it only has pickled weights ({', '.join(pickled)})" if pickled else "")
                + ". zoo_core loads safetensors only and never unpickles a checkpoint: "
                "convert it (`zoo convert pytorch_model.bin model.safetensors`) and push "
                "model.safetensors to the repo") from exc
        raise
    if pin is not None:
        digest = getattr(_weights, "_file_digest", _weights.sha256_file)(path)
        if digest != pin:
            raise HubError(
                f"{WEIGHTS_NAME} of {name} (sha256 {digest}) is not the file its config.json "
                f"was written for (zoo_core.weights_sha256 {pin}): the repo's files do not "
                "belong together. Push the model again with zoo_core.push_to_hub, or pin a "
                "revision where they match (hf-hub:org/name@<commit>)")


def _pickled_files(repo_id: str, revision: str | None) -> list[str]:
    import huggingface_hub

    found = []
    for filename in PICKLE_NAMES:
        with contextlib.suppress(Exception):
            if huggingface_hub.file_exists(repo_id, filename, revision=revision):
                found.append(filename)
    return found


# ------------------------------------------------------------------------------- CLI


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``zoo push DIR REPO_ID [--private] [--revision B] [--message M]``."""
    p = subparsers.add_parser(
        "push", help="push a directory written by save_pretrained to the Hugging Face Hub",
        description="Upload model.safetensors, config.json and README.md of DIR (written "
                    "by zoo_core.save_pretrained) to REPO_ID in one atomic commit.")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("repo_id", metavar="REPO_ID")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--revision", help="branch to push to (created if missing)")
    p.add_argument("--message", "-m", help="commit message")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead")
    p.set_defaults(func=_cmd_push)
    return p  # type: ignore[no-any-return]


def _cmd_push(args: Any) -> int:
    result = push_directory(args.directory, args.repo_id, private=args.private or None,
                            revision=args.revision, commit_message=args.message,
                            create_pr=args.create_pr)
    print(getattr(result, "pr_url", None) or str(result))
    return 0


def push_directory(directory: str | os.PathLike[str], repo_id: str, *,
                   private: bool | None = None, revision: str | None = None,
                   commit_message: str | None = None, token: str | None = None,
                   create_pr: bool = False) -> str:
    """Push a directory written by :func:`save_pretrained` (checked first) in one commit."""
    folder = Path(directory).expanduser()
    _check_repo_id(repo_id, allow_no_namespace=True)
    if revision is not None:
        _check_revision(revision)
    _check_saved_directory(folder)
    message = commit_message or f"Upload {folder.name} with zoo_core"
    return _push_folder(folder, repo_id, private=private, revision=revision,
                        commit_message=message, token=token, create_pr=create_pr)


def _check_saved_directory(folder: Path) -> None:
    from zoo_core._weights import check_safetensors, sha256_file

    if not folder.is_dir():
        raise HubError(f"{folder} is not a directory; pass a directory written by "
                       "zoo_core.save_pretrained")
    missing = [n for n in (WEIGHTS_NAME, CONFIG_NAME) if not (folder / n).is_file()]
    if missing:
        pickled = [n for n in PICKLE_NAMES if (folder / n).exists()]
        raise HubError(
            f"{folder} has no {' and no '.join(missing)}; it is not a directory written by "
            "zoo_core.save_pretrained (write one with zoo_core.save_pretrained(model, DIR))"
            + (f". It holds pickled weights ({', '.join(pickled)}): convert them with "
               "`zoo convert`" if pickled else ""))
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HubError(f"{folder / CONFIG_NAME} is not valid JSON: {exc}") from exc
    zoo = config.get(ZOO_KEY) if isinstance(config, dict) else None
    timm_like = isinstance(config, dict) and isinstance(config.get("architecture"), str) \
        and isinstance(config.get("pretrained_cfg"), dict)
    if not isinstance(zoo, dict) and not timm_like:
        raise HubError(
            f"{folder / CONFIG_NAME} has neither a {ZOO_KEY!r} key nor timm's "
            "'architecture' + 'pretrained_cfg'; models loaded from the repo would not know "
            "what to build. Write the directory with zoo_core.save_pretrained")
    try:
        check_safetensors(folder / WEIGHTS_NAME)
    except WeightsError as exc:
        raise HubError(f"{folder / WEIGHTS_NAME} is not a valid safetensors file: {exc}") \
            from exc
    pin = zoo.get("weights_sha256") if isinstance(zoo, dict) else None
    if isinstance(pin, str) and sha256_file(folder / WEIGHTS_NAME) != pin:
        raise HubError(
            f"{folder / WEIGHTS_NAME} does not match config.json (zoo_core.weights_sha256 "
            f"{pin}): the weights were changed after save_pretrained; save again")
