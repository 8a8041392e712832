"""``zoo eval`` and ``zoo predict``: use a trained model.

``MODEL`` is anything :func:`zoo_core.build_model` takes: a zoo name, ``hf-hub:org/repo``
or a saved folder (``runs/x/best``). Its label names come from the model
(``model.zoo.label_names``); preprocessing from its data config (timm's eval transform).
Metrics are scikit-learn's.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from zoo_core.errors import InvalidArgumentError

VAL_DIRS = ("val", "valid", "validation", "test")


def _load(model: str, device: str | None) -> Any:
    import torch

    from zoo_core._builder import build_model

    net = build_model(model, device=torch.device(device or "cpu"))
    net.eval()
    return net


def _labels(net: Any) -> list[str]:
    names = net.zoo.label_names
    return list(names) if names else [str(i) for i in range(net.zoo.num_classes)]


def _batches(net: Any, paths: list[str], batch_size: int,
             bad: list[tuple[str, str]] | None = None) -> Any:
    """Yield (paths, probabilities) per batch. An unreadable file raises with its path,
    or, given a ``bad`` list, is appended to it as ``(path, reason)`` and left out of its
    batch (a batch of only bad files yields nothing)."""
    import torch

    from zoo_core._data import load_rgb, make_transforms

    _, eval_tf = make_transforms(net)
    device = next(net.parameters()).device
    for i in range(0, len(paths), batch_size):
        chunk, xs = [], []
        for p in paths[i:i + batch_size]:
            try:
                xs.append(eval_tf(load_rgb(p)))
            except Exception as exc:  # PIL raises many types for a bad file
                if bad is None:
                    raise InvalidArgumentError(f"cannot read image {p!r}: {exc}") from exc
                bad.append((p, f"{type(exc).__name__}: {exc}"))
                continue
            chunk.append(p)
        if not xs:
            continue
        with torch.no_grad():
            logits = net(torch.stack(xs).to(device))
        yield chunk, torch.softmax(logits.float(), dim=1).cpu()


def evaluate(model: str, data: str | os.PathLike[str], *, out: str | os.PathLike[str] | None
             = None, batch_size: int = 64, device: str | None = None) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix of ``model`` on the
    images of ``data`` (``data/val/<class>/*`` when there is a val folder, else
    ``data/<class>/*``). ``out``: write ``metrics.json``, ``confusion_matrix.json`` and
    ``confusion_matrix.png`` there."""
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

    from zoo_core._data import (
        BadImageWarning,
        DatasetError,
        DatasetNotFoundError,
        _fmt_skipped,
        warn_scan,
    )
    from zoo_core._scan import scan_classes

    root = Path(data).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(f"--data {str(root)!r} is not a directory of class folders")
    folder = next((root / n for n in VAL_DIRS if (root / n).is_dir()), root)
    found = scan_classes(root, [folder])  # the walker's rules: see zoo_core._scan
    per_class, skipped = found.parts[0], list(found.skipped)
    warn_scan(root, skipped, found.duplicates)
    if not per_class:
        bad = f" ({len(skipped)} skipped: {_fmt_skipped(skipped)})" if skipped else ""
        raise DatasetError(f"no images under {str(folder)!r}{bad}; expected <class>/<image> "
                           "folders")
    net = _load(model, device)
    labels = _labels(net)
    unknown = sorted(set(per_class) - set(labels))
    if unknown:
        raise DatasetError(
            f"class folder(s) {unknown} under {str(folder)!r} are not labels of {model!r} "
            f"({', '.join(labels)}); evaluate on folders named after the model's labels")
    paths = [p for c in sorted(per_class) for p in per_class[c]]
    label_of = {p: labels.index(c) for c in sorted(per_class) for p in per_class[c]}
    truth: list[int] = []
    pred: list[int] = []
    undecodable: list[tuple[str, str]] = []
    for chunk, probs in _batches(net, paths, batch_size, undecodable):
        truth.extend(label_of[p] for p in chunk)
        pred.extend(int(i) for i in probs.argmax(1))
    if undecodable:
        import warnings

        warnings.warn(f"skipped {len(undecodable)} image(s) that failed to decode: "
                      f"{_fmt_skipped(undecodable)}", BadImageWarning, stacklevel=2)
        skipped += undecodable
    if not pred:
        raise DatasetError(f"no image under {str(folder)!r} could be decoded "
                           f"({len(skipped)} skipped: {_fmt_skipped(skipped)})")
    ids = list(range(len(labels)))
    report = classification_report(truth, pred, labels=ids, target_names=labels,
                                   output_dict=True, zero_division=0)
    matrix = confusion_matrix(truth, pred, labels=ids).tolist()
    result = {"model": model, "data": str(folder), "num_images": len(pred),
              "accuracy": float(accuracy_score(truth, pred)),
              "per_class": {c: report[c] for c in labels},
              "macro_avg": report["macro avg"], "weighted_avg": report["weighted avg"],
              "labels": labels, "confusion_matrix": matrix,
              "skipped": [list(s) for s in skipped],
              "duplicates": [list(d) for d in found.duplicates]}
    if out is not None:
        _write(Path(out), result)
    return result


def _write(out: Path, result: dict[str, Any]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from zoo_core._finetune.utils import _atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(out / "metrics.json", json.dumps(result, indent=2) + "\n")
    _atomic_write_text(out / "confusion_matrix.json", json.dumps(
        {"labels": result["labels"], "rows": "true label", "columns": "predicted label",
         "matrix": result["confusion_matrix"]}, indent=2) + "\n")
    labels, matrix = result["labels"], result["confusion_matrix"]
    size = max(4.0, 0.45 * len(labels) + 2)
    fig = Figure(figsize=(size, size), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=90 if len(labels) > 8 else 0)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    peak = max((max(r) for r in matrix), default=0)
    if len(labels) <= 30:
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                        color="white" if v > peak / 2 else "black")
    ax.set_title(f"accuracy {result['accuracy']:.3f} on {result['num_images']} images",
                 fontsize=10)
    fig.tight_layout()
    tmp = out / f".confusion_matrix.tmp-{os.getpid()}.png"
    fig.savefig(tmp, format="png")
    os.replace(tmp, out / "confusion_matrix.png")


def predict(model: str, images: list[str], *, top_k: int = 5, batch_size: int = 64,
            device: str | None = None) -> list[dict[str, Any]]:
    """Top-``top_k`` labels with probabilities for each image."""
    if top_k < 1:
        raise InvalidArgumentError(f"--top-k must be >= 1, got {top_k}")
    missing = [p for p in images if not Path(p).exists()]
    if missing:
        raise InvalidArgumentError(f"no such image file(s): {', '.join(missing)}")
    special = [p for p in images if not Path(p).is_file()]  # never open a FIFO or device
    if special:
        raise InvalidArgumentError(f"not a regular file (a folder, FIFO, socket or device?): "
                                   f"{', '.join(special)}; name image files")
    net = _load(model, device)
    labels = _labels(net)
    k = min(top_k, len(labels))
    rows = []
    for chunk, probs in _batches(net, list(images), batch_size):
        values, idx = probs.topk(k, dim=1)
        for path, vs, ids in zip(chunk, values.tolist(), idx.tolist(), strict=True):
            rows.append({"image": path, "top": [{"label": labels[i], "index": i,
                                                 "probability": v}
                                                for v, i in zip(vs, ids, strict=True)]})
    return rows


def add_cli(sub: Any) -> None:
    """``zoo eval`` and ``zoo predict``."""
    p = sub.add_parser("eval", help="evaluate a model on an image folder",
                       description="Accuracy, per-class precision/recall and a confusion "
                                   "matrix (PNG + JSON) of MODEL (a name, hf-hub:org/repo or "
                                   "a saved folder such as runs/x/best) on DIR/val/<class>/* "
                                   "(or DIR/<class>/*).")
    p.add_argument("model", metavar="MODEL_OR_DIR")
    p.add_argument("--data", required=True, metavar="DIR")
    p.add_argument("--out", default=None, help="folder for metrics.json and the confusion "
                   "matrix (default: MODEL_OR_DIR/eval for a folder, else eval-<name>)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("predict", help="top-k labels for images")
    p.add_argument("model", metavar="MODEL_OR_DIR")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--device", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_predict)


def _cmd_eval(args: argparse.Namespace) -> int:
    out = args.out
    if out is None:
        local = Path(args.model)
        out = local / "eval" if local.is_dir() else Path(
            "eval-" + args.model.replace("/", "_").replace(":", "_"))
    res = evaluate(args.model, args.data, out=out, batch_size=args.batch_size,
                   device=args.device)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"accuracy   {res['accuracy']:.4f} on {res['num_images']} images of {res['data']}")
    print(f"{'class':<16} {'precision':>9} {'recall':>7} {'f1':>6} {'images':>7}")
    for name, r in res["per_class"].items():
        print(f"{name:<16} {r['precision']:>9.3f} {r['recall']:>7.3f} {r['f1-score']:>6.3f} "
              f"{int(r['support']):>7}")
    if res["skipped"]:
        from zoo_core._data import _fmt_skipped

        print(f"skipped    {len(res['skipped'])} file(s), not counted: "
              f"{_fmt_skipped([tuple(s) for s in res['skipped']], limit=3)}")
    print(f"outputs    {out} (metrics.json, confusion_matrix.json, confusion_matrix.png)")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    rows = predict(args.model, args.images, top_k=args.top_k, device=args.device)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(row["image"])
        for t in row["top"]:
            print(f"  {t['probability']:.4f}  {t['label']}")
    return 0
