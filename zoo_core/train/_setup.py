"""Setting a run up: the model, its datasets and trainer, the recipe on accelerate, and
``lp_ft``'s first phase (a head trained on cached features before everything unfreezes)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo_core.train._balance import class_counts, class_weights
from zoo_core.train._defaults import DEFAULT_LR, LP_FT_LAYER_DECAY, default_epochs
from zoo_core.train._probe import can_solve
from zoo_core.train._recipe import (
    Recipe,
    create_ema,
    create_loss,
    create_mixup,
    create_optimizer,
    create_scheduler,
)
from zoo_core.train._trainer import _Trainer
from zoo_core.train._utils import _Printer, _seed_all, _set_input_size

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from zoo_core.train._dist import _Dist


class UnusedArgumentWarning(UserWarning):
    """An argument that the run's settings make irrelevant."""


@dataclass
class _Run:
    model: nn.Module
    trainer: _Trainer
    recipe: Recipe
    path_note: str
    opt: Any = None
    scheduler: Any = None
    ema: Any = None


def build_run(ctx: _Dist, opts: Any, folder: Any, kind: Any, reason: str,
              say: _Printer) -> _Run:
    """Build the model for ``kind`` and its trainer (features cached where they can be)."""
    from zoo_core.build._builder import build_model
    from zoo_core.data._data import ImageDataset, make_transforms

    _seed_all(opts.seed)
    model = build_model(opts.model, folder.num_classes, str(kind),
                        weights="default" if kind.kind == "scratch" else opts.weights,
                        label_names=folder.classes, device=ctx.device, **opts.model_kwargs)
    model.zoo = model.zoo.replace(strategy_reason=reason)  # type: ignore[union-attr]
    _set_input_size(model, opts.input_size)
    if ctx.active:
        _seed_all(opts.seed + 1000 * ctx.rank)
    recipe = opts.recipe
    if kind.kind == "lp_ft" and recipe.layer_decay is None:
        recipe = dataclasses.replace(recipe, layer_decay=LP_FT_LAYER_DECAY)
    train_tf, eval_tf = make_transforms(model, opts.augment)
    train_ds = ImageDataset(folder.train, train_tf)
    val_ds = ImageDataset(folder.val, eval_tf)
    slow = bool(opts.augment) or recipe.mixes
    cached = kind.kind == "linear_probe" and opts.cache_features and not slow
    if kind.kind == "linear_probe" and slow and opts.cache_features:
        what = "augment=True" if opts.augment else "Mixup/CutMix"
        say(f"features    {what}: every epoch sees new random inputs, so the frozen "
            "backbone runs on every image every epoch (slow path, no feature cache)")
    weights = class_weights(class_counts([y for _, y in folder.train], folder.num_classes))
    trainer = _Trainer(model=model, kind=kind.kind, label=str(kind), ctx=ctx, train_ds=train_ds,
                       val_ds=val_ds, batch_size=opts.batch_size,
                       num_workers=opts.num_workers, seed=opts.seed, cached=cached,
                       progress=opts.progress, loss_fn=create_loss(
                           recipe, weights if opts.balance == "loss" else None, ctx.device),
                       mixup=create_mixup(recipe, folder.num_classes), balance=opts.balance)
    trainer.class_weights = weights
    if cached and not trainer.prepare_cache(say):
        trainer.cached = cached = False
        say("features    the model's output is not its head applied to the head's input "
            "(or the head takes several inputs), so features cannot be cached; running "
            "the full loop")
    if cached and opts.probe_solver == "lbfgs" and can_solve(trainer.head, trainer.train_feats):
        trainer.solver = "lbfgs"
    if kind.kind == "linear_probe" and not cached and not slow and not opts.cache_features:
        say("features    cache disabled (cache_features=False): the frozen backbone runs "
            "every epoch")
    path_note = ("linear_probe with cached head inputs: backbone ran once per image, the "
                 "head solved as a cross-validated logistic regression (L-BFGS)"
                 if trainer.solver else
                 "linear_probe with cached head inputs: backbone ran once per image, "
                 "only the head trained" if cached else
                 f"{kind}: full forward/backward loop every epoch"
                 + (" with augmentation" if opts.augment else "")
                 + (" with Mixup/CutMix" if recipe.mixes else ""))
    return _Run(model=model, trainer=trainer, recipe=recipe, path_note=path_note)


def prepare_training(ctx: _Dist, opts: Any, run: _Run, lr: float, epochs: int) -> None:
    """Optimizer, EMA and schedule from timm; module and optimizer through accelerate."""
    run.ema = create_ema(run.model, run.recipe)
    opt = create_optimizer(run.model, run.recipe, lr)
    run.opt = run.trainer.wrap(opt, opts.sync_bn, opts.extra.get("speed"))
    run.scheduler = create_scheduler(run.opt, run.recipe, epochs)


def train_lp_head(ctx: _Dist, opts: Any, run: _Run, say: _Printer) -> dict[str, Any]:
    """``lp_ft``, phase 1: only the head trains (on cached head inputs where possible),
    the rest of the model frozen and in eval mode, as in ``linear_probe``. Phase 2 (the
    run's epochs) then trains everything with a lower learning rate for earlier stages
    (layer decay). Kumar et al. 2022; fastai's ``fine_tune``."""
    model, main = run.model, run.trainer
    head = model.get_submodule(main.head_path)
    frozen = [p for n, p in model.named_parameters()
              if p.requires_grad and not n.startswith(main.head_path + ".")]
    for p in frozen:
        p.requires_grad_(False)
    try:
        probe = _Trainer(model=model, kind="linear_probe", ctx=ctx, train_ds=main.train_ds,
                         val_ds=main.val_ds, batch_size=opts.batch_size,
                         num_workers=opts.num_workers, seed=opts.seed,
                         cached=opts.cache_features and not opts.augment,
                         progress=opts.progress, loss_fn=main.loss_fn, balance=opts.balance)
        probe.class_weights = main.class_weights
        if probe.cached and not probe.prepare_cache(say):
            probe.cached = False
        if probe.cached and opts.probe_solver == "lbfgs" and \
                can_solve(probe.head, probe.train_feats):
            probe.solver = "lbfgs"
        epochs = 1 if probe.solver else opts.lp_epochs or default_epochs("linear_probe")
        if probe.solver and opts.lp_epochs is not None:
            import warnings

            warnings.warn(f"--lp-epochs {opts.lp_epochs} is unused: lp_ft's head is solved in "
                          "one step by the lbfgs probe solver; pass --probe-solver sgd to "
                          "train it for --lp-epochs epochs", UnusedArgumentWarning,
                          stacklevel=2)
        lr = DEFAULT_LR["linear_probe"]
        head_recipe = Recipe(opt=run.recipe.opt, momentum=run.recipe.momentum,
                             weight_decay=run.recipe.weight_decay)
        opt = probe.wrap(create_optimizer(head, head_recipe, lr), False)
        scheduler = create_scheduler(opt, head_recipe, epochs)
        acc = 0.0
        for epoch in range(1, epochs + 1):
            scheduler.step(epoch - 1)
            if probe.solver:
                probe.solve()
            else:
                probe.train_epoch(opt, epoch, epochs)
        _, acc, _ = probe.evaluate()
        probe.unwrap()
        main.feature_seconds += probe.feature_seconds
    finally:
        for p in frozen:
            p.requires_grad_(True)
        for p in model.parameters():
            p.grad = None
    say("lp_ft       phase 1: head "
        + ("solved (cross-validated logistic regression)" if probe.solver
           else f"trained alone for {epochs} epochs")
        + (" on cached head inputs" if probe.cached else "")
        + f" (lr {lr:g}): val acc {acc:.3f}; phase 2 unfreezes everything with layer "
        f"decay {run.recipe.layer_decay}")
    return {"epochs": epochs, "lr": lr, "val_acc": acc, "cached": probe.cached,
            "solver": probe.solver or "sgd", **probe.solver_info}
