"""``auto``: measure the data and the pretrained features, decide, explain.

1. :func:`~zoo_core.train._measure.measure_transfer` scores a cross-validated probe on
   pretrained and on random-init features of a class-balanced training sample;
2. :func:`zoo_core.strategies._decide.decide` places the data in a cell of the transfer-learning
   table and picks a strategy, saying where it departs from the cell's literal advice;
3. where the decision leaves two candidates close and there is data enough to hold some
   out (``[auto] pilot_min_per_class``), a short **pilot** trains both on a stratified
   80/20 split of the training images for ``[auto] pilot_fraction`` of the epochs and
   keeps the better one (ties keep the decision's first choice);
4. where no probe found anything to learn, the decision is a refusal with a pilot: with
   images enough to hold out, the pilot trains its candidates for the **full** epochs on
   the 80/20 split and scores them on the held-out fifth *and* the validation split (a
   refusal is final, so its pilot must be able to see what the final run would learn).
   auto refuses only when none beats chance significantly
   (:func:`zoo_core.train._evidence.holdout_test`, ``p < [auto] refuse_p``) *and* the best
   one's upper confidence bound rules out a gain of ``[auto] refuse_gain`` over chance
   (at ``refuse_bound_p``); else it trains the best one. Without that bound a pilot on a
   few dozen images refused a task the final run learnt to 15-18 points above chance
   (a dot inside or outside a ring, 100 images per class: ``fresh10`` in
   benchmarks/README.md);
5. with ``[auto] race_fraction`` above 0 (an opt-in; off by default), wherever auto would
   train, the four table strategies **race** instead of steps 2-3 choosing
   (:mod:`._race`): the best on validation after their first epochs is trained.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from zoo_core.errors import StrategyError, TransferNotRecommendedError
from zoo_core.train._evidence import holdout_test
from zoo_core.train._measure import Measurements, measure_transfer
from zoo_core.train._race import RaceFn, race_note, run_race
from zoo_core.train._utils import _Printer

if TYPE_CHECKING:  # pragma: no cover
    from zoo_core.data._data import FolderData

# pilot(strategy, folder, epochs) -> holdout accuracy; supplied by the pipeline
PilotFn = Callable[[str, "FolderData", int], float]


def _has_pretrained(model_name: str, weights: Any) -> bool:
    from zoo_core.build._builder import _weights_spec
    from zoo_core.registry._registry import get_registry
    from zoo_core.saved._sources import is_saved_model_name
    from zoo_core.strategies._strategies import Strategy

    if weights is None:
        return False
    if is_saved_model_name(model_name):  # a Hub repo or a saved folder: its own weights
        return True
    spec = get_registry().resolve(model_name).spec
    try:
        return _weights_spec(spec, weights, Strategy("finetune")) is not None
    except StrategyError:
        return False


def _plain_step(step: str, bar: Any) -> None:
    bar.zoo_done = getattr(bar, "zoo_done", 0) + 1  # a disabled bar does not count
    print(f"auto: measured {step} features ({bar.zoo_done}/{bar.total})", file=sys.stderr,
          flush=True)


def fmt_measurements(m: Measurements) -> str:
    """The measured figures, in the words the decision uses."""
    def score(s: Any) -> str:
        return "n/a" if s is None else f"{s.mean:.3f} +- {s.std:.3f}"

    lines = [f"measured    {m.num_train} training images, {m.num_classes} classes, "
             f"{m.per_class:.1f} per class (smallest {m.min_per_class}); chance "
             f"{m.chance:.3f} (majority rate of the "
             f"{'validation' if m.chance != m.train_chance else 'validation/training'} "
             "labels)"]
    folds = f"{m.random.folds}-fold x {m.random.repeats}"
    if m.pretrained is None:
        lines.append("probe       no pretrained weights: only random-init features measured "
                     f"({score(m.random)})")
    else:
        lines.append(f"probe       logistic regression, {folds}, on {m.images} sampled "
                     f"images: pretrained features {score(m.pretrained)}, random-init "
                     f"features {score(m.random)} (BatchNorm recalibrated)"
                     + (f", raw pixels {score(m.raw)}" if m.raw is not None else "")
                     + f", {m.seconds:.1f} s")
    if m.evidence:
        tested = ", ".join(f"{k} p={e['p']:.2g} (baseline {e['baseline']:.3f})"
                           for k, e in m.evidence.items())
        lines.append(f"evidence    each probe against a label-permutation baseline on the same "
                     f"features: {tested}")
    lines += [f"warning     {p}" for p in m.problems]
    return "\n".join(lines)


def _pilot_split(folder: FolderData, seed: int, with_val: bool = False) -> FolderData:
    """80/20 stratified split of the training images; ``with_val``: the validation images
    are held out too (more images to score on, none to train on)."""
    from zoo_core.data._data import stratified_split

    labels = [lab for _, lab in folder.train]
    tr, ho = stratified_split(labels, 0.2, seed)
    train = tuple(folder.train[i] for i in tr)
    hold = tuple(folder.train[i] for i in ho) + (tuple(folder.val) if with_val else ())
    split = "pilot: 80/20 stratified split of the training images" + (
        ", scored on the held-out fifth and the validation images" if with_val else "")
    return dataclasses.replace(folder, train=train, val=hold, split=split)


def _run_pilot(candidates: tuple[str, ...], folder: FolderData, *, epochs: int, seed: int,
               pilot: PilotFn, say: _Printer, with_val: bool = False,
               bound_p: float = 0.05) -> tuple[str, dict[str, Any]]:
    pilot_data = _pilot_split(folder, seed, with_val)
    where = ("held-out training and validation images" if with_val else
             "held-out training images")
    started = time.perf_counter()
    accs = {}
    for s in candidates:
        accs[s] = pilot(s, pilot_data, epochs)
        say(f"pilot       {s}: {accs[s]:.3f} on {len(pilot_data.val)} {where} after "
            f"{epochs} epoch(s)")
    first = candidates[0]
    best = max(candidates, key=lambda s: (accs[s] - (0.01 if s != first else 0.0)))
    info = {"candidates": list(candidates), "accuracy": accs, "epochs": epochs,
            "holdout": len(pilot_data.val), "seconds": round(time.perf_counter() - started, 3),
            "evidence": holdout_test(accs, [lab for _, lab in pilot_data.val], bound_p)}
    if with_val:
        info["scored_on"] = "held-out fifth + validation"
    return best, info


def _decide(model_name: str, folder: FolderData, *, weights: Any, seed: int, force: bool,
            device: Any, num_workers: int, say: _Printer, input_size: Any = None,
            epochs: int = 30, pilot: PilotFn | None = None,
            progress: bool = False, race: RaceFn | None = None,
            race_fraction: float | None = None,
            model_kwargs: Any = None) -> tuple[str, str, bool, dict[str, Any]]:
    """``auto``: measure, decide, explain. Returns (strategy, reason, forced, figures).

    Raises :class:`~zoo_core.TransferNotRecommendedError` (with ``.figures``) when the data
    gives nothing to learn from, unless ``force``.
    """
    from tqdm import tqdm

    from zoo_core.registry._registry import get_registry
    from zoo_core.strategies._decide import decide
    from zoo_core.train._measure import RANDOM_INITS

    thresholds = get_registry().catalog.auto
    pretrained = _has_pretrained(model_name, weights)
    bar = tqdm(total=RANDOM_INITS + int(pretrained), desc="auto: measuring features",
               unit="pass", leave=False, file=sys.stderr,
               disable=not (progress and sys.stderr.isatty()))  # no \r lines in CI logs
    plain = progress and not sys.stderr.isatty()  # no bar: a line per measuring pass
    try:
        m = measure_transfer(model_name, folder, weights=weights, pretrained=pretrained,
                             seed=seed, device=device, num_workers=num_workers,
                             input_size=input_size, model_kwargs=model_kwargs,
                             evidence_p=thresholds.refuse_p,
                             progress=lambda step: (bar.set_postfix_str(step), bar.update(),
                                                    plain and _plain_step(step, bar)))
    finally:
        bar.close()
    say(fmt_measurements(m))
    spread = max(m.random.std, m.pretrained.std if m.pretrained is not None else 0.0)
    d = decide(per_class=m.per_class, chance=m.chance,
               probe_pretrained=None if m.pretrained is None else m.pretrained.mean,
               probe_random=m.random.mean, spread=spread, thresholds=thresholds,
               spread_pretrained=None if m.pretrained is None else m.pretrained.std,
               spread_random=m.random.std, folds=m.random.folds, evidence=m.evidence)
    figures: dict[str, Any] = {**m.as_dict(), "decision": d.as_dict(),
                               "thresholds": dataclasses.asdict(thresholds)}
    say(f"table cell  {d.cell}: the table says {d.table_choice}")
    if d.strategy == "refuse":
        if force:
            reason = f"forced (--force): auto said {d.reason}; fine-tuning everything anyway"
            say("decision    finetune (forced; auto said: transfer learning not recommended)")
            return "finetune", reason, True, figures
        return _pilot_or_refuse(d, m, figures, folder, epochs=epochs, seed=seed, pilot=pilot,
                                thresholds=thresholds, say=say)
    strategy, reason = d.strategy, d.reason
    fraction = thresholds.race_fraction if race_fraction is None else race_fraction
    if race is not None and pretrained and fraction > 0:
        strategy, info = run_race(folder, fraction=fraction, race=race, say=say)
        figures["race"] = info
        probes = (f"probe {m.pretrained.mean:.3f} on pretrained vs {m.random.mean:.3f} on "
                  f"random-init features, " if m.pretrained is not None else "")
        reason = (f"{d.cell} ({probes}{m.per_class:g} images per class): the table says "
                  f"{d.table_choice}; {race_note(info)}: {strategy} led, so it trains from "
                  "the start")
    elif d.pilot and pilot is not None and m.min_per_class >= thresholds.pilot_min_per_class:
        pilot_epochs = max(1, round(epochs * thresholds.pilot_fraction))
        strategy, info = _run_pilot(d.pilot, folder, epochs=pilot_epochs, seed=seed,
                                    pilot=pilot, say=say)
        figures["pilot"] = info
        accs = ", ".join(f"{k} {v:.3f}" for k, v in info["accuracy"].items())
        reason = f"{reason}; pilot ({pilot_epochs} epochs on an 80/20 split): {accs}"
    elif d.pilot:
        figures["pilot"] = {"skipped": f"fewer than {thresholds.pilot_min_per_class} "
                                       "images per class to hold out" if pilot else
                                       "no pilot runner"}
    departs = strategy != d.table_choice
    figures["strategy"] = strategy
    figures["departs_from_table"] = departs
    note = (f" -- departs from the table's {d.table_choice}" if departs else
            " -- as the table says")
    say(f"decision    {strategy}{note}: {reason}")
    return strategy, reason, False, figures


def _refuse(reason: str, m: Measurements, figures: dict[str, Any]) -> TransferNotRecommendedError:
    err = TransferNotRecommendedError(f"{reason}\nmeasured:\n{fmt_measurements(m)}")
    err.figures = figures  # type: ignore[attr-defined]
    return err


def _pilot_or_refuse(d: Any, m: Measurements, figures: dict[str, Any], folder: FolderData, *,
                     epochs: int, seed: int, pilot: PilotFn | None, thresholds: Any,
                     say: _Printer) -> tuple[str, str, bool, dict[str, Any]]:
    """No probe found anything: pilot ``d.pilot`` where images can be held out, and refuse
    unless the best beats chance at ``p < refuse_p`` or its bound leaves room for
    ``refuse_gain`` (module doc)."""
    if not d.pilot or pilot is None or m.min_per_class < thresholds.pilot_min_per_class:
        why = (f"fewer than {thresholds.pilot_min_per_class} images per class to hold out "
               f"(smallest class {m.min_per_class})" if pilot is not None else
               "no pilot runner")
        figures["pilot"] = {"skipped": why}
        raise _refuse(f"{d.reason} (pilot not run: {why})", m, figures)
    # a refusal is final: its pilot trains the full schedule and is scored on every image
    # it can be (module doc)
    best, info = _run_pilot(d.pilot, folder, epochs=epochs, seed=seed, pilot=pilot, say=say,
                            with_val=bool(folder.val), bound_p=thresholds.refuse_bound_p)
    figures["pilot"] = info
    ev = info["evidence"]
    found = (f"pilot ({epochs} epochs on an 80/20 split): "
             + ", ".join(f"{k} {v:.3f}" for k, v in info["accuracy"].items())
             + f" on {ev['n']} held-out images against their chance {ev['chance']:.3f} "
             f"(p={ev['p']:.2g}, significant from p < {thresholds.refuse_p:g}; upper bound "
             f"({1 - thresholds.refuse_bound_p:.0%}, one-sided) {ev['upper']:.3f})")
    limit = ev["chance"] + thresholds.refuse_gain
    if ev["p"] >= thresholds.refuse_p and ev["upper"] < limit:
        raise _refuse(f"{d.reason}; the {found} found nothing either and rules out a gain "
                      f"of {thresholds.refuse_gain:.2f} over chance", m, figures)
    if ev["p"] < thresholds.refuse_p:
        reason = (f"{d.cell}, hard: the probes found nothing significant, but the {found} "
                  f"did: train {best}")
    else:
        reason = (f"{d.cell}, undecided: the probes found nothing significant, nor did the "
                  f"{found}, but its upper bound does not rule out a gain of "
                  f"{thresholds.refuse_gain:.2f} over chance ({limit:.3f}), so a refusal "
                  f"would rest on no evidence: train {best}")
    figures["strategy"] = best
    figures["departs_from_table"] = best != d.table_choice
    say(f"decision    {best} -- departs from the table's {d.table_choice}: {reason}")
    return best, reason, False, figures


def auto_note(f: Mapping[str, Any]) -> str:
    """One line of auto's figures for tables (``--compare``, benchmarks)."""
    pre, rand = f.get("pretrained"), f.get("random")
    if not rand:
        return ""
    p = "n/a" if not pre else f"{pre['mean']:.2f}"
    cell = (f.get("decision") or {}).get("cell", "")
    return f"{cell}; probe {p} pretrained vs {rand['mean']:.2f} random"
