"""Build + load pretrained weights: zoo_core's fast path vs timm / torchvision.

For each architecture a weight file is written into a temp dir (from a normally built model
with the pretrained num_classes, 1000), then both sides build the model with
num_classes=10 from that file:

* ours:   ``zoo_core.build_model(n, 10, "linear_probe", weights=file)`` (the public builder:
  resolve, meta-device construction, mmap + assign, new head, strategy, sha256 metadata)
* theirs: ``timm.create_model(n, pretrained=True, pretrained_cfg_overlay=dict(file=file),
  num_classes=10)``; for torchvision ``resnet50()`` + ``load_state_dict`` + a new ``fc``.

* floor:  ``safetensors.torch.load_file(file)`` (maps the file) and reading every weight once
  (``t.sum()`` over each tensor): what any loader pays to have the weights in memory, with
  no model built. "vs floor" is ours / floor (target for resnet50: <= 2x).

Rounds: each (arch, side) is measured in --rounds fresh processes, one round after the
other: ours, theirs, floor, ours, theirs, floor, ... A round's ratio compares processes run
seconds apart, and a figure is the median over the rounds. On a shared host one side alone
moved by 1.7x between processes a minute apart (the floor, stop 19), and two runs of the
one-process-per-side design eight minutes apart gave efficientnet_b0 1.7x then 1.2x timm
(stop 20): a single process per side measured whichever phase the host was in. Processes
stay separate, so one side's memory never shapes the other's allocations.

Time ("ms"): in-process wall time after imports, per process one untimed warm-up build
then the median of --reps builds; the median of that over the rounds. Peak RSS: a fresh
process per (arch, side) doing the imports and ONE build, then ``getrusage(RUSAGE_SELF).ru_maxrss``;
"base" is a process that only imports torch and timm. Both sides read the file from the
page cache (it was just written).

Verification cost (second table): what proving a weights file unchanged costs per build,
in a fresh process per arch: "hit" is a download-cache hit (header check + sidecar whose
stat key still matches, median of 20), "memo" an in-process repeat build of a pinned file
(stat + memo lookup), "rehash" the full sha256 that a pinned file costs once per process
and again after any write to it (ctime changes), next to "ours ms" of the first table.

    python benchmarks/bench_build.py [--quick] [--reps 5] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

NUM_CLASSES = 10


@dataclass(frozen=True)
class Case:
    name: str  # timm name, or "tv:<torchvision name>"
    head: str

    @property
    def is_tv(self) -> bool:
        return self.name.startswith("tv:")


CASES = [
    Case("resnet50", "fc"),
    Case("convnext_tiny", "head.fc"),
    Case("vit_base_patch16_224", "head"),
    Case("efficientnet_b0", "classifier"),
    Case("tv:resnet50", "fc"),
]
QUICK = ["resnet50", "efficientnet_b0"]


def construct(case: Case, num_classes: int):
    if case.is_tv:
        import torchvision

        return getattr(torchvision.models, case.name[3:])(num_classes=num_classes)
    import timm

    return timm.create_model(case.name, num_classes=num_classes)


def build_ours(case: Case, file: str):
    import zoo_core

    name = f"torchvision/{case.name[3:]}" if case.is_tv else f"timm/{case.name}"
    return zoo_core.build_model(name, NUM_CLASSES, "linear_probe", weights=file)


def build_theirs(case: Case, file: str):
    if case.is_tv:
        import safetensors.torch
        import torch
        import torchvision

        model = getattr(torchvision.models, case.name[3:])()
        model.load_state_dict(safetensors.torch.load_file(file))
        model.fc = torch.nn.Linear(model.fc.in_features, NUM_CLASSES)
        return model
    import timm

    return timm.create_model(
        case.name, pretrained=True, pretrained_cfg_overlay=dict(file=file), num_classes=10
    )


def touch_floor(case: Case, file: str):
    """Map the file and read every weight once; returns the tensors (kept alive until timed)."""
    import safetensors.torch

    sd = safetensors.torch.load_file(file)
    for v in sd.values():
        v.sum()
    return sd


def _imports(side: str) -> None:
    import timm  # noqa: F401
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    if side == "ours":
        import zoo_core.build._fastload  # noqa: F401


def _peak_rss_kib() -> int:
    # ru_maxrss carries the parent's high-water mark over fork/exec on Linux, so the
    # orchestrating process below never imports torch (it stays a few MiB).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _verify_costs(file: str) -> dict:
    """Milliseconds: cache hit (header + sidecar), memo hit, full rehash (see docstring)."""
    from pathlib import Path

    from zoo_core.weights import _digests, _weights_cache

    with tempfile.TemporaryDirectory(prefix="bench_verify_") as tmp:
        os.environ["ZOO_CORE_CACHE"] = tmp
        url = "http://bench.invalid/w.safetensors"
        dest = _weights_cache.entry_path(url)
        dest.parent.mkdir(parents=True)
        if os.stat(file).st_dev == os.stat(tmp).st_dev:
            os.link(file, dest)
        else:
            dest.write_bytes(Path(file).read_bytes())
        start = time.perf_counter()
        digest = _digests.sha256_file(dest)
        rehash = time.perf_counter() - start
        _weights_cache.write_sidecar(dest, digest, url)
        hits, memos = [], []
        _digests.file_digest(dest)
        for _ in range(20):
            start = time.perf_counter()
            assert _weights_cache.entry_problem(dest, digest, url) is None
            hits.append(time.perf_counter() - start)
            start = time.perf_counter()
            _digests.file_digest(dest)
            memos.append(time.perf_counter() - start)
    return {"hit": statistics.median(hits) * 1000, "memo": statistics.median(memos) * 1000,
            "rehash": rehash * 1000, "mib": os.path.getsize(file) / 2**20}


def worker(args: argparse.Namespace) -> None:
    if args.side == "verify":
        print(json.dumps(_verify_costs(args.file)))
        return
    if args.side == "write":
        _write_weights(next(c for c in CASES if c.name == args.case), args.file)
        print(json.dumps({}))
        return
    if args.side == "base":
        import timm  # noqa: F401
        import torch  # noqa: F401

        print(json.dumps({"maxrss_kib": _peak_rss_kib()}))
        return
    case = next(c for c in CASES if c.name == args.case)
    build = {"ours": build_ours, "theirs": build_theirs, "floor": touch_floor}[args.side]
    _imports(args.side)
    times = []
    for i in range(args.reps + (0 if args.rss else 1)):  # first build: warm-up, untimed
        gc.collect()
        start = time.perf_counter()
        model = build(case, args.file)
        elapsed = time.perf_counter() - start
        if args.side != "floor":
            assert sum(p.numel() for p in model.parameters()) > 0
        del model
        if args.rss or i > 0:
            times.append(elapsed)
    print(json.dumps({"times": times, "maxrss_kib": _peak_rss_kib()}))


def _run_worker(*extra: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", *extra]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _write_weights(case: Case, path: str) -> None:
    import safetensors.torch
    import torch

    torch.manual_seed(0)
    model = construct(case, 1000)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(sd, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 archs, 2 reps (smoke test)")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None, help="processes per (arch, side)")
    parser.add_argument("--json", default=None, help="also write every figure here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rss", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    reps = args.reps or (2 if args.quick else 5)
    rounds = args.rounds or (1 if args.quick else 3)
    cases = [c for c in CASES if not args.quick or c.name in QUICK]
    base = statistics.median(_run_worker("--side", "base")["maxrss_kib"] for _ in range(3))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_build_") as tmp:
        for case in cases:
            file = os.path.join(tmp, case.name.replace(":", "_") + ".safetensors")
            _run_worker("--side", "write", "--case", case.name, "--file", file)
            row = {"case": case}
            per_round = []
            for _ in range(rounds):  # module doc: sides alternate, a process each
                per_round.append({side: statistics.median(_run_worker(
                    "--side", side, "--case", case.name, "--file", file,
                    "--reps", str(reps))["times"]) * 1000
                    for side in ("ours", "theirs", "floor")})
            for side in ("ours", "theirs", "floor"):
                row[side] = statistics.median(r[side] for r in per_round)
            row["rounds"] = per_round
            row["speedup"] = statistics.median(r["theirs"] / r["ours"] for r in per_round)
            row["vs_floor"] = statistics.median(r["ours"] / r["floor"] for r in per_round)
            for side in ("ours", "theirs"):
                row[side + "_rss"] = _run_worker("--side", side, "--case", case.name,
                                                 "--file", file, "--reps", "1",
                                                 "--rss")["maxrss_kib"]
            row["verify"] = _run_worker("--side", "verify", "--file", file)
            rows.append(row)
            print(
                f"  {case.name}: ours {row['ours']:.0f} ms, theirs {row['theirs']:.0f} ms, "
                f"floor {row['floor']:.0f} ms",
                file=sys.stderr,
                flush=True,
            )

    mib = 1024.0
    header = (
        f"{'arch':<24} {'ours ms':>9} {'theirs ms':>10} {'speedup':>8} {'floor ms':>9} "
        f"{'vs floor':>9} {'RSS ours':>9} {'theirs':>7} {'base':>6}  (MiB)"
    )
    print(f"median over {rounds} round(s) of the median of {reps} in-process builds after "
          "imports (ratios: median of the per-round ratios); peak RSS of a 1-build process")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['case'].name:<24} {r['ours']:>9.1f} {r['theirs']:>10.1f} "
            f"{r['speedup']:>7.2f}x {r['floor']:>9.1f} {r['vs_floor']:>8.2f}x "
            f"{r['ours_rss'] / mib:>9.0f} {r['theirs_rss'] / mib:>7.0f} {base / mib:>6.0f}"
        )
    timm_rows = [r for r in rows if not r["case"].is_tv]
    if timm_rows:
        med = statistics.median(r["speedup"] for r in timm_rows)
        med_all = statistics.median(r["speedup"] for r in rows)
        worst_rss = max(r["ours_rss"] / base for r in rows)
        print(
            f"\nmedian speedup vs timm: {med:.1f}x over the timm archs, {med_all:.1f}x over all "
            f"(target >= 5x); slowest case: {min(r['speedup'] for r in rows):.1f}x "
            f"(target >= 1x; efficientnet_b0 >= 1.5x); max ours RSS / base: {worst_rss:.3f}"
        )
    by_name = {r["case"].name: r for r in rows}
    if "resnet50" in by_name:
        r = by_name["resnet50"]
        print(f"resnet50: {r['ours']:.1f} ms, {r['vs_floor']:.2f}x the floor of "
              f"{r['floor']:.1f} ms (target <= 2x)")
    if "efficientnet_b0" in by_name:
        print(f"efficientnet_b0: {by_name['efficientnet_b0']['speedup']:.2f}x timm "
              "(target >= 1.5x)")
    print("per round (speedup vs timm | ours / floor):")
    for r in rows:
        print(f"  {r['case'].name:<22} "
              + " ".join(f"{x['theirs'] / x['ours']:.2f}x" for x in r["rounds"]) + " | "
              + " ".join(f"{x['ours'] / x['floor']:.2f}x" for x in r["rounds"]))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"reps": reps, "rounds": rounds, "base_rss_kib": base,
                       "rows": [{**r, "case": r["case"].name} for r in rows]}, fh, indent=1)
    print("\ncache verification per build (ms; a hit is what a cached download costs)")
    head = f"{'arch':<24} {'MiB':>6} {'hit':>7} {'memo':>7} {'rehash':>8} {'ours ms':>9}"
    print(head)
    print("-" * len(head))
    for r in rows:
        v = r["verify"]
        print(f"{r['case'].name:<24} {v['mib']:>6.0f} {v['hit']:>7.2f} {v['memo']:>7.3f} "
              f"{v['rehash']:>8.0f} {r['ours']:>9.1f}")


if __name__ == "__main__":
    main()
