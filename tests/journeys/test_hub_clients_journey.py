"""A timm-architecture model fine-tuned with zoo, pushed, and read back by every client a
user has: zoo_core, plain timm, transformers' Auto class and pipeline, each in a new
process with its own cache."""

from __future__ import annotations

import json
from pathlib import Path

from journeylib import Journey

ARCH = "test_resnet"  # timm's own tiny test ResNet: a real timm architecture, 0.5 M params


def test_timm_arch_pushed_loads_in_zoo_timm_and_transformers(
        journey: Journey, digit_folder: Path) -> None:
    weights = journey.home / "pretrained.safetensors"
    journey.python(f"""
        import timm
        from safetensors.torch import save_file
        m = timm.create_model({ARCH!r})
        save_file({{k: v.contiguous() for k, v in m.state_dict().items()}}, {str(weights)!r})
        """)
    run = journey.home / "run"
    journey.zoo("finetune", ARCH, "--data", str(digit_folder), "--weights", str(weights),
                "--strategy", "finetune", "--epochs", "1", "--input-size", "32",
                "--out", str(run), "--no-progress")
    config = json.loads((run / "best" / "config.json").read_text(encoding="utf-8"))
    assert config["architecture"] == ARCH and config["num_classes"] == 5
    # Only what the caller passed: timm and transformers add num_classes themselves.
    assert not {"num_classes", "in_chans", "global_pool"} & set(config.get("model_args", {}))

    repo = "acme/resnet-digits"
    journey.zoo("push", str(run / "best"), repo)
    # fast=False loads the way timm does. The default fast path reads every tensor into
    # its own 64-byte aligned storage, as timm's copying loader leaves it (issue 19), so
    # both are bitwise equal to timm in a fresh process, not merely close.
    ours = journey.logits(
        f"__import__('zoo_core').build_model({str(run / 'best')!r}, fast=False)")
    fast = journey.logits(f"__import__('zoo_core').build_model({str(run / 'best')!r})")
    assert fast == ours
    assert journey.logits(f"__import__('zoo_core').build_model('hf-hub:{repo}')") == fast
    assert journey.logits(
        f"__import__('timm').create_model('hf-hub:{repo}', pretrained=True)") == ours
    # transformers keeps the memory-mapped tensors as they lie in the file (timm copies
    # them into its own aligned parameters): other kernels, the last bits may differ
    # (cloning its parameters gives timm's logits bitwise).
    auto = ("__import__('transformers').AutoModelForImageClassification"
            f".from_pretrained('{repo}')")
    assert close(journey.logits(auto), ours)

    labels = journey.python(f"""
        import transformers
        m = transformers.AutoModelForImageClassification.from_pretrained('{repo}')
        print(sorted(m.config.id2label.items()))
        """)
    assert "'5'" in labels.stdout and "'9'" in labels.stdout

    image = sorted((digit_folder / "6").glob("*.png"))[0]
    piped = journey.python(f"""
        import json, transformers
        pipe = transformers.pipeline("image-classification", model='{repo}')
        print("TOP" + json.dumps(pipe({str(image)!r}, top_k=5)))
        """)
    top_pipe = json.loads(piped.stdout.split("TOP", 1)[1].strip())
    pred = json.loads(journey.zoo("predict", str(run / "best"), str(image), "--json").stdout)
    assert top_pipe[0]["label"] == pred[0]["top"][0]["label"]
    assert abs(top_pipe[0]["score"] - pred[0]["top"][0]["probability"]) < 1e-4

    # Someone fine-tunes the shared model further: its card names it as the base model.
    again = journey.home / "again"
    journey.zoo("finetune", f"hf-hub:{repo}", "--data", str(digit_folder), "--strategy",
                "linear_probe", "--out", str(again), "--no-progress")
    card = journey.python(f"""
        from huggingface_hub import ModelCard
        d = ModelCard.load({str(again / 'best' / 'README.md')!r}).data.to_dict()
        print("CARD", d.get("base_model"), d.get("base_model_relation"))
        """)
    assert f"CARD {repo} finetune" in card.stdout

    # Offline, with the Hub gone, every client reads the same files from the cache.
    journey.server.stop()
    assert journey.logits(f"__import__('zoo_core').build_model('hf-hub:{repo}')",
                          HF_HUB_OFFLINE="1") == fast
    assert close(journey.logits(auto, HF_HUB_OFFLINE="1"), ours)


def close(a: list, b: list, tol: float = 1e-6) -> bool:
    return all(abs(x - y) <= tol for ra, rb in zip(a, b, strict=True)
               for x, y in zip(ra, rb, strict=True))
