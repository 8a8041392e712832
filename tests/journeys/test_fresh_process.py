"""Every public entry point works in a fresh interpreter.

Each public function of ``zoo_core.__all__`` that can be called cheaply, and each ``zoo``
subcommand, runs in its own subprocess where nothing but what the snippet imports is loaded,
with a fresh HF_HOME and ZOO_CORE_CACHE: what a user's first ``python -c`` sees. In the
test process something else has usually imported the submodules a function forgets to
import (``huggingface_hub.constants`` was one), so only a new process shows the bug.

The journey: save a model, push it to the local Hub (``hub_env``), load it in a new
process from the Hub, then again with HF_HUB_OFFLINE=1 from the cache. Independent steps
run side by side to keep the file well under a minute.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
ZOO = [str(BIN / "zoo")] if (BIN / "zoo").exists() else [sys.executable, "-m", "zoo_core.cli"]
LABELS = ["5", "6", "7", "8", "9"]


@dataclass
class Step:
    """One subprocess: ``argv`` (a ``zoo`` command) or ``code`` (``python -c``)."""

    name: str
    needle: str  # must appear in stdout
    code: str | None = None
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    step: Step
    rc: int
    out: str
    err: str
    seconds: float

    def problem(self) -> str | None:
        if self.rc == 0 and self.step.needle in self.out:
            return None
        return (f"{self.step.name}: exit {self.rc}, expected {self.step.needle!r} in stdout\n"
                f"--- stdout\n{self.out[-1500:]}\n--- stderr\n{self.err[-3000:]}")


def _run(step: Step, base_env: dict[str, str], cwd: Path) -> Outcome:
    if step.code is not None:
        argv = [sys.executable, "-c", textwrap.dedent(step.code)]
    else:
        argv = [*ZOO, *step.argv]
    start = time.perf_counter()
    proc = subprocess.run(argv, env={**base_env, **step.env}, cwd=cwd, capture_output=True,
                          text=True, timeout=240)
    seconds = time.perf_counter() - start
    print(f"{seconds:5.1f}s  {step.name}")  # shown by pytest -s or on failure
    return Outcome(step, proc.returncode, proc.stdout, proc.stderr, seconds)


def _stage(steps: list[Step], env: dict[str, str], cwd: Path) -> list[str]:
    workers = max(2, min(4, os.cpu_count() or 2))
    with ThreadPoolExecutor(workers) as pool:
        outcomes = list(pool.map(lambda s: _run(s, env, cwd), steps))
    return [p for p in (o.problem() for o in outcomes) if p]


def _tiny_imagefolder(root: Path) -> Path:
    """5 classes x (3 train + 2 val) 32 px PNGs: every step that reads data stays quick."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("val", 2)):
        for c, label in enumerate(LABELS):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 64, (32, 32, 3)) + 40 * c
                Image.fromarray(pixels.astype("uint8"), "RGB").save(folder / f"{i}.png")
    return root


def test_every_public_entry_point_works_in_a_fresh_process(hub_env, tmp_path):
    import torch

    from zoo_core import __all__ as public
    from zoo_core import decide_strategy as zoo_core_strategy

    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"),
           "ZOO_CORE_CACHE": str(tmp_path / "zoo-cache"), "OMP_NUM_THREADS": "1"}
    for var in ("HF_HUB_OFFLINE", "ZOO_CORE_REGISTRY"):
        env.pop(var, None)
    # the test runs from anywhere: make sure the child imports this checkout
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    work = tmp_path / "work"
    work.mkdir()
    digits = _tiny_imagefolder(tmp_path / "data")
    pickled = work / "ckpt.bin"
    torch.save({"w": torch.ones(2, 2)}, pickled)  # input for `convert`
    image = next((Path(digits) / "val" / "5").iterdir())
    sha = hashlib.sha256(pickled.read_bytes()).hexdigest()
    decided = zoo_core_strategy(has_pretrained=True, num_train_samples=50, num_classes=5)[0]
    saved, run = work / "saved", work / "run"
    repo_py, repo_cli = hub_env.repo_id("fresh-py"), hub_env.repo_id("fresh-cli")

    covered: set[str] = set()

    def py(name: str, code: str, needle: str, **kw) -> Step:
        covered.add(name)
        return Step(f"zoo_core.{name}", needle, code=code, **kw)

    def cli(argv: list[str], needle: str, **kw) -> Step:
        covered.add(f"zoo {argv[0]}")
        return Step(f"zoo {' '.join(argv)}", needle, argv=argv, **kw)

    problems: list[str] = []
    # 1. the name list is built once here, not by every process below at the same time
    problems += _stage([cli(["list", "zoonet*"], "zoonet_s")], env, work)

    # 2. independent of each other
    problems += _stage([
        py("list_models", "import zoo_core; print(zoo_core.list_models('zoonet*'))", "zoonet_s"),
        py("list_plugins", "import zoo_core; print([p.name for p in zoo_core.list_plugins()])",
           "zoonet"),
        py("get_model_info", "import zoo_core; print(zoo_core.get_model_info('zoonet_s').name)",
           "zoonet_s"),
        py("Registry", "import zoo_core; print(zoo_core.Registry().list_models('zoonet_s'))",
           "zoonet_s"),
        py("check_plugin", "import zoo_core\n"
           "print(len(zoo_core.check_plugin('zoonet', pattern='zoonet_s')), 'checked')",
           "1 checked"),
        py("hash_file", f"import zoo_core; print(zoo_core.hash_file({str(pickled)!r}))", sha),
        py("convert_checkpoint", "import zoo_core\n"
           f"zoo_core.convert_checkpoint({str(pickled)!r}, {str(work / 'c1.st')!r})\n"
           "print('converted')", "converted"),
        py("decide_strategy", "import zoo_core\nprint(zoo_core.decide_strategy("
           "has_pretrained=True, num_train_samples=50, num_classes=5)[0])", decided),
        py("stratified_split", "import zoo_core\n"
           "tr, va = zoo_core.stratified_split([0, 0, 0, 1, 1, 1], 0.34)\n"
           "print(len(tr) + len(va))", "6"),
        py("param_groups", "import torch, zoo_core\n"
           "print(len(zoo_core.param_groups(torch.nn.Linear(2, 2), weight_decay=0.1)), 'groups')",
           "2 groups"),
        py("build_on_meta", "import torch, zoo_core\n"
           "print(zoo_core.build_on_meta(lambda: torch.nn.Linear(2, 2)).weight.device)",
           "meta"),
        py("stage_table", "import torch, zoo_core\n"
           "m = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Linear(4, 2))\n"
           "print(zoo_core.stage_table(m, '1', ['0']))", "head"),
        py("resolution_stages", "import torch, zoo_core\n"
           "m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.Flatten())\n"
           "print(zoo_core.resolution_stages(m, ['0'], (3, 16, 16)))", "('0',)"),
        py("build_model", "import zoo_core\n"
           "print(zoo_core.build_model('zoonet_s', 3).zoo.num_classes, 'classes')", "3 classes"),
        py("save_pretrained", "import zoo_core\n"
           f"m = zoo_core.build_model('zoonet_s', 5, label_names={LABELS!r})\n"
           f"print(zoo_core.save_pretrained(m, {str(saved)!r}))", "saved"),
        py("finetune", "import zoo_core\n"
           f"m, r = zoo_core.finetune('zoonet_s', {str(digits)!r}, strategy='linear_probe', "
           f"epochs=1, out={str(work / 'ft')!r}, progress=False, verbose=False)\n"
           "print('val', r.best_val_acc)", "val"),
        py("rank_models", "import zoo_core\n"
           f"r = zoo_core.rank_models({str(digits)!r}, ['zoonet_s'], per_class=3)\n"
           "print([row.name for row in r.rows])", "zoonet_s"),
        cli(["info", "zoonet_s"], "zoonet_s"),
        cli(["build", "zoonet_s", "-n", "3"], "total"),
        cli(["plugins"], "zoonet"),
        cli(["hash", str(pickled)], sha),
        cli(["convert", str(pickled), str(work / "c2.st")], "c2.st"),
        cli(["cache", "verify"], "rehashed"),
        cli(["cache", "clean"], ""),
        cli(["completion", "bash"], "finetune"),
        cli(["rank", "--data", str(digits), "--models", "zoonet_s", "--sample-per-class", "3",
             "--no-progress"], "zoonet_s"),
        cli(["finetune", "zoonet_s", "--data", str(digits), "--strategy", "linear_probe",
             "--epochs", "1", "--out", str(run), "--no-progress"], "best"),
    ], env, work)

    # 3. needs the saved folder or the run
    problems += _stage([
        py("push_to_hub", "import zoo_core\n"
           f"m = zoo_core.build_model({str(saved)!r})\n"
           f"print(zoo_core.push_to_hub(m, {repo_py!r}))", repo_py),
        cli(["push", str(run), repo_cli], repo_cli),
        cli(["eval", str(saved), "--data", str(digits), "--out", str(work / "ev")], "accuracy"),
        cli(["predict", str(run), str(image)], "5"),
        cli(["export", str(run), "--format", "torchscript", "--out", str(work / "m.pt")],
            "parity"),
    ], env, work)

    # 4. a new process loads what the others pushed, then 5. again offline from the cache
    load = ("import zoo_core\n"
            f"m = zoo_core.build_model('hf-hub:{repo_py}')\n"
            "print('labels', m.zoo.label_names)")
    for offline in ("0", "1"):
        mode = {"HF_HUB_OFFLINE": offline}
        problems += _stage([
            Step(f"build_model(hf-hub:...) HF_HUB_OFFLINE={offline}", "labels", code=load,
                 env=mode),
            Step(f"zoo build hf-hub:... HF_HUB_OFFLINE={offline}", "total",
                 argv=["build", f"hf-hub:{repo_cli}", "-n", "5"], env=mode),
        ], env, work)

    assert not problems, "\n\n".join(problems)

    # every public function and every subcommand was exercised
    functions = {n for n in public if n[0].islower() and n not in ("hookimpl",)}
    assert functions <= covered, functions - covered
    commands = {"zoo list", "zoo info", "zoo build", "zoo plugins", "zoo hash", "zoo convert",
                "zoo cache", "zoo eval", "zoo predict", "zoo push", "zoo rank", "zoo finetune",
                "zoo export", "zoo completion"}
    assert commands <= covered, commands - covered
