"""Source kinds in one registry: what a source name means, how its network is built, where its weights come
from and which metrics apply (after timm's ``register_model`` and pretrained-config pattern).

A *source* is named by a string (PROTOCOL.md section 3). Its *kind* is the first registered kind, in
registration order, whose :meth:`SourceKind.matches` accepts the name; the kind then answers everything that
used to be decided by comparing the name with ``"random"``, ``"imagenet"``... in several modules:

* :meth:`SourceKind.weights`: where the weights come from, as a *spec*: a named weight set (``"random"``,
  ``"imagenet"``) or a checkpoint path; :class:`helpers.models.SourceUnavailable` (with the reason) when they
  cannot be had here;
* :meth:`SourceKind.unit_name` / :attr:`SourceKind.made_by`: the unit that trains the source (a pretraining
  unit, a unit of the segmentation bank, or nothing: named weights and files given by the user);
* :meth:`SourceKind.planned`: the source's key in unit configs, decided from the profile alone;
* :meth:`SourceKind.build`: the network with its own head (:func:`helpers.models.load_source` of the spec);
* :attr:`SourceKind.source_head` and :attr:`SourceKind.normalization`: which metrics apply (LEEP and NCE read
  the logits of a source head of its own; ``None``: the checkpoint decides, :func:`helpers.models.has_source_head`)
  and the input normalisation its weights expect.

Three domains, each its own table:

``classification`` (the dataset scenario: pretraining, fine-tuning, scoring, representations)
    ``random``, ``imagenet``, ``radimagenet`` (a configured checkpoint), ``segmentation_encoder``
    (``seg_<set>``, ``seg_union``: an encoder of the segmentation bank), ``checkpoint`` (a file named
    directly) and ``trained`` (any other name: a source trained here, ``medmnist_union`` meaning the target's
    leave-target-out union). Registered here.
``segmentation`` (the segmentation bank)
    ``random``, ``imagenet``, ``union``, ``set``: registered by :mod:`helpers.segmentation.training`, which
    knows the bank's profile section.
``candidate`` (the models :mod:`helpers.rank` ranks)
    ``torchvision``, ``checkpoint``, ``source``, ``hf``, ``timm``: registered by :mod:`helpers.rank.candidates`,
    which parses a candidate string into a :class:`helpers.rank.candidates.Candidate` first; a kind there
    matches a parsed candidate and builds it (torchvision's weights API, a checkpoint, the Hugging Face hub,
    timm).

Library layer: imports :mod:`helpers.models` and :mod:`helpers.runner` (unit keys), never a stage.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch.nn as nn

from . import models as M
from .runner import config_key

CLASSIFICATION = "classification"
SEGMENTATION = "segmentation"
CANDIDATE = "candidate"

#: where the pretraining stage writes the classification sources, and the segmentation bank its U-Nets
SOURCES_DIRNAME = "sources"
SEGMENTATION_SOURCES_DIRNAME = "segmentation_sources"
#: suffixes of a checkpoint file named directly as a source
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors")
#: classification sources that are encoders of the segmentation bank: ``seg_<set>`` (the U-Net pre-trained on
#: one segmentation set) and ``seg_union`` (on the union of every set), made by the segmentation stage
SEG_PREFIX = "seg_"
SEG_UNION = "seg_union"
SEG_UNION_UNIT = "union_all"
#: the leave-target-out union of MedMNIST flags, one per target
MEDMNIST_UNION = "medmnist_union"


def sources_dir(results_dir) -> Path:
    """``<results>/sources``: the classification sources trained here."""
    return Path(results_dir) / SOURCES_DIRNAME


def segmentation_sources_dir(results_dir) -> Path:
    """``<results>/segmentation_sources``: the U-Nets of the segmentation bank."""
    return Path(results_dir) / SEGMENTATION_SOURCES_DIRNAME


def union_name(target: str) -> str:
    """The name of ``target``'s leave-target-out MedMNIST union source."""
    return f"{MEDMNIST_UNION}__{target}"


def trained_name(source: str, target: str | None) -> str:
    """The name a classification source is trained under: ``medmnist_union`` is the target's union."""
    return union_name(target) if source == MEDMNIST_UNION else source


def is_segmentation_source(source) -> bool:
    """A classification source that is an encoder of the segmentation bank (``seg_<set>``, ``seg_union``)."""
    return isinstance(source, str) and source.startswith(SEG_PREFIX)


def segmentation_unit_name(source: str) -> str:
    """The segmentation pretraining unit whose encoder is ``source`` (``seg_busi`` -> ``busi``)."""
    return SEG_UNION_UNIT if source == SEG_UNION else source[len(SEG_PREFIX):]


def radimagenet_path(profile: dict) -> str | None:
    """The RadImageNet checkpoint the profile or ``$RADIMAGENET_CHECKPOINT`` configures (None: none)."""
    return profile["sources"].get("radimagenet_checkpoint") or os.environ.get("RADIMAGENET_CHECKPOINT")


_IMAGENET_CHECKED: dict = {}


def check_imagenet(arch: str = "resnet18") -> None:
    """Raise :class:`models.SourceUnavailable` when ``arch``'s ImageNet weights cannot be loaded here (the
    answer is remembered for the process, so an offline machine is asked once)."""
    if arch not in _IMAGENET_CHECKED:
        try:
            M.load_source("imagenet", arch)
            _IMAGENET_CHECKED[arch] = None
        except M.SourceUnavailable as exc:
            _IMAGENET_CHECKED[arch] = exc
    if _IMAGENET_CHECKED[arch] is not None:
        raise _IMAGENET_CHECKED[arch]


# ----------------------------------------------------------------------------------------------------------
# the registry


@dataclass(frozen=True)
class SourceContext:
    """What resolving a source may look at: the profile, the target it is a source for, the results folder
    and, for :meth:`SourceKind.planned`, the units planned (``configs``: the pretraining stage's;
    ``segmentation_units``: a callable giving the segmentation bank's, which raises ``ValueError`` when the
    profile has no bank)."""

    profile: dict
    target: str | None = None
    results_dir: Path | str | None = None
    configs: list = field(default_factory=list)
    segmentation_units: Callable[[], list] | None = None


class SourceKind:
    """One kind of source (module docstring). Subclasses registered with :func:`register_source_kind`
    override :meth:`matches` and :meth:`weights` and whatever else differs from these defaults (a source
    trained by a pretraining unit under its own name, with a head of its own and 0.5/0.5 inputs)."""

    #: set by :func:`register_source_kind`
    name: str = ""
    domain: str = CLASSIFICATION
    #: which stage's units train it: ``"pretraining"``, ``"segmentation"``, or None (nothing here does)
    made_by: str | None = "pretraining"
    #: the source model has a head of its own whose logits LEEP and NCE may read (random: an untrained head,
    #: as in [D]); None: the checkpoint decides (:func:`helpers.models.has_source_head`)
    source_head: bool | None = True
    #: ``"imagenet"`` (ImageNet mean/std) or ``"half"`` (0.5/0.5), PROTOCOL.md section 4
    normalization: str = "half"
    #: the weights are a checkpoint file (not a named weight set such as ``random``)
    checkpoint: bool = True

    def matches(self, source) -> bool:
        raise NotImplementedError(f"source kind {self.name!r} does not say which names it matches")

    def weights(self, source: str, ctx: SourceContext) -> str:
        """``"random"``, ``"imagenet"`` or a checkpoint path; :class:`models.SourceUnavailable` with the reason
        when the weights cannot be had here."""
        raise NotImplementedError(f"source kind {self.name!r} does not say where its weights come from")

    def unit_name(self, source: str, target: str | None) -> str:
        """The name of the unit that trains ``source`` for ``target``."""
        return trained_name(source, target)

    def planned(self, source: str, ctx: SourceContext) -> tuple[str | None, str | None]:
        """``(source_key, reason)`` from the profile alone: the key of the unit that makes the source (None for
        named weights, the path of a configured or named file), or the reason nothing here can make it."""
        raise NotImplementedError(f"source kind {self.name!r} does not say what makes it")

    def build(self, spec: str, arch: str = "resnet18") -> nn.Module:
        """The network of a resolved ``spec`` (:meth:`weights`) with its own head."""
        return M.load_source(spec, arch)

    def __repr__(self) -> str:
        return f"<source kind {self.domain}:{self.name}>"


#: domain -> kind name -> kind, in registration order (the first kind that matches a name wins)
_KINDS: dict[str, dict[str, SourceKind]] = {CLASSIFICATION: {}, SEGMENTATION: {}, CANDIDATE: {}}


def register_source_kind(name: str, domain: str = CLASSIFICATION):
    """Class decorator: register an instance of a :class:`SourceKind` subclass as ``name`` of ``domain``.
    Kinds are tried in registration order; registering a name again replaces the kind in its place."""
    if domain not in _KINDS:
        raise ValueError(f"unknown source domain {domain!r}; expected one of {sorted(_KINDS)}")

    def register(cls):
        kind = cls()
        kind.name, kind.domain = name, domain
        _KINDS[domain][name] = kind
        return cls

    return register


def source_kinds(domain: str = CLASSIFICATION) -> dict[str, SourceKind]:
    """The registered kinds of ``domain``, in the order they are tried."""
    return dict(_KINDS[domain])


def source_kind(source, domain: str = CLASSIFICATION) -> SourceKind:
    """The kind of a source name: the first registered kind of ``domain`` that matches it."""
    for kind in _KINDS[domain].values():
        if kind.matches(source):
            return kind
    raise ValueError(f"no {domain} source kind matches the source {source!r} (kinds: "
                     f"{', '.join(_KINDS[domain])})")


# ----------------------------------------------------------------------------------------------------------
# classification sources


def resolve_source(profile: dict, source: str, target: str | None, results_dir) -> str:
    """``random``, ``imagenet`` or a checkpoint path for a source name; :class:`models.SourceUnavailable`
    when it cannot be had here (with the reason)."""
    return source_kind(source).weights(source, SourceContext(profile, target, results_dir))


def source_plan(profile: dict, source: str, target: str, configs: list[dict],
                segmentation_units: Callable[[], list] | None = None) -> tuple[str | None, str | None]:
    """``(source_key, reason)``, decided without touching any output (:meth:`SourceKind.planned`)."""
    ctx = SourceContext(profile, target, None, configs, segmentation_units)
    return source_kind(source).planned(source, ctx)


def _unit_key(configs, name: str) -> str | None:
    """The key of the unit named ``name`` among ``configs`` (None: none is)."""
    unit = next((c for c in configs if c["name"] == name), None)
    return None if unit is None else config_key(unit)


@register_source_kind("random")
class RandomInit(SourceKind):
    """Random initialisation, a baseline (its head is untrained, as in [D])."""

    made_by, checkpoint = None, False

    def matches(self, source) -> bool:
        return source == "random"

    def weights(self, source, ctx):
        return "random"

    def planned(self, source, ctx):
        return None, None


@register_source_kind("imagenet")
class ImageNet(SourceKind):
    """torchvision's ImageNet weights of the profile's pretraining architecture (``IMAGENET1K_V1``)."""

    made_by, checkpoint, normalization = None, False, "imagenet"

    def matches(self, source) -> bool:
        return source == "imagenet"

    def weights(self, source, ctx):
        check_imagenet(ctx.profile["pretraining"].get("architecture", "resnet18"))
        return "imagenet"

    def planned(self, source, ctx):
        return None, None


_RADIMAGENET_UNCONFIGURED = ("no checkpoint configured (RadImageNet needs a data-use agreement): set "
                             "sources.radimagenet_checkpoint or $RADIMAGENET_CHECKPOINT")


@register_source_kind("radimagenet")
class RadImageNet(SourceKind):
    """A RadImageNet checkpoint the profile or the environment configures (:func:`radimagenet_path`)."""

    made_by, source_head = None, None

    def matches(self, source) -> bool:
        return source == "radimagenet"

    def weights(self, source, ctx):
        path = radimagenet_path(ctx.profile)
        if not path:
            raise M.SourceUnavailable("radimagenet", _RADIMAGENET_UNCONFIGURED)
        if not Path(path).is_file():
            raise M.SourceUnavailable("radimagenet", f"checkpoint {path} does not exist")
        return str(path)

    def planned(self, source, ctx):
        path = radimagenet_path(ctx.profile)
        return (str(path), None) if path else (None, _RADIMAGENET_UNCONFIGURED)


@register_source_kind("segmentation_encoder")
class SegmentationEncoder(SourceKind):
    """The ResNet encoder of a U-Net of the segmentation bank, as a classifier without a source head
    (:func:`helpers.models.classifier_from_unet`: LEEP and NCE do not apply)."""

    made_by, source_head = "segmentation", False

    def matches(self, source) -> bool:
        return is_segmentation_source(source)

    def unit_name(self, source, target):
        return segmentation_unit_name(source)

    def weights(self, source, ctx):
        path = segmentation_sources_dir(ctx.results_dir) / f"{segmentation_unit_name(source)}.safetensors"
        if not path.is_file():
            raise M.SourceUnavailable(source, f"no segmentation encoder {path}: run the segmentation stage's "
                                      "pretraining first")
        return str(path)

    def planned(self, source, ctx):
        name = segmentation_unit_name(source)
        try:
            units = ctx.segmentation_units() if ctx.segmentation_units is not None else []
        except ValueError as exc:  # no segmentation section
            return None, f"{source} is a segmentation encoder, but the profile has no segmentation bank ({exc})"
        key = _unit_key(units, name)
        if key is None:
            return None, f"the segmentation bank of this profile makes no source {name!r} (for {source})"
        return key, None


def _trained_weights(source: str, ctx: SourceContext) -> str:
    """The checkpoint a pretraining unit wrote for ``source`` (a file named directly where none was)."""
    name = trained_name(source, ctx.target)
    path = sources_dir(ctx.results_dir) / f"{name}.safetensors"
    if not path.is_file():
        if Path(source).suffix in CHECKPOINT_SUFFIXES and Path(source).is_file():
            return str(source)
        raise M.SourceUnavailable(source, f"no trained checkpoint {path}: run the Pretraining chapter first")
    return str(path)


@register_source_kind("checkpoint")
class CheckpointFile(SourceKind):
    """A checkpoint file named directly (``.pt``, ``.pth``, ``.safetensors``; a trained source of the same
    name wins); whether its head counts is the file's to say."""

    made_by, source_head = None, None

    def matches(self, source) -> bool:
        return isinstance(source, (str, os.PathLike)) and Path(source).suffix in CHECKPOINT_SUFFIXES

    def weights(self, source, ctx):
        return _trained_weights(source, ctx)

    def planned(self, source, ctx):
        key = _unit_key(ctx.configs, trained_name(source, ctx.target))
        return (key, None) if key is not None else (str(source), None)


@register_source_kind("trained")
class TrainedSource(SourceKind):
    """A source trained here by the pretraining stage (a MedMNIST flag, ``medmnist_union``): every other name."""

    def matches(self, source) -> bool:
        return True

    def weights(self, source, ctx):
        return _trained_weights(source, ctx)

    def planned(self, source, ctx):
        name = trained_name(source, ctx.target)
        key = _unit_key(ctx.configs, name)
        if key is not None:
            return key, None
        return None, (f"no pretraining unit makes {name} here (its flag is not in the data root or not in the "
                      f"profile): no trained checkpoint {Path(SOURCES_DIRNAME) / (name + '.safetensors')}")
