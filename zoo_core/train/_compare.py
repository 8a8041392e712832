"""The embedded default, side by side: the four cells of the transfer-learning table on
embedded data, every strategy in each, and what ``auto`` chose (``zoo finetune --compare``).

| cell | embedded task | epochs |
|---|---|---|
| scarce + similar | glyph classes held out of the pretraining, 10 training images per class | 30 |
| plenty + similar | the same glyph classes, 100 training images per class | 10 |
| plenty + dissimilar | procedural textures, 100 per class | 10 |
| scarce, nothing to learn | noise images with random labels, 40 per class | 10 |

Each strategy trains with the same seed; ``auto`` runs its measurement (and pilot, where it
runs one) and is scored with the accuracy of the strategy it picked -- the same
deterministic run as that strategy's row. A ✓ means within 2 points of the best strategy,
or a refusal where no strategy beats chance by 10 points.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from zoo_core.errors import TransferNotRecommendedError
from zoo_core.train._auto import _decide
from zoo_core.train._defaults import DEFAULT_EPOCHS
from zoo_core.train._pipeline import finetune
from zoo_core.train._runners import make_pilot, make_race
from zoo_core.train._utils import _Printer

STRATEGIES = ("linear_probe", "partial:1", "finetune", "scratch")
COMPARE_STRATEGIES = (*STRATEGIES, "auto")
# (label, task, training images per class, epochs): plenty cells take more steps per epoch
CELLS = (
    ("scarce + similar", "glyphs-heldout", 10, DEFAULT_EPOCHS),
    ("plenty + similar", "glyphs-heldout", 100, 10),
    ("plenty + dissimilar", "textures", 100, 10),
    # 40 per class: on 10 auto cannot always rule a real gain out, and then trains instead
    ("scarce, nothing to learn", "random-labels", 40, 10),
)
HIT_POINTS = 0.02  # auto hits when within this of the best strategy
RIGHT_REFUSAL = 0.10  # a refusal is right when no strategy beats chance by this much


def score_auto(choice: str, accs: dict[str, float], chance: float) -> bool:
    """Is ``choice`` (a strategy, or ``"refused"``) a hit against the measured ``accs``?"""
    best = max(accs.values())
    if choice == "refused":
        return best - chance < RIGHT_REFUSAL
    return accs[choice] >= best - HIT_POINTS


def _split_test(folder: Any, val_per_class: int) -> tuple[Any, tuple]:
    """The first ``val_per_class`` validation images of each class stay validation; the
    rest become a test split that no training run evaluates on."""
    import dataclasses

    seen: dict[int, int] = {}
    val, test = [], []
    for path, label in folder.val:
        seen[label] = seen.get(label, 0) + 1
        (val if seen[label] <= val_per_class else test).append((path, label))
    return dataclasses.replace(folder, val=tuple(val)), tuple(test)


def accuracy_on(model: Any, samples: Sequence[tuple[str, int]]) -> float:
    """Top-1 accuracy of ``model`` (eval mode, its own eval transform) on ``samples``."""
    import torch

    from zoo_core.data._data import ImageDataset, collate_skip, make_transforms

    _, eval_tf = make_transforms(model)
    loader = torch.utils.data.DataLoader(ImageDataset(samples, eval_tf), batch_size=256,
                                         collate_fn=collate_skip)
    was, correct, seen = model.training, 0, 0
    model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                if batch.x is not None:
                    correct += int((model(batch.x).argmax(1) == batch.y).sum())
                    seen += len(batch.y)
    finally:
        model.train(was)
    return correct / seen if seen else float("nan")


def _curve(res: Any) -> dict[str, list[float]]:
    """One run's validation accuracy and loss after each epoch, and each epoch's seconds
    (training + validation; a row's ``curves``)."""
    return {"val_acc": [m.val_acc for m in res.history],
            "val_loss": [m.val_loss for m in res.history],
            "seconds": [m.seconds for m in res.history]}


def run_cell(model: str, task: str, per_class: int | None, *, epochs: int, seed: int,
             strategies: Sequence[str] = STRATEGIES, progress: bool = False,
             val_per_class: int = 40, with_auto: bool = True,
             root: Any = None, test_per_class: int = 0) -> dict[str, Any]:
    """Every strategy and ``auto`` on one embedded task (or the ImageFolder ``root``, named
    ``task``); returns the row dict (``with_auto=False``: the strategies alone, ``auto`` is
    ``None``).

    ``test_per_class``: the task (or ``root``, written with ``val_per_class +
    test_per_class`` validation images per class) keeps ``val_per_class`` for the runs'
    per-epoch validation, and every strategy's final model is scored on the other
    ``test_per_class`` ("accuracy"; the validation figures move to "val_accuracy"): a
    larger held-out split without a larger per-epoch cost."""
    from tqdm import tqdm

    from zoo_core.data._data import scan_image_folder
    from zoo_core.data._embedded import embedded_task

    if root is None:
        root = embedded_task(task, per_class, seed=seed,
                             val_per_class=val_per_class + test_per_class)
    folder = scan_image_folder(root, seed=seed, warn=False)
    test: tuple = ()
    if test_per_class:
        folder, test = _split_test(folder, val_per_class)
    accs, seconds, tests, curves = {}, {}, {}, {}
    # a bar over the strategies, labelled with the one training now (terminals only: the
    # epoch bar below it says "partial:1 epoch 3/30"; CI logs get the cell's table)
    bar = tqdm(strategies, desc=task, unit="strategy", leave=False, file=sys.stderr,
               disable=not (progress and sys.stderr.isatty()))
    plain = progress and not sys.stderr.isatty()  # no bar: one line per strategy
    where = f"{task} ({per_class or 'all'}/class)"
    for s in bar:
        bar.set_description(f"{task} ({per_class or 'all'}/class): {s}")
        started = time.perf_counter()
        net, res = finetune(model, folder, strategy=s, epochs=epochs, seed=seed,
                            progress=progress, verbose=False)
        accs[s], seconds[s] = res.final_val_acc, time.perf_counter() - started
        curves[s] = _curve(res)
        if test:
            tests[s] = accuracy_on(net, test)
        del net
        if plain:
            print(f"{where}: {s} val acc {accs[s]:.3f} in {seconds[s]:.1f} s", file=sys.stderr,
                  flush=True)
    bar.close()
    if not with_auto:
        row = {"task": task, "per_class": per_class, "num_train": len(folder.train),
               "num_val": len(folder.val), "accuracy": accs, "seconds": seconds,
               "auto": None, "curves": curves}
        if test:
            row.update(accuracy=tests, val_accuracy=accs, num_test=len(test))
        return row
    started = time.perf_counter()
    if plain:
        print(f"{where}: auto measuring and deciding...", file=sys.stderr, flush=True)
    quiet = _Printer(False)
    try:
        choice, _, _, figures = _decide(
            model, folder, weights="default", seed=seed, force=False, device="cpu",
            num_workers=0, say=quiet, epochs=epochs, progress=progress,
            pilot=make_pilot(finetune, model, seed=seed, weights="default"),
            race=make_race(finetune, model, epochs, seed=seed, weights="default"))
    except TransferNotRecommendedError as exc:
        choice, figures = "refused", getattr(exc, "figures", {})
    auto_seconds = time.perf_counter() - started
    if choice != "refused" and choice not in accs:  # a strategy the caller left out
        started = time.perf_counter()
        net, res = finetune(model, folder, strategy=choice, epochs=epochs, seed=seed,
                            progress=progress, verbose=False)
        accs[choice], seconds[choice] = res.final_val_acc, time.perf_counter() - started
        curves[choice] = _curve(res)
        if test:
            tests[choice] = accuracy_on(net, test)
        del net
    chance = figures.get("chance", 1.0 / folder.num_classes)
    row = {"task": task, "per_class": per_class, "num_train": len(folder.train),
           "num_val": len(folder.val), "accuracy": accs, "seconds": seconds,
           "auto": choice, "auto_seconds": auto_seconds, "chance": chance,
           "cell": (figures.get("decision") or {}).get("cell", ""), "figures": figures,
           "curves": curves}
    if test:
        row.update(accuracy=tests, val_accuracy=accs, num_test=len(test))
    row["hit"] = score_auto(choice, row["accuracy"], chance)
    return row


def parse_strategies(text: str) -> tuple[str, ...]:
    """``--compare --strategy a,b,c``: the strategies to compare, each checked.

    >>> parse_strategies("linear_probe, first:1,stage:0")
    ('linear_probe', 'first:1', 'stage:0')
    """
    from zoo_core.errors import InvalidArgumentError
    from zoo_core.strategies._strategies import parse_strategy

    names = tuple(s.strip() for s in str(text).split(",") if s.strip())
    if not names:
        raise InvalidArgumentError("--compare --strategy needs at least one strategy, e.g. "
                                   "linear_probe,first:1,finetune")
    out = tuple(str(parse_strategy(s)) for s in names)
    if "auto" in out:
        raise InvalidArgumentError("--compare always runs auto next to the strategies; "
                                   "leave 'auto' out of --strategy")
    return tuple(dict.fromkeys(out))


def run_default(model: str = "zoonet_s", *, epochs: int | None = None, seed: int = 0,
                cells: Sequence[tuple[str, str, int | None, int]] = CELLS, verbose: bool = True,
                progress: bool = False, threads: int | None = 1,
                strategies: Sequence[str] = STRATEGIES) -> list[dict[str, Any]]:
    """Run :data:`CELLS` and print a table per cell (module doc). ``threads``: torch
    threads during the run (restored after); one is fastest for 32x32 images on a tiny
    CNN and keeps a busy machine from slowing OpenMP down tenfold (``None``: as is).
    ``epochs`` overrides every cell's own (``None``: the cells' epochs). ``strategies``:
    those to compare (a strategy ``auto`` picks outside them is trained too)."""
    import torch

    say = _Printer(verbose)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    rows = []
    try:
        say(f"{model}: every strategy on the four cells of the transfer-learning table "
            f"(seed {seed}; final accuracy on the validation images)")
        for label, task, per_class, cell_epochs in cells:
            row = run_cell(model, task, per_class, epochs=epochs or cell_epochs, seed=seed,
                           progress=progress, strategies=strategies)
            row["label"], row["epochs"] = label, epochs or cell_epochs
            rows.append(row)
            _print_cell(say, row)
    finally:
        torch.set_num_threads(before)
    hits = sum(r["hit"] for r in rows)
    say(f"\nauto: {hits} of {len(rows)} cells within {HIT_POINTS * 100:.0f} points of the "
        "best strategy (or a right refusal)")
    sys.stdout.flush()
    return rows


def _print_cell(say: _Printer, r: dict[str, Any]) -> None:
    accs = r["accuracy"]
    best = max(accs.values())
    say(f"\n{r['label']}: {r['task']}, {r['num_train']} train / {r['num_val']} val images, "
        f"{r['epochs']} epochs (chance {r['chance']:.2f}); auto measured: "
        f"{r['cell'] or 'n/a'}")
    say(f"  {'strategy':<14} {'val acc':>7} {'time':>7}")
    for s, acc in accs.items():
        mark = "  <- best" if acc == best else ""
        say(f"  {s:<14} {acc:>7.3f} {r['seconds'][s]:>6.1f}s{mark}")
    got = "refused" if r["auto"] == "refused" else f"{r['auto']} ({accs[r['auto']]:.3f})"
    say(f"  {'auto':<14} {got}  {'✓' if r['hit'] else '✗'}  decided in "
        f"{r['auto_seconds']:.1f}s")
