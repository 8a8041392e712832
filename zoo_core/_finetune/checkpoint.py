"""Checkpoints in safetensors + JSON (no pickles): model, optimizer, epoch, RNG states."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo_core._finetune.utils import _atomic_save_tensors, _atomic_write_text, _cpu_state, _seed_all
from zoo_core.errors import InvalidArgumentError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from zoo_core._finetune.dist import _Dist

CHECKPOINT_FORMAT = 1



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
                     rng_states: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Tensors to ``epoch-NNNN.safetensors``, the rest to ``state.json`` (commit point)."""
    import torch

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Any] = {f"model/{k}": v for k, v in _cpu_state(model).items()}
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
    name = f"epoch-{epoch:04d}.safetensors"
    _atomic_save_tensors(ckpt_dir / name, tensors,
                         metadata={"epoch": str(epoch), "format": str(CHECKPOINT_FORMAT)})
    state = {"format": CHECKPOINT_FORMAT, "epoch": epoch, "tensors": name,
             "optimizer": opt_json, "rng": rng_json, **meta}
    _atomic_write_text(ckpt_dir / "state.json", json.dumps(state, indent=1) + "\n")
    for old in ckpt_dir.glob("epoch-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)


def _read_checkpoint(ckpt_dir: Path) -> dict[str, Any] | None:
    from safetensors import safe_open

    state_path = ckpt_dir / "state.json"
    if not state_path.is_file():
        return None
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
        tensors_path = ckpt_dir / state["tensors"]
        tensors = {}
        with safe_open(str(tensors_path), framework="pt") as fh:
            meta = fh.metadata() or {}
            for key in fh.keys():  # noqa: SIM118  (safe_open has no __iter__)
                tensors[key] = fh.get_tensor(key)
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidArgumentError(
            f"the checkpoint in {ckpt_dir} cannot be read ({type(exc).__name__}: {exc}); "
            "delete it to start over") from exc
    if meta.get("epoch") != str(state["epoch"]) or state.get("format") != CHECKPOINT_FORMAT:
        raise InvalidArgumentError(f"the checkpoint in {ckpt_dir} is inconsistent "
                                   f"(state.json epoch {state.get('epoch')}, tensors "
                                   f"{meta.get('epoch')}); delete it to start over")
    state["_tensors"] = tensors
    return state


def _restore(state: Mapping[str, Any], model: nn.Module, opt: Any, ctx: _Dist) -> None:
    tensors = state["_tensors"]
    model.load_state_dict({k[len("model/"):]: v for k, v in tensors.items()
                           if k.startswith("model/")})
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
