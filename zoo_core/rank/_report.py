"""What :func:`~zoo_core.rank.rank_models` returns: the rows, the table, how far to trust it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from zoo_core.rank._candidates import Skipped
    from zoo_core.train._measure import ProbeScore


@dataclass(frozen=True)
class Scored:
    """One candidate's outcome: measured, failed, or not reached within the budget."""

    name: str
    status: str  # measured | failed | budget
    probe: ProbeScore | None = None
    logme: float | None = None
    random: ProbeScore | None = None
    strategy: str | None = None  # recommended, as auto decides (before its pilot)
    reason: str = ""  # the decision's reason, or what failed
    pilot: tuple[str, ...] = ()
    params: int | None = None
    seconds: float = 0.0
    cached: bool = False  # the pretrained features came from the cache
    tie_with_next: bool = False
    weights: str = ""  # where the weights came from: pkg | local | cached | download
    # feature set -> its probe against a label-permutation baseline, as auto tests it
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def gain(self) -> float | None:
        if self.probe is None or self.random is None:
            return None
        return self.probe.mean - self.random.mean

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status,
                "probe": None if self.probe is None else self.probe.as_dict(),
                "logme": self.logme, "gain": self.gain,
                "random": None if self.random is None else self.random.as_dict(),
                "strategy": self.strategy, "reason": self.reason, "pilot": list(self.pilot),
                "params": self.params, "seconds": self.seconds, "cached": self.cached,
                "tie_with_next": self.tie_with_next, "weights": self.weights,
                "evidence": self.evidence}


@dataclass(frozen=True)
class Ranking:
    """What :func:`rank_models` returns: the ranked rows, the skipped models, the data."""

    rows: tuple[Scored, ...]  # measured (best first), then failed, then unreached
    skipped: tuple[Skipped, ...]
    data: str
    num_train: int
    num_classes: int
    per_class: float
    chance: float
    images: int  # sampled images measured per candidate
    bad_images: int  # unreadable/non-image files: skipped while scanning + failed to decode
    seconds: float
    stopped: str = ""  # why the ranking stopped early ("budget 10m reached", ...)
    bad_links: int = 0  # symlinks not followed (a loop, a target outside the data root)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def measured(self) -> list[Scored]:
        return [r for r in self.rows if r.status == "measured"]

    @property
    def best(self) -> Scored | None:
        return self.measured[0] if self.measured else None

    def as_dict(self) -> dict[str, Any]:
        return {"data": self.data, "num_train": self.num_train,
                "num_classes": self.num_classes, "per_class": self.per_class,
                "chance": self.chance, "images": self.images, "bad_images": self.bad_images,
                "bad_links": self.bad_links,
                "seconds": self.seconds, "stopped": self.stopped,
                "ranked_by": "probe (cross-validated accuracy on pretrained features), "
                             "then LogME",
                "confidence": confidence(self),
                "rows": [r.as_dict() for r in self.rows],
                "skipped": [{"name": s.name, "reason": s.reason, "count": s.count}
                            for s in self.skipped],
                **self.extra}

    def summary(self, top: int | None = None) -> str:
        return format_ranking(self, top=top)


def _params(n: int | None) -> str:
    if n is None:
        return ""
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def confidence(r: Ranking) -> str:
    """One sentence: is the top of the ranking clear, tied, or unknown?"""
    m = r.measured
    if not m:
        return "no candidate was measured"
    top = m[0]
    assert top.probe is not None
    if len(m) == 1:
        return (f"{top.name} is the only candidate measured (probe {top.probe.mean:.3f} "
                f"+- {top.probe.std:.3f} over {top.probe.folds} folds x "
                f"{top.probe.repeats})")
    tied = [top]
    while tied[-1].tie_with_next:  # the last measured row never ties with a next one
        tied.append(m[len(tied)])
    runner = m[1]
    assert runner.probe is not None
    lead = top.probe.mean - runner.probe.mean
    logme_top = max(m, key=lambda x: x.logme if x.logme is not None else float("-inf"))
    agree = ("LogME agrees" if logme_top.name == top.name else
             f"LogME prefers {logme_top.name}")
    if len(tied) > 1:
        names = ", ".join(t.name for t in tied)
        return (f"tie at the top: {names} are within the probe's fold spread of each other "
                f"(lead {lead:+.3f}, spread +- {top.probe.std:.3f}); {agree}. Any of them "
                "is a sound choice; fine-tune the tied ones briefly to settle it")
    return (f"{top.name} leads {runner.name} by {lead:.3f} in probe accuracy (fold spread "
            f"+- {top.probe.std:.3f}, {top.probe.folds} folds x {top.probe.repeats}); "
            f"{agree}")


def _row(rank: str, s: Scored) -> str:
    if s.status != "measured":
        what = "FAILED" if s.status == "failed" else "not measured"
        return f"{rank:>3} {s.name:<28} {what}: {s.reason}"
    assert s.probe is not None and s.random is not None
    tie = " =" if s.tie_with_next else "  "
    strategy = s.strategy or ""
    if s.pilot:
        strategy += f" (pilot {'/'.join(s.pilot)})"
    gain = s.gain or 0.0
    src = f"{s.seconds:.1f} s" + (" c" if s.cached else "  ")
    return (f"{rank:>3} {s.name:<28} {s.probe.mean:.3f} +-{s.probe.std:.3f}{tie} "
            f"{s.logme:>7.3f} {gain:>+6.3f} {strategy:<30} {_params(s.params):>7} {src:>10}")


def format_ranking(r: Ranking, top: int | None = None) -> str:
    """The table printed by ``zoo rank``: best first, then failed and unreached candidates,
    then the confidence line and the skipped models (counted when there are many)."""
    lines = [
        f"data        {r.data}: {r.num_train} training images, {r.num_classes} classes, "
        f"{r.per_class:.1f} per class; chance {r.chance:.3f}; {r.images} sampled images "
        "per candidate" + (f"; {r.bad_images} unreadable image(s) skipped" if r.bad_images
                           else "")
        + (f"; {r.bad_links} symlink(s) not followed" if r.bad_links else ""),
        "ranked by  probe = cross-validated logistic regression on the pretrained features "
        "(predicted accuracy after fine-tuning), LogME breaking ties; gain = probe minus the "
        "same probe on random-init features; strategy = what auto recommends "
        "(before its pilot); '=' ties with the next row; 'c': features read from the cache",
        "",
        f"{'#':>3} {'model':<28} {'probe':<13}  {'LogME':>7} {'gain':>6} {'strategy':<30} "
        f"{'params':>7} {'time':>10}",
    ]
    measured = r.measured
    shown = measured if top is None else measured[:top]
    lines += [_row(str(i + 1), s) for i, s in enumerate(shown)]
    if len(shown) < len(measured):
        lines.append(f"    ... {len(measured) - len(shown)} more measured (--top)")
    lines += [_row("-", s) for s in r.rows if s.status != "measured"]
    lines += ["", f"confidence  {confidence(r)}"]
    if r.stopped:
        lines.append(f"stopped     {r.stopped}: the ranking covers what was measured so far")
    if r.skipped:
        total = sum(s.count for s in r.skipped)
        lines.append(f"skipped     {total} model{'s' if total != 1 else ''} not ranked, "
                     "by reason:")
        by_reason: dict[str, list[str]] = {}
        for s in r.skipped:
            by_reason.setdefault(s.reason, []).append(s.name)
        for reason, names in list(by_reason.items())[:8]:
            shown_names = ", ".join(names[:4]) + (f" and {len(names) - 4} more"
                                                  if len(names) > 4 else "")
            lines.append(f"            {shown_names}: {reason}")
        if len(by_reason) > 8:
            lines.append(f"            ... {len(by_reason) - 8} more reasons (--json lists all)")
    lines.append(f"time        {r.seconds:.1f} s")
    return "\n".join(lines)
