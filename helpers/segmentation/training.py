"""Segmentation training: Dice + cross-entropy, Dice per class, a resumable train loop, the union label space
and the leave-one-out model bank (pretraining and fine-tuning stages) of PROTOCOL.md section 7.

Loss and Dice
    :mod:`helpers.segmentation.dice` (Dice + cross-entropy; hard Dice per case and class, at the profile's
    ``image_size``).

Recipe (per stage, from the profile's ``segmentation`` section)
    Adam (or SGD with Nesterov momentum), cosine annealing of the learning rate over the epoch budget, shuffled
    augmented batches (flip, small rotation and zoom, identical for image and mask), evaluation on the val
    subset after every epoch. The best epoch by ``monitor`` (``val_dice``, higher is better, or ``val_loss``)
    is kept (ties: the earlier one) and its weights are restored at the end; ``patience`` epochs without
    improvement stop training early (``null``: never). Seeded: model init, batch order and augmentation
    depend only on ``seed`` and the epoch, so a resumed run continues exactly.

Union pretraining (:class:`SegUnionLabels`)
    One joint label space for several sets: 0 is the background of every set, and each set's foreground
    classes get their own channels, in the order of the sets: e.g. kvasir_seg, busi, ph2, acdc, monuseg ->
    1 kvasir_seg:polyp, 2 busi:lesion, 3 ph2:lesion, 4 acdc:right ventricle, 5 acdc:myocardium,
    6 acdc:left ventricle, 7 monuseg:nucleus. A mask of set ``s`` maps class ``k >= 1`` to ``offset_s + k``.
    The model is trained with the same Dice + CE loss over the joint channels (CE over all 8 outputs).

The model bank (leave one out)
    For each target set, its candidate sources are ``random`` (random initialisation), ``imagenet``
    (torchvision's ImageNet ResNet-18 encoder, random decoder; unavailable offline), each other set by name
    (a UNet pre-trained on that set alone, shared by every target) and ``union`` (a UNet pre-trained on the
    union of all the other sets, one per target). Each source is fine-tuned on the target with a new head for
    the target's classes and no frozen layer, once per fine-tuning seed (``finetuning.seeds``, default the
    section's ``seed``: the seed drives the new head, batch order and augmentation; subsets and sources stay on
    ``seed``); its test Dice, averaged over the seeds, is the ground truth.

Outputs under ``results_dir``
    ``segmentation_sources/<name>.safetensors`` (+ ``.json``): the pre-trained sources (``<set>`` and
    ``union__<target>``); ``segmentation_pretraining.csv``: one row per source; ``segmentation_finetuning.csv``:
    one row per (source, target, fold, seed); ``segmentation_ground_truth.csv``: ``test_dice`` (mean over the
    seeds) as source x target; ``segmentation_ground_truth_seeds.csv``: tidy, one row per (source, target,
    seed).
"""
from __future__ import annotations

import contextlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import models as M
from ..compat import forward
from ..sources import (SEG_PREFIX, SEG_UNION_UNIT, SEGMENTATION, SEGMENTATION_SOURCES_DIRNAME, SourceContext,
                       SourceKind, register_source_kind, source_kind)
from ..trainer import ResumableTraining, make_optimizer
from ..data import HALF_MEAN, HALF_STD, IMAGENET_MEAN, IMAGENET_STD, SPLITS
from ..profiles import resolve_device
from ..runner import atomic_write_csv, config_key
from .data import (SEGMENTATION_SETS, SegAugmentConfig, SegmentationData, SegmentationTensorDataset,
                   load_segmentation)
from .dice import (dice_ce_loss, dice_counts, dice_from_counts, dice_per_case, dice_per_class,  # noqa: F401
                   mean_foreground_dice, quiet_nanmean)
from .seeds import finetuning_seed, finetuning_seeds
from .model import (DEFAULT_DECODER_CHANNELS, UNet, imagenet_resnet18, load_segmentation_checkpoint, replace_head,
                    save_segmentation_checkpoint)

SOURCES_DIRNAME = SEGMENTATION_SOURCES_DIRNAME
#: the bank's sources that are not a set by name (the kinds registered below, but ``set``)
SPECIAL_SOURCES = ("random", "imagenet", "union")

# ----------------------------------------------------------------------------------------------------------
# the union label space


@dataclass(frozen=True)
class SegUnionLabels:
    """Joint label space of several sets: background 0, then each set's foreground classes in set order."""

    sets: tuple[str, ...]
    offsets: dict            # set -> offset added to its foreground class ids
    class_names: tuple[str, ...]

    @classmethod
    def build(cls, class_names_by_set: dict) -> "SegUnionLabels":
        """From ``{set: [background, fg1, ...]}`` (dict order is the channel order)."""
        offsets, names, at = {}, ["background"], 0
        for s, classes in class_names_by_set.items():
            if len(classes) < 2:
                raise ValueError(f"set {s!r} has no foreground class")
            offsets[s] = at
            names += [f"{s}:{c}" for c in list(classes)[1:]]
            at += len(classes) - 1
        return cls(tuple(class_names_by_set), offsets, tuple(names))

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def encode(self, set_name: str, mask) -> np.ndarray:
        """A set's mask in the joint space: 0 stays 0, class ``k >= 1`` becomes ``offset + k`` (uint8)."""
        m = np.asarray(mask)
        n_fg = len(self.channels(set_name))
        if m.size and int(m.max()) > n_fg:
            raise ValueError(f"{set_name}: mask value {int(m.max())} beyond its {n_fg} foreground classes")
        return np.where(m > 0, m.astype(np.int64) + self.offsets[set_name], 0).astype(np.uint8)

    def channels(self, set_name: str) -> list[int]:
        """The joint channels of a set's foreground classes."""
        n = sum(1 for c in self.class_names if c.startswith(f"{set_name}:"))
        return [self.offsets[set_name] + k for k in range(1, n + 1)]


# ----------------------------------------------------------------------------------------------------------
# the training loop


@dataclass
class SegRecipe:
    """One training run's recipe (see the module docstring)."""

    epochs: int
    batch_size: int = 16
    optimizer: str = "adam"      # adam | sgd (Nesterov when momentum > 0)
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: str | None = "cosine"
    monitor: str = "val_dice"    # val_dice (max) | val_loss (min)
    patience: int | None = None
    dice_weight: float = 1.0
    ce_weight: float = 1.0
    smooth: float = 1.0
    seed: int = 0
    eval_batch_size: int = 64

    @classmethod
    def from_dict(cls, recipe: dict, loss: dict | None = None, seed: int = 0) -> "SegRecipe":
        opt = recipe.get("optimizer", {}) or {}
        loss = loss or {}
        monitor = recipe.get("monitor", "val_dice")
        if monitor not in ("val_dice", "val_loss"):
            raise ValueError(f"monitor must be val_dice or val_loss, got {monitor!r}")
        return cls(epochs=int(recipe["epochs"]), batch_size=int(recipe.get("batch_size", 16)),
                   optimizer=str(opt.get("name", "adam")), lr=float(opt.get("lr", 1e-3)),
                   momentum=float(opt.get("momentum", 0.9)), weight_decay=float(opt.get("weight_decay", 0.0)),
                   scheduler=recipe.get("scheduler", "cosine"), monitor=monitor,
                   patience=recipe.get("patience"), dice_weight=float(loss.get("dice_weight", 1.0)),
                   ce_weight=float(loss.get("ce_weight", 1.0)), smooth=float(loss.get("smooth", 1.0)),
                   seed=int(seed), eval_batch_size=int(recipe.get("eval_batch_size", 64)))

    def loss(self, logits, target):
        return dice_ce_loss(logits, target, self.dice_weight, self.ce_weight, self.smooth)


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


@torch.no_grad()
def evaluate_segmentation(model: UNet, dataset: SegmentationTensorDataset, n_classes: int,
                          recipe: SegRecipe | None = None, batch_size: int = 64) -> dict:
    """Loss (mean over batches weighted by their size; with ``recipe``), per-class Dice and mean foreground
    Dice of ``model`` on ``dataset`` (no augmentation). Returns ``{"loss", "dice", "dice_per_class"}``."""
    device = dataset.device
    was_training = model.training
    model.eval()
    counts, loss_sum = [], torch.zeros((), device=device)
    try:
        for x, m in dataset.batches(batch_size):
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device):
                logits = model(x)
            logits = logits.float()
            if recipe is not None:
                loss_sum += recipe.loss(logits, m) * len(x)
            counts.append(dice_counts(logits.argmax(1), m, n_classes))
    finally:
        model.train(was_training)
    inter, psum, gsum = (torch.cat([c[i] for c in counts]) for i in range(3))
    per_class = quiet_nanmean(dice_from_counts(inter, psum, gsum), 0)
    per_class = np.asarray(per_class, dtype=np.float64).reshape(-1)
    loss = float(loss_sum) / len(dataset) if recipe is not None else float("nan")
    return {"loss": loss, "dice": mean_foreground_dice(per_class), "dice_per_class": per_class}


class _Trainer(ResumableTraining):
    """A model under training with optimizer, scheduler, history, best weights and per-epoch resume."""

    def __init__(self, model: UNet, recipe: SegRecipe, device, workdir=None, save_every_s: float = 60.0):
        self.recipe = recipe
        self.device = torch.device(device)
        self.model = model.to(self.device)
        if self.device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)
        self.opt = make_optimizer(self.model.parameters(), recipe.optimizer, recipe.lr, recipe.momentum,
                                  recipe.weight_decay)
        if recipe.scheduler == "cosine":
            self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=max(1, recipe.epochs))
        elif recipe.scheduler in (None, "none"):
            self.sched = None
        else:
            raise ValueError(f"unknown scheduler {recipe.scheduler!r} (cosine or none)")
        self.epoch, self.history, self.best, self.best_state = 0, [], None, None
        self.bad_epochs, self.stopped = 0, False
        self.workdir = Path(workdir) if workdir is not None else None
        self.save_every_s = save_every_s
        self._last_save = time.monotonic()

    def train_epoch(self, train: SegmentationTensorDataset) -> float:
        r = self.recipe
        gen = torch.Generator(device=train.device)
        gen.manual_seed(r.seed * 7_919 + self.epoch + 1)
        n = len(train)
        order = torch.randperm(n, generator=gen, device=train.device)
        self.model.train()
        loss_sum, seen = torch.zeros((), device=self.device), 0
        for s in range(0, n, r.batch_size):
            idx = order[s:s + r.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            x, m = train.batch(idx, augment=True, generator=gen)
            if self.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(self.device):
                logits = self.model(x)
            loss = r.loss(logits, m)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            loss_sum += loss.detach() * len(idx)
            seen += len(idx)
        if self.sched is not None:
            self.sched.step()
        return float(loss_sum) / max(1, seen)

    def end_epoch(self, train_loss: float, val: dict, n_classes: int, seconds: float) -> dict:
        self.epoch += 1
        row = {"epoch": self.epoch, "train_loss": train_loss, "val_loss": val["loss"], "val_dice": val["dice"],
               "seconds": seconds}
        self.history.append(row)
        key = self.recipe.monitor
        self.track_best(row, key, self.recipe.epochs, self.recipe.patience)
        # periodic resume points only: a stopped run is finished by the caller right away (saving the full
        # state of a run that is about to be cleared would only cost time)
        if self.workdir is not None and not self.stopped and time.monotonic() - self._last_save >= self.save_every_s:
            self.save()
        return row


def train_segmentation(model: UNet, train: SegmentationTensorDataset, val: SegmentationTensorDataset,
                       recipe: SegRecipe, n_classes: int, workdir=None, progress: bool = False,
                       callback=None, save_every_s: float = 60.0, desc: str | None = None) -> dict:
    """Train ``model`` on ``train`` with the recipe, evaluating on ``val`` after every epoch (module
    docstring). Resumes from ``workdir`` when it holds a saved state. ``callback(epoch_row)`` runs after each
    epoch (it may raise to interrupt). The best weights are loaded into ``model`` at the end.

    Returns ``{"model", "history", "best", "epochs_run", "seconds"}``.
    """
    from tqdm.auto import tqdm

    if model.n_classes != n_classes:
        raise ValueError(f"the model has {model.n_classes} outputs but the data {n_classes} classes")
    trainer = _Trainer(model, recipe, train.device, workdir, save_every_s)
    trainer.try_resume()
    start = time.perf_counter()
    bar = tqdm(total=recipe.epochs, initial=trainer.epoch, desc=desc or "train", disable=not progress,
               leave=False)
    try:
        while not trainer.stopped:
            t0 = time.perf_counter()
            train_loss = trainer.train_epoch(train)
            val_res = evaluate_segmentation(trainer.model, val, n_classes, recipe, recipe.eval_batch_size)
            row = trainer.end_epoch(train_loss, val_res, n_classes, time.perf_counter() - t0)
            bar.update(1)
            bar.set_postfix(val_dice=f"{row['val_dice']:.3f}", val_loss=f"{row['val_loss']:.3f}")
            if callback is not None:
                callback(row)
    finally:
        bar.close()
    if trainer.best_state is not None:
        trainer.model.load_state_dict(trainer.best_state)
    trainer.clear_workdir()
    return {"model": trainer.model, "history": trainer.history, "best": trainer.best,
            "epochs_run": trainer.epoch, "seconds": time.perf_counter() - start}


# ----------------------------------------------------------------------------------------------------------
# profiles -> configs

_SECTION_DEFAULTS = {
    "image_size": 128,
    "seed": 0,
    "model": {"encoder": "resnet18", "decoder_channels": list(DEFAULT_DECODER_CHANNELS)},
    "loss": {"dice_weight": 1.0, "ce_weight": 1.0, "smooth": 1.0},
    "augment": {"flip_p": 0.5, "rotation_degrees": 10.0, "scale": [0.9, 1.1]},
    "pretraining": {"epochs": 50, "batch_size": 32, "optimizer": {"name": "adam", "lr": 0.001},
                    "scheduler": "cosine", "monitor": "val_dice", "patience": None,
                    "max_train_images": None, "max_val_images": None},
    "finetuning": {"epochs": 50, "batch_size": 16, "optimizer": {"name": "adam", "lr": 0.001},
                   "scheduler": "cosine", "monitor": "val_dice", "patience": None,
                   "max_train_images": None, "max_val_images": None, "max_test_images": None},
}


def segmentation_section(profile: dict) -> dict:
    """The profile's ``segmentation`` section with defaults filled in (sets, targets, sources, recipes)."""
    if "segmentation" not in profile or not profile["segmentation"]:
        raise ValueError(f"profile {profile.get('name', '?')!r} has no segmentation section")
    seg = dict(profile["segmentation"])
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in _SECTION_DEFAULTS.items()}
    for k, v in seg.items():
        out[k] = {**out[k], **v} if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    out.setdefault("sets", list(SEGMENTATION_SETS))
    out.setdefault("targets", list(out["sets"]))
    out.setdefault("sources", ["random", "imagenet", "union", *out["sets"]])
    bad = [t for t in out["targets"] if t not in out["sets"]]
    if bad:
        raise ValueError(f"segmentation targets {bad} are not among the sets {out['sets']}")
    bad = [s for s in out["sources"] if s not in SPECIAL_SOURCES and s not in out["sets"]]
    if bad:
        raise ValueError(f"segmentation sources {bad} are neither {SPECIAL_SOURCES} nor among the sets")
    finetuning_seeds(out)  # a bad segmentation.finetuning.seeds is an error here too (profiles built in code)
    return out


def union_source_name(target: str) -> str:
    return f"union__{target}"


def union_pool(section: dict, target: str) -> list[str]:
    """The sets of ``target``'s union source: all the other sets, in the profile's order."""
    return [s for s in section["sets"] if s != target]


def segmentation_sources(profile: dict, target: str) -> list[str]:
    """Candidate source names for ``target``, in the profile's order (the target itself left out)."""
    sec = segmentation_section(profile)
    return [s for s in sec["sources"] if s != target]


def _recipe(sec: dict, stage: str, kind: str | None = None) -> dict:
    base = dict(sec[stage])
    own = base.pop("union", None) or {}
    base.pop("single", None)
    base.pop("seeds", None)  # one unit per seed (finetuning_seeds), not part of the recipe
    if kind == "union":
        base.update(own)
    return base


def segmentation_pretraining_configs(profile: dict) -> list[dict]:
    """One unit per source to pre-train: each set that is a source of some target (shared by every target),
    and, when ``union`` is a source, one union of the other sets per target (with at least two sets); plus the
    encoders the classification benchmark lists as sources (``sources.dataset``: ``seg_<set>``, and
    ``seg_union`` = ``union_all``, one U-Net on every set)."""
    sec = segmentation_section(profile)
    common = {"stage": "segmentation_pretraining", "image_size": int(sec["image_size"]), "model": sec["model"],
              "loss": sec["loss"], "augment": sec["augment"], "seed": int(sec["seed"])}
    out = []
    for s in sec["sets"]:
        if s in sec["sources"] and any(t != s for t in sec["targets"]):
            out.append({**common, "kind": "single", "name": s, "sets": [s],
                        "recipe": _recipe(sec, "pretraining", "single")})
    if "union" in sec["sources"]:
        for t in sec["targets"]:
            pool = union_pool(sec, t)
            if len(pool) >= 2:
                out.append({**common, "kind": "union", "name": union_source_name(t), "sets": pool,
                            "recipe": _recipe(sec, "pretraining", "union")})
    # encoders the classification benchmark uses as sources (``seg_<set>``, ``seg_union``: every set together)
    wanted = [s[len(SEG_PREFIX):] for s in profile.get("sources", {}).get("dataset", [])
              if str(s).startswith(SEG_PREFIX)]
    made = {c["name"] for c in out}
    for name in wanted:
        if name == "union" and SEG_UNION_UNIT not in made and len(sec["sets"]) >= 2:
            out.append({**common, "kind": "union", "name": SEG_UNION_UNIT, "sets": list(sec["sets"]),
                        "recipe": _recipe(sec, "pretraining", "union")})
            made.add(SEG_UNION_UNIT)
        elif name in sec["sets"] and name not in made:
            out.append({**common, "kind": "single", "name": name, "sets": [name],
                        "recipe": _recipe(sec, "pretraining", "single")})
            made.add(name)
    return out


def subset_indices(n: int, limit: int | None, seed: int, split: str) -> np.ndarray:
    """The first-come subset rule of the bank: all of ``range(n)`` without a limit, else ``limit`` indices
    drawn without replacement by ``numpy.random.default_rng([seed, split number])``, sorted."""
    if limit is None or int(limit) >= n:
        return np.arange(n)
    rng = np.random.default_rng([int(seed), SPLITS.index(split)])
    return np.sort(rng.choice(n, int(limit), replace=False))


def _load(name: str, root, cache: dict) -> SegmentationData:
    if name not in cache:
        cache[name] = load_segmentation(name, root)
    return cache[name]


def segmentation_normalization(source: str):
    """ImageNet mean/std for the ``imagenet`` source, else 0.5/0.5 (PROTOCOL.md section 4)."""
    imagenet = source_kind(str(source), SEGMENTATION).normalization == "imagenet"
    return (IMAGENET_MEAN, IMAGENET_STD) if imagenet else (HALF_MEAN, HALF_STD)


def _as_rgb(x: np.ndarray) -> np.ndarray:
    return np.repeat(x[..., None], 3, -1) if x.ndim == 3 else x


def _resolve_device(device):
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _profile_device(profile: dict) -> str:
    return resolve_device(profile)


def sources_dir(results_dir) -> Path:
    return Path(results_dir) / SOURCES_DIRNAME


def _seeded_unet(seed: int, n_classes: int, model_cfg: dict, encoder_weights=None) -> UNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return UNet(n_classes, encoder=model_cfg.get("encoder", "resnet18"), encoder_weights=encoder_weights,
                    decoder_channels=model_cfg.get("decoder_channels", DEFAULT_DECODER_CHANNELS))


def pretrain_segmentation_unit(config: dict, workdir, results_dir, root=None, device=None, cache=None,
                               progress: bool = False, callback=None) -> dict:
    """Pre-train one source (a set, or the union of several) from random initialisation and write it to
    ``<results>/segmentation_sources/<name>.safetensors``. Returns its result row."""
    cache = {} if cache is None else cache
    device = _resolve_device(device)
    recipe = SegRecipe.from_dict(config["recipe"], config["loss"], config["seed"])
    datas = {s: _load(s, root, cache) for s in config["sets"]}
    if config["kind"] == "union":
        space = SegUnionLabels.build({s: d.class_names for s, d in datas.items()})
        classes = list(space.class_names)
    else:
        space, classes = None, datas[config["sets"][0]].class_names
    parts = {"train": ([], []), "val": ([], [])}
    limits = {"train": config["recipe"].get("max_train_images"), "val": config["recipe"].get("max_val_images")}
    for i, (s, d) in enumerate(datas.items()):
        for split in ("train", "val"):
            x, m = d.split(split)
            lim = limits[split]
            per_set = None if lim is None else max(2, int(lim) // len(datas))
            idx = subset_indices(len(x), per_set, config["seed"] * 1000 + i, split)
            x, m = x[idx], m[idx]
            if space is not None:
                x, m = _as_rgb(x), space.encode(s, m)
            parts[split][0].append(x)
            parts[split][1].append(m)
    aug = SegAugmentConfig.from_dict(config["augment"])
    kw = dict(image_size=config["image_size"], device=device, augment=aug)
    train = SegmentationTensorDataset(np.concatenate(parts["train"][0]), np.concatenate(parts["train"][1]), **kw)
    val = SegmentationTensorDataset(np.concatenate(parts["val"][0]), np.concatenate(parts["val"][1]), **kw)
    model = _seeded_unet(config["seed"], len(classes), config["model"])
    res = train_segmentation(model, train, val, recipe, len(classes), workdir=workdir, progress=progress,
                             callback=callback, desc=config["name"])
    path = save_segmentation_checkpoint(res["model"], sources_dir(results_dir) / config["name"], {
        "source": config["name"], "kind": config["kind"], "sets": config["sets"], "classes": classes,
        "image_size": config["image_size"], "recipe": config["recipe"], "loss": config["loss"],
        "normalization": "half", "files": {s: d.path.name for s, d in datas.items()},
        "train_images": len(train), "best": res["best"], "epochs_run": res["epochs_run"]})
    return {"source": config["name"], "kind": config["kind"], "sets": ",".join(config["sets"]),
            "n_classes": len(classes), "classes": json.dumps(classes), "train_images": len(train),
            "val_images": len(val), "epochs_run": res["epochs_run"], "best_epoch": res["best"]["epoch"],
            "val_loss": res["best"]["val_loss"], "val_dice": res["best"]["val_dice"],
            "train_seconds": res["seconds"], "checkpoint": str(path), "history": res["history"]}


# ----------------------------------------------------------------------------------------------------------
# sources


def pretraining_unit_for(profile: dict, source: str, target: str) -> dict | None:
    """The bank's pretraining config that makes ``source`` for ``target`` (None: none does)."""
    name = source_kind(source, SEGMENTATION).unit_name(source, target)
    return next((c for c in segmentation_pretraining_configs(profile) if c["name"] == name), None)


def source_unit(profile: dict, source: str, target: str) -> dict | None:
    """The bank's pretraining config that makes ``source`` for ``target``; None for a source whose weights
    are named (``random``, ``imagenet``: no unit makes them)."""
    return pretraining_unit_for(profile, source, target) if source_kind(source, SEGMENTATION).checkpoint else None


class _BankSource(SourceKind):
    """A source of the segmentation bank (module docstring, "The model bank"). ``weights`` needs the profile
    and the target (``ctx``); :meth:`build` makes the U-Net for a target."""

    domain = SEGMENTATION
    made_by = "segmentation"
    #: the ``kind`` column of :func:`segmentation_source_table`
    table_kind = "single"

    def sets(self, section: dict, source: str, target: str) -> str:
        """What the source was trained on, comma-separated (empty: nothing of the bank)."""
        return source

    def static_reason(self, section: dict, source: str, target: str) -> str | None:
        """Why nothing can make the source for ``target``, from the profile's section alone (None: something
        can)."""
        return None

    def unit_name(self, source, target):
        return source

    def checkpoint_path(self, source: str, ctx) -> str:
        path = sources_dir(ctx.results_dir) / f"{self.unit_name(source, ctx.target)}.safetensors"
        if not path.is_file():
            raise M.SourceUnavailable(source, f"no pre-trained checkpoint {path}: run the segmentation "
                                      "pretraining stage first")
        return str(path)

    def build(self, spec: str, section: dict, n_target_classes) -> UNet:
        """The U-Net of a resolved ``spec`` (:meth:`weights`) with its source head (a checkpoint's own classes);
        ``n_target_classes()`` counts the target's classes, for a head made here."""
        return load_segmentation_checkpoint(spec)


@register_source_kind("random", SEGMENTATION)
class _RandomUNet(_BankSource):
    """A random U-Net with the target's classes, seeded by the profile's seed (fine-tuning's initialisation)."""

    made_by, checkpoint, table_kind = None, False, "random"

    def matches(self, source) -> bool:
        return source == "random"

    def sets(self, section, source, target):
        return ""

    def weights(self, source, ctx):
        return "random"

    def build(self, spec, section, n_target_classes):
        return _seeded_unet(section["seed"], n_target_classes(), section["model"], None)


@register_source_kind("imagenet", SEGMENTATION)
class _ImageNetUNet(_RandomUNet):
    """torchvision's ImageNet ResNet-18 encoder with a random decoder and head (the target's classes)."""

    table_kind, normalization = "imagenet", "imagenet"

    def matches(self, source) -> bool:
        return source == "imagenet"

    def weights(self, source, ctx):
        imagenet_resnet18()  # SourceUnavailable where the weights cannot be had
        return "imagenet"

    def build(self, spec, section, n_target_classes):
        return _seeded_unet(section["seed"], n_target_classes(), section["model"], "imagenet")


@register_source_kind("union", SEGMENTATION)
class _UnionUNet(_BankSource):
    """A U-Net pre-trained on the union of every other set of the profile, one per target."""

    table_kind = "union"

    def matches(self, source) -> bool:
        return source == "union"

    def unit_name(self, source, target):
        return union_source_name(target)

    def sets(self, section, source, target):
        return ",".join(union_pool(section, target))

    def static_reason(self, section, source, target):
        pool = union_pool(section, target)
        if len(pool) >= 2:
            return None
        return f"the union for {target} needs at least two other sets, the profile has {pool}"

    def weights(self, source, ctx):
        reason = self.static_reason(segmentation_section(ctx.profile), source, ctx.target)
        if reason is not None:
            raise M.SourceUnavailable("union", reason)
        return self.checkpoint_path(source, ctx)


@register_source_kind("set", SEGMENTATION)
class _SetUNet(_BankSource):
    """A U-Net pre-trained on one other set of the profile, shared by every target: any other name."""

    def matches(self, source) -> bool:
        return True

    def weights(self, source, ctx):
        if source not in segmentation_section(ctx.profile)["sets"]:
            raise ValueError(f"unknown segmentation source {source!r}")
        return self.checkpoint_path(source, ctx)


def resolve_segmentation_source(profile: dict, source: str, target: str, results_dir) -> str:
    """``"random"``, ``"imagenet"`` or the checkpoint path of a source for ``target``;
    :class:`helpers.models.SourceUnavailable` (with the reason) when it cannot be had here."""
    segmentation_section(profile)  # a profile without a bank is an error for every source
    if source == target:
        raise ValueError(f"{source!r} is the target itself, not a source for it")
    return source_kind(source, SEGMENTATION).weights(source, SourceContext(profile, target, results_dir))


def _target_classes(target: str, root, cache: dict | None = None) -> list[str]:
    return _load(target, root, {} if cache is None else cache).class_names


def load_segmentation_source(source: str, target: str, profile: dict, results_dir, root=None, device=None,
                             cache: dict | None = None) -> UNet:
    """The *source* model for ``target`` with its source head, in eval mode: a pre-trained set or union
    model as stored (its own classes), ``random``: a random UNet with the target's number of classes
    (seeded by the profile's seed, the same initialisation fine-tuning starts from), ``imagenet``: the
    ImageNet encoder with a random decoder and head (target's classes). Raises
    :class:`helpers.models.SourceUnavailable` when the source cannot be had. The model carries
    ``source_name`` and ``normalization`` ((mean, std) its inputs need)."""
    sec = segmentation_section(profile)
    spec = resolve_segmentation_source(profile, source, target, results_dir)
    model = source_kind(source, SEGMENTATION).build(spec, sec, lambda: len(_target_classes(target, root, cache)))
    model.source_name = source
    model.normalization = segmentation_normalization(source)
    model.eval()
    return model.to(device) if device is not None else model


def segmentation_source_table(profile: dict, results_dir) -> pd.DataFrame:
    """One row per (target, source): ``target, source, kind`` (random | imagenet | single | union),
    ``available``, ``checkpoint`` (path, or empty), ``sets`` (what it was trained on) and ``reason``."""
    sec = segmentation_section(profile)
    rows = []
    for t in sec["targets"]:
        for s in segmentation_sources(profile, t):
            kind = source_kind(s, SEGMENTATION)
            sets = kind.sets(sec, s, t)
            try:
                spec = resolve_segmentation_source(profile, s, t, results_dir)
                rows.append({"target": t, "source": s, "kind": kind.table_kind, "available": True,
                             "checkpoint": spec if kind.checkpoint else "", "sets": sets, "reason": ""})
            except M.SourceUnavailable as exc:
                rows.append({"target": t, "source": s, "kind": kind.table_kind, "available": False, "checkpoint": "",
                             "sets": sets, "reason": exc.reason})
    return pd.DataFrame(rows, columns=["target", "source", "kind", "available", "checkpoint", "sets", "reason"])


# ----------------------------------------------------------------------------------------------------------
# fine-tuning (ground truth)


def dice_column(class_name: str) -> str:
    """``dice_<class>`` with the class name in lower case and non-alphanumerics as ``_``."""
    return "dice_" + re.sub(r"[^0-9a-z]+", "_", class_name.lower()).strip("_")


def segmentation_finetuning_configs(profile: dict) -> list[dict]:
    """One unit per (source, target, fold=1, fine-tuning seed). ``source_key`` is the pretraining unit's key,
    so that a re-trained source gives new fine-tuning units. ``seed`` is the section's (subsets, sources); a
    fine-tuning seed other than it is the key ``finetuning_seed`` (:func:`finetuning_seed`), so the unit of the
    section's own seed has the config, and the key, of a profile without ``finetuning.seeds``."""
    sec = segmentation_section(profile)
    recipe = _recipe(sec, "finetuning")
    base_seed = int(sec["seed"])
    out = []
    for t in sec["targets"]:
        for s in segmentation_sources(profile, t):
            unit = source_unit(profile, s, t)
            for seed in finetuning_seeds(sec):
                c = {"stage": "segmentation_finetuning", "source": s, "target": t, "fold": 1,
                     "source_key": config_key(unit) if unit is not None else None,
                     "image_size": int(sec["image_size"]), "model": sec["model"], "loss": sec["loss"],
                     "augment": sec["augment"], "recipe": recipe, "seed": base_seed}
                if seed != base_seed:
                    c["finetuning_seed"] = seed
                out.append(c)
    return out


def target_datasets(target: str, image_size: int, source: str = "random", recipe: dict | None = None,
                    seed: int = 0, root=None, device=None, augment: dict | None = None, cache=None):
    """``(data, train, val, test)`` of a target: the fine-tuning subsets (``max_train_images``,
    ``max_val_images``, ``max_test_images`` of ``recipe``, drawn by :func:`subset_indices`) as device datasets,
    normalised for ``source``."""
    recipe = recipe or {}
    d = _load(target, root, {} if cache is None else cache)
    mean, std = segmentation_normalization(source)
    kw = dict(image_size=image_size, mean=mean, std=std, device=_resolve_device(device),
              augment=SegAugmentConfig.from_dict(augment))
    out = [d]
    for split in SPLITS:
        lim = recipe.get(f"max_{split}_images")
        idx = subset_indices(len(d.masks[split]), lim, seed, split)
        out.append(SegmentationTensorDataset.from_data(d, split, indices=idx, **kw))
    return tuple(out)


def finetune_segmentation_unit(config: dict, profile: dict, workdir, results_dir, root=None, device=None,
                               cache=None, progress: bool = False, callback=None) -> dict:
    """Fine-tune one source on one target (new head, no frozen layer) and test it. Returns its result row.

    The image subsets and the source model depend on ``config["seed"]`` (the section's) alone; the fine-tuning
    seed (:func:`finetuning_seed`) seeds the new head, the batch order and the augmentation. ``random`` and
    ``imagenet`` keep the initialisation the scorer reads (the section's seed) and have no new head here, so
    for them the fine-tuning seed varies the batches and augmentation only."""
    cache = {} if cache is None else cache
    device = _resolve_device(device)
    s, t = config["source"], config["target"]
    ft_seed = finetuning_seed(config)
    d, train, val, test = target_datasets(t, config["image_size"], s, config["recipe"], config["seed"], root,
                                          device, config["augment"], cache)
    model = load_segmentation_source(s, t, profile, results_dir, root, cache=cache)
    kind = source_kind(s, SEGMENTATION)
    # a checkpoint's head has the source's classes: always a new one; a random head only where it has not
    # the target's (it was made with them)
    if model.n_classes != d.n_classes or kind.checkpoint:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ft_seed)
            replace_head(model, d.n_classes)
    recipe = SegRecipe.from_dict(config["recipe"], config["loss"], ft_seed)
    res = train_segmentation(model, train, val, recipe, d.n_classes, workdir=workdir, progress=progress,
                             callback=callback, desc=f"{s} -> {t}")
    test_res = evaluate_segmentation(res["model"], test, d.n_classes, recipe, recipe.eval_batch_size)
    spec = resolve_segmentation_source(profile, s, t, results_dir)
    row = {"source": s, "target": t, "fold": config["fold"], "seed": ft_seed, "n_classes": d.n_classes,
           "classes": json.dumps(d.class_names), "train_images": len(train), "val_images": len(val),
           "test_images": len(test), "epochs_run": res["epochs_run"], "best_epoch": res["best"]["epoch"],
           "val_loss": res["best"]["val_loss"], "val_dice": res["best"]["val_dice"],
           "test_loss": test_res["loss"], "test_dice": test_res["dice"]}
    for name, value in zip(d.foreground_classes, test_res["dice_per_class"]):
        row[dice_column(name)] = float(value)
    row.update({"seconds": res["seconds"], "source_checkpoint": spec if kind.checkpoint else "",
                "history": res["history"]})
    return row


FINETUNING_COLUMNS = ["source", "target", "fold", "seed", "n_classes", "classes", "train_images", "val_images",
                      "test_images", "epochs_run", "best_epoch", "val_loss", "val_dice", "test_loss", "test_dice",
                      "seconds", "source_checkpoint"]


def _with_seed(runs: pd.DataFrame) -> pd.DataFrame:
    return runs if "seed" in runs.columns else runs.assign(seed=0)


def segmentation_ground_truth(runs: pd.DataFrame, value: str = "test_dice") -> pd.DataFrame:
    """Ground truth, source x target: ``test_dice`` (mean foreground Dice on the test subset) of the
    fine-tuned source, averaged over folds (the bank has one) and then over the fine-tuning seeds
    (``segmentation.finetuning.seeds``; :func:`segmentation_ground_truth_seeds` has each seed's)."""
    per_seed = _with_seed(runs).groupby(["source", "target", "seed"])[value].mean().reset_index()
    table = per_seed.pivot_table(index="source", columns="target", values=value, aggfunc="mean")
    table.index.name, table.columns.name = "source", "target"
    return table


def segmentation_ground_truth_seeds(runs: pd.DataFrame, value: str = "test_dice") -> pd.DataFrame:
    """Tidy per (source, target, seed): ``test_dice`` of the fine-tuning under each seed (mean over folds) and
    the seed's ``rank`` of the source among the target's sources (1 = best): the replicates whose mean is the
    ground truth, the input of :mod:`helpers.reliability`."""
    out = _with_seed(runs).groupby(["source", "target", "seed"])[value].mean().reset_index()
    out["rank"] = out.groupby(["target", "seed"])[value].rank(ascending=False, method="average")
    out["seed"] = out["seed"].astype(int)
    return out.sort_values(["target", "seed", "rank"], kind="stable").reset_index(drop=True)


def write_segmentation_ground_truth(runs: pd.DataFrame, results_dir) -> Path:
    """``<results>/segmentation_ground_truth.csv``: a ``source`` column and one ``test_dice`` column per
    target (the mean over the seeds); beside it ``segmentation_ground_truth_seeds.csv``, the tidy table of
    :func:`segmentation_ground_truth_seeds`. Both written atomically; returns the first's path."""
    path = Path(results_dir) / "segmentation_ground_truth.csv"
    atomic_write_csv(segmentation_ground_truth(runs).reset_index(), path)
    atomic_write_csv(segmentation_ground_truth_seeds(runs), Path(results_dir) / "segmentation_ground_truth_seeds.csv")
    return path


def dice_long_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Tidy Dice per class: one row per (source, target, fold, seed, class) with ``dice`` (from the
    ``dice_<class>`` columns of ``runs``; classes not of the target dropped)."""
    rows = []
    for _, r in _with_seed(runs).iterrows():
        for name in json.loads(r["classes"])[1:]:
            rows.append({"source": r["source"], "target": r["target"], "fold": r["fold"], "seed": int(r["seed"]),
                         "class_name": name, "dice": r[dice_column(name)]})
    return pd.DataFrame(rows, columns=["source", "target", "fold", "seed", "class_name", "dice"])


# the stage's run functions moved to helpers.stages.segmentation; the old names warn and forward
__getattr__ = forward(__name__)
