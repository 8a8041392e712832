"""auto refuses only on evidence, as a user meets it: the installed ``zoo finetune`` in
fresh processes with fresh caches, on the user's own folder of noise images with random
labels. Four per class cannot rule a real gain out, so auto trains and says why; forty
per class can, so it refuses with the bound in the message and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def _noise_folder(root: Path, per_class: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("val", 4)):
        for c in range(5):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(d / f"{i}.png")
    return root


def test_too_few_images_train_and_enough_noise_is_refused(journey):
    few = _noise_folder(journey.home / "few", 4)
    step = journey.zoo("finetune", "--data", str(few), "--epochs", "1", "--no-progress",
                       "--threads", "1", "--json", "--out", str(journey.home / "run-few"))
    record = json.loads(step.stdout)
    assert record["strategy"] == "finetune"
    assert "undecided" in step.stderr and "cannot be ruled out" in step.stderr
    assert (journey.home / "run-few" / "best").is_dir()

    many = _noise_folder(journey.home / "many", 40, seed=1)
    step = journey.zoo("finetune", "--data", str(many), "--epochs", "1", "--no-progress",
                       "--threads", "1", "--out", str(journey.home / "run-many"), ok=False)
    assert step.returncode != 0 and "Traceback" not in step.stderr
    assert step.stderr.startswith("zoo: error: transfer learning not recommended")
    assert "upper bound (95%, one-sided)" in step.stderr and "rules out a gain of 0.10" \
        in step.stderr
    assert not (journey.home / "run-many").exists()


def test_a_refusal_pilot_trains_the_full_epochs_and_must_rule_the_gain_out(journey):
    # 60 noise images per class: the probes rule a gain out, and every class has the 50
    # images a pilot holds out, so finetune trains for the run's epochs on 240 images and
    # is scored on the held-out 60 and the 20 validation images. Whichever way the pilot
    # goes, auto says what it measured: a refusal needs the pilot's bound below chance +
    # 10 points, and a pilot that cannot rule that out trains instead (undecided).
    data = _noise_folder(journey.home / "pilot", 60, seed=2)
    step = journey.zoo("finetune", "--data", str(data), "--epochs", "2", "--no-progress",
                       "--threads", "1", "--out", str(journey.home / "run-pilot"), ok=False)
    assert "Traceback" not in step.stderr
    assert "pilot (2 epochs on an 80/20 split)" in step.stderr
    assert "on 80 held-out images against their chance 0.200" in step.stderr
    assert "upper bound (95%, one-sided)" in step.stderr
    if step.returncode == 0:
        assert "undecided: the probes found nothing significant, nor did the pilot" \
            in step.stderr and "does not rule out a gain of 0.10" in step.stderr
        record = json.loads((journey.home / "run-pilot" / "run.json").read_text())
        pilot = record["figures"]["pilot"]
        assert pilot["epochs"] == 2 and pilot["evidence"]["upper"] >= 0.30
    else:
        assert step.stderr.startswith("zoo: error: transfer learning not recommended")
        assert "found nothing either and rules out a gain of 0.10 over chance" in step.stderr
        assert not (journey.home / "run-pilot").exists()
