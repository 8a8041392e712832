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
import textwrap
from pathlib import Path
from typing import Any

from zoo_core.errors import InvalidArgumentError

VAL_DIRS = ("val", "valid", "validation", "test")
TTA = ("none", "flip")


def _load(model: str, device: str | None) -> Any:
    import torch

    from zoo_core.build._builder import build_model

    net = build_model(model, device=torch.device(device or "cpu"))
    net.eval()
    return net


def _labels(net: Any) -> list[str]:
    names = net.zoo.label_names
    return list(names) if names else [str(i) for i in range(net.zoo.num_classes)]


def _batches(net: Any, paths: list[str], batch_size: int,
             bad: list[tuple[str, str]] | None = None, tta: str = "none") -> Any:
    """Yield (paths, probabilities) per batch. An unreadable file raises with its path,
    or, given a ``bad`` list, is appended to it as ``(path, reason)`` and left out of its
    batch (a batch of only bad files yields nothing). ``tta="flip"``: the logits are the
    mean of the image's and its horizontal mirror's."""
    import torch

    from zoo_core.data._data import load_rgb, make_transforms

    _, eval_tf = make_transforms(net)  # in the channels net was built for
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
            x = torch.stack(xs).to(device)
            logits = net(x).float()
            if tta == "flip":
                logits = (logits + net(x.flip(-1)).float()) / 2
        yield chunk, torch.softmax(logits.float(), dim=1).cpu()


def find_run(model: str) -> tuple[Path | None, str]:
    """``(run folder or None, model to load)``: ``RUN`` and ``RUN/best`` both name a run
    (a folder with ``split.json``); ``RUN`` loads ``RUN/best``."""
    from zoo_core.train._split_record import SPLIT_FILE

    path = Path(model).expanduser()
    if not path.is_dir():
        return None, model
    if (path / SPLIT_FILE).is_file() or ((path / "run.json").is_file()
                                         and (path / "best").is_dir()):
        return path, str(path / "best")
    if (path.parent / SPLIT_FILE).is_file():
        return path.parent, model
    return None, model


def _run_validation(run: Path, split: dict[str, Any]) -> tuple[list[str], list[str]]:
    from zoo_core.data._data import DatasetNotFoundError

    root = Path(split["root"])
    paths = [str(root / rel) for rel, _ in split["val"]]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"{len(missing)} of the {len(paths)} validation images of run {run} are gone "
            f"from its data root {root} (first: {missing[0]}); was the data moved? Pass "
            "--data DIR to evaluate on a folder (the run's training images are left out)")
    return paths, [name for _, name in split["val"]]


def _without_training(run: Path, split: dict[str, Any], paths: list[str],
                      names: list[str]) -> tuple[list[str], list[str], int]:
    root = Path(split["root"])
    seen = {os.path.realpath(root / rel) for rel, _ in split["train"]}
    keep = [i for i, p in enumerate(paths) if os.path.realpath(p) not in seen]
    return [paths[i] for i in keep], [names[i] for i in keep], len(paths) - len(keep)


def evaluate(model: str, data: str | os.PathLike[str] | None = None, *,
             out: str | os.PathLike[str] | None = None, batch_size: int = 64,
             device: str | None = None, include_train: bool = False, tta: str = "none",
             worst: int = 16) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix of ``model``.

    ``model`` a run folder (``RUN`` or ``RUN/best``, which recorded its split in
    ``RUN/split.json``), a saved folder or a model name. Without ``data``: the run's own
    validation split. With ``data``: the images of ``data/val/<class>/*`` when there is a
    val folder, else ``data/<class>/*``, minus the run's training images unless
    ``include_train`` (then a warning says how many are in). ``result["split"]`` says
    which images were scored. ``out``: write ``metrics.json``, ``confusion_matrix.json``,
    ``confusion_matrix.png`` and ``worst.png`` (the ``worst`` most confident mistakes,
    also listed in ``result["worst"]``; 0: none) there. ``tta="flip"``: average the
    logits of each image and its horizontal flip."""
    import warnings

    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

    from zoo_core.cli.worst import WORST_FILE, most_confident_mistakes, write_worst
    from zoo_core.data._data import (
        BadImageWarning,
        DatasetError,
        DatasetNotFoundError,
        DatasetWarning,
        _fmt_skipped,
        warn_scan,
    )
    from zoo_core.data._scan import scan_classes
    from zoo_core.train._split_record import read_split

    if tta not in TTA:
        raise InvalidArgumentError(f"--tta must be one of {', '.join(TTA)}, got {tta!r}")
    if isinstance(worst, bool) or not isinstance(worst, int) or worst < 0:
        raise InvalidArgumentError(f"--worst must be an integer >= 0, got {worst!r}")
    run, to_load = find_run(str(model))
    split = read_split(run) if run is not None else None
    skipped: list[tuple[str, str]] = []
    duplicates: list[tuple[str, str]] = []
    excluded = 0
    if data is None:
        if split is None:
            raise InvalidArgumentError(
                f"--data DIR is needed: {model} is not a run folder with a split.json "
                "(zoo eval RUN scores a run's own validation split)")
        assert run is not None
        paths, names = _run_validation(run, split)
        where, described = split["root"], f"validation split of run {run}"
    else:
        root = Path(data).expanduser()
        if not root.is_dir():
            raise DatasetNotFoundError(
                f"--data {str(root)!r} is not a directory of class folders")
        folder = next((root / n for n in VAL_DIRS if (root / n).is_dir()), root)
        found = scan_classes(root, [folder])  # the walker's rules: see zoo_core.data._scan
        per_class, skipped, duplicates = found.parts[0], list(found.skipped), found.duplicates
        warn_scan(root, skipped, duplicates)
        if not per_class:
            bad = f" ({len(skipped)} skipped: {_fmt_skipped(skipped)})" if skipped else ""
            raise DatasetError(f"no images under {str(folder)!r}{bad}; expected "
                               "<class>/<image> folders")
        paths = [p for c in sorted(per_class) for p in per_class[c]]
        names = [c for c in sorted(per_class) for _ in per_class[c]]
        where, described = str(folder), str(folder)
        if split is not None:
            kept_paths, kept_names, excluded = _without_training(run, split, paths, names)
            if include_train:
                if excluded:
                    warnings.warn(
                        f"{excluded} of the {len(paths)} images under {folder} are training "
                        f"images of run {run}: the accuracy on them overstates how the "
                        "model does on new images (drop --include-train to leave them out)",
                        DatasetWarning, stacklevel=2)
                described = f"{folder} including {excluded} training images of run {run}"
                excluded = 0
            else:
                if not kept_paths:
                    raise DatasetError(
                        f"every image under {str(folder)!r} is a training image of run "
                        f"{run}; zoo eval {run} scores its validation split (or pass "
                        "--include-train to score them anyway)")
                paths, names = kept_paths, kept_names
                described = f"{folder} minus {excluded} training images of run {run}"
    net = _load(to_load, device)
    labels = _labels(net)
    unknown = sorted(set(names) - set(labels))
    if unknown:
        raise DatasetError(
            f"class folder(s) {unknown} under {where!r} are not labels of {model!r} "
            f"({', '.join(labels)}); evaluate on folders named after the model's labels")
    label_of = {p: labels.index(c) for p, c in zip(paths, names, strict=True)}
    truth: list[int] = []
    pred: list[int] = []
    scored: list[str] = []
    confidence: list[float] = []
    undecodable: list[tuple[str, str]] = []
    for chunk, probs in _batches(net, paths, batch_size, undecodable, tta=tta):
        truth.extend(label_of[p] for p in chunk)
        top, idx = probs.max(1)
        pred.extend(int(i) for i in idx)
        confidence.extend(float(v) for v in top)
        scored.extend(chunk)
    if undecodable:
        warnings.warn(f"skipped {len(undecodable)} image(s) that failed to decode: "
                      f"{_fmt_skipped(undecodable)}", BadImageWarning, stacklevel=2)
        skipped += undecodable
    if not pred:
        raise DatasetError(f"no image of {described} could be decoded "
                           f"({len(skipped)} skipped: {_fmt_skipped(skipped)})")
    ids = list(range(len(labels)))
    report = classification_report(truth, pred, labels=ids, target_names=labels,
                                   output_dict=True, zero_division=0)
    matrix = confusion_matrix(truth, pred, labels=ids).tolist()
    result = {"model": str(model), "data": where, "split": described,
              "run": str(run) if run is not None else None,
              "excluded_train_images": excluded, "num_images": len(pred),
              "accuracy": float(accuracy_score(truth, pred)),
              "per_class": {c: report[c] for c in labels},
              "macro_avg": report["macro avg"], "weighted_avg": report["weighted avg"],
              "labels": labels, "confusion_matrix": matrix,
              "skipped": [list(s) for s in skipped],
              "duplicates": [list(d) for d in duplicates], "tta": tta,
              "worst": most_confident_mistakes(scored, truth, pred, confidence, labels,
                                               worst)}
    if out is not None:
        _write(Path(out), result)
        if worst:
            write_worst(Path(out) / WORST_FILE, result["worst"], num_images=len(pred))
    return result


def _write(out: Path, result: dict[str, Any]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from zoo_core.train._utils import _atomic_write_text

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
    ax.set_title(f"accuracy {result['accuracy']:.3f} on {result['num_images']} images\n"
                 + "\n".join(textwrap.wrap(result.get("split") or result["data"], 60)),
                 fontsize=9)
    fig.tight_layout()
    tmp = out / f".confusion_matrix.tmp-{os.getpid()}.png"
    fig.savefig(tmp, format="png")
    os.replace(tmp, out / "confusion_matrix.png")


def _expand(items: list[str]) -> list[str]:
    """Image files as given; a folder becomes the images under it (sorted, recursive)."""
    from zoo_core.data._scan import images_under

    missing = [str(p) for p in items if not Path(p).exists()]
    if missing:
        raise InvalidArgumentError(f"no such image file or folder: {', '.join(missing)}")
    found: list[str] = []
    for item in items:
        if Path(item).is_dir():
            under = images_under(item)
            if not under:
                raise InvalidArgumentError(f"no images under the folder {item!r}")
            found.extend(under)
        elif not Path(item).is_file():  # never open a FIFO, socket or device
            raise InvalidArgumentError(f"not a regular file (a FIFO, socket or device?): "
                                       f"{item}; name image files or folders")
        else:
            found.append(str(item))
    return found


def predict(model: str, images: list[str], *, top_k: int = 5, batch_size: int = 64,
            device: str | None = None) -> list[dict[str, Any]]:
    """Top-``top_k`` labels with probabilities for each image."""
    if top_k < 1:
        raise InvalidArgumentError(f"--top-k must be >= 1, got {top_k}")
    images = _expand(images)
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
    p = sub.add_parser("eval", help="evaluate a model on its run's validation split or a "
                                    "folder",
                       description="Accuracy, per-class precision/recall and a confusion "
                                   "matrix (PNG + JSON) of MODEL (a run folder RUN or RUN/best, "
                                   "a name, hf-hub:org/repo or a saved folder). A run without "
                                   "--data: its own validation split (RUN/split.json). "
                                   "--data DIR: DIR/val/<class>/* (or DIR/<class>/*), minus "
                                   "the run's training images.")
    p.add_argument("model", metavar="RUN_OR_MODEL")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="image folder to score (needed unless MODEL is a run folder)")
    p.add_argument("--include-train", action="store_true",
                   help="with --data: keep images the run trained on (with a warning)")
    p.add_argument("--out", default=None, help="folder for metrics.json and the confusion "
                   "matrix (default: MODEL_OR_DIR/eval for a folder, else eval-<name>)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--tta", choices=TTA, default="none",
                   help="test-time augmentation: flip averages the logits of each image "
                        "and its horizontal flip")
    p.add_argument("--worst", type=int, default=16, metavar="N",
                   help="worst.png: the N most confident mistakes with true and predicted "
                        "labels (0: none)")
    p.add_argument("--device", default=None)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("predict", help="top-k labels for images")
    p.add_argument("model", metavar="MODEL_OR_DIR")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER",
                   help="image files, or folders (every image under them)")
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
                   device=args.device, include_train=args.include_train, tta=args.tta,
                   worst=args.worst)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"accuracy   {res['accuracy']:.4f} on {res['num_images']} images: {res['split']}")
    print(f"{'class':<16} {'precision':>9} {'recall':>7} {'f1':>6} {'images':>7}")
    for name, r in res["per_class"].items():
        print(f"{name:<16} {r['precision']:>9.3f} {r['recall']:>7.3f} {r['f1-score']:>6.3f} "
              f"{int(r['support']):>7}")
    if res["skipped"]:
        from zoo_core.data._data import _fmt_skipped

        print(f"skipped    {len(res['skipped'])} file(s), not counted: "
              f"{_fmt_skipped([tuple(s) for s in res['skipped']], limit=3)}")
    if args.worst:
        print(f"mistakes   {len(res['worst'])} most confident in worst.png" if res["worst"]
              else "mistakes   none")
    print(f"outputs    {out} (metrics.json, confusion_matrix.json, confusion_matrix.png"
          + (", worst.png)" if args.worst else ")"))
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
