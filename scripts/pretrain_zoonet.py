#!/usr/bin/env python
"""Pretrain the zoonet backbones on the embedded digits 0-4 (weights tag ``digits04``).

    python scripts/pretrain_zoonet.py                 # writes plugins/zoonet/weights/*.safetensors
    python scripts/pretrain_zoonet.py --out-dir /tmp/w  # e.g. to check reproducibility

Data: scikit-learn's bundled handwritten digits, *source* split only (digits 0-4; the
digits 5-9 are the transfer target and are never loaded here), split seeded and
stratified into train (80%) and val (20%). Pixels are made exactly like the PNGs of
``digits.export_imagefolder``: 8x8 grey -> uint8 -> bilinear 32x32 -> RGB, then
normalised with the zoonet data config. Light augmentation: random shifts of up to
2 pixels (zero padded).

Deterministic: fixed seeds, ``torch.use_deterministic_algorithms(True)``, one thread by
default, and a canonical safetensors header (sorted JSON keys; safetensors itself writes
the metadata in hash order), so running it twice gives byte-identical files. Each file is
written via a temporary file + rename. At the end it prints each file's sha256, size, and
the pins to paste into ``plugins/zoonet/__init__.py`` and ``registry.toml``.

Bits depend on the thread count (kept at 1), the torch version and the CPU kernels; the
shipped files were produced with torch 2.14.1 on x86-64, one thread. A different setup
gives equally good weights with other hashes: re-pin them or keep the shipped files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as st_save
from tqdm import tqdm

import zoo_core_plugins.zoonet as plugin
from zoo_core_plugins.zoonet import arch, digits

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "plugins" / "zoonet" / "weights"
TAG = "digits04"
MIN_VAL_ACC = 0.97
SHIFT = 2  # max random shift in pixels (at 32x32, i.e. half a pixel of the 8x8 source)


def to_tensor(images8: np.ndarray, size: int = 32) -> torch.Tensor:
    """uint8 8x8 digits -> float (N, 3, size, size) in [0, 1] (not yet normalised)."""
    rgb = digits.to_rgb_array(images8, size)
    return torch.from_numpy(rgb).permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def normalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(plugin.DATA_CONFIG.mean).view(1, 3, 1, 1)
    std = torch.tensor(plugin.DATA_CONFIG.std).view(1, 3, 1, 1)
    return (x - mean) / std


def random_shift(x: torch.Tensor, gen: torch.Generator, shift: int = SHIFT) -> torch.Tensor:
    """Shift each image by up to ``shift`` pixels in x and y (zero = background padding)."""
    if shift <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift))
    offs = torch.randint(0, 2 * shift + 1, (n, 2), generator=gen)
    return torch.stack(
        [padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offs.tolist())]
    )


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    logits = model(normalise(x))
    loss = F.cross_entropy(logits, y).item()
    acc = (logits.argmax(1) == y).float().mean().item()
    return loss, acc


def train_one(name: str, data: dict, *, epochs: int, batch_size: int, lr: float, seed: int):
    torch.manual_seed(seed)
    model = getattr(arch, name)(num_classes=len(digits.SOURCE_CLASSES))
    nparams = sum(p.numel() for p in model.parameters())
    xtr, ytr = data["train"]
    xva, yva = data["val"]
    steps_per_epoch = math.ceil(len(xtr) / batch_size)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.15
    )
    gen = torch.Generator().manual_seed(seed)
    print(f"== {name}: {nparams:,} params, {len(xtr)} train / {len(xva)} val images (digits 0-4)")
    t0 = time.perf_counter()
    va_acc = 0.0
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        tot_loss, tot_correct, seen = 0.0, 0, 0
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"{name} epoch {epoch:2d}/{epochs}",
            leave=False,
            unit="batch",
            file=sys.stderr,
            dynamic_ncols=True,
        )
        for step in bar:
            idx = perm[step * batch_size : (step + 1) * batch_size]
            xb = normalise(random_shift(xtr[idx], gen))
            yb = ytr[idx]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot_loss += loss.item() * len(idx)
            tot_correct += (logits.argmax(1) == yb).sum().item()
            seen += len(idx)
            bar.set_postfix(loss=f"{tot_loss / seen:.4f}", acc=f"{tot_correct / seen:.3f}")
        bar.close()
        va_loss, va_acc = evaluate(model, xva, yva)
        print(
            f"{name} epoch {epoch:2d}/{epochs}  train loss {tot_loss / seen:.4f} "
            f"acc {tot_correct / seen:.4f}  |  val loss {va_loss:.4f} acc {va_acc:.4f}  "
            f"({time.perf_counter() - t0:.1f}s)",
            flush=True,
        )
    return model, va_acc, time.perf_counter() - t0, nparams


def canonical_safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """safetensors bytes with a canonical header (sorted keys, compact JSON).

    safetensors serialises ``__metadata__`` from a hash map, in an order that changes
    from run to run; the tensor data layout itself is deterministic. We re-serialise the
    header with sorted keys and pad it with spaces to 8 bytes as the format requires.
    Data offsets are relative to the end of the header, so they are unchanged.
    """
    raw = st_save(tensors, metadata=metadata)
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + raw[8 + n :]


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["zoonet_s", "zoonet_m"])
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: bitwise reproducible)")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    t_start = time.perf_counter()

    # the data config's statistics must be those of the source split
    src_images = digits.source_target_split()["source"][0]
    mean, std = digits.channel_stats(src_images)
    print(
        f"source split pixel stats: mean {mean:.6f} std {std:.6f} "
        f"(pinned {plugin.DIGITS_MEAN} / {plugin.DIGITS_STD})"
    )
    if abs(mean - plugin.DIGITS_MEAN) > 1e-4 or abs(std - plugin.DIGITS_STD) > 1e-4:
        print("error: update DIGITS_MEAN/DIGITS_STD in plugins/zoonet/__init__.py", file=sys.stderr)
        return 1

    split = digits.source_train_val(args.val_fraction, args.seed)
    data = {k: (to_tensor(im), torch.from_numpy(np.asarray(lab))) for k, (im, lab) in split.items()}

    results = []
    for name in args.models:
        model, va_acc, secs, nparams = train_one(
            name, data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed
        )
        if va_acc < MIN_VAL_ACC:
            print(
                f"error: {name} source-val accuracy {va_acc:.4f} < {MIN_VAL_ACC}; not written",
                file=sys.stderr,
            )
            return 1
        model.eval()
        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
        metadata = {
            "format": "pt",
            "arch": name,
            "tag": TAG,
            "num_classes": str(len(digits.SOURCE_CLASSES)),
            "label_names": json.dumps(list(plugin.DIGITS04_LABELS)),
            "dataset": "sklearn.datasets.load_digits, digits 0-4 (source split), 32x32 RGB",
            "split": f"stratified val_fraction={args.val_fraction} seed={args.seed}; "
            f"{len(data['train'][1])} train / {len(data['val'][1])} val",
            "epochs": str(args.epochs),
            "source_val_accuracy": f"{va_acc:.4f}",
            "mean": json.dumps(list(plugin.DATA_CONFIG.mean)),
            "std": json.dumps(list(plugin.DATA_CONFIG.std)),
            "seed": str(args.seed),
            "script": "scripts/pretrain_zoonet.py",
            "torch": torch.__version__.split("+")[0],
            "threads": str(torch.get_num_threads()),
            "license": plugin.WEIGHTS_LICENSE,
        }
        blob = canonical_safetensors(tensors, metadata)
        path = args.out_dir / f"{name}-{TAG}.safetensors"
        write_atomic(path, blob)
        # read it back: strict load and metadata
        back = load_file(str(path))
        fresh = getattr(arch, name)(num_classes=len(digits.SOURCE_CLASSES))
        fresh.load_state_dict(back, strict=True)
        with safe_open(str(path), framework="pt") as f:
            assert f.metadata() == metadata
        assert evaluate(fresh, *data["val"])[1] == va_acc
        sha = hashlib.sha256(blob).hexdigest()
        results.append((name, path, sha, len(blob), va_acc, secs, nparams))

    print("\n== summary")
    for name, path, sha, size, acc, secs, nparams in results:
        rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        print(f"{name}: {nparams:,} params  source-val acc {acc:.4f}  trained in {secs:.1f}s")
        print(f"  {rel}  {size:,} bytes  sha256 {sha}")
    print("\n# plugins/zoonet/__init__.py")
    for name, _, sha, *_ in results:
        print(f'{name.upper()}_{TAG.upper()}_SHA256 = "{sha}"')
    print("\n# registry.toml")
    for name, _, sha, *_ in results:
        print(f'[weights."{name}".{TAG}]')
        print(f'source = "{plugin.weights_source(name, TAG)}"')
        print(f'sha256 = "{sha}"\n')
    print(
        f"total wall time {time.perf_counter() - t_start:.1f}s "
        f"(torch {torch.__version__}, {torch.get_num_threads()} thread(s))"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
