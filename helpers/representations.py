"""Hidden representations ([R], PROTOCOL.md section 8): fine-tuning with [R]'s recipe, layer-wise similarity
of the networks before and after, prediction similarity, weight change, and similarity against the AUC gain over
random initialisation. The library; the stage that declares and runs its units is
:mod:`helpers.stages.representations`, and its figures are in :mod:`helpers.viz`.

* settings: :func:`representations_settings` (the profile's ``representations`` section over [R]'s defaults);
* data: :func:`stratified_folds` ([R]'s 5 stratified folds over all images of a flag), :func:`fold_datasets`,
  :func:`stimulus_dataset`, the input scales of :data:`INPUT_SCALES` and :func:`load_network`;
* networks and pairs: :func:`network_name`, :func:`pair_kind`, :func:`in_r_pairs`;
* what each unit computes, given its config:

  - :func:`finetune_unit`: one (source, target, fold, variant) fine-tuned with [R]'s recipe; writes the best
    checkpoint (safetensors) and the test-set probabilities into its work folder, returns the run row and the
    weight change per stage;
  - :func:`activation_unit`: one network's activations on the target's images, sampled as [R] did
    (:func:`helpers.similarity.sampling_plan`), stored in its work folder;
  - :func:`analysis_unit`: one pair of networks: per layer and repeat, CCA, linear CKA and debiased CKA with a
    permutation null (:data:`NULLS`); or the prediction similarity of two fine-tuned networks;

* analyses of the tables: :func:`gain_table` (similarity vs the relative AUC gain), :func:`similarity_vs_points`,
  :func:`summarize_similarity`, :func:`similarity_matrix`.

What this project adds to [R] and says so in the tables: the weight change per stage (``weights``; [R] has no
weight-space measure), linear CKA and its debiased form beside CCA, the permutation null of every cell, the
points n and channels d of every cell with a flag where n < 10 d, and the correct independent-errors baseline and
Cohen's kappa beside [R]'s as-coded baseline.

Where MedMNIST differs from [R]'s data: images are 28 px (upsampled to the profile's ``image_size``), MedMNIST's
label definitions (BreastMNIST: malignant vs normal + benign, as [R]'s Breast; PneumoniaMNIST: normal vs
pneumonia, as [R]'s Chest), and no patient ids: [R] grouped its Chest folds by patient (``GroupKFold``), here the
folds are stratified only, so images of one patient can fall in training and test folds.
"""
from __future__ import annotations

import copy
import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

from . import models as M
from . import similarity as S
from .compat import forward
from .data import HALF_MEAN, HALF_STD, IMAGENET_MEAN, IMAGENET_STD, SPLITS, TensorImageDataset
from .runner import Stage
from .trainer import Run, RunConfig, load_flag, medmnist_acc, probabilities, safe_auc, train_runs
from .transforms import AffineAugmentConfig

__all__ = [
    "DEFAULTS", "INPUT_SCALES", "InputScale", "NULLS", "representations_settings", "input_scale_of",
    "stratified_folds", "fold_indices", "fold_datasets", "stimulus_dataset", "recalibrate_batchnorm",
    "load_network", "network_name", "pair_kind", "in_r_pairs", "finetune_unit", "activation_unit",
    "analysis_unit", "null_kind", "null_rows", "derangement", "gain_table", "similarity_vs_points",
    "summarize_similarity", "similarity_matrix", "read_activations", "relative_gain",
]

#: the stage's name, and the folder its units are stored in (the work folders that the units read back)
STAGE = "representations"


#: [R]'s recipe and analysis (PROTOCOL.md section 8); a profile's ``representations`` section overrides any key
DEFAULTS: dict = {
    "architecture": "resnet50",
    "targets": ["breastmnist", "pneumoniamnist"],
    "sources": ["imagenet", "radimagenet"],
    "freeze_sources": ["imagenet", "radimagenet"],  # sources that also run the freeze variant
    "untrained_seeds": [1, 2],       # two untrained networks: the floor; the first is also random init's start
    "random_head": "linear",         # [R]'s random init is Keras's ResNet50(weights=None, classes=n): no dropout
    "head": "dropout_linear",        # sources: Dropout(0.5) + Linear (softmax)
    "seed": 0,                       # head initialisation of the sources
    "file_size": None,               # MedMNIST file resolution (None: the profile's data.file_size)
    "image_size": 224,               # model input side
    "input_scale": {"default": "caffe", "imagenet": "imagenet"},
    "radimagenet_checkpoint": None,  # a user-supplied RadImageNet ResNet-50 (data-use agreement)
    "no_flip": ["pneumoniamnist", "chestmnist"],  # [R]: no horizontal flip for chest X-rays
    "n_folds": 5,
    "folds": [1, 2, 3, 4, 5],        # which of the n_folds run
    "fold_seed": 2,                  # [R]'s StratifiedKFold(random_state=2)
    "val_fraction": 0.2,             # of the training part, stratified: early stopping and checkpoint
    "max_train_images": None,
    "max_val_images": None,
    "max_test_images": None,
    "finetune": {"optimizer": "adam", "lr": 1e-5, "batch_size": 128, "epochs": 200, "patience": 30,
                 "monitor": "val_loss"},
    "freeze": {"optimizer": "adam", "lr": 1e-3, "batch_size": 128, "epochs": 200, "patience": 10,
               "monitor": "val_acc"},
    "augment": {"degrees": 10.0, "translate": [0.1, 0.1], "scale": [0.9, 1.1], "scale_mode": "keras",
                "shear": 0.1, "flip_p": 0.5, "fill": "nearest"},
    "similarity": {"layers": list(S.RESNET_LAYERS), "points": 10_000, "channels": 64, "repeats": 5,
                   "stimuli": "heldout", "max_stimulus_images": None, "seed": 0, "batch_size": 128,
                   "measures": ["cca", "linear_cka", "linear_cka_debiased"], "pairs": "all",
                   # the permutation null (:data:`NULLS`): whole images deranged within the cell, positions kept
                   "null": "images",
                   # control (this project's): each source's pre-trained network with its BatchNorm statistics
                   # re-estimated on the fold's training images, compared with itself and its fine-tuned networks
                   "bn_control": True},
}



def _merge(base: dict, over: dict | None) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def representations_settings(profile: dict) -> dict:
    """The profile's ``representations`` section merged over :data:`DEFAULTS` (nested mappings merged key by key;
    the ``input_scale`` mapping replaces the default one when given)."""
    own = dict(profile.get("representations") or {})
    out = _merge(DEFAULTS, {k: v for k, v in own.items() if k != "input_scale"})
    if "input_scale" in own:
        out["input_scale"] = dict(own["input_scale"])
    if out["file_size"] is None:
        out["file_size"] = int(profile["data"]["file_size"])
    return out


# ----------------------------------------------------------------------------------------------------------
# input scales: how images are scaled for a source


@dataclass(frozen=True)
class InputScale:
    """Normalisation of 0..255 images for a source: ``(x / 255 - mean) / std`` per channel (RGB order), and
    ``bgr``: the source expects BGR channel order, which :func:`load_network` obtains by reversing the input
    channels of the first convolution (exactly equivalent to feeding BGR images)."""

    mean: tuple
    std: tuple
    bgr: bool
    description: str


#: ``caffe`` is Keras's ``preprocess_input`` default ([R] fed every source this way, RadImageNet included):
#: RGB -> BGR, the ImageNet mean pixel (B 103.939, G 116.779, R 123.68) subtracted, 0..255 scale kept.
#: RadImageNet's own recipe scales by 1/255 instead (``unit``).
INPUT_SCALES = {
    "half": InputScale(HALF_MEAN, HALF_STD, False, "(x / 255 - 0.5) / 0.5 (this project's sources)"),
    "imagenet": InputScale(IMAGENET_MEAN, IMAGENET_STD, False, "ImageNet mean / std on x / 255 (torchvision)"),
    "unit": InputScale((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), False, "x / 255 (RadImageNet's own recipe)"),
    "caffe": InputScale((123.68 / 255, 116.779 / 255, 103.939 / 255), (1 / 255,) * 3, True,
                        "Keras caffe: BGR, mean pixel subtracted, 0..255 ([R])"),
}


def input_scale_of(settings: dict, source: str) -> str:
    """The input scale name of ``source`` (``random`` for random init / untrained networks): the section's
    ``input_scale`` mapping by source name, else its ``default``."""
    scales = settings["input_scale"]
    name = scales.get(source, scales.get("default"))
    if name not in INPUT_SCALES:
        raise ValueError(f"input scale {name!r} of source {source!r} is none of {sorted(INPUT_SCALES)}")
    return name


def _first_conv(model: nn.Module) -> nn.Conv2d:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m
    raise ValueError("the model has no Conv2d to take BGR input")


def load_network(spec: str, arch: str, n_outputs: int | None, head: str, scale: str, seed: int) -> nn.Module:
    """A network initialised from ``spec`` (``random``, ``imagenet`` or a checkpoint path) with a new ``head`` of
    ``n_outputs`` units (``None``: the source's own), built after ``torch.manual_seed(seed)`` so that the same
    seed gives the same random weights (the backbone is drawn before the head: an untrained network of a seed is
    the exact start of the random-init run of that seed). For a ``bgr`` input scale the first convolution's
    input channels are reversed (see :class:`InputScale`)."""
    torch.manual_seed(int(seed))
    model = M.build_model(arch, n_outputs, spec, head=head)
    if INPUT_SCALES[scale].bgr:
        conv = _first_conv(model)
        with torch.no_grad():
            conv.weight.copy_(conv.weight.flip(1))
    return model


# ----------------------------------------------------------------------------------------------------------
# data: [R]'s folds over all images of a flag


def _pooled(d):
    """All images of a loaded flag (train, val and test concatenated) and their (N,) labels."""
    if d.multilabel:
        raise ValueError(f"{d.flag} is multi-label; [R]'s analysis needs single-label targets")
    images = np.concatenate([d.images[s] for s in SPLITS])
    labels = np.concatenate([d.labels[s][:, 0] for s in SPLITS])
    return images, labels


def stratified_folds(labels, n_folds: int = 5, seed: int = 2, val_fraction: float = 0.2) -> list[dict]:
    """[R]'s folds: ``StratifiedKFold(n_folds, shuffle=True, random_state=seed)`` over all images; per fold a dict
    of sorted index arrays ``test`` (the held-out part), ``val`` (a stratified ``val_fraction`` of the rest,
    ``train_test_split(random_state=seed + fold)``, for early stopping and the best checkpoint) and ``train``.

    [R] grouped its Chest, Thyroid, Mammograms and Knee folds by patient (``GroupKFold``); MedMNIST has no
    patient ids, so these folds are stratified by class only."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    labels = np.asarray(labels).reshape(-1)
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    counts = np.bincount(labels)
    if (counts[counts > 0] < n_folds).any():
        raise ValueError(f"a class has fewer than {n_folds} images ({counts.tolist()}): cannot make {n_folds} "
                         "stratified folds")
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    out = []
    for k, (rest, test) in enumerate(skf.split(np.zeros(len(labels)), labels), start=1):
        tr, va = train_test_split(rest, test_size=val_fraction, stratify=labels[rest], random_state=seed + k)
        out.append({"train": np.sort(tr), "val": np.sort(va), "test": np.sort(test)})
    return out


def _cap(idx: np.ndarray, labels: np.ndarray, k, seed: int) -> np.ndarray:
    """A stratified random subset of ``k`` of ``idx`` (all of them when ``k`` is None or not smaller), sorted."""
    if k is None or int(k) >= len(idx):
        return idx
    from sklearn.model_selection import train_test_split

    y = labels[idx]
    classes, counts = np.unique(y, return_counts=True)
    # stratified when every class can go to both sides; else a plain random subset
    ok = counts.min() >= 2 and len(classes) <= min(int(k), len(idx) - int(k))
    keep, _ = train_test_split(idx, train_size=int(k), stratify=y if ok else None, random_state=seed)
    return np.sort(keep)


def fold_indices(config: dict, labels) -> dict[str, np.ndarray]:
    """Train / val / test indices (into the pooled images) of a unit's target and fold, with the ``max_*``
    caps of its ``data`` block applied (stratified random subsets, seeded by the fold)."""
    data = config["data"]
    folds = stratified_folds(labels, data["n_folds"], data["fold_seed"], data["val_fraction"])
    fold = int(config["fold"])
    if not 1 <= fold <= len(folds):
        raise ValueError(f"fold {fold} is outside 1..{len(folds)}")
    idx = folds[fold - 1]
    labels = np.asarray(labels)
    return {s: _cap(idx[s], labels, data.get(f"max_{s}_images"), seed=1000 * fold + i)
            for i, s in enumerate(("train", "val", "test"))}


def _load_flag(target: str, file_size: int, root, cache: dict):
    return load_flag(target, file_size, root, cache)


def fold_datasets(config: dict, root=None, device=None, cache=None, splits=("train", "val", "test")):
    """``(loaded flag, {split: dataset})`` of a unit's target and fold, normalised for its input scale; with an
    ``augment`` block in the config the training set is augmented with it ([R]'s augmentation)."""
    cache = {} if cache is None else cache
    d = _load_flag(config["target"], config["file_size"], root, cache)
    images, labels = _pooled(d)
    idx = fold_indices(config, labels)
    scale = INPUT_SCALES[config["input_scale"]]
    kw = dict(image_size=config["image_size"], mean=scale.mean, std=scale.std, device=device)
    aug = None
    if config.get("augment"):
        aug = AffineAugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config["augment"].items()})
    ds = {s: TensorImageDataset(images[idx[s]], labels[idx[s]], augment=aug if s == "train" else None, **kw)
          for s in splits}
    return d, ds


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, dataset: TensorImageDataset, batch_size: int = 128) -> nn.Module:
    """Re-estimate every BatchNorm layer's running statistics on ``dataset`` (evaluation transform, no
    augmentation; the plain average over all batches), nothing else changed; returns the model in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        raise ValueError("the model has no BatchNorm layer to recalibrate")
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.to(dataset.device).train()
    try:
        for x, _ in dataset.batches(batch_size):
            model(x)
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.eval()
    return model


def stimulus_dataset(config: dict, root=None, device=None, cache=None) -> tuple[TensorImageDataset, np.ndarray]:
    """The images an activation unit shows its network, normalised for the network's input scale, and their
    indices into the pooled images. ``stimuli``: ``heldout`` (the fold's val and test images, never trained
    on), ``test`` or ``all`` (every image of the flag); ``max_stimulus_images`` caps them (stratified)."""
    cache = {} if cache is None else cache
    d = _load_flag(config["target"], config["file_size"], root, cache)
    images, labels = _pooled(d)
    sim = config["similarity"]
    idx = fold_indices(config, labels)
    kind = sim["stimuli"]
    if kind == "heldout":
        pick = np.sort(np.concatenate([idx["val"], idx["test"]]))
    elif kind in ("test", "val", "train"):
        pick = idx[kind]
    elif kind == "all":
        pick = np.arange(len(labels))
    else:
        raise ValueError(f"stimuli must be heldout, test, val, train or all, got {kind!r}")
    pick = _cap(pick, labels, sim.get("max_stimulus_images"), seed=int(sim["seed"]))
    scale = INPUT_SCALES[config["input_scale"]]
    ds = TensorImageDataset(images[pick], labels[pick], config["image_size"], mean=scale.mean, std=scale.std,
                            device=device)
    return ds, pick


# ----------------------------------------------------------------------------------------------------------
# networks and pairs


def _short(source: str) -> str:
    return "union" if source.startswith("medmnist_union") else source.removesuffix("mnist")


def network_name(net: dict) -> str:
    """Readable name of a network dict (``role``, ``source``, ``variant``, ``seed``): ``union``,
    ``union-FT``, ``union-FT (freeze)``, ``random-FT``, ``untrained (seed 1)``."""
    if net["role"] == "untrained":
        return f"untrained (seed {net['seed']})"
    if net["role"] == "pretrained":
        return _short(net["source"])
    if net["role"] == "recalibrated":
        return f"{_short(net['source'])} (target BN)"
    return f"{_short(net['source'])}-FT" + (" (freeze)" if net["variant"] == "freeze" else "")


def pair_kind(a: dict, b: dict) -> str:
    """The kind of a pair of networks, [R]'s names (:data:`helpers.reference_r.PAIR_KINDS`) where the pair is of
    one of them, with random init fine-tuned counted as a fine-tuned network of source ``random``:
    ``untrained_vs_finetuned`` (an untrained network vs random init fine-tuned from it: this project's
    extension), ``other`` for the rest (e.g. one source's pre-trained network vs another's fine-tuned one).
    The BatchNorm control (role ``recalibrated``: a pre-trained network with its BatchNorm statistics
    re-estimated on the target) gives ``pretrained_vs_recalibrated`` and ``recalibrated_vs_finetuned`` with its
    own source's networks."""
    roles = {a["role"], b["role"]}
    if "recalibrated" in roles:
        c, o = (a, b) if a["role"] == "recalibrated" else (b, a)
        if o["source"] == c["source"] and o["role"] in ("pretrained", "finetuned"):
            return "pretrained_vs_recalibrated" if o["role"] == "pretrained" else "recalibrated_vs_finetuned"
        return "other"
    if roles == {"untrained"}:
        return "untrained_vs_untrained"
    if "untrained" in roles:
        u, o = (a, b) if a["role"] == "untrained" else (b, a)
        if o["role"] == "finetuned" and o["source"] == "random" and o.get("init_seed") == u["seed"]:
            return "untrained_vs_finetuned"
        return "vs_untrained"
    if roles == {"pretrained"}:
        return "pretrained_across_sources"
    if roles == {"pretrained", "finetuned"}:
        return "pretrained_vs_finetuned" if a["source"] == b["source"] else "other"
    if a["source"] == b["source"]:
        return "freeze_vs_no_freeze"
    return "finetuned_across_sources" if a["variant"] == b["variant"] else "other"


def in_r_pairs(a: dict, b: dict, first_untrained_seed: int) -> bool:
    """Whether [R]'s CCA tables have a pair of this form: no random-init fine-tuned network, the untrained
    network is the first seed, and the fine-tuned network against an untrained one is the no-freeze one."""
    kind = pair_kind(a, b)
    if kind in ("other", "untrained_vs_finetuned", "pretrained_vs_recalibrated", "recalibrated_vs_finetuned"):
        return False
    if any(n["role"] == "finetuned" and n["source"] == "random" for n in (a, b)):
        return False
    if kind == "vs_untrained":
        u, o = (a, b) if a["role"] == "untrained" else (b, a)
        return u["seed"] == first_untrained_seed and (o["role"] == "pretrained" or o["variant"] == "none")
    return True


# ----------------------------------------------------------------------------------------------------------
# units


def _device(device) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _run_config(recipe: dict, trainable=None):
    return RunConfig(epochs=int(recipe["epochs"]), batch_size=int(recipe["batch_size"]),
                     optimizer=recipe.get("optimizer", "adam"), lr=float(recipe["lr"]), scheduler=None,
                     monitor=recipe.get("monitor", "val_loss"), patience=recipe.get("patience"), augment=True,
                     seed=int(recipe.get("seed", 0)), trainable=trainable)


def _unit_dir(stage_dir, key: str) -> Path:
    stage_dir = Path(stage_dir)
    return Stage(stage_dir.name, stage_dir.parent).workdir(key)


@torch.no_grad()
def _test_outputs(run, test: TensorImageDataset, batch_size: int = 256):
    logits = torch.cat([run.logits(x) for x, _ in test.batches(batch_size)])
    y = test.targets
    p = probabilities(logits, False).cpu().numpy()
    y_np = y.cpu().numpy()
    return p, y_np, {"test_loss": float(run.loss(logits, y)), "test_auc": safe_auc(y_np, p, run.task),
                     "test_acc": medmnist_acc(y_np, p, run.task)}


def finetune_unit(config: dict, workdir, root=None, device=None, cache=None, callback=None,
                  save_every_s: float = 60.0) -> list[dict]:
    """Fine-tune one (source, target, fold, variant) with [R]'s recipe and return its rows.

    No-freeze variant: the whole network with ``config["recipe"]`` (Adam, no schedule, early stopping on the
    validation loss with the recipe's patience, the best-val-loss weights kept). Freeze variant: first the head
    alone with ``config["freeze_recipe"]`` (backbone frozen: no gradient, BatchNorm statistics fixed, as Keras's
    ``trainable=False``; early stopping on validation accuracy), continuing from its *last* weights as [R]'s Keras
    code does (EarlyStopping without ``restore_best_weights``), then the whole network as above.

    Writes ``finetuned.safetensors`` (+ JSON) and ``test_predictions.npz`` (probabilities, labels and pooled
    indices of the test fold) into ``workdir``; each phase resumes from ``workdir/<phase>`` after a kill. Rows:
    one ``runs`` row and one ``weights`` row per stage (:func:`helpers.similarity.weight_change_by_stage` of the
    network before vs after, both phases together).
    """
    device = _device(device)
    workdir = Path(workdir)
    d, ds = fold_datasets(config, root, device, cache)
    model = load_network(config["spec"], config["arch"], d.n_classes, config["head"], config["input_scale"],
                         config["init_seed"])
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    start = time.perf_counter()
    runs = []
    if config.get("freeze_recipe"):
        head = Run(model, _run_config(config["freeze_recipe"], trainable=(M.head_path(model),)), d.task, device,
                   workdir=workdir / "head", save_every_s=save_every_s, name="head")
        train_runs([head], ds["train"], ds["val"], callback=callback)
        runs.append(head)
        for p in model.parameters():
            p.requires_grad_(True)
    full = Run(model, _run_config(config["recipe"]), d.task, device, workdir=workdir / "full",
               save_every_s=save_every_s, name="full")
    train_runs([full], ds["train"], ds["val"], callback=callback)
    full.load_best()
    seconds = time.perf_counter() - start
    probs, labels, test = _test_outputs(full, ds["test"])
    test_idx = fold_indices(config, _pooled(d)[1])["test"]
    tmp = workdir / ".test_predictions.tmp.npz"
    with open(tmp, "wb") as fh:  # through a handle: np.savez would add its own suffix to the temp name
        np.savez(fh, probabilities=probs, labels=labels, indices=test_idx)
    tmp.replace(workdir / "test_predictions.npz")
    meta = {"stage": STAGE, "source": config["source"], "target": config["target"], "fold": config["fold"],
            "variant": config["variant"], "input_scale": config["input_scale"], "best": full.best}
    path = M.save_checkpoint(model, workdir / "finetuned", meta)
    head_run = runs[0] if runs else None
    keys = {k: config[k] for k in ("source", "target", "fold", "variant")}
    row = {"table": "runs", **keys, "n_train": len(ds["train"]), "n_val": len(ds["val"]), "n_test": len(ds["test"]),
           "lr": config["recipe"]["lr"], "batch_size": config["recipe"]["batch_size"],
           "epochs_head": head_run.epoch if head_run else 0, "steps_head": head_run.steps if head_run else 0,
           "head_val_acc": head_run.history[-1]["val_acc"] if head_run else float("nan"),
           "epochs": full.epoch, "steps": full.steps, "best_epoch": full.best["epoch"],
           "steps_to_best": full.history[full.best["epoch"] - 1]["steps"],
           "val_loss": full.best["val_loss"], "val_auc": full.best["val_auc"], "val_acc": full.best["val_acc"],
           **test, "train_seconds": seconds, "checkpoint": str(path)}
    after = model.state_dict()
    by_stage = S.weight_change_by_stage(S.weight_change(before, after))
    rows = [row] + [{"table": "weights", **keys, **r} for r in by_stage.to_dict("records")]
    for r in runs + [full]:
        r.clear_workdir()
    return rows


def _network_model(config: dict, stage_dir, d, root=None, device=None, cache=None) -> nn.Module:
    model = config["model"]
    arch = config["arch"]
    if model["kind"] == "untrained":
        return load_network("random", arch, d.n_classes, "linear", model["input_scale"], model["seed"])
    if model["kind"] in ("pretrained", "recalibrated"):
        net = load_network(model["spec"], arch, None, "linear", model["input_scale"], 0)
        if model["kind"] == "recalibrated":
            _, ds = fold_datasets(config, root, device, cache, splits=("train",))
            recalibrate_batchnorm(net, ds["train"], int(config["similarity"]["batch_size"]))
        return net
    path = _unit_dir(stage_dir, model["finetune_key"]) / "finetuned.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"no fine-tuned checkpoint {path}: run the finetune unit "
                                f"{model['finetune_key']} first")
    return M.load_checkpoint(path)


def activation_unit(config: dict, workdir, stage_dir, root=None, device=None, cache=None) -> list[dict]:
    """One network's activations on the target's stimulus images, sampled as [R] did: per layer and repeat,
    ``round(points / (h w))`` images at every spatial position, ``channels`` random channels, all drawn from the
    similarity seed and the layer shapes only (:func:`helpers.similarity.sampling_plan`), so every network of a
    (target, fold) gets the same images and channels. Float32 forward in eval mode with TF32 off.

    Writes ``activations.safetensors`` (one tensor per ``layer/repeat``, the plan in its metadata) into
    ``workdir``; rows: one ``activations`` row per layer (images, points n, channels d, the layer's full shape,
    ``few_points`` where n < 10 d)."""
    device = _device(device)
    cache = {} if cache is None else cache
    d = _load_flag(config["target"], config["file_size"], root, cache)
    model = _network_model(config, stage_dir, d, root, device, cache)
    stim, pick = stimulus_dataset(config, root, device, cache)
    sim = config["similarity"]
    layers = tuple(sim["layers"])
    start = time.perf_counter()
    shapes = S.layer_shapes(model, stim, layers, device)
    plan = S.sampling_plan(shapes, len(stim), n_channels=int(sim["channels"]), points=int(sim["points"]),
                           repeats=int(sim["repeats"]), seed=int(sim["seed"]))
    with M.full_precision():
        acts = S.layer_activations(model, stim, layers, plan=plan, batch_size=int(sim["batch_size"]), device=device)
    plan_json = json.dumps([[s.layer, s.repeat, list(s.images), list(s.channels), s.height, s.width,
                             s.n_images_wanted] for s in plan])
    tensors = {f"{layer}/{rep}": t.detach().to("cpu", torch.float32).contiguous() for (layer, rep), t in acts.items()}
    tmp = Path(workdir) / ".activations.safetensors.tmp"
    save_file(tensors, str(tmp), metadata={"plan": plan_json, "stimuli": json.dumps(pick.tolist())})
    tmp.replace(Path(workdir) / "activations.safetensors")
    seconds = time.perf_counter() - start
    rows = []
    for layer in layers:
        s = next(p for p in plan if p.layer == layer)
        c, h, w = shapes[layer]
        rows.append({"table": "activations", "target": config["target"], "fold": config["fold"],
                     "network": network_name(config["network"]), "role": config["network"]["role"],
                     "source": config["network"]["source"], "variant": config["network"]["variant"],
                     "layer": layer, "stage": S.R_STAGE_OF_LAYER.get(layer, layer), "layer_channels": c,
                     "height": h, "width": w, "n_stimuli": len(stim), "n_images": len(s.images),
                     "n_images_wanted": s.n_images_wanted, "n_points": s.n_points, "n_channels": s.n_channels,
                     "few_points": s.n_points < 10 * s.n_channels, "seconds": seconds / len(layers)})
    return rows


def read_activations(stage_dir, key: str, device) -> tuple[dict, str]:
    """The activations ``{(layer, repeat): (n, d) tensor}`` an activation unit stored (by its key, under
    ``stage_dir``) and the sampling plan they were drawn with (JSON)."""
    path = _unit_dir(stage_dir, key) / "activations.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"no activations {path}: run the activations unit {key} first")
    out = {}
    with safe_open(str(path), framework="pt", device=str(device)) as fh:
        plan = fh.metadata()["plan"]
        for name in fh.keys():
            layer, rep = name.rsplit("/", 1)
            out[(layer, int(rep))] = fh.get_tensor(name)
    return out, plan


#: the permutation nulls of a cell (what a measure gives two networks' activations that are not paired):
#: ``images`` (default) deranges whole images within the cell and keeps every spatial position, so it removes
#: only the pairing of images: what two networks share by position (padding, borders, position-dependent means)
#: stays, and the autocorrelated positions of one image move together; ``positions`` shuffles single points
#: (the earlier form: it also breaks the position pairing and treats every position as independent, so it sits
#: lower than what unrelated images give); ``none``: no null.
NULLS = ("images", "positions", "none")


def null_kind(value) -> str:
    """The null named by a profile value (``True`` is the default ``images``, ``False`` is ``none``)."""
    if value is True:
        return "images"
    if value is False or value is None:
        return "none"
    if value not in NULLS:
        raise ValueError(f"unknown permutation null {value!r}; expected one of {NULLS} (or true / false)")
    return value


def _rng(seed: int, layer: str, repeat: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(layer.encode()), int(repeat), 7])


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly drawn permutation of ``range(n)`` with no fixed point (rejection sampling: about e draws);
    ``n`` must be at least 2."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 items, got {n}")
    while True:
        p = rng.permutation(n)
        if not np.any(p == np.arange(n)):
            return p


def null_rows(n_images: int, points_per_image: int, kind: str, rng: np.random.Generator) -> np.ndarray | None:
    """Row order of network b's activations for the null of a cell of ``n_images`` images x
    ``points_per_image`` positions (rows image-major, as :func:`helpers.similarity.layer_activations` stores
    them): ``images`` sends image i's position p to image pi(i)'s position p for a derangement pi; ``positions``
    permutes all rows. ``None`` where the null is not defined (``none``, or one image for ``images``)."""
    kind = null_kind(kind)
    n = n_images * points_per_image
    if kind == "none" or (kind == "images" and n_images < 2):
        return None
    if kind == "positions":
        return rng.permutation(n)
    pi = derangement(n_images, rng)
    return (pi[:, None] * points_per_image + np.arange(points_per_image)[None, :]).reshape(-1)


def analysis_unit(config: dict, workdir, stage_dir, device=None) -> list[dict]:
    """One pair of networks of a (target, fold).

    ``unit == "similarity"``: per layer and repeat of the shared sampling plan, each measure of
    ``config["measures"]`` (names of :data:`helpers.similarity.MEASURES`) of network a's activations against
    network b's, and the same measure against b's activations in the order of the cell's permutation null
    (``null``, :data:`NULLS`: by default b's images deranged within the cell, positions kept: what the measure
    gives the same layer on other images of this target). ``null_kind`` names it; ``null_value`` is NaN where
    it is not defined (a cell of one image has no derangement). Rows carry n, d and ``few_points`` (n < 10 d,
    where CCA is inflated).

    ``unit == "predictions"``: :func:`helpers.similarity.prediction_similarity` of the two fine-tuned networks on
    the test fold (error agreement, the correct independent-errors baseline, [R]'s as-coded baseline, labelled
    as its defect, and Cohen's kappa)."""
    keys = {"target": config["target"], "fold": config["fold"], "kind": config["kind"], "in_r": config["in_r"],
            "network_a": network_name(config["a"]), "network_b": network_name(config["b"]),
            "role_a": config["a"]["role"], "role_b": config["b"]["role"], "source_a": config["a"]["source"],
            "source_b": config["b"]["source"], "variant_a": config["a"]["variant"], "variant_b": config["b"]["variant"]}
    if config["unit"] == "predictions":
        a = np.load(_unit_dir(stage_dir, config["a_key"]) / "test_predictions.npz", allow_pickle=False)
        b = np.load(_unit_dir(stage_dir, config["b_key"]) / "test_predictions.npz", allow_pickle=False)
        if not (np.array_equal(a["indices"], b["indices"]) and np.array_equal(a["labels"], b["labels"])):
            raise ValueError("the two fine-tuned networks were tested on different images")
        res = S.prediction_similarity(a["probabilities"], b["probabilities"], a["labels"])
        return [{"table": "predictions", **keys, **res}]
    if config["unit"] != "similarity":
        raise ValueError(f"unknown analysis unit {config['unit']!r}")
    device = _device(device)
    acts_a, plan_a = read_activations(stage_dir, config["a_key"], device)
    acts_b, plan_b = read_activations(stage_dir, config["b_key"], device)
    if plan_a != plan_b:
        raise ValueError("the two networks' activations were sampled with different plans (images or channels)")
    unknown = [m for m in config["measures"] if m not in S.MEASURES]
    if unknown:
        raise ValueError(f"unknown measures {unknown}; expected names of {sorted(S.MEASURES)}")
    rows = []
    for (layer, rep, images, channels, h, w, wanted) in json.loads(plan_a):
        xa, xb = acts_a[(layer, rep)], acts_b[(layer, rep)]
        n, dch = xa.shape
        kind = null_kind(config["null"])
        rows_b = null_rows(len(images), int(h) * int(w), kind, _rng(config["seed"], layer, rep))
        perm = None if rows_b is None else torch.as_tensor(rows_b, device=device)
        if kind == "images" and perm is None:
            kind = "none (one image in the cell)"
        for name in config["measures"]:
            fn = S.MEASURES[name]
            rows.append({"table": "similarity", **keys, "layer": layer, "stage": S.R_STAGE_OF_LAYER.get(layer, layer),
                         "repeat": rep, "n_images": len(images), "height": h, "width": w, "n_points": n,
                         "n_channels": dch, "few_points": n < 10 * dch, "measure": name, "value": fn(xa, xb), "null_kind": kind,
                         "null_value": fn(xa, xb[perm]) if perm is not None else float("nan")})
    return rows


# ----------------------------------------------------------------------------------------------------------
# tables


def relative_gain(runs: pd.DataFrame) -> pd.Series:
    """(AUC_FT - AUC_random) / AUC_random, AUC_random = random init fine-tuned (no freeze) on the same target and
    fold."""
    base = runs[(runs.source == "random") & (runs.variant == "none")].set_index(["target", "fold"])["test_auc"]
    ref = pd.Series([base.get((t, f), np.nan) for t, f in zip(runs.target, runs.fold)], index=runs.index)
    return (runs.test_auc - ref) / ref


_WEIGHT_STAGE = {"relu": "conv1"}  # the stem ReLU follows conv1 (and bn1); the residual stages are themselves


def gain_table(tables: dict) -> pd.DataFrame:
    """Per fine-tuned network (source not random), layer and measure: the similarity to its own pre-trained
    network (mean over repeats), the relative weight change of the same stage and the relative AUC gain over
    random init on the same fold: [R]'s similarity-vs-gain analysis with the weight change beside it."""
    sim, runs, w = tables.get("similarity"), tables.get("runs"), tables.get("weights")
    cols = ["source", "target", "fold", "variant", "layer", "stage", "measure", "similarity", "relative_change",
            "relative_gain", "test_auc"]
    if sim is None or sim.empty or runs is None or runs.empty:
        return pd.DataFrame(columns=cols)
    pf = sim[sim.kind == "pretrained_vs_finetuned"].copy()
    ft_side = pf.role_a == "finetuned"
    pf["source"] = np.where(ft_side, pf.source_a, pf.source_b)
    pf["variant"] = np.where(ft_side, pf.variant_a, pf.variant_b)
    out = (pf.groupby(["source", "target", "fold", "variant", "layer", "stage", "measure"], sort=False)["value"]
           .mean().rename("similarity").reset_index())
    out = out.merge(runs[["source", "target", "fold", "variant", "relative_gain", "test_auc"]],
                    on=["source", "target", "fold", "variant"], how="left")
    if w is not None and not w.empty:
        ws = w[["source", "target", "fold", "variant", "stage", "relative_change"]].rename(columns={"stage": "wstage"})
        out["wstage"] = out.layer.map(lambda l: _WEIGHT_STAGE.get(l, l))
        out = out.merge(ws, on=["source", "target", "fold", "variant", "wstage"], how="left").drop(columns="wstage")
    else:
        out["relative_change"] = np.nan
    return out[cols]

# ----------------------------------------------------------------------------------------------------------
# reading back and small analyses for the chapter


def similarity_vs_points(x, y, sizes, measures=("cca", "linear_cka", "linear_cka_debiased"), seed: int = 0,
                         points_per_image: int = 1, null: str = "images"):
    """How a measure depends on the number of points, with the cell's permutation null beside it.

    ``x`` and ``y`` are two networks' activations of one cell, rows image-major with ``points_per_image``
    (h w) consecutive rows per image (:func:`helpers.similarity.layer_activations`). For each ``n`` of
    ``sizes``: the whole images of a seeded shuffle of the cell's images, as many as give ``n`` points
    (``n`` is rounded down to whole images, at least two; the row's ``n`` is the points used), the measure on
    them, and the measure with ``y``'s rows in the order of the null (:func:`null_rows`: by default a
    derangement of those images, positions kept). A tidy DataFrame ``n, d, images, measure, value,
    null_value``; CCA needs ``n > d``."""
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    hw = int(points_per_image)
    if hw < 1 or len(x) % hw or len(x) != len(y):
        raise ValueError(f"x and y must have the same rows, a whole number of images of {hw} points "
                         f"(got {len(x)} and {len(y)})")
    rng = np.random.default_rng(seed)
    n_img = len(x) // hw
    order = rng.permutation(n_img)
    rows = []
    for n in sizes:
        k = int(n) // hw
        if int(n) > len(x) or k < 2:
            raise ValueError(f"{n} points asked: the cell has {n_img} images of {hw} points ({len(x)} points), "
                             "and the null needs two whole images")
        idx = torch.as_tensor((order[:k, None] * hw + np.arange(hw)[None, :]).reshape(-1))
        perm = null_rows(k, hw, null, rng)
        for m in measures:
            fn = S.MEASURES[m]
            rows.append({"n": int(k * hw), "d": int(x.shape[1]), "images": k, "measure": m,
                         "value": fn(x[idx], y[idx]),
                         "null_value": fn(x[idx], y[idx][torch.as_tensor(perm)]) if perm is not None
                         else float("nan")})
    return pd.DataFrame(rows)


def summarize_similarity(sim: pd.DataFrame, by=("target", "kind", "layer", "measure")) -> pd.DataFrame:
    """Mean and SD over repeats, folds and the pairs of a group, of the value and of its permutation null, with
    the number of cells and of pairs, and the smallest n and largest d of the group."""
    by = list(by)
    g = sim.groupby(by, sort=False)
    out = g.agg(mean=("value", "mean"), sd=("value", "std"), null_mean=("null_value", "mean"),
                null_sd=("null_value", "std"), cells=("value", "size"), n_min=("n_points", "min"),
                d_max=("n_channels", "max"), few_points=("few_points", "any")).reset_index()
    pairs = sim.groupby(by, sort=False)[["network_a", "network_b"]].apply(
        lambda d: len(d.drop_duplicates())).rename("pairs").reset_index()
    return out.merge(pairs, on=by)


def similarity_matrix(sim: pd.DataFrame, target: str, fold: int, layer: str, measure: str) -> pd.DataFrame:
    """Networks x networks matrix of a measure (mean over repeats) for one (target, fold, layer); 1 on the
    diagonal, NaN where a pair was not computed."""
    sub = sim[(sim.target == target) & (sim.fold == fold) & (sim.layer == layer) & (sim.measure == measure)]
    v = sub.groupby(["network_a", "network_b"])["value"].mean()
    names = list(dict.fromkeys(list(sub.network_a) + list(sub.network_b)))
    m = pd.DataFrame(np.nan, index=names, columns=names)
    for (a, b), val in v.items():
        m.loc[a, b] = m.loc[b, a] = val
    for n in names:
        m.loc[n, n] = 1.0
    return m


# the stage (units, tasks, tables) moved to helpers.stages.representations and the figures to helpers.viz: their
# old names here are served from there on use, with a DeprecationWarning
__getattr__ = forward(__name__)
