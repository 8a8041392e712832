"""Pickle checkpoint -> safetensors, without unpickling arbitrary objects.

:func:`convert_checkpoint` loads a ``torch.save`` checkpoint with
``torch.load(weights_only=True)`` (a checkpoint holding arbitrary Python objects is refused,
never unpickled) and writes a safetensors file that appears complete or not at all.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from zoo_core._safefs import as_output_file, disk_full_error, is_disk_full
from zoo_core.errors import InvalidArgumentError, WeightsError
from zoo_core.weights._digests import sha256_file
from zoo_core.weights._safetensors_header import check_safetensors, is_pickle_path

__all__ = ["convert_checkpoint"]

logger = logging.getLogger("zoo_core.weights")


def _unlink(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def convert_checkpoint(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, overwrite: bool = False
) -> str:
    """Convert a ``torch.save`` checkpoint to safetensors; return the sha256 of ``dst``.

    ``src`` is loaded with ``torch.load(weights_only=True)``: a checkpoint holding
    arbitrary Python objects is refused, never unpickled. Accepts a plain state dict or a
    dict whose ``"state_dict"`` / ``"model"`` entry is one; strips a ``module.`` prefix
    present on every key (DataParallel); makes tensors contiguous and clones tensors that
    share storage. ``dst`` appears complete or not at all (temp file + rename); it is not
    overwritten unless ``overwrite=True``. Nothing else is written.
    """
    src_path, dst_path = Path(src).expanduser(), Path(dst).expanduser()
    if src_path.is_dir():
        raise WeightsError(f"checkpoint to convert {src_path} is a directory, not a file; "
                           "pass the checkpoint file itself (pytorch_model.bin, *.pth)")
    if not src_path.is_file():
        raise WeightsError(f"checkpoint to convert not found: {src_path}")
    if is_pickle_path(str(dst_path)):
        raise InvalidArgumentError(f"output {dst_path} has a pickle suffix; name it *.safetensors")
    if dst_path.exists() and not overwrite:
        raise WeightsError(
            f"{dst_path} already exists; pass overwrite=True (`zoo convert --overwrite`) "
            "to replace it"
        )
    if not dst_path.parent.is_dir():
        raise WeightsError(f"output directory {dst_path.parent} does not exist; create it first")
    with contextlib.suppress(WeightsError):
        check_safetensors(src_path)
        raise InvalidArgumentError(f"{src_path} is already a safetensors file; nothing to convert")

    import pickle

    import torch

    try:
        obj = torch.load(src_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        detail = f" (found {found.group(1)})" if found else ""
        raise WeightsError(
            f"{src_path} cannot be loaded safely: it contains arbitrary Python objects{detail} "
            "or is not a PyTorch checkpoint, and zoo_core will not unpickle it "
            "(weights_only=True refused it). Re-save only the tensors "
            "(torch.save(model.state_dict(), PATH)) from code you trust, then convert that"
        ) from exc
    except Exception as exc:  # corrupt zip, EOF, ...
        raise WeightsError(f"cannot read checkpoint {src_path}: {exc}") from exc

    state = _extract_state_dict(obj, src_path)
    tensors = _prepare_tensors(state, src_path)

    from safetensors.torch import save_file

    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst_path.name}.", suffix=".tmp", dir=dst_path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            save_file(tensors, str(tmp), metadata={"format": "pt"})
        except Exception as exc:  # SafetensorError wraps the OSError (ENOSPC, EFBIG) as text
            needed = sum(t.numel() * t.element_size() for t in tensors.values())
            raise write_error(exc, dst_path.parent, needed, f"{dst_path.name}") from exc
        check_safetensors(tmp, name=str(dst_path))
        as_output_file(tmp)  # mkstemp made it 0600; an output file follows the umask
        digest = sha256_file(tmp)
        if overwrite:
            os.replace(tmp, dst_path)
        else:
            try:
                os.link(tmp, dst_path)  # atomic "create only if absent"
            except FileExistsError as exc:
                raise WeightsError(
                    f"{dst_path} appeared while converting; pass overwrite=True to replace it"
                ) from exc
            except OSError:  # filesystem without hard links
                if dst_path.exists():
                    raise WeightsError(
                        f"{dst_path} appeared while converting; pass overwrite=True to replace it"
                    ) from None
                os.replace(tmp, dst_path)
    finally:
        _unlink(tmp)
    logger.info(
        "converted %s -> %s (%d tensors, sha256 %s)", src_path, dst_path, len(tensors), digest
    )
    return digest


def write_error(exc: BaseException, directory: Path, needed: int, what: str) -> WeightsError:
    """An error from safetensors' writer (its SafetensorError only carries the OS error as
    text) or from the OS, as a WeightsError naming the directory and the space needed."""
    if is_disk_full(exc):
        return disk_full_error(exc, directory, needed, what,  # type: ignore[arg-type]
                               "Free space there (or raise `ulimit -f`) and try again")
    text = str(exc)
    match = re.search(r"(?:code: |os error )(\d+)", text)
    if match and int(match.group(1)) in _DISK_FULL_CODES:
        return disk_full_error(OSError(int(match.group(1)), text), directory, needed, what,
                               "Free space there (or raise `ulimit -f`) and try again")
    return WeightsError(f"writing {what} in {directory} failed: {text}")


_DISK_FULL_CODES = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _extract_state_dict(obj: Any, src: Path) -> dict[str, Any]:
    import torch

    def is_state_dict(value: Any) -> bool:
        return (
            isinstance(value, dict)
            and bool(value)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
        )

    if is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if is_state_dict(obj.get(key)):
                logger.info("using the %r entry of checkpoint %s", key, src)
                return dict(obj[key])
        keys = ", ".join(repr(k) for k in list(obj)[:10])
        raise WeightsError(
            f"{src} is not a state dict (a dict of str -> tensor) and has no 'state_dict' or "
            f"'model' entry holding one (top-level keys: {keys or 'none'}); save "
            "model.state_dict() and convert that"
        )
    raise WeightsError(
        f"{src} holds a {type(obj).__name__}, not a state dict; save model.state_dict() and "
        "convert that"
    )


def _prepare_tensors(state: dict[str, Any], src: Path) -> dict[str, Any]:
    keys = list(state)
    if all(k.startswith("module.") for k in keys):
        logger.info("stripping the 'module.' prefix from all %d keys of %s", len(keys), src)
        state = {k[len("module.") :]: v for k, v in state.items()}
        if len(state) != len(keys) or "" in state:
            raise WeightsError(f"{src}: stripping 'module.' makes keys collide or empty")

    import torch

    out: dict[str, Any] = {}
    seen: set[tuple[int, int]] = set()
    for key, tensor in state.items():
        if tensor.layout is not torch.strided:
            raise WeightsError(
                f"{src}: tensor {key!r} has layout {tensor.layout}; only dense tensors can be "
                "saved as safetensors"
            )
        t = tensor.detach().contiguous()
        storage = t.untyped_storage()
        ident = (storage.data_ptr(), storage.nbytes())
        owns_storage = storage.nbytes() == t.numel() * t.element_size()
        if ident in seen or not owns_storage:
            t = t.clone()  # shared (tied) or a view: give it its own storage
        elif t.numel():
            seen.add(ident)
        out[key] = t
    return out

