#!/usr/bin/env python
"""Pretrain the zoonet backbones on glyphs drawn from matplotlib's fonts (weights tag ``glyphs``).

    python scripts/pretrain_zoonet.py                   # writes plugins/zoonet/weights/
    python scripts/pretrain_zoonet.py --out-dir /tmp/w  # e.g. to check reproducibility

Data: :mod:`zoo_core_plugins.zoonet.glyphs`, the ``PRETRAIN_CLASSES`` only (546 letters
and symbols of many scripts, no digits; the ``HELDOUT_CLASSES`` are never rendered
here). ``--per-class`` augmented images per class for training (generator stream 0) and
``--val-per-class`` for validation (stream 1), rendered once at the start, grey 32x32
replicated to RGB exactly like ``glyphs.export_imagefolder``'s PNGs, then normalised with
the zoonet data config (whose mean/std are these pixels' statistics, checked here).
During training each batch is also shifted by up to 2 pixels (zero padded) and warped by
a smooth random elastic field (``elastic``: up to 2.5 pixels; Simard et al., 2003), which
makes printed glyphs look more like handwriting.

Recipe: AdamW (weight decay 0.05 on weights, none on norms and biases), one-cycle
learning rate, label smoothing 0.1, channels-last; per model (``RECIPES``): ``zoonet_s``
8 epochs, batch 128, peak lr 3e-3; ``zoonet_m`` 4 epochs, batch 32, peak lr 2e-3. The
whole script takes about 8.3 minutes of CPU time (one thread).

Deterministic: fixed seeds, ``torch.use_deterministic_algorithms(True)``, one thread by
default, and a canonical safetensors header (sorted JSON keys; safetensors itself writes
the metadata in hash order), so running it twice gives byte-identical files. Each file is
written via a temporary file + rename. At the end it prints each file's sha256, size, and
the pins to paste into ``plugins/zoonet/__init__.py`` and ``registry.toml``.

Bits depend on the thread count (kept at 1), the torch version, the CPU kernels, the font
files (``glyphs.fonts_digest()``, recorded in the metadata) and the FreeType inside
Pillow; the shipped files were produced with torch 2.14.1, Pillow 13.0.0 and matplotlib
3.11.2 on x86-64, one thread. A different setup gives equally good weights with other
hashes: re-pin them or keep the shipped files.
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
import PIL
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as st_save
from tqdm import tqdm

import zoo_core_plugins.zoonet as plugin
from zoo_core_plugins.zoonet import arch, glyphs

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "plugins" / "zoonet" / "weights"
TAG = plugin.GLYPHS_TAG
# Per-model recipe; epochs may be fractional (a prefix of an epoch's shuffled batches).
RECIPES = {
    "zoonet_s": {"epochs": 8.0, "batch_size": 128, "lr": 3e-3, "elastic_alpha": 2.5},
    "zoonet_m": {"epochs": 4.0, "batch_size": 32, "lr": 2e-3, "elastic_alpha": 2.5},
}
MIN_VAL_ACC = 0.2  # on 546 classes (chance 0.2%); a sanity floor, not a target
SHIFT = 2  # max random shift in pixels during training
STATS_TOL = 1e-4


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 grey (N, 32, 32) -> float (N, 3, 32, 32) in [0, 1] (not yet normalised)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    return x.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def normalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(plugin.DATA_CONFIG.mean).view(1, 3, 1, 1)
    std = torch.tensor(plugin.DATA_CONFIG.std).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


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


def elastic(x: torch.Tensor, gen: torch.Generator, alpha: float, grid: int = 4) -> torch.Tensor:
    """Smooth random warp of each image (Simard et al., 2003), so that printed glyphs look
    more like handwriting: a ``grid`` x ``grid`` field of displacements uniform in
    [-alpha, alpha] pixels, upsampled bicubically to the image, applied by ``grid_sample``."""
    if alpha <= 0:
        return x
    n, _, h, w = x.shape
    coarse = torch.rand(n, 2, grid, grid, generator=gen) * 2 - 1
    disp = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    disp = disp * torch.tensor([2 * alpha / w, 2 * alpha / h]).view(1, 2, 1, 1)
    eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(n, 2, 3)
    base = F.affine_grid(eye, [n, 1, h, w], align_corners=False)
    warped = F.grid_sample(x, base + disp.permute(0, 2, 3, 1), mode="bilinear",
                           padding_mode="zeros", align_corners=False)
    return warped


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512
) -> tuple[float, float]:
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(x), batch):
        logits = model(normalise(x[i : i + batch]))
        loss += F.cross_entropy(logits, y[i : i + batch], reduction="sum").item()
        correct += (logits.argmax(1) == y[i : i + batch]).sum().item()
    return loss / len(x), correct / len(x)


def train_one(name: str, data: dict, *, epochs: float, batch_size: int, lr: float, seed: int,
              elastic_alpha: float = 0.0):
    torch.manual_seed(seed)
    num_classes = len(glyphs.PRETRAIN_CLASSES)
    model = getattr(arch, name)(num_classes=num_classes).to(memory_format=torch.channels_last)
    nparams = sum(p.numel() for p in model.parameters())
    xtr, ytr = data["train"]
    xva, yva = data["val"]
    steps_per_epoch = math.ceil(len(xtr) / batch_size)
    total_steps = math.ceil(epochs * steps_per_epoch)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=total_steps, pct_start=0.15
    )
    gen = torch.Generator().manual_seed(seed)
    print(
        f"== {name}: {nparams:,} params, {len(xtr)} train / {len(xva)} val images "
        f"({num_classes} glyph classes), {epochs} epoch(s)"
    )
    t0 = time.perf_counter()
    va_acc = 0.0
    n_epochs = math.ceil(epochs)
    for epoch in range(1, n_epochs + 1):
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        tot_loss, tot_correct, seen = 0.0, 0, 0
        steps = min(steps_per_epoch, total_steps - (epoch - 1) * steps_per_epoch)
        bar = tqdm(
            range(steps),
            desc=f"{name} epoch {epoch}/{n_epochs}",
            leave=False,
            unit="batch",
            file=sys.stderr,
            dynamic_ncols=True,
            disable=None,  # only on a terminal
        )
        for step in bar:
            idx = perm[step * batch_size : (step + 1) * batch_size]
            xb = elastic(random_shift(xtr[idx], gen), gen, elastic_alpha)
            xb = normalise(xb)
            yb = ytr[idx]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=0.1)
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
            f"{name} epoch {epoch}/{n_epochs} ({steps} steps)  train loss {tot_loss / seen:.4f} "
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
    p.add_argument("--epochs", type=float, default=None, help="all models (default: RECIPES)")
    p.add_argument("--per-class", type=int, default=80, help="training images per class")
    p.add_argument("--val-per-class", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=None, help="all models (default: RECIPES)")
    p.add_argument("--lr", type=float, default=None, help="all models (default: RECIPES)")
    p.add_argument("--elastic-alpha", type=float, default=None,
                   help="elastic warp strength in pixels, all models (default: RECIPES)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: bitwise reproducible)")
    p.add_argument("--min-val-acc", type=float, default=MIN_VAL_ACC, help="refuse to write below")
    p.add_argument(
        "--allow-stats-mismatch",
        action="store_true",
        help="quick experiments (e.g. a few images per class) only: do not stop when the "
        "pixel statistics differ from the pinned data config",
    )
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    t_start = time.perf_counter()

    classes = glyphs.PRETRAIN_CLASSES
    assert not set(classes) & set(glyphs.HELDOUT_CLASSES)
    xtr, ytr = glyphs.render_set(classes, args.per_class, seed=args.seed, stream=0)
    xva, yva = glyphs.render_set(classes, args.val_per_class, seed=args.seed, stream=1)
    t_render = time.perf_counter() - t_start
    print(f"rendered {len(xtr)} train + {len(xva)} val glyph images in {t_render:.1f}s")

    # the data config's statistics must be those of the pretraining pixels
    mean, std = glyphs.channel_stats(xtr)
    print(
        f"pretraining pixel stats: mean {mean:.6f} std {std:.6f} "
        f"(pinned {plugin.GLYPHS_MEAN} / {plugin.GLYPHS_STD})"
    )
    off = abs(mean - plugin.GLYPHS_MEAN) > STATS_TOL or abs(std - plugin.GLYPHS_STD) > STATS_TOL
    if off and not args.allow_stats_mismatch:
        print(
            f"error: set GLYPHS_MEAN = {mean:.4f} and GLYPHS_STD = {std:.4f} in "
            "plugins/zoonet/__init__.py (the pixels changed), then run again",
            file=sys.stderr,
        )
        return 1
    data = {
        "train": (to_tensor(xtr), torch.from_numpy(ytr)),
        "val": (to_tensor(xva), torch.from_numpy(yva)),
    }
    del xtr, xva
    fonts_sha = glyphs.fonts_digest()

    results = []
    for name in args.models:
        recipe = dict(RECIPES.get(name, RECIPES["zoonet_s"]))
        for key in recipe:
            if getattr(args, key) is not None:
                recipe[key] = getattr(args, key)
        epochs = recipe["epochs"]
        model, va_acc, secs, nparams = train_one(name, data, seed=args.seed, **recipe)
        if va_acc < args.min_val_acc:
            print(
                f"error: {name} val accuracy {va_acc:.4f} < {args.min_val_acc}; not written",
                file=sys.stderr,
            )
            return 1
        model.eval()
        tensors = {
            k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()
        }
        metadata = {
            "format": "pt",
            "arch": name,
            "tag": TAG,
            "num_classes": str(len(classes)),
            "label_names": json.dumps(list(classes), ensure_ascii=False),
            "dataset": (
                "zoo_core_plugins.zoonet.glyphs: PRETRAIN_CLASSES rendered from matplotlib's "
                "bundled fonts, augmented, grey 32x32 replicated to RGB; no digits"
            ),
            "split": (
                f"{args.per_class} train (stream 0) / {args.val_per_class} val (stream 1) "
                f"images per class, seed {args.seed}"
            ),
            "epochs": str(epochs),
            "batch_size": str(recipe["batch_size"]),
            "lr": str(recipe["lr"]),
            "elastic_alpha": str(recipe["elastic_alpha"]),
            "source_val_accuracy": f"{va_acc:.4f}",
            "mean": json.dumps(list(plugin.DATA_CONFIG.mean)),
            "std": json.dumps(list(plugin.DATA_CONFIG.std)),
            "seed": str(args.seed),
            "fonts_sha256": fonts_sha,
            "script": "scripts/pretrain_zoonet.py",
            "torch": torch.__version__.split("+")[0],
            "pillow": PIL.__version__,
            "threads": str(torch.get_num_threads()),
            "license": plugin.GLYPHS_WEIGHTS_LICENSE,
        }
        blob = canonical_safetensors(tensors, metadata)
        path = args.out_dir / f"{name}-{TAG}.safetensors"
        write_atomic(path, blob)
        # read it back: strict load and metadata
        back = load_file(str(path))
        fresh = getattr(arch, name)(num_classes=len(classes))
        fresh.load_state_dict(back, strict=True)
        with safe_open(str(path), framework="pt") as f:
            assert f.metadata() == metadata
        assert evaluate(fresh, *data["val"])[1] == va_acc
        sha = hashlib.sha256(blob).hexdigest()
        results.append((name, path, sha, len(blob), va_acc, secs, nparams))

    print("\n== summary")
    print(f"rendering: {t_render:.1f}s")
    for name, path, sha, size, acc, secs, nparams in results:
        rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        print(f"{name}: {nparams:,} params  glyph val acc {acc:.4f}  trained in {secs:.1f}s")
        print(f"  {rel}  {size:,} bytes  sha256 {sha}")
    print("\n# plugins/zoonet/__init__.py")
    for name, _, sha, *_ in results:
        print(f'{name.upper()}_{TAG.upper()}_SHA256 = "{sha}"')
    print("\n# registry.toml")
    for name, _, sha, *_ in results:
        print(f'[weights."{name}".{TAG}]')
        print(f'source = "{plugin.weights_source(name, TAG)}"')
        print(f'sha256 = "{sha}"')
        print(f"num_classes = {len(classes)}\n")
    print(
        f"total wall time {time.perf_counter() - t_start:.1f}s "
        f"(torch {torch.__version__}, {torch.get_num_threads()} thread(s))"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
