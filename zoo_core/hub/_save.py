"""``save_pretrained``: a built model as a folder of ``model.safetensors``, ``config.json``
and ``README.md`` (the format is described in :mod:`zoo_core.saved._repo_format`).

The files are written into a temporary directory next to the target and moved into place
only once all three are complete: a failure never leaves a half-written folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo_core._specs import ModelInfo
from zoo_core.errors import HubError, InvalidArgumentError, ZooError
from zoo_core.hub._card import model_card, public_name, public_text
from zoo_core.registry._registry import HUB_PREFIX
from zoo_core.saved._repo_format import (
    CARD_NAME,
    CONFIG_FORMAT,
    CONFIG_NAME,
    MODEL_TYPE,
    WEIGHTS_NAME,
    ZOO_KEY,
)

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["model_info", "save_model", "save_pretrained"]

log = logging.getLogger("zoo_core.hub")

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
    return save_model(model, Path(save_directory), metrics=metrics, training_data=training_data,
                 label_names=label_names, license=license, model_card_extra=model_card_extra)


def save_model(
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
    info = model_info(model)
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
        config = _config(model, info, labels, weights_sha, license, tmp, repo_id)
        (tmp / CONFIG_NAME).write_text(
            json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
            encoding="utf-8")
        card = model_card(info, config, labels, metrics=metrics, training_data=training_data,
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


def model_info(model: Any) -> ModelInfo:
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

    from zoo_core._safefs import as_output_file
    from zoo_core.weights._weights import sha256_file

    state = _state_for_save(model)
    try:
        save_file(state, str(path), metadata={"format": "pt"})
    except Exception as exc:  # SafetensorError carries a full disk only as text
        from zoo_core.weights._convert import write_error

        needed = sum(t.numel() * t.element_size() for t in state.values())
        raise HubError(f"{write_error(exc, path.parent.parent, needed, WEIGHTS_NAME)}; "
                       "nothing was saved") from exc
    as_output_file(path)  # safetensors writes 0600; the folder's other files follow the umask
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



def _config(model: Any, info: ModelInfo, labels: list[str] | None, weights_sha: str,
            license: str | None, tmp: Path,  # noqa: A002
            repo_id: str | None = None) -> dict[str, Any]:
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
    resized = bool({"in_chans", "img_size"} & set(info.model_args))
    for key, value in data.items():
        if key == "input_size" and fixed and "input_size" in pcfg and not resized:
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
    # timm's key: timm.create_model("hf-hub:...") and transformers' TimmWrapper pass them on
    # as keyword arguments. Only what the caller passed: timm 1.0.31 records its own
    # reconstruction arguments there (num_classes, in_chans, global_pool, img_size), which
    # transformers passes a second time (TypeError: multiple values for 'num_classes');
    # without the caller's own, each is the architecture's default, so every loader builds
    # the same model (config.json's num_classes gives the head).
    if info.model_args:
        config["model_args"] = dict(sorted(info.model_args.items()))
    else:
        config.pop("model_args", None)
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
        "strategy_reason": public_text(info.strategy_reason, info),
        "base_weights": {
            "tag": info.weights_tag,
            "source": _public_source(info.weights_source),
            "sha256": info.weights_sha256,
        },
        "base_model": public_name(info.base_model) if info.base_model else None,
        "weights_sha256": weights_sha,
        "zoo_core_version": __version__,
        "head": info.head,
        "stages": list(info.stages),
        "dropped_head_keys": list(info.dropped_head_keys),
        "license": lic,
        "library": "timm" if timm_model else "zoo_core",
        "how_to_load": how_to_load(repo_id, timm_model),
    }
    if timm_model:
        config.pop("model_type", None)
    else:
        # transformers treats a config.json with pretrained_cfg and no model_type as a timm
        # model (TimmWrapper) and fails with "upgrade timm" for a zoonet or torchvision
        # architecture; with a model_type its error names zoo_core instead
        config["model_type"] = MODEL_TYPE
    return config


def how_to_load(repo_id: str | None, timm_model: bool) -> str:
    """The config.json line that says which library loads the model, and how."""
    call = (f'zoo_core.build_model("hf-hub:{repo_id}")' if repo_id else
            'zoo_core.build_model("hf-hub:<repo id>") or zoo_core.build_model("<folder>")')
    if timm_model:
        return (f"{call}; also timm.create_model(\"hf-hub:...\", pretrained=True) and "
                "transformers.AutoModelForImageClassification.from_pretrained")
    return (f"{call} (pip install zoo-core); not a transformers or timm model: "
            "its architecture comes from a zoo_core plugin")


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
