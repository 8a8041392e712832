"""A run is one thing: --resume reads the run from run.json, refuses differing flags, keeps
--keep / --early-stop / --log-with; a run folder never loses data to a missing state.json;
one run at a time per folder; checkpoints are verified. The real `zoo` command, in
subprocesses, on the small digits fixture."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import zoo_core
from zoo_core.train import EXIT_AFTER_EPOCH_ENV, EXIT_CODE, finetune

pytestmark = pytest.mark.usefixtures("one_thread")
QUIET = {"progress": False, "verbose": False}
SGD = {"probe_solver": "sgd", "batch_size": 8}


def zoo(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("zoo")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "zoo_core.cli"]
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1",
                **(env or {})}
    return subprocess.run([*cmd, *args], env=full_env, capture_output=True, text=True,
                          timeout=300, **kw)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("zoo: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes (the lock file aside: a crashed run leaves it, the next takes it)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".zoo-run.lock"}


@pytest.mark.slow
def test_resume_takes_the_run_from_run_json(tmp_path, digits):
    run = tmp_path / "run"
    first = ["finetune", "zoonet_s", "--data", str(digits), "--strategy", "linear_probe",
             "--probe-solver", "sgd", "--epochs", "3", "--batch-size", "8", "--lr", "0.05",
             "--keep", "3", "--early-stop", "5", "--out", str(run), "--no-progress"]
    proc = zoo(*first, env={EXIT_AFTER_EPOCH_ENV: "1"})
    assert proc.returncode == EXIT_CODE, proc.stderr

    # every other flag differs from the run's: refused, naming the flag, nothing changed
    before = snapshot(run)
    for flags, name in ((["--strategy", "finetune"], "--strategy"),
                        (["--keep", "1"], "--keep"), (["--data", str(tmp_path)], "--data"),
                        (["--per-class", "6"], "--per-class"), (["--lr", "0.1"], "--lr"),
                        (["--mixup", "0.2"], "--mixup"), (["--augment"], "--augment")):
        line = one_error_line(zoo("finetune", "--resume", str(run), *flags))
        assert f"with {name}" in line and "run.json" in line, line
    assert snapshot(run) == before

    # the run folder alone resumes it on its own data with its own settings
    proc = zoo("finetune", "--resume", str(run), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "planned epochs 3" in proc.stdout and "epoch   3/3" in proc.stdout
    assert "30 train" in proc.stdout and "embedded" not in proc.stdout
    record = json.loads((run / "run.json").read_text())
    assert record["command"] == "zoo " + " ".join(first)
    assert record["hyperparameters"]["keep"] == 3
    assert record["hyperparameters"]["early_stop"] == 5
    assert record["arguments"]["data"] == str(digits.resolve())
    assert [r["after_epoch"] for r in record["resumes"]] == [1]
    kept = sorted(p.name for p in (run / "checkpoint").glob("epoch-*.safetensors"))
    assert len(kept) == 3  # --keep 3 survived the resume: nothing pruned

    # the same value typed again is fine; --resume --out RUN still works; more epochs extend
    proc = zoo("finetune", "--resume", "--out", str(run), "--epochs", "4", "--lr", "0.05",
               "--strategy", "linear_probe", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "epoch   4/4" in proc.stdout
    assert f"zoo eval {run}" in proc.stdout
    record = json.loads((run / "run.json").read_text())
    assert [r["epochs"] for r in record["resumes"]] == [3, 4]


def test_python_resume_follows_the_same_rule(tmp_path, digits):
    run = tmp_path / "run"
    finetune("zoonet_s", digits, strategy="linear_probe", epochs=1, out=run, keep=2,
             early_stop=4, **SGD, **QUIET)
    with pytest.raises(zoo_core.InvalidArgumentError, match="with --keep 1 .*started with 2"):
        finetune(out=run, resume=True, epochs=2, keep=1, **QUIET)
    with pytest.raises(zoo_core.InvalidArgumentError, match="with --batch-size"):
        finetune(resume=run, epochs=2, batch_size=4, **QUIET)
    with pytest.raises(zoo_core.InvalidArgumentError, match="different folders"):
        finetune(resume=run, out=tmp_path / "other", epochs=2, **QUIET)
    _, res = finetune(resume=run, epochs=2, **QUIET)  # no model, no data: all from run.json
    assert res.resumed_from_epoch == 1 and res.num_train == 30
    record = json.loads((run / "run.json").read_text())
    assert record["hyperparameters"]["keep"] == 2 and record["arguments"]["early_stop"] == 4


def test_finished_early_stopped_run_names_the_planned_epochs(tmp_path, digits):
    out = tmp_path / "run"
    _, res = finetune("zoonet_s", digits, strategy="linear_probe", epochs=8, lr=3.0,
                      early_stop=1, out=out, **SGD, **QUIET)
    stopped = res.extra["stopped_early"]
    assert stopped is not None and stopped < 8
    with pytest.raises(zoo_core.InvalidArgumentError,
                       match=rf"stopped early after epoch {stopped} of 8.*N > 8"):
        finetune(resume=out, **QUIET)


def test_missing_state_json_changes_nothing(tmp_path, digits):
    run = tmp_path / "run"
    finetune("zoonet_s", digits, strategy="linear_probe", epochs=2, keep=2, out=run, **SGD,
             **QUIET)
    (run / "checkpoint" / "state.json").unlink()
    before = snapshot(run)
    for kw in ({"resume": run}, {"model": "zoonet_s", "data": digits, "out": run}):
        with pytest.raises(zoo_core.InvalidArgumentError,
                           match=r"state.json is missing.*epoch-0001.*best/.*nothing was "
                                 r"changed.*restore state.json.*--overwrite"):
            finetune(strategy="linear_probe", epochs=3, **kw, **QUIET)
    assert snapshot(run) == before
    _, res = finetune("zoonet_s", digits, strategy="linear_probe", epochs=1, out=run,
                      overwrite=True, **SGD, **QUIET)
    assert res.resumed_from_epoch is None


HOLD = """
import sys, time
from pathlib import Path
from zoo_core.train._lock import RunLock
lock = RunLock(Path(sys.argv[1]))
lock.acquire()
print("locked", flush=True)
time.sleep(120)
"""


@pytest.mark.slow
def test_a_run_folder_is_locked_while_a_run_writes_it(tmp_path, digits):
    import signal

    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        line = one_error_line(zoo("finetune", "--data", str(digits), "--strategy",
                                  "linear_probe", "--epochs", "1", "--out", str(run)))
        assert f"in use by another run (pid {holder.pid}" in line and "--out" in line
        with pytest.raises(zoo_core.ZooError, match=f"pid {holder.pid}"):
            finetune("zoonet_s", digits, strategy="linear_probe", out=run, **QUIET)
        assert [p.name for p in run.iterdir()] == [".zoo-run.lock"]  # nothing written
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding the lock: a stale lock file
        holder.wait()
        holder.stdout.close()
    assert (run / ".zoo-run.lock").read_text().strip() == str(holder.pid)
    _, res = finetune("zoonet_s", digits, strategy="linear_probe", epochs=1, out=run, **SGD,
                      **QUIET)
    assert res.best_dir and not (run / ".zoo-run.lock").exists()  # taken over, released


@pytest.mark.slow
def test_two_zoo_runs_into_one_out(tmp_path, digits):
    """The issue's case: a second `zoo finetune --out RUN` while the first trains."""
    import signal
    import time

    run = tmp_path / "run"
    exe = Path(sys.executable).with_name("zoo")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "zoo_core.cli"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([*cmd, "finetune", "--data", str(digits), "--strategy",
                              "finetune", "--epochs", "200", "--out", str(run),
                              "--no-progress"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoint" / "state.json").exists():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        line = one_error_line(zoo("finetune", "--data", str(digits), "--strategy",
                                  "linear_probe", "--out", str(run), "--overwrite"))
        assert f"pid {first.pid}" in line
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    run_json = json.loads((run / "run.json").read_text())
    assert run_json["strategy"] == "finetune"  # the second run wrote nothing
    done = json.loads((run / "checkpoint" / "state.json").read_text())["epoch"]
    _, res = finetune(resume=run, epochs=done + 1, **QUIET)  # the dead run's lock is taken
    assert res.resumed_from_epoch == done


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory, digits) -> Path:
    """A run stopped after epoch 1 of 2 (the Ctrl-C hook), to be damaged by the tests."""
    run = tmp_path_factory.mktemp("ckpt") / "run"
    code = (f"import zoo_core.train as f; f.finetune('zoonet_s', {str(digits)!r}, "
            f"strategy='linear_probe', epochs=2, out={str(run)!r}, probe_solver='sgd', "
            "batch_size=8, progress=False, verbose=False)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), EXIT_AFTER_EPOCH_ENV: "1",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == EXIT_CODE, proc.stderr
    return run


def _damaged(two_epochs: Path, tmp_path: Path, damage) -> Path:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(two_epochs, run)
    damage(run / "checkpoint")
    return run


def _flip_bit(ckpt: Path) -> None:
    f = ckpt / "epoch-0001.safetensors"
    data = bytearray(f.read_bytes())
    data[-3] ^= 0x01  # inside a tensor: safetensors itself would load it without notice
    f.write_bytes(bytes(data))


def _state(**changes):
    def damage(ckpt: Path) -> None:
        state = json.loads((ckpt / "state.json").read_text())
        state.update(changes)
        (ckpt / "state.json").write_text(json.dumps(state))
    return damage


@pytest.mark.parametrize("damage,needle", [
    (lambda c: (c / "epoch-0001.safetensors").write_bytes(
        (c / "epoch-0001.safetensors").read_bytes()[:500]), "epoch-0001.safetensors"),
    (lambda c: (c / "epoch-0001.safetensors").write_bytes(b""), "epoch-0001.safetensors"),
    (_flip_bit, "epoch-0001.safetensors does not match the sha256"),
    (_state(tensors="../../../../etc/passwd"), "'../../../../etc/passwd'.*refused"),
    (_state(tensors="epoch-0009.safetensors"), "epoch-0009.safetensors is missing"),
    (lambda c: (c / "state.json").write_text('{"epoch": 1, "tens'), "state.json cannot be"),
], ids=["truncated", "empty", "flipped-bit", "path-escape", "missing-file", "bad-json"])
def test_damaged_checkpoint_is_one_clear_error(two_epochs, tmp_path, damage, needle):
    run = _damaged(two_epochs, tmp_path, damage)
    before = snapshot(run)
    with pytest.raises(zoo_core.InvalidArgumentError, match=needle) as err:
        finetune(resume=run, **QUIET)
    assert "nothing was changed" in str(err.value) and "--overwrite" in str(err.value)
    assert snapshot(run) == before


def test_damaged_checkpoint_on_the_command_line(two_epochs, tmp_path):
    run = _damaged(two_epochs, tmp_path, _flip_bit)
    line = one_error_line(zoo("finetune", "--resume", str(run)))
    assert "epoch-0001.safetensors does not match the sha256" in line


@pytest.mark.slow
@pytest.mark.parametrize("limit", [4_000, 310_000])
def test_file_size_limit_is_one_clear_error(two_epochs, tmp_path, limit):
    """`ulimit -f` (RLIMIT_FSIZE) while the run writes: one `zoo: error:` line naming the
    file, no traceback, the last good checkpoint intact."""
    import resource

    run = _damaged(two_epochs, tmp_path, lambda c: None)

    def limit_writes() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = zoo("finetune", "--resume", str(run), "--no-progress", preexec_fn=limit_writes)
    line = one_error_line(proc)
    assert str(run) in line and ("could not write" in line or "no space" in line), line
    assert json.loads((run / "checkpoint" / "state.json").read_text())["epoch"] == 1
    _, res = finetune(resume=run, **QUIET)
    assert res.resumed_from_epoch == 1 and len(res.history) == 2


def test_runs_recorded_before_arguments_resume_from_their_hyperparameters(tmp_path, digits):
    run = tmp_path / "run"
    finetune("zoonet_s", digits, strategy="linear_probe", epochs=1, keep=2, out=run, **SGD,
             **QUIET)
    record = json.loads((run / "run.json").read_text())
    del record["arguments"]
    (run / "run.json").write_text(json.dumps(record))
    with pytest.raises(zoo_core.InvalidArgumentError, match="with --keep 1"):
        finetune(resume=run, epochs=2, keep=1, **QUIET)
    _, res = finetune(resume=run, epochs=2, **QUIET)
    assert res.resumed_from_epoch == 1 and res.num_train == 30
    # a damaged run.json: resuming from it alone is refused, the whole command still works
    (run / "run.json").write_text('{"command": "zoo fine')
    before = snapshot(run)
    with pytest.raises(zoo_core.InvalidArgumentError, match="run.json cannot be read"):
        finetune(resume=run, epochs=3, **QUIET)
    assert snapshot(run) == before
    _, res = finetune("zoonet_s", digits, strategy="linear_probe", epochs=3, keep=2, out=run,
                      resume=True, **SGD, **QUIET)
    assert res.resumed_from_epoch == 2


@pytest.mark.parametrize("argv, typed", [
    ([], set()),
    (["--seed", "0", "--mixup", "0", "--workers", "0"], {"seed", "mixup", "num_workers"}),
    (["--seed", "3", "--lr", "0.1"], {"seed", "lr"}),
])
def test_only_typed_flags_count_as_given(argv, typed):
    """A default of 0 / 0.0 (--seed, --mixup, --workers) is a default, not a typed flag:
    a resumed run with --seed 1 was refused "--seed 0" when nothing was typed."""
    from zoo_core.cli.main import build_parser

    args = build_parser().parse_args(["finetune", "--resume", "--out", "RUN", *argv])
    from zoo_core.cli.finetune import _given

    _, given = _given(args)
    recipe_or_run = given - {"resume", "out", "func", "command"}
    assert recipe_or_run == typed
