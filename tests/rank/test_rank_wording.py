"""``zoo rank``: refusals only for data with nothing to learn, the skipped count in
models with the reason, and one line per candidate off a terminal (issue 20 items 4, 7)."""

from __future__ import annotations

import pytest

from zoo_core.rank._candidates import Skipped
from zoo_core.rank._ranking import rank_models, settle_refusals
from zoo_core.rank._report import Ranking, Scored
from zoo_core.train._measure import ProbeScore


def _row(name: str, mean: float, std: float, strategy: str, rand: float = 0.1) -> Scored:
    return Scored(name, "measured", probe=ProbeScore(mean, std, 5, 2),
                  random=ProbeScore(rand, std, 5, 2), strategy=strategy, reason="table")


def test_a_hard_task_with_something_to_learn_refuses_no_candidate():
    # 10 classes (chance 0.1); probes well above chance but with a wide fold spread (a
    # small sample): decide() alone refuses each, as every candidate on a hard task did.
    from zoo_core.strategies._decide import decide

    assert decide(per_class=10, chance=0.1, probe_pretrained=0.30, probe_random=0.1,
                  spread=0.12).strategy == "refuse"
    rows = [_row("a", 0.30, 0.12, "refuse"), _row("b", 0.24, 0.10, "refuse")]
    settled = settle_refusals(rows, chance=0.1)
    assert [r.strategy for r in settled] == ["finetune", "finetune"]
    assert "something to learn" in settled[1].reason and "a's probe 0.300" in settled[1].reason


def test_data_with_nothing_to_learn_is_still_refused():
    rows = [_row("a", 0.13, 0.05, "refuse"), _row("b", 0.11, 0.04, "refuse")]
    assert [r.strategy for r in settle_refusals(rows, chance=0.1)] == ["refuse", "refuse"]


def test_skipped_counts_models_and_names_why():
    r = Ranking(rows=(), skipped=(
        Skipped("1118 models of plugin timm", "listed lazily and costly to describe", 1118),
        Skipped("78 models of plugin torchvision", "listed lazily and costly to describe",
                78),
        Skipped("farnet.w", "cannot be reached")),
        data="d", num_train=10, num_classes=2, per_class=5, chance=0.5, images=10,
        bad_images=0, seconds=1.0)
    text = r.summary()
    assert "skipped     1197 models not ranked, by reason:" in text
    assert "1118 models of plugin timm, 78 models of plugin torchvision: listed lazily" in text
    assert "farnet.w: cannot be reached" in text
    assert r.as_dict()["skipped"][0]["count"] == 1118


@pytest.mark.slow
def test_rank_prints_a_line_per_candidate_off_a_terminal(digits, capsys):
    rank_models(digits, ["zoonet_s*"], per_class=4, cache=False, progress=True)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("rank ")]
    assert len(lines) == 2 and lines[0].startswith("rank 1/2 zoonet_s.")
    assert "probe" in lines[0] and lines[0].endswith(" s")
