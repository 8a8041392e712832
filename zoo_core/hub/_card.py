"""The model card (``README.md``) of a saved or pushed model: YAML front matter the Hub
reads (library, tags, license, base model), then what was built, how, and how to load it."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

from zoo_core._specs import ModelInfo
from zoo_core.registry._registry import HUB_PREFIX
from zoo_core.saved._repo_format import WEIGHTS_NAME, ZOO_KEY

__all__ = ["eval_results", "hub_base_model", "hub_datasets", "hub_license", "model_card",
           "public_command", "public_name", "public_text"]

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
# License identifiers the Hub knows (the common ones); anything else becomes "other".
_HUB_LICENSES = frozenset({
    "apache-2.0", "mit", "bsd", "bsd-2-clause", "bsd-3-clause", "bsd-3-clause-clear",
    "cc0-1.0", "cc-by-2.0", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0",
    "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0", "cc-by-nc-nd-4.0",
    "cc-by-nc-sa-4.0", "gpl-2.0", "gpl-3.0", "lgpl-2.1", "lgpl-3.0", "agpl-3.0", "mpl-2.0",
    "afl-3.0", "artistic-2.0", "bsl-1.0", "ecl-2.0", "epl-2.0", "isc", "unlicense", "wtfpl",
    "openrail", "llama2", "llama3", "gemma", "unknown", "other",
})



def hub_license(text: str | None) -> tuple[str | None, str | None]:
    """(Hub license id, free-text name when the id is "other")."""
    if not text:
        return None, None
    token = re.split(r"[\s(;,]", text.strip(), maxsplit=1)[0].lower()
    if token in _HUB_LICENSES:
        return token, None
    slug = re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")[:64] or "custom"
    return "other", slug



def model_card(info: ModelInfo, config: Mapping[str, Any], labels: list[str] | None, *,
                metrics: Mapping[str, Any] | None, training_data: Any, license: str | None,
                extra: str | Mapping[str, Any] | None, repo_id: str | None) -> str:  # noqa: A002
    from huggingface_hub import ModelCardData

    zoo = config[ZOO_KEY]
    timm_lib = zoo["library"] == "timm"
    scratch = info.weights_source is None
    lic_text = license or info.license
    lic_id, lic_name = hub_license(lic_text)
    base_repo = None if scratch else hub_base_model(info)
    tags = ["image-classification", "zoo_core", f"zoo_core-plugin-{info.plugin}"]
    if timm_lib:
        tags.append("timm")
    tags.append("trained-from-scratch" if scratch else "transfer-learning")
    meta: dict[str, Any] = {
        "library_name": "timm" if timm_lib else "zoo_core",
        "pipeline_tag": "image-classification",
        "tags": tags,
    }
    if lic_id:
        meta["license"] = lic_id
        if lic_name:
            meta["license_name"] = lic_name
    if base_repo:
        meta["base_model"] = base_repo
        meta["base_model_relation"] = "finetune"
    datasets = hub_datasets(training_data)
    if datasets:
        meta["datasets"] = datasets
    title = repo_id.rsplit("/", 1)[-1] if repo_id else info.name
    results = eval_results(metrics, training_data, datasets)
    if results:
        meta["model_name"] = title
        meta["eval_results"] = results
    if isinstance(extra, Mapping):
        meta.update(extra)
    front = ModelCardData(**meta).to_yaml()
    arch = f"{info.plugin}/{info.name}"
    dist = f"{info.distribution} {info.distribution_version}".strip()
    lines = [f"# {title}", ""]
    if scratch:
        lines += [
            f"Image classifier with the `{arch}` architecture, **trained from scratch, no "
            "pretrained weights** (random initialisation), built with "
            "[zoo_core](https://pypi.org/project/zoo-core/).", "",
        ]
    else:
        lines += [
            f"Image classifier fine-tuned from `{arch}` with "
            "[zoo_core](https://pypi.org/project/zoo-core/).", "",
        ]
    lines += ["## Model", "", f"- Architecture: `{info.name}` from zoo_core plugin "
              f"`{info.plugin}` (distribution `{dist or 'unknown'}`)"]
    if scratch:
        lines.append("- Base weights: none: trained from scratch, no pretrained weights")
    else:
        lines.append(f"- Base weights: tag `{info.weights_tag}`, source "
                     f"`{zoo['base_weights']['source']}`")
        if info.weights_sha256:
            lines.append(f"  (sha256 `{info.weights_sha256}`)")
        if info.base_model:
            lines.append(f"- Base model: `{public_name(info.base_model)}`")
    lines.append(f"- Weights of this repo: `{WEIGHTS_NAME}`, sha256 `{zoo['weights_sha256']}`")
    dc = info.data_config
    lines += [
        f"- Input: {'x'.join(str(d) for d in dc.input_size)}, mean {list(dc.mean)}, std "
        f"{list(dc.std)}, interpolation `{dc.interpolation}`, crop_pct {dc.crop_pct}",
        f"- Head: `{info.head}`, {info.num_classes} classes"
        + (f" (new head; the pretrained one was dropped: "
           f"{', '.join(f'`{k}`' for k in info.dropped_head_keys)})"
           if info.dropped_head_keys else ""),
    ]
    if info.model_args:
        lines.append("- Model arguments: " + ", ".join(
            f"`{k}={v!r}`" for k, v in sorted(info.model_args.items())))
    lines += [
        "", "## Training", "",
        f"- Strategy: `{info.strategy}`: {public_text(info.strategy_reason, info)}",
    ]
    if training_data is not None:
        lines.append(f"- Training data: {_render(training_data)}")
    else:
        lines.append("- Training data: not documented")
    lines += ["", "## Labels", ""]
    if labels:
        lines += [f"{i}. {name}" for i, name in enumerate(labels)]
    else:
        lines.append(f"{info.num_classes} classes, names not given (class index only).")
    if metrics:
        lines += ["", "## Evaluation", "", "| metric | value |", "|---|---|"]
        lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in metrics.items()]
    lines += ["", "## License", ""]
    if lic_text:
        lines.append(f"{lic_text}")
    else:
        lines.append("Not specified: check the licenses of the architecture and of any "
                     "pretrained weights before use.")
    rid = repo_id or "ORG/NAME"
    lines += [
        "", "## How to use", "", "```python", "import zoo_core", "",
        f'model = zoo_core.build_model("hf-hub:{rid}")  # same head and labels',
        f'new = zoo_core.build_model("hf-hub:{rid}", num_classes=10)  # new head',
        "```",
    ]
    if timm_lib:
        lines += ["", "or with plain timm:", "", "```python", "import timm", "",
                  f'model = timm.create_model("hf-hub:{rid}", pretrained=True)', "```",
                  "", "or with transformers (`TimmWrapper`; labels in `config.id2label`):", "",
                  "```python", "from transformers import pipeline", "",
                  f'classify = pipeline("image-classification", model="{rid}")', "```"]
    else:
        lines += ["", f"`{info.name}` is an architecture of the zoo_core plugin "
                  f"`{info.plugin}`, not of timm or transformers: load it with zoo_core "
                  "(`pip install zoo-core`"
                  + (f" and `{info.distribution}`" if info.distribution
                     and info.distribution != "zoo-core" else "") + ")."]
    if isinstance(extra, str) and extra.strip():
        lines += ["", extra.strip()]
    return f"---\n{front}\n---\n\n" + "\n".join(lines) + "\n"


def _render(value: Any) -> str:
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {public_name(v) if isinstance(v, str) else v}"
                         for k, v in value.items())
    return public_name(str(value))


# ------------------------------------------------------------------- Hub metadata

_HUB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}(?:/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?")
# metric names read as accuracy on a split, for the card's model-index
_SPLIT_METRICS = {
    "val_accuracy": "validation", "val_acc": "validation", "valid_accuracy": "validation",
    "validation_accuracy": "validation", "test_accuracy": "test", "test_acc": "test",
}


def hub_base_model(info: ModelInfo) -> str | None:
    """The Hub repo the model's weights came from (``org/name``), or None: a registry tag
    whose file is not on the Hub (``pkg:``, a URL), a local file or folder. The Hub
    validates ``base_model`` as an existing model id, so only a Hub repo goes there; the
    card's text names the tag."""
    for candidate in (info.base_model, info.weights_source):
        if candidate and candidate.startswith(HUB_PREFIX):
            repo = candidate[len(HUB_PREFIX):].partition("@")[0]
            if _HUB_ID_RE.fullmatch(repo):
                return repo
    return None


def hub_datasets(training_data: Any) -> list[str] | None:
    """Hub dataset ids the caller named: ``training_data={"dataset": "org/name"}`` (or
    ``"datasets": [...]``). A folder name is not a Hub dataset and is never listed."""
    if not isinstance(training_data, Mapping):
        return None
    found: list[str] = []
    for key in ("dataset", "datasets", "hub_dataset"):
        value = training_data.get(key)
        values = [value] if isinstance(value, str) else value
        if isinstance(values, (list, tuple)):
            found += [v for v in values if isinstance(v, str) and _HUB_ID_RE.fullmatch(v)
                      and v not in found]
    return found or None


def eval_results(metrics: Mapping[str, Any] | None, training_data: Any,
                 datasets: list[str] | None) -> list[Any] | None:
    """The model-index entries: accuracy measured on a named split (``val_accuracy``,
    ``test_accuracy``, ...), on the training data's own split when nothing else is said."""
    from huggingface_hub import EvalResult

    if not metrics:
        return None
    name = None
    if isinstance(training_data, Mapping) and isinstance(training_data.get("name"), str):
        name = public_name(training_data["name"])
    elif isinstance(training_data, str) and training_data.strip():
        name = public_name(training_data.strip())[:100]
    out = []
    for key, value in metrics.items():
        split = _SPLIT_METRICS.get(str(key).lower())
        if split is None or isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not math.isfinite(value):
            continue
        out.append(EvalResult(
            task_type="image-classification", task_name="Image Classification",
            dataset_type=datasets[0] if datasets else "imagefolder",
            dataset_name=name or (datasets[0] if datasets else "image folder"),
            dataset_split=split, metric_type="accuracy", metric_value=float(value),
            metric_name=f"{split.capitalize()} accuracy"))
    return out or None


def public_name(text: str) -> str:
    """``text`` without a path of this machine: a path (absolute, relative, ``~``, or one
    that exists here) becomes its last part; ``local-dir:PATH`` the folder's name; Hub
    names, registry names and URLs stay.

    >>> public_name("/home/me/data/digits"), public_name("./runs/x/best")
    ('digits', 'best')
    >>> public_name("local-dir:/tmp/run/best"), public_name("hf-hub:org/name")
    ('local folder best', 'hf-hub:org/name')
    >>> public_name("timm/resnet18"), public_name("digits")
    ('timm/resnet18', 'digits')
    """
    from zoo_core.saved._repo_format import LOCAL_PREFIX

    if text.startswith(LOCAL_PREFIX):
        return f"local folder {_last_part(text[len(LOCAL_PREFIX):])}"
    if text.startswith((HUB_PREFIX, "pkg:")) or "://" in text:
        return text
    if _looks_like_path(text):
        return _last_part(text)
    return text


def _looks_like_path(text: str) -> bool:
    import os

    if text.startswith(("/", "./", "../", "~", ".\\", "..\\")) or re.match(r"[A-Za-z]:[\\/]",
                                                                          text):
        return True
    return ("/" in text or "\\" in text) and os.path.exists(text)


def _last_part(text: str) -> str:
    return text.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] or "folder"


def public_text(text: str, info: ModelInfo) -> str:
    """``text`` (a strategy reason) with the model's local source named without its path."""
    for name in (info.base_model, info.weights_source):
        if name and public_name(name) != name:
            text = text.replace(name, public_name(name))
    return text


def public_command(command: str) -> str:
    """A command line for a card: each path argument reduced to its last part
    (:func:`public_name`), so that no folder of this machine, relative or not, is shown.

    >>> public_command("zoo finetune zoonet_s --data ./my/digits --out=/tmp/run")
    'zoo finetune zoonet_s --data digits --out=run'
    """
    import shlex

    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    out = []
    for word in words:
        flag, eq, value = word.partition("=")
        if eq and flag.startswith("--"):
            out.append(f"{flag}={public_name(value)}")
        else:
            out.append(public_name(word))
    return shlex.join(out)


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
