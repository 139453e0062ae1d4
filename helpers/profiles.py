"""Run profiles: one YAML file per profile under ``profiles/`` fixing data, sources, targets, folds, epochs,
the fine-tuning sweep, metrics and device.

``quick`` runs on a 2-core CPU on whichever flags the data root holds; ``paper`` is PROTOCOL.md in full.

A profile is validated and resolved once, by :func:`load_profile`, against the typed schema below (pydantic
models, one per section): a wrong type, an unknown key, a missing key or a bad value is a :class:`ProfileError`
that names the file, the ``section.key`` path and what was expected. The result is a plain dict
(``profile["section"]["key"]``), with each section's model input side resolved into it
(:func:`profile_image_size`).

Unit configs are built from these values and hashed (:func:`helpers.runner.config_key`), so resolving never
changes a value as written: numbers keep their type (an int stays an int), and the sections whose mappings are
copied whole into unit configs (``pretraining``, ``segmentation``) come back with exactly the keys written.
"""
from __future__ import annotations

import itertools
import os
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Optional, Union

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, StrictBool,
                      StrictInt, StrictStr, ValidationError, WithJsonSchema, model_validator)

from .data import MEDMNIST_2D_FLAGS, SIZES, available_flags
from .paths import PROJECT_ROOT

PROFILES_DIR = PROJECT_ROOT / "profiles"


class ProfileError(ValueError):
    """A profile file is missing or inconsistent."""


def list_profiles() -> list[str]:
    """Names of the shipped profiles (``profiles/*.yml``)."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yml"))


# ----------------------------------------------------------------------------------------------------------
# value types: strict (no silent "28" -> 28), and numbers kept as written (the unit configs are hashed)


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a number")
    return value


def _positive(value):
    if not value > 0:
        raise ValueError("must be positive")
    return value


def _non_negative(value):
    if value < 0:
        raise ValueError("must be >= 0")
    return value


#: an int or a float, returned unchanged (pydantic's float would turn ``1`` into ``1.0``, a different hash)
Number = Annotated[Union[int, float], PlainValidator(_number), WithJsonSchema({"type": "number"})]
PositiveNumber = Annotated[Number, AfterValidator(_positive)]
NonNegativeNumber = Annotated[Number, AfterValidator(_non_negative)]
PositiveInt = Annotated[StrictInt, Field(ge=1)]
Flag = Literal[MEDMNIST_2D_FLAGS]


class KeyProblem(ValueError):
    """A check across keys, raised by a section's validator about one of its keys (named in the message)."""

    def __init__(self, key: str, message: str, value=None):
        super().__init__(message)
        self.key, self.value = key, value


class _Section(BaseModel):
    """A profile mapping: strict types, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


# Fields declared ``X = None`` (a default outside the type) may be left out but not written as null: the
# consumer then applies its own default, and the key stays absent from the loaded profile.

# ----------------------------------------------------------------------------------------------------------
# data, sources, pre-training, fine-tuning, scoring


class DataSection(_Section):
    """``data``: the MedMNIST flags, the stored file size, the model input side and the folds."""

    flags: Annotated[list[Flag], Field(min_length=1)]
    #: only the flags whose file the data root holds (:func:`profile_flags`)
    only_available: StrictBool = False
    #: MedMNIST file resolution that is loaded
    file_size: Literal[SIZES]
    #: model input side; resolved to ``file_size`` (no resizing) when left out
    image_size: Optional[PositiveInt] = None
    fold_seed: StrictInt = 24
    folds: PositiveInt = 5


class SourcesSection(_Section):
    """``sources``: the candidate sources of both scenarios."""

    #: candidate sources of the dataset scenario (names: :mod:`helpers.names`)
    dataset: list[StrictStr]
    #: candidate architectures of the architecture scenario
    architectures: list[StrictStr] = []
    #: a user-supplied RadImageNet ResNet-18 checkpoint (data-use agreement)
    radimagenet_checkpoint: Optional[StrictStr] = None


class OptimizerSettings(_Section):
    """A pre-training recipe's ``optimizer`` (:func:`helpers.trainer.recipes.run_config`)."""

    name: Literal["adam", "sgd"]
    lr: PositiveNumber
    momentum: NonNegativeNumber = None
    weight_decay: NonNegativeNumber = None


class PretrainingRecipe(_Section):
    """A pre-training recipe (:func:`helpers.trainer.recipes.recipe_section` fills PROTOCOL.md's defaults);
    every key is copied into the hashed unit config as written."""

    epochs: PositiveInt = None
    batch_size: PositiveInt = None
    optimizer: OptimizerSettings = None
    milestones: list[PositiveInt] = None
    step_size: PositiveInt = None
    gamma: PositiveNumber = None
    monitor: Literal["val_auc", "val_acc", "val_loss"] = None
    patience: Optional[PositiveInt] = None
    balanced: StrictBool = None
    augment: StrictBool = None
    compile: StrictBool = None
    max_train_images: Optional[PositiveInt] = None
    max_val_images: Optional[PositiveInt] = None
    #: model input side of the sources (see :func:`profile_image_size`)
    image_size: PositiveInt = None
    architecture: StrictStr = None


class PretrainingSection(PretrainingRecipe):
    """Keys beside ``single_dataset`` and ``union`` apply to both recipes (a recipe's own keys win)."""

    single_dataset: PretrainingRecipe = None
    union: PretrainingRecipe = None


class FinetuningGrid(_Section):
    """``finetuning.grid``: the sweep, every combination of the four lists (:func:`finetune_grid`)."""

    lr: Annotated[list[PositiveNumber], Field(min_length=1)]
    batch_size: Annotated[list[PositiveInt], Field(min_length=1)]
    momentum: Annotated[list[NonNegativeNumber], Field(min_length=1)]
    weight_decay: Annotated[list[NonNegativeNumber], Field(min_length=1)]


class FinetuningSection(_Section):
    """``finetuning``: the ground truth's recipe and sweep."""

    epochs: PositiveInt
    #: epochs of the architecture scenario; resolved to ``epochs`` when left out
    epochs_architectures: Optional[PositiveInt] = None
    patience: Optional[PositiveInt] = None
    #: model input side; resolved to ``data.image_size`` when left out
    image_size: Optional[PositiveInt] = None
    max_train_images: Optional[PositiveInt] = None
    max_test_images: Optional[PositiveInt] = None
    #: the sweep repeated over seeds
    seeds: list[StrictInt] = [0]
    #: fine-tune the target's own flag as a source too ([D] does; it is left out when correlating)
    self_source: bool = True
    #: fine-tuning tasks run at once by the chapter (more than 1: on a local Ray cluster). Each task keeps its own
    #: torch threads, so the tables are the same as one at a time; on a 2-core CPU two at once finish the quick
    #: sweep about 1.5 times sooner (benchmarks/side_by_side.py)
    side_by_side: PositiveInt = 1
    grid: FinetuningGrid
    #: per-target batch sizes replacing ``grid.batch_size`` (:func:`finetune_grid`)
    batch_size_by_target: dict[Flag, list[PositiveInt]] = {}


class ScoringSection(_Section):
    """``scoring`` (optional): how the classification metrics see the target images."""

    #: model input side of the features; resolved to ``finetuning.image_size`` when left out
    image_size: Optional[PositiveInt] = None
    #: target images scored; resolved to ``finetuning.max_train_images`` when left out
    max_images: Optional[PositiveInt] = None
    batch_size: PositiveInt = 256
    #: ``{metric: {option: value}}`` over a metric's registered defaults (:func:`helpers.scoring.metric_options`)
    metric_options: dict[StrictStr, dict[StrictStr, Any]] = {}


# ----------------------------------------------------------------------------------------------------------
# segmentation ([S], PROTOCOL.md section 7); the defaults of the keys left out live in
# helpers.segmentation.training (its recipes are copied whole into hashed unit configs)

SEGMENTATION_SPECIAL_SOURCES = ("random", "imagenet", "union")
#: decoder blocks of the default U-Net (``helpers.segmentation.model.DEFAULT_DECODER_CHANNELS``)
SEGMENTATION_DECODER_BLOCKS = 5


class SegmentationModel(_Section):
    """``segmentation.model``: the U-Net."""

    encoder: StrictStr = None
    decoder_channels: Annotated[list[PositiveInt], Field(min_length=1)] = None


class SegmentationLoss(_Section):
    """``segmentation.loss``: Dice + cross-entropy weights."""

    dice_weight: NonNegativeNumber = None
    ce_weight: NonNegativeNumber = None
    smooth: NonNegativeNumber = None


class SegmentationAugment(_Section):
    """``segmentation.augment``: training augmentation."""

    flip_p: NonNegativeNumber = None
    rotation_degrees: NonNegativeNumber = None
    scale: Annotated[list[PositiveNumber], Field(min_length=2, max_length=2)] = None


class SegmentationOptimizer(_Section):
    """A segmentation recipe's ``optimizer``."""

    name: Literal["adam", "sgd"] = None
    lr: PositiveNumber = None
    momentum: NonNegativeNumber = None
    weight_decay: NonNegativeNumber = None


class SegmentationRecipeOverride(_Section):
    """Keys of a segmentation recipe (:class:`helpers.segmentation.training.SegRecipe`)."""

    epochs: PositiveInt = None
    batch_size: PositiveInt = None
    eval_batch_size: PositiveInt = None
    optimizer: SegmentationOptimizer = None
    scheduler: Optional[Literal["cosine", "none"]] = None
    monitor: Literal["val_dice", "val_loss"] = None
    patience: Optional[PositiveInt] = None
    max_train_images: Optional[PositiveInt] = None
    max_val_images: Optional[PositiveInt] = None
    max_test_images: Optional[PositiveInt] = None


class SegmentationRecipe(SegmentationRecipeOverride):
    """``segmentation.pretraining`` / ``segmentation.finetuning``."""

    #: overrides for the union sources, and for the single-set ones
    union: SegmentationRecipeOverride = None
    single: SegmentationRecipeOverride = None


def _distinct(values):
    if len(set(values)) != len(values):
        raise ValueError(f"must not repeat a value, got {values}")
    return values


class SegmentationFinetuningRecipe(SegmentationRecipe):
    """``segmentation.finetuning``: the recipe, and the seeds its ground truth is repeated over."""

    #: fine-tuning seeds (head init, batch order, augmentation; not the subsets, not the sources); each
    #: (source, target) is fine-tuned once per seed and the ground truth is the mean Dice over them. Default:
    #: ``[segmentation.seed]``, one run (the unit of the section's ``seed`` keeps its key)
    seeds: Annotated[list[StrictInt], Field(min_length=1), AfterValidator(_distinct)] = None


class SegmentationScoring(_Section):
    """``segmentation.scoring``: what the CC-FV scorer samples (scores checked by the scorer)."""

    max_images: Optional[PositiveInt]
    per_case: PositiveInt
    global_per_case: PositiveInt
    layers: list[StrictStr]
    min_per_class: PositiveInt = None
    batch_size: PositiveInt = None
    seed: StrictInt = None
    scores: list[StrictStr] = None


def _multiple_of_32(size):
    if size < 32 or size % 32:
        raise ValueError("must be a positive multiple of 32 (the U-Net downsamples 32x)")
    return size


class SegmentationSection(_Section):
    """``segmentation`` (optional, [S]): the leave-one-out U-Net bank and its scoring."""

    sets: Annotated[list[StrictStr], Field(min_length=1)]
    #: default: every set
    targets: list[StrictStr] = None
    #: default: random, imagenet, union and every set
    sources: list[StrictStr] = None
    image_size: Annotated[StrictInt, AfterValidator(_multiple_of_32)]
    seed: StrictInt = None
    model: SegmentationModel = None
    loss: SegmentationLoss = None
    augment: SegmentationAugment = None
    pretraining: SegmentationRecipe
    finetuning: SegmentationFinetuningRecipe
    #: read by the CC-FV scorer
    scoring: Optional[SegmentationScoring] = None
    #: the bank's pretraining and fine-tuning tasks run at once by the chapters (more than 1: on a local Ray
    #: cluster); each task keeps its own torch threads, so the tables are the same as one at a time
    side_by_side: PositiveInt = 1

    @model_validator(mode="after")
    def _consistent(self):
        bad = [t for t in (self.targets or []) if t not in self.sets]
        if bad:
            raise KeyProblem("targets", "every segmentation target must be among segmentation.sets", bad)
        bad = [s for s in (self.sources or []) if s not in SEGMENTATION_SPECIAL_SOURCES and s not in self.sets]
        if bad:
            raise KeyProblem("sources", f"segmentation sources must be {SEGMENTATION_SPECIAL_SOURCES} or among "
                                        "segmentation.sets", bad)
        if self.scoring is not None:
            n = len((self.model.decoder_channels if self.model is not None else None)
                    or [0] * SEGMENTATION_DECODER_BLOCKS)
            names = {f"dec{i}" for i in range(n)}
            bad = [layer for layer in self.scoring.layers if layer not in names]
            if bad or not self.scoring.layers:
                raise KeyProblem("scoring.layers", f"must be decoder blocks among {sorted(names)}", bad or [])
        return self


# ----------------------------------------------------------------------------------------------------------
# representations ([R], PROTOCOL.md section 8): the section's keys and defaults, [R]'s recipe and analysis

#: names of :data:`helpers.representations.INPUT_SCALES` (how images are scaled for a source)
INPUT_SCALE_NAMES = ("half", "imagenet", "unit", "caffe")
#: names of :data:`helpers.similarity.MEASURES`
SIMILARITY_MEASURES = ("cca", "svcca", "pwcca", "linear_cka", "linear_cka_debiased")
#: :data:`helpers.similarity.RESNET_LAYERS`: the ResNet stages compared by default
RESNET_LAYERS = ("relu", "layer1", "layer2", "layer3", "layer4")
#: permutation nulls (:data:`helpers.representations.NULLS`); ``true`` is ``images``, ``false`` is ``none``
SIMILARITY_NULLS = ("images", "positions", "none")
SIMILARITY_STIMULI = ("heldout", "test", "val", "train", "all")
MONITORS = ("val_loss", "val_auc", "val_acc")


class RepresentationsRecipe(_Section):
    """One phase of [R]'s recipe: ``finetune`` (the whole network) or ``freeze`` (the head first)."""

    optimizer: Literal["adam", "sgd"] = "adam"
    lr: PositiveNumber
    batch_size: PositiveInt
    epochs: PositiveInt
    patience: PositiveInt
    monitor: Literal[MONITORS]


def _phase(**defaults):
    """A recipe field whose keys left out take [R]'s value (a partial mapping is merged key by key)."""
    def fill(value):
        return {**defaults, **value} if isinstance(value, dict) else value

    return Annotated[RepresentationsRecipe, Field(default_factory=lambda: RepresentationsRecipe(**defaults)),
                     BeforeValidator(fill)]


class RepresentationsAugment(_Section):
    """``representations.augment``: [R]'s Keras-style augmentation (:mod:`helpers.transforms`)."""

    degrees: NonNegativeNumber = 10.0
    translate: Annotated[list[NonNegativeNumber], Field(min_length=2, max_length=2)] = [0.1, 0.1]
    scale: Annotated[list[PositiveNumber], Field(min_length=2, max_length=2)] = [0.9, 1.1]
    scale_mode: Literal["keras", "torchvision"] = "keras"
    shear: NonNegativeNumber = 0.1
    flip_p: NonNegativeNumber = 0.5
    #: outside the image: edge pixels repeated (Keras's ``nearest``) or zeros
    fill: Literal["nearest", "zeros"] = "nearest"


class RepresentationsSimilarity(_Section):
    """``representations.similarity``: which activations are compared, how, and against which null."""

    layers: Annotated[list[StrictStr], Field(min_length=1)] = list(RESNET_LAYERS)
    points: PositiveInt = 10_000
    channels: PositiveInt = 64
    repeats: PositiveInt = 5
    stimuli: Literal[SIMILARITY_STIMULI] = "heldout"
    max_stimulus_images: Optional[PositiveInt] = None
    seed: StrictInt = 0
    batch_size: PositiveInt = 128
    measures: Annotated[list[Literal[SIMILARITY_MEASURES]], Field(min_length=1)] = [
        "cca", "linear_cka", "linear_cka_debiased"]
    #: ``all`` pairs of networks, or ``r``: only those of [R]'s kinds
    pairs: Literal["all", "r"] = "all"
    #: the permutation null: whole images deranged within the cell, positions kept
    null: Union[StrictBool, Literal[SIMILARITY_NULLS]] = "images"
    #: control (this project's): each source's network with BatchNorm statistics re-estimated on the fold
    bn_control: StrictBool = True


class RepresentationsSection(_Section):
    """[R]'s recipe and analysis; a profile's ``representations`` section overrides any key (nested mappings key
    by key; an ``input_scale`` mapping replaces the default one)."""

    architecture: StrictStr = "resnet50"
    targets: Annotated[list[Flag], Field(min_length=1)] = ["breastmnist", "pneumoniamnist"]
    #: random init always runs beside these
    sources: list[StrictStr] = ["imagenet", "radimagenet"]
    #: sources that also run the freeze variant
    freeze_sources: list[StrictStr] = ["imagenet", "radimagenet"]
    #: two untrained networks: the floor; the first is also random init's start
    untrained_seeds: Annotated[list[StrictInt], Field(min_length=2, max_length=2)] = [1, 2]
    #: [R]'s random init is Keras's ResNet50(weights=None, classes=n): no dropout
    random_head: StrictStr = "linear"
    #: sources: Dropout(0.5) + Linear (softmax)
    head: StrictStr = "dropout_linear"
    #: head initialisation of the sources
    seed: StrictInt = 0
    #: MedMNIST file resolution (resolved to ``data.file_size`` when left out)
    file_size: Optional[Literal[SIZES]] = None
    #: model input side ([R]'s 224 when left out, whatever ``data.image_size`` says)
    image_size: Annotated[StrictInt, Field(ge=16)] = 224
    input_scale: dict[StrictStr, Literal[INPUT_SCALE_NAMES]] = {"default": "caffe", "imagenet": "imagenet"}
    #: a user-supplied RadImageNet ResNet-50 (data-use agreement)
    radimagenet_checkpoint: Optional[StrictStr] = None
    #: [R]: no horizontal flip for chest X-rays
    no_flip: list[StrictStr] = ["pneumoniamnist", "chestmnist"]
    n_folds: Annotated[StrictInt, Field(ge=2)] = 5
    #: which of the n_folds run
    folds: Annotated[list[StrictInt], Field(min_length=1)] = [1, 2, 3, 4, 5]
    #: [R]'s StratifiedKFold(random_state=2)
    fold_seed: StrictInt = 2
    #: of the training part, stratified: early stopping and checkpoint
    val_fraction: Annotated[Number, AfterValidator(_positive)] = 0.2
    max_train_images: Optional[PositiveInt] = None
    max_val_images: Optional[PositiveInt] = None
    max_test_images: Optional[PositiveInt] = None
    finetune: _phase(optimizer="adam", lr=1e-5, batch_size=128, epochs=200, patience=30, monitor="val_loss")
    freeze: _phase(optimizer="adam", lr=1e-3, batch_size=128, epochs=200, patience=10, monitor="val_acc")
    augment: RepresentationsAugment = RepresentationsAugment()
    similarity: RepresentationsSimilarity = RepresentationsSimilarity()

    @model_validator(mode="after")
    def _consistent(self):
        if "random" in self.sources:
            raise KeyProblem("sources", "must not list random (random init always runs)", self.sources)
        extra = [s for s in self.freeze_sources if s not in self.sources]
        if extra:
            raise KeyProblem("freeze_sources", f"must be among its sources {self.sources}", extra)
        if self.untrained_seeds[0] == self.untrained_seeds[1]:
            raise KeyProblem("untrained_seeds", "must be two different integers", self.untrained_seeds)
        if "default" not in self.input_scale:
            raise KeyProblem("input_scale", "must have a 'default' entry", self.input_scale)
        bad = [f for f in self.folds if not 1 <= f <= self.n_folds]
        if bad:
            raise KeyProblem("folds", f"must be integers in 1..{self.n_folds} (n_folds)", bad)
        return self


#: the representations section's defaults as a plain dict (what ``helpers.representations.DEFAULTS`` holds)
REPRESENTATIONS_DEFAULTS: dict = RepresentationsSection().model_dump()


# ----------------------------------------------------------------------------------------------------------
# the profile


class ProfileModel(_Section):
    """A whole profile; sections beside the required ones are optional."""

    name: StrictStr
    description: StrictStr = None
    data: DataSection
    sources: SourcesSection
    targets: list[Flag]
    pretraining: PretrainingSection
    finetuning: FinetuningSection
    scoring: Optional[ScoringSection] = None
    metrics: list[StrictStr]
    #: ``auto`` (cuda when present), or a torch device
    device: StrictStr
    segmentation: Optional[SegmentationSection] = None
    representations: Optional[RepresentationsSection] = None

    @model_validator(mode="after")
    def _targets_among_flags(self):
        bad = [t for t in self.targets if t not in self.data.flags]
        if bad:
            raise KeyProblem("targets", "every target must be among data.flags", bad)
        return self


#: sections returned with every key, defaults and resolved values included (none of them is copied whole into
#: a hashed unit config); the others come back with exactly the keys written
_FULL_SECTIONS = ("data", "sources", "finetuning", "scoring", "representations")


def _get(mapping, key):
    return mapping.get(key) if isinstance(mapping, Mapping) else None


#: what :func:`profile_image_size` resolves
IMAGE_SIZE_SECTIONS = ("data", "pretraining.single_dataset", "pretraining.union", "finetuning", "scoring",
                       "segmentation", "representations")


def profile_image_size(profile: Mapping, where: str):
    """The model input side of ``where``: ``data``, ``pretraining.single_dataset``, ``pretraining.union``,
    ``finetuning``, ``scoring``, ``segmentation`` or ``representations``. The one rule, which :func:`load_profile`
    resolves into each section (``profile[section]["image_size"]``) and which also serves profiles built as
    dicts: a section's own value, else

    * ``data``: ``data.file_size`` (the stored side, no resizing);
    * ``pretraining.<recipe>``: ``pretraining.image_size``, else ``data``'s (never written into the recipes:
      they are hashed whole);
    * ``finetuning``: ``data``'s; ``scoring``: ``finetuning``'s;
    * ``representations``: [R]'s 224 (:data:`REPRESENTATIONS_DEFAULTS`), whatever ``data`` says;
    * ``segmentation``: required (a multiple of 32).
    """
    if where not in IMAGE_SIZE_SECTIONS:  # a typo would otherwise fall through to data's size
        raise KeyError(f"no image_size for {where!r}; one of {IMAGE_SIZE_SECTIONS}")
    if where.startswith("pretraining."):
        pre = profile.get("pretraining") or {}
        own = _get(pre.get(where.split(".", 1)[1]), "image_size")
        if own is not None:
            return own
        return pre["image_size"] if pre.get("image_size") is not None else profile_image_size(profile, "data")
    own = _get(profile.get(where), "image_size")
    if own is not None:
        return own
    if where == "data":
        return profile["data"]["file_size"]
    if where == "finetuning":
        return profile_image_size(profile, "data")
    if where == "scoring":
        return profile_image_size(profile, "finetuning")
    if where == "representations":
        return REPRESENTATIONS_DEFAULTS["image_size"]
    raise KeyError(f"{where} has no image_size (it is required there)")


def resolve_profile(raw: Mapping, path: str | os.PathLike = "<profile>") -> dict:
    """Validate a profile mapping (as read from YAML) and return it resolved, as a plain dict: the keys left
    out of ``data``, ``sources``, ``finetuning``, ``scoring`` and ``representations`` filled with their defaults
    (``scoring`` added when absent); each section's ``image_size`` (:func:`profile_image_size`),
    ``finetuning.epochs_architectures``, ``scoring.max_images`` and ``representations.file_size`` resolved.
    Raises :class:`ProfileError`."""
    if not isinstance(raw, Mapping):
        raise ProfileError(f"{path}: a profile is a YAML mapping, got {type(raw).__name__}")
    raw = {k: v for k, v in raw.items() if k != "_path"}  # a loaded profile validates again
    try:
        model = ProfileModel.model_validate(raw)
    except ValidationError as err:
        raise ProfileError(format_errors(err, path)) from None
    out = model.model_dump(exclude_unset=True)
    for name in _FULL_SECTIONS:
        section = getattr(model, name)
        if section is not None or name == "scoring":
            out[name] = (section or ScoringSection()).model_dump()
    data, ft, sc = out["data"], out["finetuning"], out["scoring"]
    data["image_size"] = profile_image_size(out, "data")
    ft["image_size"] = profile_image_size(out, "finetuning")
    if ft["epochs_architectures"] is None:
        ft["epochs_architectures"] = ft["epochs"]
    sc["image_size"] = profile_image_size(out, "scoring")
    if model.scoring is None or "max_images" not in model.scoring.model_fields_set:
        sc["max_images"] = ft["max_train_images"]
    rep = out.get("representations")
    if rep is not None and rep["file_size"] is None:
        rep["file_size"] = data["file_size"]
    return _in_written_order(out, raw)


def _in_written_order(value, written):
    """``value`` with every mapping's keys in the order the profile file wrote them (the keys it did not write,
    defaults and resolved values, after them): pydantic dumps in the schema's field order, while the sections
    copied into unit configs are flattened into the result tables' columns in their own order."""
    if not isinstance(value, dict) or not isinstance(written, Mapping):
        return value
    order = [k for k in written if k in value] + [k for k in value if k not in written]
    return {k: _in_written_order(value[k], written.get(k)) for k in order}


def load_profile(name_or_path: str | os.PathLike) -> dict:
    """Read, validate and resolve a profile by name (``quick``, ``paper``) or by path to a YAML file
    (:func:`resolve_profile`); ``_path`` holds the file read."""
    path = Path(name_or_path)
    if path.suffix not in (".yml", ".yaml"):
        path = PROFILES_DIR / f"{name_or_path}.yml"
    if not path.is_file():
        raise ProfileError(f"profile {str(name_or_path)!r} not found (looked for {path}); "
                           f"known profiles: {', '.join(list_profiles())}")
    with open(path) as fh:
        try:
            raw = yaml.safe_load(fh)
        except yaml.YAMLError as err:
            raise ProfileError(f"{path}: not valid YAML: {err}") from None
    profile = resolve_profile(raw, path)
    profile["_path"] = str(path)
    return profile


def validate_representations_section(rep, path) -> None:
    """Check a profile's ``representations`` section alone (:class:`RepresentationsSection`)."""
    try:
        RepresentationsSection.model_validate(rep)
    except ValidationError as err:
        raise ProfileError(format_errors(err, path, ("representations",), RepresentationsSection)) from None


# ----------------------------------------------------------------------------------------------------------
# error messages


def _dotted(loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(loc, cls: type[BaseModel]) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc`` below ``cls`` (for the list of its known keys)."""
    for part in loc:
        if isinstance(part, int) or cls is None or part not in cls.model_fields:
            return None
        ann = cls.model_fields[part].annotation
        cls = next((a for a in (ann, *typing.get_args(ann)) if isinstance(a, type) and issubclass(a, BaseModel)),
                   None)
    return cls


def format_errors(err: ValidationError, path, prefix: tuple = (), model: type[BaseModel] = ProfileModel) -> str:
    """One readable message for every problem pydantic found in a profile (``model``, at ``prefix`` in the
    profile): ``file: section.key: what was expected (got value)``, unknown keys grouped per mapping with the
    keys it knows."""
    lines, unknown = [], {}
    for e in err.errors():
        loc = prefix + tuple(e["loc"])
        if e["type"] == "extra_forbidden":
            unknown.setdefault(loc[:-1], []).append(loc[-1])
            continue
        where = _dotted(loc) or "profile"
        if e["type"] == "missing":
            lines.append(f"{where}: required key missing")
            continue
        msg, value = e["msg"].removeprefix("Value error, "), e.get("input")
        msg = re.sub(r" or instance of \w+$", "", msg)  # "a valid dictionary": the class name means nothing here
        problem = (e.get("ctx") or {}).get("error")
        if isinstance(problem, KeyProblem):  # a check across a section's keys: name the key it is about
            where = _dotted(loc + tuple(problem.key.split("."))) if loc else problem.key
            value = problem.value
        if not isinstance(value, Mapping):
            shown = repr(value)
            msg += f" (got {shown if len(shown) <= 80 else shown[:77] + '...'})"
        lines.append(f"{where}: {msg}")
    for parent, keys in unknown.items():
        cls = _model_at(parent[len(prefix):], model)
        known = f" (known: {', '.join(sorted(cls.model_fields))})" if cls is not None else ""
        lines.append(f"{_dotted(parent) or 'profile'}: unknown keys {keys}{known}")
    return f"{path}: invalid profile\n  " + "\n  ".join(lines)


# ----------------------------------------------------------------------------------------------------------
# reading a loaded profile


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
