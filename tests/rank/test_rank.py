"""zoo rank: candidates with weights available now, the estimators, the cache, the budget,
and every bad input the issue names (empty / single-class data, no candidate, a candidate
that fails to build, unreadable images)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo_core
from zoo_core import InvalidArgumentError
from zoo_core.cli import main
from zoo_core.data._data import DatasetError
from zoo_core.rank import _ranking as ranking
from zoo_core.rank._candidates import find_candidates
from zoo_core.rank._ranking import parse_budget, rank_models
from zoo_core.train import _feature_cache as feature_cache
from zoo_core_plugins.zoonet.digits import export_imagefolder

FAST = {"per_class": 4}  # sampled images per class: tiny, still cross-validatable


pytestmark = pytest.mark.usefixtures("one_thread")


def _weights_file(path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(path))
    return path


PLUGIN = '''
import zoo_core

@zoo_core.hookimpl
def register_backbones(register):
    register(zoo_core.BackboneSpec(
        name="{name}", builder="{module}:make", head="head", stages=("body",),
        weights=(zoo_core.WeightsSpec(tag="w", source={source!r}),),
        data_config=zoo_core.DataConfig(input_size=(3, 16, 16)),
    ))

def make(num_classes):
    raise RuntimeError("this plugin's builder is broken")
'''


def _plugin(make_dist, name: str, source: str) -> None:
    module = f"{name}_plugin"
    make_dist(f"{name}-dist", module,
              PLUGIN.format(name=name, module=module, source=source))


# ------------------------------------------------------------------------- ranking


def test_rank_scores_every_tag_and_recommends_like_auto(digits):
    r = rank_models(digits, ["zoonet*"], **FAST)
    names = [row.name for row in r.rows]
    assert sorted(names) == ["zoonet_m.digits04", "zoonet_m.glyphs", "zoonet_s.digits04",
                             "zoonet_s.glyphs"]
    assert r.num_classes == 5 and r.images == 20 and r.bad_images == 0
    for row in r.rows:
        assert row.status == "measured", row.reason
        assert 0.0 <= row.probe.mean <= 1.0 and np.isfinite(row.logme)
        assert row.gain == pytest.approx(row.probe.mean - row.random.mean)
        assert row.strategy in ("linear_probe", "partial:1", "finetune", "scratch", "refuse")
        assert row.reason and row.params > 0 and row.weights == "pkg"
    first = r.rows[0]
    keys = [(row.probe.mean, row.logme) for row in r.rows]
    assert keys == sorted(keys, reverse=True)  # best first
    text = r.summary()
    assert "zoonet_s.digits04" in text and "zoonet_s.glyphs" in text
    assert "confidence" in text and "LogME" in text
    assert json.loads(json.dumps(r.as_dict()))["rows"][0]["name"] == first.name


def test_rank_decides_from_the_figures_auto_decides_from(digits, monkeypatch):
    """The strategy column comes from decide() with auto's arguments: each probe's own
    spread and fold count, and chance on the validation split (not the training set)."""
    from zoo_core.data._data import scan_image_folder
    from zoo_core.strategies import _decide

    seen: list[dict] = []
    real = _decide.decide
    monkeypatch.setattr(_decide, "decide", lambda **kw: seen.append(kw) or real(**kw))
    r = rank_models(digits, ["zoonet_s.glyphs"], **FAST)
    folder = scan_image_folder(digits, warn=False)
    val = np.bincount([lab for _, lab in folder.val])
    train = np.bincount([lab for _, lab in folder.train])
    assert r.chance == pytest.approx(val.max() / val.sum()) != train.max() / train.sum()
    (kw,) = seen
    (row,) = r.rows
    assert kw["chance"] == r.chance and kw["probe_pretrained"] == row.probe.mean
    assert (kw["spread_pretrained"], kw["spread_random"], kw["folds"]) == (
        row.probe.std, row.random.std, row.random.folds)
    assert row.strategy == real(**kw).strategy


def test_patterns_match_architectures_and_tags():
    full = [c.name for c in find_candidates(["zoonet_s.digits04"])[0]]
    assert full == ["zoonet_s.digits04"]
    assert sorted(c.name for c in find_candidates(["*.digits04"])[0]) == [
        "zoonet_m.digits04", "zoonet_s.digits04"]


def test_features_are_cached_as_safetensors_and_json(digits, session_cache):
    first = rank_models(digits, ["zoonet_s"], **FAST)
    again = rank_models(digits, ["zoonet_s"], **FAST)
    assert again.rows[0].cached
    assert again.rows[0].probe == first.rows[0].probe
    entries = list((session_cache / "features").glob("*/*"))
    assert entries and {p.suffix for p in entries} == {".safetensors", ".json"}
    # the session cache also holds other tests' entries (zoonet_m): pick this one's
    metas = [json.loads(p.read_text()) for p in entries if p.suffix == ".json"]
    meta = next(m for m in metas if m["model"] == "zoonet/zoonet_s")
    assert len(meta["weights_sha256"]) == 64
    assert len(meta["paths"]) == meta["rows"]
    model = zoo_core.build_model("zoonet_s", 5, "linear_probe")
    rows = feature_cache.load_rows("zoonet/zoonet_s", model.zoo.weights_sha256,
                                   feature_cache.preprocessing(model))
    assert set(meta["paths"]) <= set(rows)


def test_data_hash_follows_the_images(tmp_path):
    a = tmp_path / "a.png"
    Image.new("RGB", (4, 4)).save(a)
    before = feature_cache.data_hash(["x"], [(str(a), 0)])
    assert feature_cache.data_hash(["x"], [(str(a), 1)]) != before
    Image.new("RGB", (5, 5), "white").save(a)
    assert feature_cache.data_hash(["x"], [(str(a), 0)]) != before


def test_budget_stops_cleanly_with_the_ranking_so_far(digits, monkeypatch):
    clock = {"t": 0.0}

    class FakeTime:
        @staticmethod
        def perf_counter() -> float:
            return clock["t"]

    real_score = ranking._Scorer.score

    def slow_score(self, cand):
        out = real_score(self, cand)
        clock["t"] += 100.0  # every candidate "takes" 100 s
        return out

    monkeypatch.setattr(ranking, "time", FakeTime)
    monkeypatch.setattr(ranking._Scorer, "score", slow_score)
    r = rank_models(digits, ["zoonet*"], budget="50s", **FAST)
    assert [row.status for row in r.rows] == ["measured", "budget", "budget", "budget"]
    assert "budget 50s reached" in r.stopped
    assert "stopped" in r.summary() and "not measured" in r.summary()


def test_parse_budget():
    assert parse_budget("10m") == 600 and parse_budget("1h") == 3600
    assert parse_budget("90") == 90 and parse_budget(None) is None
    for bad in ("soon", "-5", "0s", ""):
        with pytest.raises(InvalidArgumentError, match="budget"):
            parse_budget(bad)


# ------------------------------------------------------------------------- bad input


def test_failed_build_is_reported_and_the_ranking_continues(digits, make_dist, tmp_path):
    _plugin(make_dist, "brokennet", str(_weights_file(tmp_path / "w.safetensors")))
    r = rank_models(digits, ["zoonet_s", "brokennet"], **FAST)
    rows = {row.name: row for row in r.rows}
    assert rows["zoonet_s.digits04"].status == "measured"
    failed = rows["brokennet.w"]
    assert failed.status == "failed" and "builder is broken" in failed.reason
    assert r.rows[-1].name == "brokennet.w"  # after the measured ones
    assert "FAILED" in r.summary()


def test_unreachable_weights_are_skipped_quickly(digits, make_dist):
    _plugin(make_dist, "farnet", "http://127.0.0.1:9/farnet.safetensors")
    started = time.perf_counter()
    cands, skipped = find_candidates(["farnet", "zoonet_s"])
    assert time.perf_counter() - started < 5
    assert sorted(c.name for c in cands) == ["zoonet_s.digits04", "zoonet_s.glyphs"]
    assert [s.name for s in skipped] == ["farnet.w"]
    assert "cannot be reached" in skipped[0].reason
    with pytest.raises(InvalidArgumentError, match="no model matching 'farnet'.*farnet.w"):
        rank_models(digits, ["farnet"])
    with pytest.raises(InvalidArgumentError, match="no model matching 'nothing\\*'"):
        rank_models(digits, ["nothing*"])


def test_plugin_that_fails_to_load_is_listed_as_skipped(make_dist):
    make_dist("crashy-dist", "crashy_plugin", "raise ImportError('no such thing')")
    _, skipped = find_candidates(["zoonet_s"])
    assert any(s.name == "plugin crashy" or "crashy" in s.name for s in skipped)


def test_empty_and_single_class_data_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        rank_models(tmp_path / "empty", ["zoonet_s"])
    one = tmp_path / "one" / "cat"
    one.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8)).save(one / f"{i}.png")
    with pytest.raises(DatasetError, match="only one class"):
        rank_models(tmp_path / "one", ["zoonet_s"])
    with pytest.raises(InvalidArgumentError, match="rank needs data"):
        rank_models(None, ["zoonet_s"])


def test_too_few_images_per_class(tmp_path):
    for cls, n in (("a", 4), ("b", 2)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / cls / f"{i}.png")
    with pytest.raises(InvalidArgumentError, match="at least 2 training images.*b: 1"):
        rank_models(tmp_path, ["zoonet_s"])


def test_unreadable_images_are_counted_and_skipped(digits, tmp_path):
    import shutil

    data = tmp_path / "d"
    shutil.copytree(digits, data)
    (data / "train" / "5" / "broken.png").write_bytes(b"not a png at all")
    with pytest.warns(UserWarning, match="unreadable"):
        r = rank_models(data, ["zoonet_s"], cache=False, **FAST)
    assert r.bad_images == 1 and r.rows[0].status == "measured"
    assert "1 unreadable image(s) skipped" in r.summary()


# ------------------------------------------------------------------------- command line


def test_cli_json_and_table(capsys):
    args = ["rank", "--task", "digits5-9", "--per-class", "4", "--models", "zoonet_s",
            "--sample-per-class", "4", "--no-progress"]
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # the glyph-pretrained default transfers to digits; the older digits-0-4 tag ranks below
    assert [row["name"] for row in out["rows"]] == ["zoonet_s.glyphs", "zoonet_s.digits04"]
    assert out["confidence"]
    assert main([*args, "--top", "1"]) == 0
    assert "zoonet_s.glyphs" in capsys.readouterr().out


def test_cli_errors(capsys, tmp_path):
    assert main(["rank", "--data", str(tmp_path / "nope"), "--budget", "soon"]) == 2
    assert "budget 'soon' is not a duration" in capsys.readouterr().err
    assert main(["rank", "--data", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_linear_probe_after_rank_reuses_its_features(tmp_path, capsys, monkeypatch):
    """The issue: a later ``zoo finetune`` of the winner with linear_probe reuses the rows
    rank cached, and trains on the same features it would have extracted itself."""
    from zoo_core.train import finetune

    data = export_imagefolder(tmp_path / "digits", per_class=6)
    kwargs = dict(strategy="linear_probe", epochs=2, seed=0, progress=False,
                  probe_solver="sgd")
    monkeypatch.setenv("ZOO_CORE_CACHE", str(tmp_path / "fresh"))
    _, alone = finetune("zoonet_s", data, out=tmp_path / "alone", **kwargs)
    assert "zoo rank's feature cache" not in capsys.readouterr().out

    monkeypatch.setenv("ZOO_CORE_CACHE", str(tmp_path / "ranked"))
    rank_models(data, ["zoonet_s.glyphs"], **FAST)
    _, after = finetune("zoonet_s", data, out=tmp_path / "after", **kwargs)
    out = capsys.readouterr().out
    assert "taken from zoo rank's feature cache" in out, out
    reused = int(out.split(" taken from zoo rank")[0].rsplit("(", 1)[1])
    assert 0 < reused <= 4 * 5
    assert after.final_val_acc == pytest.approx(alone.final_val_acc, abs=1e-6)
    assert after.history[-1].train_loss == pytest.approx(alone.history[-1].train_loss,
                                                            rel=1e-4)


def test_reusing_rows_edge_cases(digits):
    """One image always runs (the cacheability check); a stale row width is not trusted."""
    import os

    from zoo_core.data._data import ImageDataset, make_transforms, scan_image_folder
    from zoo_core.train._features import _extract, _extract_reusing

    model = zoo_core.build_model("zoonet_s", 5, "linear_probe")
    folder = scan_image_folder(digits, seed=0, warn=False)
    _, tf = make_transforms(model)
    ds = ImageDataset(folder.train, tf)
    kw = dict(batch_size=8, num_workers=0, device=torch.device("cpu"), check=True)
    real, _, _, _ = _extract(model, "head", ds, [0, 1, 2], **kw)
    paths = [os.path.abspath(ds.samples[i][0]) for i in range(3)]
    known = {p: (real[k] + 1000).numpy() for k, p in enumerate(paths)}  # marked rows

    feats, valid, _, ok, n = _extract_reusing(model, "head", ds, [0], known, **kw)
    assert ok and n == 0 and torch.allclose(feats, real[:1], atol=1e-5) and valid.all()
    feats, valid, _, ok, n = _extract_reusing(model, "head", ds, [0, 1, 2], known, **kw)
    assert ok and n == 2 and valid.all()
    assert torch.allclose(feats[0], real[0], atol=1e-5)  # ran (batch size may differ)
    assert torch.equal(feats[1:], real[1:] + 1000)  # taken from the cache as they were
    stale = {p: np.zeros(3, dtype=np.float32) for p in paths}
    feats, _, _, ok, n = _extract_reusing(model, "head", ds, [0, 1, 2], stale, **kw)
    assert ok and n == 0 and torch.allclose(feats, real, atol=1e-5)


def test_rank_tests_the_evidence_auto_tests(tmp_path, digits):
    """Random labels (40 per class, nothing to learn): rank tests every feature set
    against permuted labels exactly as auto does -- the same p-values -- and refuses on
    that evidence, as `zoo finetune --strategy auto` does on the same data."""
    from zoo_core import TransferNotRecommendedError
    from zoo_core.data._embedded import embedded_task
    from zoo_core.train import finetune

    root = embedded_task("random-labels", 40, cache=tmp_path / "c", val_per_class=4)
    (row,) = rank_models(root, ["zoonet_s.glyphs"], cache=False).rows
    assert set(row.evidence) == {"pretrained", "random-init", "raw pixels"}
    with pytest.raises(TransferNotRecommendedError) as info:
        finetune("zoonet_s", root, strategy="auto", epochs=1, progress=False, verbose=False)
    auto = info.value.figures["evidence"]
    for name, e in row.evidence.items():
        assert e["p"] == pytest.approx(auto[name]["p"]) and e["probe"] == auto[name]["probe"]
    assert row.strategy == "refuse" and "label-permutation baseline" in row.reason
    # learnable data stops at the first significant set, and trains
    (digits_row,) = rank_models(digits, ["zoonet_s.glyphs"], cache=False).rows
    assert list(digits_row.evidence) == ["pretrained"]
    # far above chance: tested against the majority rate alone, no shuffles (CLEAR_Z)
    assert digits_row.evidence["pretrained"]["permutations"] == 0
    assert digits_row.evidence["pretrained"]["p"] * 3 < 0.01
    assert digits_row.strategy != "refuse"


def test_a_test_without_shuffles_is_against_the_majority_rate():
    from zoo_core.train._evidence import p_value, permutation_test

    y = np.repeat(np.arange(4), 10)
    ev = permutation_test(np.zeros((40, 3)), y, probe=0.9, seed=0, cv=None, permutations=0)
    assert ev.baseline == 0.25 and ev.permutations == 0 and ev.baseline_std == 0.0
    assert (ev.z, ev.p) == p_value(0.9, 0.25, (0.25 * 0.75 / 40) ** 0.5)


@pytest.mark.slow
def test_installed_zoo_rank_json_carries_the_evidence_in_a_fresh_process(tmp_path):
    """The installed command, a fresh cache: each row of `zoo rank --json` holds the tests
    its recommendation rests on (digits: far above chance, so no shuffles were needed)."""
    import os
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("zoo")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "zoo_core.cli"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1",
           "ZOO_CORE_CACHE": str(tmp_path / "cache"), "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([*cmd, "rank", "--task", "digits5-9", "--per-class", "6",
                          "--models", "zoonet_s.glyphs", "--json", "--no-progress"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)["rows"]
    ev = row["evidence"]["pretrained"]
    assert ev["permutations"] == 0 and ev["p"] * ev["tests"] < 0.01
    assert row["strategy"] != "refuse"
