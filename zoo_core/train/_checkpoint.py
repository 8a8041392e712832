"""Checkpoints in safetensors + JSON (no pickles): model, optimizer, epoch, RNG states."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo_core.errors import InvalidArgumentError, ZooError
from zoo_core.train._utils import _atomic_save_tensors, _atomic_write_text, _cpu_state, _seed_all

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from zoo_core.train._dist import _Dist

CHECKPOINT_FORMAT = 1


class CheckpointWriteError(ZooError, OSError):
    """A checkpoint could not be written (disk full...); the previous one is intact."""


def _rng_state(device: torch.device) -> dict[str, Any]:
    import numpy as np
    import torch

    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    import numpy as np
    import torch

    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state((npst[0], np.asarray(npst[1], dtype=np.uint32), npst[2], npst[3],
                         npst[4]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _save_checkpoint(ckpt_dir: Path, *, epoch: int, model: nn.Module, opt: Any,
                     rng_states: list[dict[str, Any]], meta: dict[str, Any],
                     ema: nn.Module | None = None, keep_epochs: Sequence[int] = ()) -> None:
    """Tensors to ``epoch-NNNN.safetensors``, the rest to ``state.json`` (commit point).

    Files of other epochs are deleted unless listed in ``keep_epochs`` (``--keep``: the
    best K). A failed write (a full disk) leaves the previous checkpoint as it was.
    """
    import torch

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Any] = {f"model/{k}": v for k, v in _cpu_state(model).items()}
    if ema is not None:
        tensors.update({f"ema/{k}": v for k, v in _cpu_state(ema).items()})
    osd = opt.state_dict()
    opt_json: dict[str, Any] = {"param_groups": osd["param_groups"], "state": {}}
    for pid, pstate in osd["state"].items():
        opt_json["state"][str(pid)] = {}
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{pid}/{key}"] = value.detach().cpu().clone().contiguous()
                opt_json["state"][str(pid)][key] = "<tensor>"
            else:
                opt_json["state"][str(pid)][key] = value
    rng_json = []
    for r, st in enumerate(rng_states):
        tensors[f"rng/{r}/torch"] = st["torch"]
        if "cuda" in st:
            tensors[f"rng/{r}/cuda"] = st["cuda"]
        rng_json.append({"python": st["python"], "numpy": st["numpy"]})
    name = _name(epoch)
    scaler = getattr(opt, "scaler", None)
    state = {"format": CHECKPOINT_FORMAT, "epoch": epoch, "tensors": name,
             "optimizer": opt_json, "rng": rng_json,
             "scaler": scaler.state_dict() if scaler is not None else None, **meta}
    target = ckpt_dir / name
    try:
        state["tensors_sha256"] = _atomic_save_tensors(
            target, tensors, metadata={"epoch": str(epoch), "format": str(CHECKPOINT_FORMAT)})
        target = ckpt_dir / "state.json"
        _atomic_write_text(target, json.dumps(state, indent=1) + "\n")
    except Exception as exc:  # OSError, or SafetensorError (a full disk as text)
        if not isinstance(exc, OSError) and type(exc).__name__ != "SafetensorError":
            raise
        previous = _read_epoch(ckpt_dir)
        if previous != epoch:  # state.json still names the last good one
            (ckpt_dir / name).unlink(missing_ok=True)
        kept = (f"the last good checkpoint (epoch {previous}) is intact"
                if previous is not None else "no earlier checkpoint exists")
        raise CheckpointWriteError(
            f"could not write the checkpoint of epoch {epoch}: {target} "
            f"({type(exc).__name__}: {exc}); {kept}. Free some space (or raise the file "
            "size limit), then continue with --resume (resume=True)") from exc
    keep = {name} | {_name(e) for e in keep_epochs}
    for old in ckpt_dir.glob("epoch-*.safetensors"):
        if old.name not in keep:
            old.unlink(missing_ok=True)


def _name(epoch: int) -> str:
    return f"epoch-{epoch:04d}.safetensors"


def _read_epoch(ckpt_dir: Path) -> int | None:
    try:
        return int(json.loads((ckpt_dir / "state.json").read_text(encoding="utf-8"))["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


_TENSORS_NAME = re.compile(r"epoch-\d{4,}\.safetensors")
_RECOVER = ("restore the file from a backup, or start over with --overwrite "
            "(overwrite=True) or in another --out")


def _unreadable(path: Path, why: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"the checkpoint file {path} {why}; nothing was changed. To "
                                f"recover: {_RECOVER}")


def _read_checkpoint(ckpt_dir: Path) -> dict[str, Any] | None:
    """``state.json`` and the tensors it names, verified: the name cannot leave
    ``ckpt_dir``, the bytes must match the recorded sha256, and every failure is one
    error naming the file."""
    from safetensors import safe_open

    from zoo_core.train._utils import file_sha256

    state_path = ckpt_dir / "state.json"
    if not state_path.is_file():
        return None
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _unreadable(state_path, f"cannot be read ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or not isinstance(state.get("tensors"), str) or \
            isinstance(state.get("epoch"), bool) or not isinstance(state.get("epoch"), int):
        raise _unreadable(state_path, "is not a checkpoint state (no integer 'epoch' and "
                                      "'tensors' file name)")
    name = state["tensors"]
    if not _TENSORS_NAME.fullmatch(name):
        raise _unreadable(state_path, f"names the tensors file {name!r}, which is not an "
                                      "epoch-NNNN.safetensors file inside the checkpoint "
                                      "folder; it is refused")
    tensors_path = ckpt_dir / name
    if tensors_path.is_symlink() or not tensors_path.is_file():
        raise _unreadable(tensors_path, "is missing (state.json names it)")
    expected = state.get("tensors_sha256")
    try:
        if expected is not None and file_sha256(tensors_path) != expected:
            raise _unreadable(tensors_path, "does not match the sha256 recorded in "
                                            f"{state_path} (it is damaged or was changed)")
        tensors = {}
        with safe_open(str(tensors_path), framework="pt") as fh:
            meta = fh.metadata() or {}
            for key in fh.keys():  # noqa: SIM118  (safe_open has no __iter__)
                tensors[key] = fh.get_tensor(key)
    except InvalidArgumentError:
        raise
    except Exception as exc:  # OSError, SafetensorError (truncated, empty, not safetensors)
        raise _unreadable(tensors_path, f"cannot be read ({type(exc).__name__}: "
                                        f"{str(exc).splitlines()[0] if str(exc) else ''})"
                          ) from exc
    if meta.get("epoch") != str(state["epoch"]) or state.get("format") != CHECKPOINT_FORMAT:
        raise _unreadable(tensors_path, f"does not belong to {state_path} (state.json epoch "
                                        f"{state.get('epoch')}, tensors epoch "
                                        f"{meta.get('epoch')})")
    state["_tensors"] = tensors
    return state


def _restore(state: Mapping[str, Any], model: nn.Module, opt: Any, ctx: _Dist,
             ema: nn.Module | None = None) -> None:
    tensors = state["_tensors"]
    model.load_state_dict({k[len("model/"):]: v for k, v in tensors.items()
                           if k.startswith("model/")})
    if ema is not None:
        ema_state = {k[len("ema/"):]: v for k, v in tensors.items() if k.startswith("ema/")}
        ema.load_state_dict(ema_state if ema_state else model.state_dict())
    scaler = getattr(opt, "scaler", None)
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    osd_json = state["optimizer"]
    opt_state: dict[int, dict[str, Any]] = {}
    for pid, entries in osd_json["state"].items():
        opt_state[int(pid)] = {
            key: (tensors[f"optim/{pid}/{key}"] if value == "<tensor>" else value)
            for key, value in entries.items()
        }
    opt.load_state_dict({"state": opt_state, "param_groups": osd_json["param_groups"]})
    rng = state["rng"]
    if len(rng) == ctx.world:
        mine = dict(rng[ctx.rank])
        mine["torch"] = tensors[f"rng/{ctx.rank}/torch"]
        if f"rng/{ctx.rank}/cuda" in tensors:
            mine["cuda"] = tensors[f"rng/{ctx.rank}/cuda"]
        _set_rng_state(mine, ctx.device)
    else:
        _seed_all(int(state["signature"]["seed"]) + 1000 * ctx.rank + int(state["epoch"]))
