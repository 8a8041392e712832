"""The main job across processes: finetune -> Ctrl-C -> resume -> extend -> eval -> predict
-> push -> load in a new process -> load offline from the cache with the Hub gone."""

from __future__ import annotations

import json
from pathlib import Path

from journeylib import Journey, metrics

EXIT_AFTER_EPOCH_ENV = "ZOO_FINETUNE_EXIT_AFTER_EPOCH"  # the documented Ctrl-C stand-in
EXIT_CODE = 75


def test_finetune_interrupt_resume_extend_eval_predict_push_load(
        journey: Journey, digit_folder: Path) -> None:
    run = journey.home / "run"
    first = journey.zoo("finetune", "zoonet_s", "--data", str(digit_folder), "--out", str(run),
                        "--strategy", "finetune", "--epochs", "3", "--keep", "2",
                        "--early-stop", "5", "--no-progress", "--seed", "1", ok=False,
                        **{EXIT_AFTER_EPOCH_ENV: "1"})
    assert first.returncode == EXIT_CODE, first.output
    assert [m["epoch"] for m in metrics(run)["epochs"]] == [1]
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))

    # Resume with nothing but the run folder: model, data and flags come from run.json.
    resumed = journey.zoo("finetune", "--resume", "--out", str(run), "--no-progress")
    assert "epoch 1" in resumed.output
    assert [m["epoch"] for m in metrics(run)["epochs"]] == [1, 2, 3]
    after = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert after["hyperparameters"]["keep"] == 2
    assert after["hyperparameters"]["early_stop"] == 5
    assert after["command"] == record["command"]

    # A flag that differs from the run is refused by name, never silently ignored.
    refused = journey.zoo("finetune", "--resume", "--out", str(run), "--lr", "0.5",
                          "--epochs", "4", ok=False)
    assert refused.returncode != 0 and "--lr" in refused.stderr
    assert "Traceback" not in refused.output

    # Extend the finished run by one epoch (--resume RUN: the other spelling).
    journey.zoo("finetune", "--resume", str(run), "--epochs", "4", "--no-progress")
    history = metrics(run)["epochs"]
    assert [m["epoch"] for m in history] == [1, 2, 3, 4]
    best_acc = max(m["val_acc"] for m in history)

    # eval without --data scores the run's own validation split, which best/ was picked on.
    ev = journey.zoo("eval", str(run), "--json")
    result = json.loads(ev.stdout)
    assert result["num_images"] == after["data"]["num_val"]
    assert abs(result["accuracy"] - best_acc) < 1e-9

    # eval --data on the run's own folder leaves the training images out, and says so.
    ev = journey.zoo("eval", str(run / "best"), "--data", str(digit_folder), "--json")
    assert json.loads(ev.stdout)["num_images"] == after["data"]["num_val"]

    # predict: a file and a folder.
    image = sorted((digit_folder / "7").glob("*.png"))[0]
    pred = journey.zoo("predict", str(run / "best"), str(image), "--json")
    top = json.loads(pred.stdout)[0]["top"][0]["label"]
    assert top in {"5", "6", "7", "8", "9"}
    pred = journey.zoo("predict", str(run / "best"), str(digit_folder / "7"), "--json")
    assert len(json.loads(pred.stdout)) == len(list((digit_folder / "7").glob("*.png")))

    # push, then load in new processes: online, then offline from the cache with no server.
    journey.zoo("push", str(run / "best"), "acme/digits-journey")
    local = journey.logits(f"__import__('zoo_core').build_model({str(run / 'best')!r})")
    fresh = journey.logits("__import__('zoo_core').build_model('hf-hub:acme/digits-journey')")
    assert fresh == local
    via_cli = journey.zoo("build", "hf-hub:acme/digits-journey")
    assert "Traceback" not in via_cli.output
    journey.server.stop()
    offline = journey.logits("__import__('zoo_core').build_model('hf-hub:acme/digits-journey')",
                             HF_HUB_OFFLINE="1")
    assert offline == local

    # The card that went up says what trained it, in the Hub's own terms. zoonet_s's
    # weights ship inside the package (no Hub repo), so the card names the tag in its
    # text and leaves base_model out of the metadata (the Hub checks it is a model id).
    card = journey.python(f"""
        import json
        from huggingface_hub import ModelCard
        card = ModelCard.load({str(run / 'best' / 'README.md')!r})
        d = card.data.to_dict()
        print("CARD" + json.dumps([d.get("library_name"), d.get("pipeline_tag"),
                                   [r.metric_value for r in card.data.eval_results or []]]))
        """)
    library, task, values = json.loads(card.stdout.split("CARD", 1)[1])
    assert (library, task) == ("zoo_core", "image-classification")
    assert values and abs(values[0] - best_acc) < 1e-9
    text = (run / "best" / "README.md").read_text(encoding="utf-8")
    assert "glyphs" in text and "finetune" in text
    assert str(journey.home) not in text and str(digit_folder) not in text
