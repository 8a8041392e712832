"""Journeys' tools: a user's path through the product in real processes.

Every step is a new process: the installed ``zoo`` command or a fresh ``python -c``, with
its own ``HF_HOME`` and ``ZOO_CORE_CACHE``, talking over real HTTP to a local Hub
(tests/hubserver.py) that a journey can stop to prove the offline path. Nothing here
imports zoo_core's private modules, so the journeys hold whatever the layout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hubserver import HubServer

ZOO = str(Path(sys.executable).with_name("zoo"))
STEP_TIMEOUT_S = 300

# Variables of the caller that must not leak into a journey's processes.
_DROP = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "ZOO_CORE_", "ZOO_FINETUNE_")


@dataclass
class Step:
    """What one process of a journey did."""

    args: Sequence[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class Journey:
    """A user's machine: fresh caches, a local Hub, and a way to run commands on it."""

    home: Path
    server: HubServer
    extra_path: list[str] = field(default_factory=list)

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP)}
        env.update({
            "HF_HOME": str(self.home / "hf"), "ZOO_CORE_CACHE": str(self.home / "zoo-cache"),
            "HF_ENDPOINT": self.server.endpoint, "HF_TOKEN": "hf_dummy",
            "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_DISABLE_UPDATE_CHECK": "1", "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost", "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore",
        })
        if self.extra_path:
            env["PYTHONPATH"] = os.pathsep.join(
                [*self.extra_path, *filter(None, [os.environ.get("PYTHONPATH")])])
        env.update(overrides)
        return env

    def run(self, args: Sequence[str], *, ok: bool = True, env: dict[str, str] | None = None,
            cwd: Path | None = None, timeout: float = STEP_TIMEOUT_S, **overrides: str) -> Step:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                              cwd=cwd or self.home, env=env or self.env(**overrides))
        step = Step(args, proc.returncode, proc.stdout, proc.stderr)
        if ok and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {proc.returncode}\n{step.output}")
        return step

    def zoo(self, *args: str, **kw) -> Step:
        return self.run([ZOO, *args], **kw)

    def python(self, source: str, **kw) -> Step:
        return self.run([sys.executable, "-c", textwrap.dedent(source)], **kw)

    def logits(self, load: str, *, size: int = 32, channels: int = 3, **kw) -> list:
        """Logits of a fixed input, computed in a new process by the ``load`` expression
        (which must evaluate to a model); returned as nested lists of floats, exact."""
        step = self.python(f"""
            import json, torch
            torch.manual_seed(0)
            x = torch.rand(2, {channels}, {size}, {size})
            model = {load}
            model.eval()
            with torch.no_grad():
                out = model(x)
            out = getattr(out, "logits", out)
            print("LOGITS" + json.dumps(out.double().tolist()))
            """, **kw)
        line = [ln for ln in step.stdout.splitlines() if ln.startswith("LOGITS")][-1]
        return json.loads(line[len("LOGITS"):])


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text(encoding="utf-8"))
