"""Hidden representations ([R], PROTOCOL.md section 8) as a stage: fine-tuning with [R]'s recipe, layer-wise
similarity of the networks before and after, prediction similarity, weight change, and similarity against the
AUC gain over random initialisation.

One module, library and stage, laid out so that the stage can move into a stages layer as it is:

* settings: :func:`representations_settings` (the profile's ``representations`` section over [R]'s defaults);
* data: :func:`stratified_folds` ([R]'s 5 stratified folds over all images of a flag), :func:`fold_datasets`,
  :func:`stimulus_dataset`, the input scales of :data:`INPUT_SCALES` and :func:`load_network`;
* units, declared by :func:`representations_configs` (pure: reads only the source checkpoints' hashes):

  - ``finetune`` (:func:`finetune_unit`): one (source, target, fold, variant) fine-tuned with [R]'s recipe; writes
    the best checkpoint (safetensors) and the test-set probabilities into its work folder, returns the run row
    and the weight change per stage;
  - ``activations`` (:func:`activation_unit`): one network's activations on the target's images, sampled as [R]
    did (:func:`helpers.similarity.sampling_plan`), stored in its work folder;
  - ``similarity`` and ``predictions`` (:func:`analysis_unit`): one pair of networks: per layer and repeat, CCA,
    linear CKA and debiased CKA with a permutation null; or the prediction similarity of two fine-tuned networks;

* :func:`finalize` writes the tidy tables ``results/<profile>/representations_*.csv``;
* :func:`run_representations` runs (or resumes) everything: the entry point of the chapter.

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
import os
import time
import zlib
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from . import models as M
from . import similarity as S
from .data import HALF_MEAN, HALF_STD, IMAGENET_MEAN, IMAGENET_STD, SPLITS, TensorImageDataset
from .runner import Stage, atomic_write_csv, config_key
from .transforms import AffineAugmentConfig

__all__ = [
    "DEFAULTS", "INPUT_SCALES", "InputScale", "representations_settings", "stratified_folds", "fold_indices",
    "fold_datasets", "stimulus_dataset", "load_network", "network_name", "pair_kind", "in_r_pairs",
    "RepresentationsPlan", "representations_configs", "finetune_unit", "activation_unit", "analysis_unit",
    "finalize", "run_representations", "TABLES",
]

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

#: what each table written by :func:`finalize` holds (``results/<profile>/representations_<name>.csv``)
TABLES = {
    "runs": "one row per fine-tuning run: recipe, epochs and optimizer steps per phase, val/test metrics, the "
            "relative AUC gain over random init on the same fold",
    "weights": "one row per fine-tuning run and stage: relative L2 change and cosine of the conv/linear weights "
               "(this project's extension)",
    "activations": "one row per network and layer: the sampled cell's size (images, points n, channels d, "
                   "few_points where n < 10 d)",
    "similarity": "one row per pair of networks, layer, repeat and measure: value and permutation-null value",
    "predictions": "one row per pair of fine-tuned networks: error agreement, both independent-errors "
                   "baselines and Cohen's kappa on the test fold",
    "gain": "one row per fine-tuned network, layer and measure: similarity to its own pre-trained network "
            "(mean over repeats), the weight change of that stage and the relative AUC gain",
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
    from .training import _load

    return _load(target, file_size, root, cache)


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
# declaring the units


@dataclass
class RepresentationsPlan:
    """Every unit of the stage for a profile: the three lists in the order they run, the sources that cannot be
    had here (``source, target, reason``) and the settings they came from."""

    finetune: list = field(default_factory=list)
    activations: list = field(default_factory=list)
    analysis: list = field(default_factory=list)
    unavailable: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["source", "target", "reason"]))
    settings: dict = field(default_factory=dict)

    def all(self) -> list:
        return self.finetune + self.activations + self.analysis


def _resolve(profile: dict, settings: dict, source: str, target: str, results_dir) -> str:
    """``random``, ``imagenet`` or a checkpoint path for a source of this stage; :class:`models.SourceUnavailable`
    with the reason otherwise. ``radimagenet`` is the section's own checkpoint (a ResNet-50 in [R]), else
    ``$RADIMAGENET_RESNET50_CHECKPOINT``; other names are this project's trained sources."""

    from .training import check_imagenet, resolve_source

    arch = settings["architecture"]
    if source == "random":
        return "random"
    if source == "imagenet":
        check_imagenet(arch)
        return "imagenet"
    if source == "radimagenet":
        path = settings.get("radimagenet_checkpoint") or os.environ.get("RADIMAGENET_RESNET50_CHECKPOINT")
        if not path:
            raise M.SourceUnavailable("radimagenet", "no checkpoint configured (RadImageNet needs a data-use "
                                      "agreement): set representations.radimagenet_checkpoint or "
                                      "$RADIMAGENET_RESNET50_CHECKPOINT")
        if not Path(path).is_file():
            raise M.SourceUnavailable("radimagenet", f"checkpoint {path} does not exist")
        return str(path)
    spec = resolve_source(profile, source, target, results_dir)
    meta = M.read_sidecar(spec) if Path(spec).suffix == ".safetensors" else {}
    if meta.get("architecture") and meta["architecture"] != arch:
        raise M.SourceUnavailable(source, f"checkpoint {spec} is a {meta['architecture']}, the stage compares "
                                  f"{arch} networks")
    return spec


def _source_refs(profile: dict, settings: dict, sources, target: str, results_dir=None) -> tuple[dict, dict]:
    """``({source: ref}, {source: reason})`` decided without reading any output: ``ref`` is ``random`` /
    ``imagenet``, the configured RadImageNet path, or the key of the pretraining unit that makes one of this
    project's sources (:func:`helpers.stages.pretraining.source_plan`), so that a retrained source changes every
    key that depends on it. A source that no unit makes but that sits in ``<results>/sources/`` (a checkpoint a
    user put there) is an input, referred to by its path. Whether ImageNet weights can be had is found out when
    a task runs."""
    from .stages import pretraining as P

    flags = profile["data"].get("flags", [])
    made = P.pretraining_configs(profile, flags, [target]) if "pretraining" in profile else []
    refs, reasons = {}, {}
    for s in sources:
        if s in ("random", "imagenet"):
            refs[s] = s
        elif s == "radimagenet":
            path = settings.get("radimagenet_checkpoint") or os.environ.get("RADIMAGENET_RESNET50_CHECKPOINT")
            if path:
                refs[s] = str(path)
            else:
                reasons[s] = ("no checkpoint configured (RadImageNet needs a data-use agreement): set "
                              "representations.radimagenet_checkpoint or $RADIMAGENET_RESNET50_CHECKPOINT")
        else:
            key, reason = P.source_plan(profile, s, target, made)
            given = P.sources_dir(results_dir) / f"{s}.safetensors" if results_dir is not None else None
            if reason is None:
                refs[s] = key
            elif given is not None and given.is_file():
                refs[s] = str(given)
            else:
                reasons[s] = reason
    return refs, reasons


def _producer_task(profile: dict, source: str, target: str) -> str | None:
    """The id of the pretraining task that makes ``source`` for ``target`` (``None``: nothing to wait for)."""
    from .stages import pretraining as P

    if source in ("random", "imagenet", "radimagenet") or "pretraining" not in profile:
        return None
    unit = P.producer(profile, source, target, P.pretraining_configs(profile, profile["data"].get("flags", []),
                                                                   [target]))
    return P.task_id(unit["name"]) if unit is not None else None


def representations_configs(profile: dict, results_dir=None, root=None, targets=None) -> RepresentationsPlan:
    """Declare every unit of the stage (nothing runs): per target and fold, a ``finetune`` unit per source (random
    init always; the freeze variant for ``freeze_sources``), an ``activations`` unit per network (the untrained
    ones, each source's pre-trained network and each fine-tuned one) and an analysis unit per pair of networks
    (``similarity``: all pairs, or with ``similarity.pairs: r`` only those of [R]'s kinds) and per pair of
    fine-tuned networks of one variant (``predictions``). Downstream configs hold the keys of the units they
    read, and sources are named by the key of the pretraining unit that makes them (never by a file), so a
    changed recipe or source changes every key that depends on it and nothing here reads another stage's
    output (``results_dir`` and ``root`` are kept for the callers' convenience)."""
    st = representations_settings(profile)
    targets = list(targets if targets is not None else st["targets"])
    arch = st["architecture"]
    sim = dict(st["similarity"])
    seeds = [int(s) for s in st["untrained_seeds"]]
    if len(seeds) != 2 or seeds[0] == seeds[1]:
        raise ValueError(f"untrained_seeds must be two different seeds (the floor), got {seeds}")
    data = {k: st[k] for k in ("n_folds", "fold_seed", "val_fraction", "max_train_images", "max_val_images",
                                "max_test_images")}
    common = {"stage": STAGE, "arch": arch, "file_size": int(st["file_size"]), "image_size": int(st["image_size"]),
              "data": data}
    sim_block = {k: sim[k] for k in ("layers", "points", "channels", "repeats", "stimuli", "max_stimulus_images",
                                     "seed", "batch_size")}
    plan = RepresentationsPlan(settings=st)
    unavailable = []
    for t in targets:
        refs, reasons = _source_refs(profile, st, st["sources"], t, results_dir)
        refs["random"] = "random"
        unavailable += [{"source": s, "target": t, "reason": r} for s, r in reasons.items()]
        sources = [s for s in st["sources"] if s in refs]
        augment = dict(st["augment"])
        if t in st["no_flip"]:
            augment["flip_p"] = 0.0
        for fold in st["folds"]:
            nets = []  # (network dict, activation-unit model block)
            for seed in seeds:
                net = {"role": "untrained", "source": "random", "variant": None, "seed": seed}
                nets.append((net, {"kind": "untrained", "seed": seed, "input_scale": input_scale_of(st, "random")}))
            for s in sources:
                net = {"role": "pretrained", "source": s, "variant": None, "seed": None}
                model = {"kind": "pretrained", "source": s, "source_ref": refs[s],
                         "input_scale": input_scale_of(st, s)}
                nets.append((net, model))
                if sim.get("bn_control"):
                    nets.append(({**net, "role": "recalibrated"}, {**model, "kind": "recalibrated"}))
            for s in sources + ["random"]:
                variants = ["none"] + (["freeze"] if s in st["freeze_sources"] and s != "random" else [])
                for v in variants:
                    init_seed = seeds[0] if s == "random" else int(st["seed"])
                    ft = {**common, "unit": "finetune", "target": t, "fold": int(fold), "source": s, "variant": v,
                          "source_ref": refs[s], "init_seed": init_seed,
                          "head": st["random_head"] if s == "random" else st["head"],
                          "input_scale": input_scale_of(st, s), "recipe": dict(st["finetune"]),
                          "freeze_recipe": dict(st["freeze"]) if v == "freeze" else None, "augment": augment}
                    plan.finetune.append(ft)
                    net = {"role": "finetuned", "source": s, "variant": v, "seed": None, "init_seed": init_seed}
                    nets.append((net, {"kind": "finetuned", "finetune_key": config_key(ft),
                                       "input_scale": ft["input_scale"]}))
            act_keys = []
            for net, model in nets:
                act = {**common, "unit": "activations", "target": t, "fold": int(fold), "network": net,
                       "model": model, "input_scale": model["input_scale"], "similarity": sim_block}
                plan.activations.append(act)
                act_keys.append(config_key(act))
            ft_keys = {(n["source"], n["variant"]): m["finetune_key"] for n, m in nets if n["role"] == "finetuned"}
            for (i, (a, _)), (j, (b, _)) in combinations(enumerate(nets), 2):
                kind = pair_kind(a, b)
                if "recalibrated" in (a["role"], b["role"]) and kind == "other":
                    continue  # the control is compared with its own source's networks only
                r_pair = in_r_pairs(a, b, seeds[0])
                base = {"stage": STAGE, "target": t, "fold": int(fold), "a": a, "b": b, "kind": kind, "in_r": r_pair}
                if sim["pairs"] == "all" or r_pair:
                    plan.analysis.append({**base, "unit": "similarity", "a_key": act_keys[i], "b_key": act_keys[j],
                                          "measures": list(sim["measures"]), "null": null_kind(sim["null"]),
                                          "seed": int(sim["seed"])})
                if a["role"] == b["role"] == "finetuned" and a["variant"] == b["variant"]:
                    plan.analysis.append({**base, "unit": "predictions",
                                          "a_key": ft_keys[(a["source"], a["variant"])],
                                          "b_key": ft_keys[(b["source"], b["variant"])]})
    plan.unavailable = pd.DataFrame(unavailable, columns=["source", "target", "reason"])
    return plan


# ----------------------------------------------------------------------------------------------------------
# units


def _device(device) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _run_config(recipe: dict, trainable=None):
    from .training import RunConfig

    return RunConfig(epochs=int(recipe["epochs"]), batch_size=int(recipe["batch_size"]),
                     optimizer=recipe.get("optimizer", "adam"), lr=float(recipe["lr"]), scheduler=None,
                     monitor=recipe.get("monitor", "val_loss"), patience=recipe.get("patience"), augment=True,
                     seed=int(recipe.get("seed", 0)), trainable=trainable)


def _unit_dir(stage_dir, key: str) -> Path:
    stage_dir = Path(stage_dir)
    return Stage(stage_dir.name, stage_dir.parent).workdir(key)


@torch.no_grad()
def _test_outputs(run, test: TensorImageDataset, batch_size: int = 256):
    from .training import medmnist_acc, probabilities, safe_auc

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
    from .training import Run, train_runs

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
    from safetensors.torch import save_file

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


def _read_activations(stage_dir, key: str, device) -> tuple[dict, str]:
    from safetensors import safe_open

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
    acts_a, plan_a = _read_activations(stage_dir, config["a_key"], device)
    acts_b, plan_b = _read_activations(stage_dir, config["b_key"], device)
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


def _gain(runs: pd.DataFrame) -> pd.Series:
    """(AUC_FT - AUC_random) / AUC_random, AUC_random = random init fine-tuned (no freeze) on the same target and
    fold."""
    base = runs[(runs.source == "random") & (runs.variant == "none")].set_index(["target", "fold"])["test_auc"]
    ref = pd.Series([base.get((t, f), np.nan) for t, f in zip(runs.target, runs.fold)], index=runs.index)
    return (runs.test_auc - ref) / ref


def _integral(col: pd.Series) -> pd.Series:
    """A float column of whole numbers without gaps as int (rows of several kinds share one frame while they
    are collected, which turns counts into floats)."""
    if col.dtype.kind == "f" and col.notna().all() and (col == col.round()).all():
        return col.astype("int64")
    return col


_WEIGHT_STAGE = {"relu": "conv1"}  # the stem ReLU follows conv1 (and bn1); the residual stages are themselves


def build_tables(stage: Stage, plan: RepresentationsPlan, results_dir, write: bool = True) -> dict[str, pd.DataFrame]:
    """Split the units' rows into the tables of :data:`TABLES`, add the relative AUC gain, and (``write``) write
    them as ``<results_dir>/representations_<name>.csv`` atomically, with ``representations_unavailable.csv``.
    Returns the tables by name (``unavailable`` included)."""
    units = stage.collect([config_key(c) for c in plan.all()])
    tables: dict[str, pd.DataFrame] = {}
    for name in ("runs", "weights", "activations", "similarity", "predictions"):
        part = units[units["table"] == name] if "table" in units else units.iloc[:0]
        part = part.dropna(axis=1, how="all").drop(columns=["table"], errors="ignore").reset_index(drop=True)
        tables[name] = part.apply(_integral)
    runs = tables["runs"]
    if not runs.empty:
        runs["relative_gain"] = _gain(runs)
        gain = runs.set_index(["source", "target", "fold", "variant"])["relative_gain"]
        w = tables["weights"]
        if not w.empty:
            w["relative_gain"] = [gain.get(k, np.nan) for k in zip(w.source, w.target, w.fold, w.variant)]
    tables["gain"] = gain_table(tables)
    tables["unavailable"] = plan.unavailable
    if write:
        for name, df in tables.items():
            atomic_write_csv(df, Path(results_dir) / f"representations_{name}.csv")
    return tables


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


def run_representations(profile: dict, results_dir=None, root=None, device=None, progress: bool = True,
                        targets=None, engine: str = "local", **engine_options) -> dict[str, pd.DataFrame]:
    """Run (or resume) the stage for a profile through an engine (:mod:`helpers.stages`) and write its tables;
    returns them (:func:`build_tables`).

    Units run in dependency order (fine-tuning, activations, analysis), each stored once finished and never
    recomputed: a second call only reads. ``device``: default the profile's (``auto``: CUDA when present)."""
    from .stages import run_stage

    options = {"targets": list(targets)} if targets is not None else {}
    env = run_stage(NAME, profile, results_dir, root, device, progress, engine, options=options, **engine_options)
    return tables(env.profile, env)


# ----------------------------------------------------------------------------------------------------------
# the stage contract (helpers.stages.base): tasks, run_task, finalize, missing_inputs

NAME = STAGE
RESOURCES = {"finetune": {"num_cpus": 1, "num_gpus": 0.5}, "activations": {"num_cpus": 1, "num_gpus": 0.25},
             "analysis": {"num_cpus": 1, "num_gpus": 0.1}}


def _plan(profile: dict, env) -> RepresentationsPlan:
    return representations_configs(profile, env.results_dir, env.data_root, env.options.get("targets"))


def _net_id(config: dict) -> str:
    return f"{NAME}:activations:{config['target']}:fold{config['fold']}:{network_name(config['network'])}"


def tasks(profile: dict, env) -> list:
    """One task per fine-tuning run (waiting for its source's pretraining task), one per network's activations
    (waiting for the fine-tuning or pretraining that makes the network) and one per analysis unit (waiting for
    the activations, or the fine-tuning runs, it reads). An unavailable source then blocks only what uses it."""
    from .stages.base import Task
    from .stages.throughput import representations_seconds

    if not profile.get("representations"):
        return []  # a profile without the section has no such stage
    plan = _plan(profile, env)
    out, ft_ids, act_ids = [], {}, {}
    for c in plan.finetune:
        tid = f"{NAME}:finetune:{c['target']}:fold{c['fold']}:{c['source']}:{c['variant']}"
        ft_ids[config_key(c)] = tid
        dep = _producer_task(profile, c["source"], c["target"])
        out.append(Task(STAGE, tid, (c,), (dep,) if dep else (), dict(RESOURCES["finetune"]),
                        representations_seconds(c, profile)))
    for c in plan.activations:
        model = c["model"]
        if model["kind"] == "finetuned":
            deps = (ft_ids[model["finetune_key"]],)
        elif model["kind"] in ("pretrained", "recalibrated"):
            dep = _producer_task(profile, model["source"], c["target"])
            deps = (dep,) if dep else ()
        else:
            deps = ()
        act_ids[config_key(c)] = _net_id(c)
        out.append(Task(STAGE, _net_id(c), (c,), deps, dict(RESOURCES["activations"]),
                        representations_seconds(c, profile)))
    for c in plan.analysis:
        ids = act_ids if c["unit"] == "similarity" else ft_ids
        deps = tuple(ids[c[k]] for k in ("a_key", "b_key"))
        tid = f"{NAME}:{c['unit']}:{c['target']}:fold{c['fold']}:{network_name(c['a'])}~{network_name(c['b'])}"
        out.append(Task(STAGE, tid, (c,), deps, dict(RESOURCES["analysis"]), representations_seconds(c, profile)))
    return out


def _with_spec(config: dict, env) -> dict:
    """The config with the source's checkpoint resolved (``spec``), at run time; raises
    :class:`helpers.models.SourceUnavailable` when it cannot be had here."""
    st = representations_settings(env.profile)
    if config["unit"] == "finetune":
        return {**config, "spec": _resolve(env.profile, st, config["source"], config["target"], env.results_dir)}
    model = config["model"]
    if model["kind"] in ("pretrained", "recalibrated"):
        spec = _resolve(env.profile, st, model["source"], config["target"], env.results_dir)
        return {**config, "model": {**model, "spec": spec}}
    return config


def run_task(task, env) -> list:
    device = env.resolved_device()
    stage_dir = env.results_dir / STAGE
    out = []
    for c in task.configs:
        workdir = env.workdir(task.stage, c)
        if c["unit"] == "finetune":
            out.append(finetune_unit(_with_spec(c, env), workdir, env.data_root, device, env.cache))
        elif c["unit"] == "activations":
            out.append(activation_unit(_with_spec(c, env), workdir, stage_dir, env.data_root, device, env.cache))
        else:
            out.append(analysis_unit(c, workdir, stage_dir, device))
    return out


def tables(profile: dict, env, write: bool = False) -> dict[str, pd.DataFrame]:
    """The stage's tables from the stored units (nothing computed), with the sources a task found unavailable
    at run time (e.g. ImageNet weights offline) added to ``unavailable``."""
    from .stages.base import problem_reason, read_problems

    plan = _plan(profile, env)
    problems = [{"source": r["task"].split(":")[4], "target": r["task"].split(":")[2],
                 "reason": problem_reason(r)} for r in read_problems(env, STAGE).values()
                if r["task"].startswith(f"{NAME}:finetune:") and r.get("kind") == "unavailable"]
    if problems:
        plan.unavailable = (pd.concat([plan.unavailable, pd.DataFrame(problems)], ignore_index=True)
                            .drop_duplicates(["source", "target"]).reset_index(drop=True))
    return build_tables(env.storage(STAGE), plan, env.results_dir, write=write)


def finalize(profile: dict, env) -> dict:
    if not profile.get("representations"):
        return {}
    tables(profile, env, write=True)
    return {f"representations_{name}": env.results_dir / f"representations_{name}.csv"
            for name in [*TABLES, "unavailable"]}


def missing_inputs(profile: dict, env) -> list[dict]:
    """MedMNIST files of the stage's targets and, when listed as a source without a configured checkpoint,
    RadImageNet (ImageNet weights are reported by the pretraining stage's inputs)."""
    from .stages import inputs

    if not profile.get("representations"):
        return []
    st = representations_settings(profile)
    rows = inputs.medmnist_files(list(st["targets"]), int(st["file_size"]), env.data_root)
    if "radimagenet" in st["sources"] and not (st.get("radimagenet_checkpoint")
                                                or os.environ.get("RADIMAGENET_RESNET50_CHECKPOINT")):
        rows.append({"what": "RadImageNet ResNet-50 checkpoint", "path": "representations.radimagenet_checkpoint",
                     "how": "RadImageNet needs a data-use agreement (radimagenet.com); put the checkpoint path in "
                            "the profile or $RADIMAGENET_RESNET50_CHECKPOINT"})
    return rows


# ----------------------------------------------------------------------------------------------------------
# reading back and small analyses for the chapter


def load_activations(results_dir, plan: RepresentationsPlan, target: str, fold: int, network: str, device="cpu"):
    """The stored activations ``{(layer, repeat): (n, d) tensor}`` of a network (by :func:`network_name`) of a
    (target, fold), from its activation unit's work folder."""
    for c in plan.activations:
        if c["target"] == target and c["fold"] == fold and network_name(c["network"]) == network:
            return _read_activations(Path(results_dir) / STAGE, config_key(c), device)[0]
    raise KeyError(f"no activations of {network!r} for {target}, fold {fold}")


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


# ----------------------------------------------------------------------------------------------------------
# figures


_LAYER_ORDER = list(S.RESNET_LAYERS)
_KIND_STYLE = {
    "pretrained_vs_finetuned": ("tab:blue", "-"), "finetuned_across_sources": ("tab:orange", "-"),
    "pretrained_across_sources": ("tab:green", "-"), "vs_untrained": ("tab:purple", "-"),
    "untrained_vs_untrained": ("black", "--"), "freeze_vs_no_freeze": ("tab:red", "-"),
    "untrained_vs_finetuned": ("tab:brown", ":"), "recalibrated_vs_finetuned": ("tab:cyan", "-."),
    "pretrained_vs_recalibrated": ("tab:olive", "-."), "other": ("tab:gray", ":"),
}


def _stage_axis(ax, layers):
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels([S.R_STAGE_OF_LAYER.get(l, l) for l in layers], fontsize=8)


def plot_reference_cca(summary: pd.DataFrame, pairs=None, ncols: int = 4):
    """[R]'s CCA per stage (:func:`helpers.reference_r.cca_summary`): one panel per target, one line per pair
    (mean over folds) with a band of +- 1 SD over folds."""
    import matplotlib.pyplot as plt

    from .reference_r import STAGES

    pairs = pairs or ["ImageNet-FT vs ImageNet", "RadImageNet-FT vs RadImageNet", "ImageNet-FT vs RadImageNet-FT",
                      "ImageNet vs RadImageNet", "ImageNet-FT vs random", "random vs random"]
    targets = list(dict.fromkeys(summary.target))
    nrows = -(-len(targets) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), sharey=True, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, t in zip(axes.ravel(), targets):
        for i, p in enumerate(pairs):
            sub = summary[(summary.target == t) & (summary.pair == p)].set_index("stage").reindex(list(STAGES))
            if sub["mean"].isna().all():
                continue
            x = np.arange(len(STAGES))
            style = "--" if p == "random vs random" else "-"
            ax.plot(x, sub["mean"], style, color="black" if p == "random vs random" else colors[i % len(colors)],
                    label=p, lw=1.4)
            ax.fill_between(x, sub["mean"] - sub["sd"], sub["mean"] + sub["sd"], alpha=0.2,
                            color="black" if p == "random vs random" else colors[i % len(colors)])
        ax.set_xticks(range(len(STAGES)))
        ax.set_xticklabels(STAGES, fontsize=7)
        ax.set_title(t, fontsize=9)
        ax.set_ylim(0, 1)
    for ax in axes.ravel()[len(targets):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("mean CCA")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower right", fontsize=7, frameon=False,
               bbox_to_anchor=(0.98, 0.05) if len(targets) % ncols else (0.98, -0.08))
    fig.tight_layout()
    return fig


def plot_reference_predictions(pred: pd.DataFrame):
    """[R]'s prediction similarity (:func:`helpers.reference_r.load_prediction_similarity`) per target and
    freeze variant: observed error agreement (bar, mean over folds), [R]'s as-coded baseline (x) and the range of
    the correct independent-errors baseline the tables allow (vertical line, low to high)."""
    import matplotlib.pyplot as plt

    g = pred.groupby(["freeze", "target"]).mean(numeric_only=True).reset_index()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.0), sharey=True)
    for ax, (freeze, sub) in zip(axes, g.groupby("freeze")):
        x = np.arange(len(sub))
        ax.bar(x, sub.observed, color="tab:blue", alpha=0.7, label="observed (both right or both wrong)")
        ax.scatter(x, sub.r_baseline, marker="x", color="tab:red", zorder=3, label="[R]'s baseline as coded")
        ax.vlines(x + 0.18, sub.correct_baseline_low, sub.correct_baseline_high, color="k", lw=2,
                  label="correct baseline: range the tables allow")
        ax.set_xticks(x)
        ax.set_xticklabels(sub.target, rotation=40, fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"ImageNet-FT vs RadImageNet-FT, freeze={freeze}", fontsize=9)
    axes[0].set_ylabel("agreement")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_gain_scatter(table: pd.DataFrame, x: str, y: str = "relative_gain", hue: str = "source",
                      panel: str = "stage", xlabel: str | None = None, panels=None):
    """One panel per ``panel`` value: ``x`` against ``y`` per point, coloured by ``hue``, with the least-squares
    line over all points of the panel and Pearson's r in the title."""
    import matplotlib.pyplot as plt

    panels = list(panels or dict.fromkeys(table[panel]))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.6), sharey=True, squeeze=False)
    hues = list(dict.fromkeys(table[hue]))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, p in zip(axes[0], panels):
        sub = table[table[panel] == p].dropna(subset=[x, y])
        for i, h in enumerate(hues):
            s = sub[sub[hue] == h]
            ax.scatter(s[x], s[y], s=14, color=colors[i % len(colors)], label=str(h), alpha=0.8)
        if len(sub) >= 3 and sub[x].std() > 0:
            b, a = np.polyfit(sub[x], sub[y], 1)
            xs = np.linspace(sub[x].min(), sub[x].max(), 10)
            ax.plot(xs, a + b * xs, color="k", lw=1)
            ax.set_title(f"{p}: r = {np.corrcoef(sub[x], sub[y])[0, 1]:.2f}", fontsize=9)
        else:
            ax.set_title(str(p), fontsize=9)
        ax.axhline(0, color="grey", lw=0.6, ls=":")
        ax.set_xlabel(xlabel or x, fontsize=8)
    axes[0, 0].set_ylabel(y.replace("_", " "))
    axes[0, -1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def _null_label(sim: pd.DataFrame) -> str:
    kinds = sorted({k for k in sim.get("null_kind", pd.Series(["positions"])).dropna() if not k.startswith("none")})
    name = {"images": "images deranged", "positions": "positions shuffled"}
    return "null, " + " / ".join(name.get(k, k) for k in kinds) + " (+- 2 SD)" if kinds else "null"


def plot_similarity_by_stage(sim: pd.DataFrame, measure: str = "cca", kinds=None, layers=None):
    """Our similarity per stage: one panel per target, one line per pair kind (mean over pairs, repeats and
    folds) with a band of +- 1 SD, and the permutation null (``null_kind``: by default whole images deranged
    within each cell) as a pink band, mean +- 2 SD over every cell of the target and layer."""
    import matplotlib.pyplot as plt

    layers = layers or [l for l in _LAYER_ORDER if l in set(sim.layer)]
    sub = sim[sim.measure == measure]
    kinds = kinds or [k for k in _KIND_STYLE if k in set(sub.kind) and k != "other"]
    targets = list(dict.fromkeys(sub.target))
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.0), sharey=True, squeeze=False)
    x = np.arange(len(layers))
    for ax, t in zip(axes[0], targets):
        st = sub[sub.target == t]
        null = st.groupby("layer")["null_value"].agg(["mean", "std"]).reindex(layers)
        ax.fill_between(x, null["mean"] - 2 * null["std"], null["mean"] + 2 * null["std"], color="tab:pink",
                        alpha=0.45, label=_null_label(st))
        for k in kinds:
            g = st[st.kind == k].groupby("layer")["value"].agg(["mean", "std"]).reindex(layers)
            if g["mean"].isna().all():
                continue
            color, ls = _KIND_STYLE[k]
            ax.plot(x, g["mean"], ls, color=color, label=k.replace("_", " "), lw=1.5, marker="o", ms=3)
            ax.fill_between(x, g["mean"] - g["std"].fillna(0), g["mean"] + g["std"].fillna(0), color=color, alpha=0.15)
        _stage_axis(ax, layers)
        ax.set_title(t, fontsize=9)
        ax.set_ylim(0, 1)
    axes[0, 0].set_ylabel(measure.replace("_", " "))
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    return fig


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


def plot_similarity_heatmaps(sim: pd.DataFrame, target: str, fold: int, measure: str, layers=None):
    """One heatmap per layer of :func:`similarity_matrix` (networks in the same order in every panel)."""
    import matplotlib.pyplot as plt

    layers = layers or [l for l in _LAYER_ORDER if l in set(sim.layer)]
    fig, axes = plt.subplots(1, len(layers), figsize=(2.6 * len(layers) + 0.8, 3.3), squeeze=False,
                             constrained_layout=True)
    for i, (ax, layer) in enumerate(zip(axes[0], layers)):
        m = similarity_matrix(sim, target, fold, layer, measure)
        im = ax.imshow(m.to_numpy(dtype=float), vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(m)))
        ax.set_yticks(range(len(m)))
        ax.set_xticklabels(m.columns, rotation=90, fontsize=6)
        ax.set_yticklabels(m.index if i == 0 else [""] * len(m), fontsize=6)
        ax.set_title(S.R_STAGE_OF_LAYER.get(layer, layer), fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.7, fraction=0.02, pad=0.01, label=measure.replace("_", " "))
    return fig


def plot_prediction_bars(pred: pd.DataFrame):
    """Our prediction similarity: one panel per target, one group per pair of fine-tuned networks: error
    agreement (bar), the correct independent-errors baseline (o) and [R]'s as-coded one (x), kappa on top."""
    import matplotlib.pyplot as plt

    targets = list(dict.fromkeys(pred.target))
    fig, axes = plt.subplots(1, len(targets), figsize=(4.0 * len(targets), 3.2), sharey=True, squeeze=False)
    for ax, t in zip(axes[0], targets):
        sub = pred[pred.target == t].groupby(["network_a", "network_b"], sort=False).mean(numeric_only=True).reset_index()
        x = np.arange(len(sub))
        ax.bar(x, sub.error_agreement, color="tab:blue", alpha=0.7, label="error agreement")
        ax.scatter(x, sub.independent_baseline, marker="o", color="k", zorder=3, label="independent (correct)")
        ax.scatter(x, sub.r_baseline_as_coded, marker="x", color="tab:red", zorder=3, label="[R]'s as coded")
        for xi, (ea, k) in enumerate(zip(sub.error_agreement, sub.kappa)):
            ax.text(xi, min(ea + 0.02, 1.0), f"κ={k:.2f}", ha="center", fontsize=7)
        ax.set_xticks(x)
        ax.set_xticklabels([f"{a}\nvs {b}" for a, b in zip(sub.network_a, sub.network_b)], fontsize=7)
        ax.set_ylim(0, 1.1)
        ax.set_title(t, fontsize=9)
    axes[0, 0].set_ylabel("fraction of test images")
    axes[0, -1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_weight_change(weights: pd.DataFrame, stages=("conv1", "layer1", "layer2", "layer3", "layer4")):
    """Relative L2 change of the conv weights per stage (this project's extension): one panel per target, one
    line per fine-tuned network."""
    import matplotlib.pyplot as plt

    targets = list(dict.fromkeys(weights.target))
    fig, axes = plt.subplots(1, len(targets), figsize=(4.0 * len(targets), 2.8), sharey=True, squeeze=False)
    x = np.arange(len(stages))
    for ax, t in zip(axes[0], targets):
        sub = weights[weights.target == t]
        for (source, variant), g in sub.groupby(["source", "variant"], sort=False):
            v = g.groupby("stage")["relative_change"].mean().reindex(list(stages))
            name = network_name({"role": "finetuned", "source": source, "variant": variant})
            ax.plot(x, v, marker="o", ms=3, label=name)
        ax.set_xticks(x)
        ax.set_xticklabels(stages, fontsize=8)
        ax.set_title(t, fontsize=9)
    axes[0, 0].set_ylabel("|W_ft - W_0| / |W_0|")
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    return fig
