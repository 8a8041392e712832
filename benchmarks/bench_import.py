"""`import zoo_core` and `zoo list` vs `import timm` and `timm.list_models()`.

Each figure is the wall time of a whole new Python process (interpreter start included),
median of --reps runs, measured side by side in one run. `zoo list` is measured with its
name cache warm (the first `zoo list` after installing or upgrading timm/torchvision
builds it; that one run is printed too).

    python benchmarks/bench_import.py [--reps 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

CASES = {
    "import zoo_core": "import zoo_core",
    "import timm": "import timm",
    "zoo list": "from zoo_core.cli import main; import sys; sys.exit(main(['list']))",
    "timm.list_models()": "import timm; timm.list_models()",
    "zoo list 'resnet*' --pretrained": (
        "from zoo_core.cli import main; import sys; "
        "sys.exit(main(['list', 'resnet*', '--pretrained']))"),
    "timm.list_models('resnet*', pretrained=True)": (
        "import timm; timm.list_models('resnet*', pretrained=True)"),
}


def run(code: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "ZOO_CORE_CACHE": cache}
        first = run(CASES["zoo list"], env)  # builds the name cache
        times = {name: [] for name in CASES}
        for _ in range(args.reps):  # interleaved, so machine noise hits all alike
            for name, code in CASES.items():
                times[name].append(run(code, env))
    med = {name: statistics.median(v) for name, v in times.items()}
    print(f"{'case':<48} {'median s':>9}")
    for name, value in med.items():
        print(f"{name:<48} {value:>9.3f}")
    print(f"{'zoo list, first run (builds name cache)':<48} {first:>9.3f}")
    print()
    r1 = med["import timm"] / med["import zoo_core"]
    r2 = med["timm.list_models()"] / med["zoo list"]
    r3 = (med["timm.list_models('resnet*', pretrained=True)"]
          / med["zoo list 'resnet*' --pretrained"])
    print(f"import zoo_core is {r1:.1f}x faster than import timm (target >= 10x)")
    print(f"zoo list is {r2:.1f}x faster than timm.list_models() (target >= 5x)")
    print(f"filtered list is {r3:.1f}x faster than timm's")


if __name__ == "__main__":
    main()
