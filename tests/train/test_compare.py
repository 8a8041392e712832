"""zoo finetune --compare: the four cells of the table, every strategy, auto's choice."""

from __future__ import annotations

import pytest
import torch

from zoo_core.train._compare import run_default


@pytest.mark.slow
def test_compare_prints_every_strategy_and_auto_per_cell(capsys):
    before = torch.get_num_threads()
    cells = (("scarce + similar", "digits5-9", 4, 1),
             ("scarce, nothing to learn", "random-labels", 4, 1))
    rows = run_default(cells=cells)  # one thread inside, restored after
    assert torch.get_num_threads() == before
    assert [r["label"] for r in rows] == ["scarce + similar", "scarce, nothing to learn"]
    for r in rows:
        assert set(r["accuracy"]) == {"linear_probe", "partial:1", "finetune", "scratch"}
        assert r["auto"] in {*r["accuracy"], "refused"} and isinstance(r["hit"], bool)
    out = capsys.readouterr().out
    assert out.count("linear_probe") >= 2 and "auto" in out and "cells within 2 points" in out
    assert ("✓" in out) or ("✗" in out)
