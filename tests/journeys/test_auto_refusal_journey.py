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
