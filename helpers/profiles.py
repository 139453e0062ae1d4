"""Run profiles: one YAML file per profile under ``profiles/`` fixing data, sources, targets, folds, epochs,
the fine-tuning sweep, metrics and device.

``quick`` runs on a 2-core CPU on whichever flags the data root holds; ``paper`` is PROTOCOL.md in full.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import yaml

from .data import MEDMNIST_2D_FLAGS, SIZES, available_flags
from .paths import PROJECT_ROOT

PROFILES_DIR = PROJECT_ROOT / "profiles"
REQUIRED = ("name", "data", "sources", "targets", "pretraining", "finetuning", "metrics", "device")


class ProfileError(ValueError):
    """A profile file is missing or inconsistent."""


def list_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yml"))


def load_profile(name_or_path: str | os.PathLike) -> dict:
    """Read and validate a profile by name (``quick``, ``paper``) or by path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix not in (".yml", ".yaml"):
        path = PROFILES_DIR / f"{name_or_path}.yml"
    if not path.is_file():
        raise ProfileError(f"profile {str(name_or_path)!r} not found (looked for {path}); "
                           f"known profiles: {', '.join(list_profiles())}")
    with open(path) as fh:
        profile = yaml.safe_load(fh)
    if not isinstance(profile, dict):
        raise ProfileError(f"{path}: a profile is a YAML mapping")
    missing = [k for k in REQUIRED if k not in profile]
    if missing:
        raise ProfileError(f"{path}: missing keys {missing}")
    data = profile["data"]
    unknown = [f for f in list(data.get("flags", [])) + list(profile["targets"]) if f not in MEDMNIST_2D_FLAGS]
    if unknown:
        raise ProfileError(f"{path}: unknown MedMNIST flags {unknown}")
    if data.get("file_size") not in SIZES:
        raise ProfileError(f"{path}: data.file_size must be one of {SIZES}")
    if not set(profile["targets"]) <= set(data["flags"]):
        raise ProfileError(f"{path}: every target must be among data.flags")
    if profile.get("segmentation") is not None:
        validate_segmentation_section(profile["segmentation"], path)
    if profile.get("representations") is not None:
        validate_representations_section(profile["representations"], path)
    profile["_path"] = str(path)
    return profile


SEGMENTATION_SPECIAL_SOURCES = ("random", "imagenet", "union")
SEGMENTATION_SCORING_KEYS = ("max_images", "per_case", "global_per_case", "layers")


def validate_segmentation_section(seg, path) -> None:
    """Check a profile's optional ``segmentation`` section (PROTOCOL.md section 7): sets, targets among them,
    sources, an image size that is a multiple of 32, positive epochs and batch sizes, and the scoring keys
    (``layers`` are decoder block names ``dec<i>``, i below the number of decoder blocks)."""
    if not isinstance(seg, dict):
        raise ProfileError(f"{path}: segmentation must be a mapping")
    sets = seg.get("sets")
    if not isinstance(sets, list) or not sets or not all(isinstance(s, str) for s in sets):
        raise ProfileError(f"{path}: segmentation.sets must be a non-empty list of set names")
    targets = seg.get("targets", sets)
    if not set(targets) <= set(sets):
        raise ProfileError(f"{path}: every segmentation target must be among segmentation.sets")
    bad = [s for s in seg.get("sources", []) if s not in SEGMENTATION_SPECIAL_SOURCES and s not in sets]
    if bad:
        raise ProfileError(f"{path}: segmentation sources {bad} are neither {SEGMENTATION_SPECIAL_SOURCES} nor "
                           "among segmentation.sets")
    size = seg.get("image_size")
    if not isinstance(size, int) or size < 32 or size % 32:
        raise ProfileError(f"{path}: segmentation.image_size must be a positive multiple of 32 (the U-Net "
                           f"downsamples 32x), got {size!r}")
    for stage in ("pretraining", "finetuning"):
        rec = seg.get(stage)
        if not isinstance(rec, dict):
            raise ProfileError(f"{path}: segmentation.{stage} must be a mapping")
        for key in ("epochs", "batch_size"):
            v = rec.get(key)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ProfileError(f"{path}: segmentation.{stage}.{key} must be a positive integer, got {v!r}")
    n_blocks = len((seg.get("model") or {}).get("decoder_channels", [0] * 5))
    scoring = seg.get("scoring")
    if scoring is not None:
        missing = [k for k in SEGMENTATION_SCORING_KEYS if k not in scoring]
        if missing:
            raise ProfileError(f"{path}: segmentation.scoring lacks {missing}")
        names = {f"dec{i}" for i in range(n_blocks)}
        bad = [layer for layer in scoring["layers"] if layer not in names]
        if bad or not scoring["layers"]:
            raise ProfileError(f"{path}: segmentation.scoring.layers {bad or '[]'} must be decoder blocks among "
                               f"{sorted(names)}")


def profile_flags(profile: dict, root=None) -> list[str]:
    """The flags a run of this profile uses: all of ``data.flags``, or with ``only_available`` those whose file
    the data root holds. When it holds none of them, all are returned, so that loading downloads them (or
    fails offline with a message naming the files and the data root).
    """
    flags = list(profile["data"]["flags"])
    if not profile["data"].get("only_available", False):
        return flags
    return available_flags(profile["data"]["file_size"], root, flags) or flags


def profile_targets(profile: dict, root=None) -> list[str]:
    flags = set(profile_flags(profile, root))
    return [t for t in profile["targets"] if t in flags]


def finetune_grid(profile: dict, target: str | None = None) -> list[dict]:
    """The fine-tuning sweep of a profile as a list of hyperparameter dicts (per-target batch sizes applied)."""
    ft = profile["finetuning"]
    grid = dict(ft["grid"])
    if target is not None and target in ft.get("batch_size_by_target", {}):
        grid["batch_size"] = ft["batch_size_by_target"][target]
    keys = ["lr", "batch_size", "momentum", "weight_decay"]
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def resolve_device(profile: dict) -> str:
    """``auto`` -> cuda when present, else cpu; anything else as written."""
    want = str(profile.get("device", "auto"))
    if want != "auto":
        return want
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def validate_representations_section(rep, path) -> None:
    """Check a profile's optional ``representations`` section ([R], PROTOCOL.md section 8; defaults in
    :data:`helpers.representations.DEFAULTS`): known targets and input scales, ``freeze_sources`` among the
    sources, two different untrained seeds, folds within ``n_folds``, positive recipe numbers, known monitors,
    layers and measures."""
    from .representations import DEFAULTS, INPUT_SCALES
    from .similarity import MEASURES

    if not isinstance(rep, dict):
        raise ProfileError(f"{path}: representations must be a mapping")
    unknown = sorted(set(rep) - set(DEFAULTS))
    if unknown:
        raise ProfileError(f"{path}: representations has unknown keys {unknown} (known: {sorted(DEFAULTS)})")
    merged = {**DEFAULTS, **rep}
    bad = [t for t in merged["targets"] if t not in MEDMNIST_2D_FLAGS]
    if bad or not merged["targets"]:
        raise ProfileError(f"{path}: representations.targets {bad or '[]'} must be MedMNIST 2D flags")
    sources = list(merged["sources"])
    if "random" in sources:
        raise ProfileError(f"{path}: representations.sources must not list random (random init always runs)")
    extra = [s for s in merged["freeze_sources"] if s not in sources]
    if extra:
        raise ProfileError(f"{path}: representations.freeze_sources {extra} are not among its sources {sources}")
    seeds = merged["untrained_seeds"]
    if not (isinstance(seeds, list) and len(seeds) == 2 and all(isinstance(x, int) for x in seeds)
            and seeds[0] != seeds[1]):
        raise ProfileError(f"{path}: representations.untrained_seeds must be two different integers, got {seeds!r}")
    scales = merged["input_scale"]
    if not isinstance(scales, dict) or "default" not in scales:
        raise ProfileError(f"{path}: representations.input_scale must be a mapping with a 'default' entry")
    bad = {k: v for k, v in scales.items() if v not in INPUT_SCALES}
    if bad:
        raise ProfileError(f"{path}: representations.input_scale {bad} must be one of {sorted(INPUT_SCALES)}")
    n_folds, folds = merged["n_folds"], merged["folds"]
    if not isinstance(n_folds, int) or n_folds < 2:
        raise ProfileError(f"{path}: representations.n_folds must be an integer >= 2, got {n_folds!r}")
    if not folds or any(not isinstance(f, int) or not 1 <= f <= n_folds for f in folds):
        raise ProfileError(f"{path}: representations.folds {folds!r} must be integers in 1..{n_folds}")
    if not isinstance(merged["image_size"], int) or merged["image_size"] < 16:
        raise ProfileError(f"{path}: representations.image_size must be an integer >= 16")
    for phase, monitors in (("finetune", ("val_loss", "val_auc", "val_acc")),
                            ("freeze", ("val_acc", "val_loss", "val_auc"))):
        rec = {**DEFAULTS[phase], **(rep.get(phase) or {})}
        for key in ("epochs", "batch_size"):
            if not isinstance(rec[key], int) or rec[key] < 1:
                raise ProfileError(f"{path}: representations.{phase}.{key} must be a positive integer")
        if not isinstance(rec["lr"], (int, float)) or not rec["lr"] > 0:
            raise ProfileError(f"{path}: representations.{phase}.lr must be positive")
        if rec["monitor"] not in monitors or rec.get("optimizer", "adam") not in ("adam", "sgd"):
            raise ProfileError(f"{path}: representations.{phase}: monitor must be one of {monitors}, optimizer "
                               "adam or sgd")
    sim = {**DEFAULTS["similarity"], **(rep.get("similarity") or {})}
    for key in ("points", "channels", "repeats"):
        if not isinstance(sim[key], int) or sim[key] < 1:
            raise ProfileError(f"{path}: representations.similarity.{key} must be a positive integer")
    bad = [m for m in sim["measures"] if m not in MEASURES]
    if bad or not sim["measures"]:
        raise ProfileError(f"{path}: representations.similarity.measures {bad or '[]'} must be among "
                           f"{sorted(MEASURES)}")
    if sim["stimuli"] not in ("heldout", "test", "val", "train", "all") or sim["pairs"] not in ("all", "r"):
        raise ProfileError(f"{path}: representations.similarity: stimuli must be heldout, test, val, train or "
                           "all, pairs all or r")
    if not sim["layers"]:
        raise ProfileError(f"{path}: representations.similarity.layers must not be empty")
    if not (isinstance(sim["null"], bool) or sim["null"] in ("images", "positions", "none")):
        raise ProfileError(f"{path}: representations.similarity.null must be images, positions, none (or true / "
                           f"false), got {sim['null']!r}")
