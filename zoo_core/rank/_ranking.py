"""``rank_models``: which backbone of the zoo to fine-tune for this data, at the cost of one
forward pass per candidate over a class-balanced sample.

For each candidate (:mod:`._candidates`): build it (fast path, ``linear_probe``), extract the
head inputs of the sample once (cached, :mod:`._feature_cache`), and score them with the
estimators ``auto`` uses (:mod:`zoo_core.train._measure`):

- **probe**: cross-validated logistic-regression accuracy on the pretrained features;
- **LogME**: the evidence of a Bayesian linear model (You et al., ICML 2021);
- **gain**: probe on pretrained minus probe on random-init features of the same
  architecture (BatchNorm recalibrated; measured once per architecture and shared by its
  weights tags).

Then :func:`zoo_core.strategies._decide.decide` recommends a strategy from the same figures
``auto`` decides from: its probes' spreads and folds, chance on the validation split, and
its **evidence** (:mod:`zoo_core.train._evidence`): the pretrained probe, then the
random-init one, then the raw pixels' against a label-permutation baseline on the same
features, until one is significant. What rank cannot do is auto's pilot (it trains
nothing): where auto would pilot, the row names the pilot's candidates and recommends the
decision's default side, and ``zoo finetune`` may still decide otherwise. A refusal stands
only when no candidate's probe shows something to learn (:func:`settle_refusals`).
Candidates are
ranked by the probe (the predicted accuracy after fine-tuning), LogME breaking ties;
neighbours closer than the probe's fold spread allows are marked as ties.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from zoo_core.errors import InvalidArgumentError
from zoo_core.rank._candidates import Candidate, find_candidates
from zoo_core.rank._report import Ranking, Scored

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from zoo_core.data._data import FolderData
    from zoo_core.train._measure import PreparedSample, ProbeScore

# Decoded sample tensors (resized, cropped; not normalised) kept for the next candidates
# that decode alike (every zoonet tag does); above this the sample is decoded per model.
SHARED_SAMPLE_BYTES = 1 << 30
# z of a pretrained probe over the sample's majority rate (binomial standard error) above
# which rank does not run the permutation test: twice the 2.71 that p < 0.01 / 3 needs
CLEAR_Z = 5.4


def parse_budget(budget: float | str | None) -> float | None:
    """Seconds from ``90``, ``"90s"``, ``"10m"``, ``"1h"``, ``"1m30s"`` (None: no limit).

    >>> parse_budget("1m30s"), parse_budget("2h"), parse_budget(45)
    (90.0, 7200.0, 45.0)
    """
    import re

    if budget is None:
        return None
    if isinstance(budget, int | float) and not isinstance(budget, bool):
        seconds = float(budget)
    else:
        text = str(budget).strip().lower()
        parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?"
                             r"(?:(\d+(?:\.\d+)?)s?)?", text)
        if not text or parts is None:
            raise InvalidArgumentError(
                f"budget {budget!r} is not a duration; write e.g. 90s, 10m, 1h or 1m30s")
        h, m, s = (float(g) if g else 0.0 for g in parts.groups())
        seconds = 3600 * h + 60 * m + s
    if seconds <= 0:
        raise InvalidArgumentError(f"budget must be positive, got {budget!r}")
    return seconds


def _load_data(data: Any, seed: int) -> FolderData:
    from zoo_core.data._data import scan_image_folder

    if data is None:
        raise InvalidArgumentError("rank needs data: pass data=DIR (an ImageFolder tree)")
    folder = scan_image_folder(data, seed=seed)
    import numpy as np

    counts = np.bincount([lab for _, lab in folder.train], minlength=folder.num_classes)
    if counts.min() < 2:
        small = ", ".join(f"{folder.classes[i]}: {int(n)}" for i, n in enumerate(counts)
                          if n < 2)
        raise InvalidArgumentError(
            f"too little data to rank backbones on {folder.root!r}: every class needs at "
            f"least 2 training images to cross-validate a probe, and {small}; add images")
    return folder


def data_chance(folder: FolderData) -> float:
    """What a constant guess scores where results are measured: the validation split's
    majority rate (the training set's where there is none), as ``auto`` computes it."""
    import numpy as np

    labels = [lab for _, lab in folder.val] or [lab for _, lab in folder.train]
    counts = np.bincount(labels)
    return float(counts.max() / counts.sum())


def _one_thread() -> Any:
    """BLAS and OpenMP limited to one thread for the probes: they are tiny, and threads
    spinning on shared cores made them up to 15x slower (9.7 s vs 0.6 s for one probe of
    50 images on 2 loaded cores). Feature extraction keeps torch's own setting."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


class _Scorer:
    """Scores candidates on one data sample; random-init baselines shared per architecture."""

    def __init__(self, folder: FolderData, *, seed: int, device: Any, batch_size: int,
                 per_class: int | None, use_cache: bool, stop: Callable[[], str]) -> None:
        import torch

        from zoo_core.train._feature_cache import data_hash
        from zoo_core.train._measure import MEASURE_PER_CLASS, sample_indices

        self.folder = folder
        self.seed = seed
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.use_cache = use_cache
        self.stop = stop
        labels = [lab for _, lab in folder.train]
        self.idx = sample_indices(labels, seed, per_class=per_class or MEASURE_PER_CLASS)
        self.samples = [folder.train[i] for i in self.idx]
        self.data_hash = data_hash(folder.classes, self.samples)
        self.random: dict[tuple[str, str], ProbeScore] = {}
        # (feature set, architecture or preprocessing) -> its evidence test (None: untestable)
        self.evidence: dict[tuple[str, Any], dict[str, Any] | None] = {}
        self.undecodable: set[str] = set()
        self.prepared: dict[str, PreparedSample] = {}  # preprocessing key -> sample

    def prepare(self, model: Any) -> PreparedSample | None:
        """The sample decoded and transformed for ``model``'s preprocessing, once per
        preprocessing (None when it would not fit in ``SHARED_SAMPLE_BYTES``)."""
        import math

        from zoo_core.data._data import BadItem, data_config_of
        from zoo_core.train._measure import prepare_sample, preprocessing_key

        key = preprocessing_key(model)
        if key in self.prepared:
            return self.prepared[key]
        need = len(self.idx) * math.prod(data_config_of(model)["input_size"]) * 4
        if need > SHARED_SAMPLE_BYTES:
            return None
        while self.prepared and \
                sum(p.nbytes for p in self.prepared.values()) + need > SHARED_SAMPLE_BYTES:
            del self.prepared[next(iter(self.prepared))]  # the oldest
        sample = self.prepared[key] = prepare_sample(model, self.folder, self.idx)
        self.undecodable.update(it.path for it in sample.items.values()
                                if isinstance(it, BadItem))
        return sample

    def features(self, model: Any, *, recalibrate: bool = False) -> tuple[np.ndarray, np.ndarray]:
        from zoo_core.train._measure import extract_sample

        prepared = self.prepare(model)
        x, y = extract_sample(model, self.folder, self.idx, batch_size=self.batch_size,
                              num_workers=0, device=self.device, recalibrate=recalibrate,
                              prepared=prepared)
        if prepared is None and len(y) != len(self.idx):
            self._note_undecodable()
        return x, y

    def _note_undecodable(self) -> None:
        from zoo_core.data._data import load_rgb

        for path, _ in self.samples:
            if path in self.undecodable:
                continue
            try:
                load_rgb(path)
            except Exception:  # PIL raises many kinds; all mean "unreadable"
                self.undecodable.add(path)

    def pretrained(self, model: Any) -> tuple[np.ndarray, np.ndarray, bool]:
        """Features of the built pretrained model: from the cache when it has them."""
        from zoo_core.train import _feature_cache as fc

        sha = model.zoo.weights_sha256 or ""
        prep = fc.preprocessing(model)
        qualified = f"{model.zoo.plugin}/{model.zoo.name}"
        key = fc.entry_key(qualified, sha, self.data_hash, prep)
        if self.use_cache and sha and (hit := fc.load(key)) is not None:
            return hit[0], hit[1], True
        x, y = self.features(model)
        if self.use_cache and sha:
            paths = [p for p, _ in self.samples if p not in self.undecodable]
            if len(paths) == len(y):
                fc.save(key, x, y, model=qualified, weights_sha256=sha, data=self.data_hash,
                        prep=prep, paths=paths)
        return x, y, False

    def random_baseline(self, model_name: str, arch_key: tuple[str, str]) -> ProbeScore | None:
        """Probe on random-init features, as ``auto`` measures it (None if stopped)."""
        import numpy as np

        from zoo_core.train._measure import RANDOM_INITS, ProbeScore, cv_probe

        if arch_key in self.random:
            return self.random[arch_key]
        scores = []
        for i in range(RANDOM_INITS):
            if self.stop():
                return None
            x, y = self.random_features(model_name, i)
            with _one_thread():
                scores.append(cv_probe(x, y, seed=self.seed))
        # spread: within-run fold spread and between-init spread, whichever is larger
        std = float(max(np.mean([s.std for s in scores]), np.std([s.mean for s in scores])))
        score = ProbeScore(mean=float(np.mean([s.mean for s in scores])), std=std,
                           folds=scores[0].folds, repeats=scores[0].repeats,
                           train_mean=float(np.mean([s.train_mean for s in scores])))
        self.random[arch_key] = score
        return score

    def random_features(self, model_name: str, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Head inputs of random init ``i`` (seeded as ``auto`` seeds it; BatchNorm
        recalibrated on the sample)."""
        from zoo_core.build._builder import build_model
        from zoo_core.train._utils import _seed_all

        _seed_all(self.seed + 1 + i)
        m = build_model(model_name, self.folder.num_classes, "scratch",
                        label_names=self.folder.classes, device=self.device)
        return self.features(m, recalibrate=True)

    def evidence_for(self, x: np.ndarray, y: np.ndarray, probe: float, model_name: str,
                     arch_key: tuple[str, str], prep_key: Any) -> dict[str, Any]:
        """``auto``'s evidence (:mod:`zoo_core.train._evidence`): the pretrained probe, then
        the first random init's, then the raw pixels', each against a label-permutation
        baseline on the same features, until one is below ``[auto] refuse_p`` over the
        three sets (Bonferroni). A pretrained probe far enough above the majority rate
        (``CLEAR_Z``) is tested against that rate alone, without shuffles: they could
        not change the decision. The random init's and the raw pixels' tests are made
        once per architecture and preprocessing; the raw pixels need the decoded sample,
        and are not tested where it was too large to keep (``SHARED_SAMPLE_BYTES``)."""
        import math

        import numpy as np

        from zoo_core.registry._registry import get_registry
        from zoo_core.train._evidence import PERMUTATIONS, permutation_test, raw_pixels
        from zoo_core.train._measure import cv_probe

        th = get_registry().catalog.auto
        p_max, planned = th.refuse_p, 3

        def test(fx: np.ndarray, fy: np.ndarray, mean: float | None = None,
                 shuffles: int = PERMUTATIONS) -> dict[str, Any]:
            with _one_thread():
                mean = cv_probe(fx, fy, seed=self.seed).mean if mean is None else mean
                return {**permutation_test(fx, fy, probe=mean, seed=self.seed, cv=cv_probe,
                                           permutations=shuffles).as_dict(), "tests": planned}

        # Where the pretrained probe clears the majority rate by the learnable margin and
        # by CLEAR_Z binomial standard errors (twice the z its test needs), no shuffled
        # baseline near chance changes the decision: it is tested against the majority
        # rate alone (the shuffles cost rank about 40% more time)
        majority = float(np.bincount(y).max() / max(len(y), 1)) if len(y) else 1.0
        se = math.sqrt(majority * (1.0 - majority) / max(len(y), 1))
        clear = probe - majority >= max(th.learnable_margin, CLEAR_Z * se)
        out = {"pretrained": test(x, y, probe, 0 if clear else PERMUTATIONS)}
        if out["pretrained"]["p"] * planned < p_max:
            return out
        key: tuple[str, Any] = ("random-init", arch_key)
        if key not in self.evidence:
            self.evidence[key] = test(*self.random_features(model_name, 0))
        out["random-init"] = self.evidence[key]  # type: ignore[assignment]
        if out["random-init"]["p"] * planned < p_max:
            return out
        key = ("raw pixels", prep_key)
        if key not in self.evidence:
            prepared = self.prepared.get(prep_key)
            px, py = raw_pixels(prepared.items, self.idx) if prepared is not None else \
                (np.zeros((0, 0)), np.zeros(0, dtype=np.int64))
            counts = np.bincount(py)[np.bincount(py) > 0] if len(py) else np.zeros(0)
            self.evidence[key] = test(px, py) if len(counts) > 1 and counts.min() >= 2 \
                else None
        if self.evidence[key] is not None:
            out["raw pixels"] = self.evidence[key]  # type: ignore[assignment]
        return out

    def score(self, cand: Candidate) -> Scored:
        from zoo_core.build._builder import build_model
        from zoo_core.registry._registry import get_registry
        from zoo_core.strategies._decide import decide
        from zoo_core.train._measure import cv_probe, logme, preprocessing_key

        started = time.perf_counter()

        def spent() -> float:
            return round(time.perf_counter() - started, 3)

        try:
            model = build_model(cand.model, self.folder.num_classes, "linear_probe",
                                weights=cand.tag, label_names=self.folder.classes,
                                device=self.device)
            params = sum(p.numel() for p in model.parameters())
            x, y, cached = self.pretrained(model)
            arch = (model.zoo.plugin, model.zoo.name)
            input_key = str(model.zoo.data_config.input_size)
            prep_key = preprocessing_key(model)
            del model
            with _one_thread():
                probe = cv_probe(x, y, seed=self.seed)
                evidence = logme(x, y)
            arch_key = (f"{arch[0]}/{arch[1]}", input_key)
            rand = self.random_baseline(cand.model, arch_key)
            tests = None if rand is None else \
                self.evidence_for(x, y, probe.mean, cand.model, arch_key, prep_key)
        except Exception as exc:  # a broken plugin's builder may raise anything
            return Scored(cand.name, "failed", reason=f"{type(exc).__name__}: {exc}",
                          seconds=spent(), weights=cand.how)
        if rand is None or tests is None:  # tests is None exactly when rand is
            return Scored(cand.name, "budget", reason="stopped before its random-init "
                          "baseline", seconds=spent(), weights=cand.how)
        d = decide(per_class=len(self.folder.train) / self.folder.num_classes,
                   chance=data_chance(self.folder), probe_pretrained=probe.mean,
                   probe_random=rand.mean, spread=max(probe.std, rand.std),
                   spread_pretrained=probe.std, spread_random=rand.std, folds=rand.folds,
                   thresholds=get_registry().catalog.auto, evidence=tests)
        return Scored(cand.name, "measured", probe=probe, logme=evidence, random=rand,
                      strategy=d.strategy, reason=d.reason, pilot=d.pilot, params=params,
                      seconds=spent(), cached=cached, weights=cand.how, evidence=tests)


def _progress_line(row: Scored) -> str:
    if row.status != "measured" or row.probe is None:
        return f"{row.name}: {row.status} ({row.reason})"
    return (f"{row.name}: probe {row.probe.mean:.3f} +-{row.probe.std:.3f}, {row.strategy}, "
            f"{row.seconds:.1f} s" + (" (cached features)" if row.cached else ""))


def settle_refusals(rows: list[Scored], *, chance: float) -> list[Scored]:
    """"refuse" is for data with nothing to learn, so it is decided on the data, not per
    model: one candidate's probe (a fold spread of a few sampled images per class is
    wide, and a single model may not see the classes) is not the data's verdict. When any
    measured candidate's probe, pretrained or random-init, beats chance by the learnable
    margin (its standard error, not its fold spread, bounding the noise), the data has
    something to learn and each refused candidate is recommended ``finetune`` instead;
    otherwise every refusal stands."""
    import dataclasses
    import math

    from zoo_core.registry._registry import get_registry

    margin = get_registry().catalog.auto.learnable_margin
    measured = [r for r in rows if r.status == "measured" and r.probe is not None]
    best: tuple[float, str] | None = None
    for r in measured:
        for score, what in ((r.probe, "probe"), (r.random, "random-init probe")):
            if score is None:
                continue
            se = score.std / math.sqrt(max(1, score.folds * score.repeats))
            if score.mean - chance >= max(margin, 2.0 * se) and (
                    best is None or score.mean > best[0]):
                best = (score.mean, f"{r.name}'s {what}")
    if best is None or not any(r.strategy == "refuse" for r in measured):
        return rows
    why = (f"the data has something to learn ({best[1]} {best[0]:.3f} "
           f"beats chance {chance:.3f}), though this model's own probes do not show it "
           "beyond their spread; a pretrained init still trains better than scratch on "
           "little data")
    return [dataclasses.replace(r, strategy="finetune", reason=why, pilot=())
            if r.status == "measured" and r.strategy == "refuse" else r for r in rows]


def _order(rows: list[Scored]) -> list[Scored]:
    """Measured best first (probe, then LogME), marking ties; then failed, then unreached."""
    import dataclasses
    import math

    measured = sorted((r for r in rows if r.status == "measured"),
                      key=lambda r: (-r.probe.mean, -(r.logme or -math.inf)))  # type: ignore[union-attr]
    out = []
    for a, b in zip(measured, measured[1:] + [None], strict=True):
        out.append(dataclasses.replace(a, tie_with_next=b is not None and _tied(a, b)))
    return out + [r for r in rows if r.status == "failed"] + \
        [r for r in rows if r.status == "budget"]


def _tied(a: Scored, b: Scored) -> bool:
    """Closer than the standard error of one repeat of the K-fold probe: a coin toss."""
    assert a.probe is not None and b.probe is not None
    margin = max(a.probe.std, b.probe.std) / max(1, a.probe.folds) ** 0.5
    return abs(a.probe.mean - b.probe.mean) <= margin


def rank_models(data: Any, models: Sequence[str] | None = None, *,
                budget: float | str | None = None, seed: int = 0, device: Any = "cpu",
                batch_size: int = 64, per_class: int | None = None, cache: bool = True,
                progress: bool = False) -> Ranking:
    """Rank the zoo's pretrained backbones for fine-tuning on the ImageFolder ``data``.

    ``models``: name patterns (``'zoonet*'``, ``'resnet*'``, ``'zoonet_s.digits04'``;
    default: every model). Every weights tag whose file can be had now is a candidate;
    the others are in ``ranking.skipped`` with the reason. ``budget`` (seconds or
    ``"10m"``) stops between candidates and returns the ranking so far. ``per_class``
    caps the sampled images per class (default ``MEASURE_PER_CLASS``, as ``auto``).

    >>> import zoo_core
    >>> from zoo_core.data._embedded import embedded_task
    >>> r = zoo_core.rank_models(embedded_task("digits5-9", 6), ["zoonet_s"], per_class=6)
    >>> r.best.name, r.best.strategy in ("linear_probe", "partial:1", "finetune", "scratch")
    ('zoonet_s.glyphs', True)
    """
    from tqdm import tqdm

    started = time.perf_counter()
    limit = parse_budget(budget)
    folder = _load_data(data, seed)
    candidates, skipped = find_candidates(models, progress=progress)
    if not candidates:
        what = f"matching {', '.join(map(repr, models))}" if models else "in the zoo"
        why = "; ".join(f"{s.name}: {s.reason}" for s in skipped[:5])
        more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
        raise InvalidArgumentError(
            f"no model {what} has pretrained weights available now"
            + (f": {why}{more}" if skipped else " (none listed)")
            + ". Check the patterns with `zoo list PATTERN --pretrained`, or make weights "
            "available (a cached download, a local file pinned in ZOO_CORE_REGISTRY)")
    stopped: list[str] = []

    def stop() -> str:
        if not stopped and limit is not None and time.perf_counter() - started >= limit:
            stopped.append(f"budget {budget} reached after "
                           f"{time.perf_counter() - started:.1f} s")
        return stopped[0] if stopped else ""

    scorer = _Scorer(folder, seed=seed, device=device, batch_size=batch_size,
                     per_class=per_class, use_cache=cache, stop=stop)
    rows: list[Scored] = []
    # disable=None: tqdm draws on a terminal only (no \r lines in CI logs)
    bar = tqdm(candidates, desc="rank", unit="model", disable=None if progress else True,
               file=sys.stderr)
    plain = progress and not sys.stderr.isatty()  # no bar: one line per candidate
    try:
        for i, cand in enumerate(bar, 1):
            if stop():
                rows.append(Scored(cand.name, "budget", reason="not measured: budget spent",
                                   weights=cand.how))
                continue
            bar.set_postfix_str(cand.name)
            rows.append(scorer.score(cand))
            if plain:
                print(f"rank {i}/{len(candidates)} {_progress_line(rows[-1])}",
                      file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        stopped.append("interrupted")
        done = {r.name for r in rows}
        rows += [Scored(c.name, "budget", reason="not measured: interrupted", weights=c.how)
                 for c in candidates if c.name not in done]
    finally:
        bar.close()
    n = len(folder.train)
    undecodable = sorted(scorer.undecodable)
    if undecodable:
        import warnings

        from zoo_core.data._data import BadImageWarning, _fmt_skipped

        bad = [(p, "failed to decode") for p in undecodable]
        warnings.warn(f"skipped {len(bad)} sampled image(s) that failed to decode: "
                      f"{_fmt_skipped(bad)}", BadImageWarning, stacklevel=2)
    from zoo_core.data._data import _is_link_skip

    links = sum(_is_link_skip(why) for _, why in folder.skipped)
    skipped_images = [list(s) for s in folder.skipped] + \
        [[p, "failed to decode"] for p in undecodable]
    chance = data_chance(folder)
    rows = settle_refusals(rows, chance=chance)
    return Ranking(rows=tuple(_order(rows)), skipped=tuple(skipped), data=folder.root,
                   num_train=n, num_classes=folder.num_classes,
                   per_class=n / folder.num_classes, chance=chance,
                   images=len(scorer.idx),
                   bad_images=len(folder.skipped) - links + len(undecodable),
                   bad_links=links,
                   seconds=round(time.perf_counter() - started, 3),
                   stopped=stopped[0] if stopped else "",
                   extra={"skipped_images": skipped_images})
