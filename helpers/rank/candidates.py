"""Candidate models for :mod:`helpers.rank`: what a candidate string names, how it is loaded, how it sees images.

A candidate is written ``SPEC[@SIZE]``; ``@SIZE`` overrides its input size (pixels, square). ``SPEC`` is one of

``ARCH`` or ``ARCH:imagenet``
    a torchvision classification architecture (any of ``torchvision.models.list_models(module=
    torchvision.models)``) with its default ImageNet weights (``get_model_weights(ARCH).DEFAULT``) through
    torchvision's weights API; ``ARCH:IMAGENET1K_V2`` (any member of the weights enum) picks other weights.
    Offline, where the weights are neither in torch's hub cache nor downloadable (20 s socket timeout), the
    candidate is ``unavailable`` with the reason and where to put the file.
``ARCH:random``
    random initialisation (``torch.manual_seed(seed)`` first), a baseline.
``imagenet``
    the book's name for its ImageNet source: torchvision's ResNet-18 ``IMAGENET1K_V1``.
``ARCH:PATH``, ``PATH`` or ``radimagenet:PATH``
    a checkpoint: ``.safetensors``, or ``.pt`` / ``.pth`` / ``.bin`` / ``.ckpt`` read with
    ``torch.load(weights_only=True)`` (never unpickling code; :func:`helpers.models.read_state_dict`), with its
    own head. Lightning (``state_dict`` key, ``model.`` prefix), DDP (``module.``) and ``torch.compile``
    (``_orig_mod.``) layouts are unwrapped. The architecture comes from a JSON sidecar (``PATH`` with suffix
    ``.json``, as :func:`helpers.models.save_checkpoint` writes), from ``ARCH``, else from the tensors
    themselves (:func:`infer_arch`: the one architecture of :data:`INFER_ARCHS` whose names and shapes they
    have). A checkpoint that does not fit is an ``error`` row; so is a whole pickled model (refused with the
    fix: save ``state_dict()``), a corrupt file (called corrupt) and an unsafe one (naming what it would
    import). A Keras ``.h5`` (RadImageNet's published ``RadImageNet-ResNet50_notop.h5``) is converted exactly
    to torchvision's ResNet-50 with v1 strides by :mod:`helpers.rank.keras` (input RGB / 255, RadImageNet's
    recipe); any other Keras model is refused with the reason.
``timm:NAME`` or ``timm:NAME:random``
    a `timm <https://github.com/huggingface/pytorch-image-models>`_ model (pretrained weights from the
    Hugging Face hub, or random init), when the optional ``timm`` package is installed (``pip install
    .[timm]``); without it the candidate is ``unavailable`` and says so. A timm backbone without classifier
    (``num_classes=0``, e.g. timm's DINOv2) is wrapped so that its pooled features are the representation.
``hf:ORG/NAME[@REVISION]``, ``hf:PATH``, ``timm:hf-hub:ORG/NAME``, ``timm:local-dir:PATH``
    a foundation model from the Hugging Face hub or a folder in the hub's layout (transformers, timm, or an
    open_clip timm tower such as BiomedCLIP's): :mod:`helpers.rank.hub` (no repository code runs; safetensors
    preferred; the model's declared preprocessing; ``pip install .[hub]``).
a trained source of this project by name (``seg_<set>`` / ``seg_union``: an encoder of the segmentation bank)
    ``breastmnist``, ``medmnist_union__retinamnist``...: ``results/<profile>/sources/<name>.safetensors``,
    written by the Pretraining chapter.

Input convention per candidate (:func:`preprocessing`): ImageNet weights get ImageNet mean/std and the crop
size of the weights' own transforms (224 for most torchvision models, 384 for efficientnet_v2_s; timm: its
``pretrained_cfg``); hub models what they declare (:func:`helpers.rank.hub.declared_preprocessing`; the
declared interpolation and crop are reported by :func:`declared_preprocessing`, the target images are resized
square, bilinear); everything else 0.5/0.5 (PROTOCOL.md section 4) and the size recorded in the checkpoint
sidecar (``image_size``; the project's sources say the size they were trained at), else 224. A sidecar may
also carry ``mean`` and ``std``. ``@SIZE`` or ``image_size=`` of :func:`helpers.rank.rank_models` override
the size.

How each kind of parsed candidate (``torchvision``, ``checkpoint``, ``source``, ``hf``, ``timm``) is built, and
whether it has a source head, is its entry in the registry of :mod:`helpers.sources` (domain ``candidate``,
registered below); :func:`build_model` looks it up.

Names that mean nothing (an unknown architecture, a source name that is neither trained here nor a
MedMNIST-source pattern) raise :class:`CandidateError` with the closest names before any work starts; a
well-formed candidate that cannot be had here becomes ``unavailable`` or ``error`` rows instead.

FU's two layers: the pair of :data:`helpers.models.ARCHITECTURES` for the registered architectures, else the
first two ``Conv2d`` modules in registration order (for torchvision's and timm's CNNs the order of the
forward pass: the stem and the first convolution after it). A model with fewer than two convolutions (a
vision transformer) gets FU ``skipped``.

An input smaller than the architecture allows is an :class:`helpers.models.InputSizeError` naming the size, the
architecture and the smallest size that runs (:func:`helpers.models.guard_input_size`), as an ``error`` row.
"""
from __future__ import annotations

import difflib
import json
import re
import socket
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .. import models as M
from ..data import HALF_MEAN, HALF_STD, IMAGENET_MEAN, IMAGENET_STD, MEDMNIST_2D_FLAGS
from ..runner import file_hash
from ..sources import (CANDIDATE, SEGMENTATION_SOURCES_DIRNAME, SourceKind, is_segmentation_source,
                       register_source_kind, segmentation_unit_name, source_kind)
from . import hub as H
from . import keras as K
from .targets import RankInputError

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt", ".h5", ".hdf5")
#: the architecture of the book's ``imagenet`` source ([D]'s protocol, helpers.models.load_source's default)
BOOK_ARCH = "resnet18"
#: architectures a checkpoint without sidecar or ARCH is matched against (by its tensor names and shapes)
INFER_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "densenet121", "densenet169",
               "efficientnet_v2_s", "mobilenet_v3_small", "convnext_tiny", "vgg11")
DEFAULT_SIZE = 224
DOWNLOAD_TIMEOUT_S = 20
_AUX_OFF = {"googlenet": {"aux_logits": False, "init_weights": True},
            "inception_v3": {"aux_logits": False, "init_weights": True}}


class CandidateError(RankInputError):
    """A candidate string that names nothing: the message names the value and suggests close names."""


@dataclass(frozen=True)
class Candidate:
    """A parsed candidate. ``kind``: ``torchvision``, ``checkpoint``, ``source`` (a project source by name)
    or ``timm``; ``arch``: torchvision architecture or timm model name (None: from the sidecar);
    ``weights``: ``random``, a torchvision weights enum member name, ``pretrained`` (timm) or the checkpoint
    path; ``image_size``: the ``@SIZE`` override."""

    spec: str
    kind: str
    arch: str | None
    weights: str
    image_size: int | None = None

    @property
    def name(self) -> str:
        """A short label: the spec, with a checkpoint path cut to its file name."""
        if self.kind == "checkpoint":
            short = Path(self.weights).name
            label = f"{self.arch}:{short}" if self.arch else short
            return label + (f"@{self.image_size}" if self.image_size else "")
        return self.spec

    @property
    def path(self) -> Path | None:
        return Path(self.weights) if self.kind in ("checkpoint", "source") else None


def torchvision_architectures() -> list[str]:
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def project_sources(sources_dir) -> list[str]:
    """Names of the trained sources under ``sources_dir`` (``<name>.safetensors``)."""
    if sources_dir is None or not Path(sources_dir).is_dir():
        return []
    return sorted(p.stem for p in Path(sources_dir).glob("*.safetensors"))


def _source_pattern(name: str) -> bool:
    """A name the Pretraining stage writes: a MedMNIST flag or ``medmnist_union__<flag>``."""
    return name in MEDMNIST_2D_FLAGS or (name.startswith("medmnist_union__")
                                          and name.split("__", 1)[1] in MEDMNIST_2D_FLAGS)


def _suggest(value: str, names) -> str:
    close = difflib.get_close_matches(value.lower(), list(names), n=4, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else ""


def parse_candidate(spec: str, sources_dir=None) -> Candidate:
    """A :class:`Candidate` from its string (module docstring); :class:`CandidateError` for names that mean
    nothing, with the closest architecture or source names."""
    text = str(spec).strip()
    if not text:
        raise CandidateError("empty candidate name")
    size = None
    m = re.fullmatch(r"(.+)@(\d+)", text)
    if m:
        text, size = m.group(1), int(m.group(2))
        if size < 8:
            raise CandidateError(f"candidate {spec!r}: input size @{size} is too small (at least 8)")
    archs = torchvision_architectures()
    if text.startswith("hf:"):
        ref = text[3:].strip()
        if not ref:
            raise CandidateError(f"candidate {spec!r}: write hf:ORG/NAME[@REVISION] or hf:PATH (a folder)")
        if not H.is_local_ref(ref) and not re.fullmatch(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+(@[\w.\-/]+)?", ref):
            raise CandidateError(f"candidate {spec!r}: {ref!r} is neither a hub id ORG/NAME nor a folder")
        return Candidate(spec, "hf", _hub_ref(ref), "pretrained", size)
    if text.startswith("timm:"):
        rest = text[5:]
        if rest.startswith(("hf-hub:", "hf_hub:", "local-dir:")):
            source, _, ref = rest.partition(":")
            if not ref:
                raise CandidateError(f"candidate {spec!r}: write timm:hf-hub:ORG/NAME or timm:local-dir:PATH")
            source = source.replace("_", "-")
            return Candidate(spec, "timm", f"{source}:{_hub_ref(ref) if source == 'local-dir' else ref}",
                             "pretrained", size)
        name, _, mode = rest.partition(":")
        if not name or mode not in ("", "random", "pretrained"):
            raise CandidateError(f"candidate {spec!r}: write timm:NAME, timm:NAME:random, timm:hf-hub:ORG/NAME "
                                 "or timm:local-dir:PATH")
        return Candidate(spec, "timm", name, "random" if mode == "random" else "pretrained", size)
    if text == "imagenet":  # the book's name: torchvision's ImageNet ResNet-18 (PROTOCOL.md section 3)
        return Candidate(spec, "torchvision", BOOK_ARCH, M.ARCHITECTURES[BOOK_ARCH].weights, size)
    if text.startswith("radimagenet:"):  # the book's name: a RadImageNet checkpoint (data-use agreement)
        ref = text[len("radimagenet:"):].strip()
        if not ref:
            raise CandidateError(f"candidate {spec!r}: write radimagenet:PATH (a RadImageNet checkpoint file)")
        return Candidate(spec, "checkpoint", None, str(Path(ref).expanduser()), size)
    head, sep, rest = text.partition(":")
    looks_like_path = "/" in text or "\\" in text or Path(text).suffix.lower() in CHECKPOINT_SUFFIXES
    if sep and head in archs:
        if rest in ("", "imagenet"):
            return Candidate(spec, "torchvision", head, _default_weights(head), size)
        if rest == "random":
            return Candidate(spec, "torchvision", head, "random", size)
        if re.fullmatch(r"[A-Z0-9_]+", rest):
            members = _weight_members(head)
            if rest not in members:
                raise CandidateError(f"candidate {spec!r}: {head} has no weights {rest!r} (it has "
                                     f"{', '.join(members) or 'none'})")
            return Candidate(spec, "torchvision", head, rest, size)
        return Candidate(spec, "checkpoint", head, str(Path(rest).expanduser()), size)
    if sep and not looks_like_path and re.fullmatch(r"[A-Za-z0-9_.\-]+", head):
        raise CandidateError(f"candidate {spec!r}: unknown torchvision architecture {head!r}"
                             f"{_suggest(head, archs)} (any of torchvision.models.list_models(); "
                             "timm models as timm:NAME)")
    if looks_like_path or Path(text).expanduser().is_file():
        return Candidate(spec, "checkpoint", None, str(Path(text).expanduser()), size)
    if text in archs:
        return Candidate(spec, "torchvision", text, _default_weights(text), size)
    sources = project_sources(sources_dir)
    if is_segmentation_source(text):  # an encoder of the segmentation bank (results/<profile>/segmentation_sources)
        folder = (Path(sources_dir).parent / SEGMENTATION_SOURCES_DIRNAME if sources_dir is not None
                  else Path(SEGMENTATION_SOURCES_DIRNAME))
        return Candidate(spec, "source", None, str(folder / f"{segmentation_unit_name(text)}.safetensors"), size)
    if text in sources or _source_pattern(text):
        path = Path(sources_dir or ".") / f"{text}.safetensors"
        return Candidate(spec, "source", None, str(path), size)
    raise CandidateError(f"candidate {spec!r} is neither a torchvision architecture, a checkpoint file, a timm "
                         f"model (timm:NAME) nor a trained source in {sources_dir}"
                         f"{_suggest(text, archs + sources)}")


def _hub_ref(ref: str) -> str:
    """A hub reference as given, a local folder made absolute (the candidate names the same folder from anywhere)."""
    return str(Path(ref).expanduser().resolve()) if H.is_local_ref(ref) else ref


def parse_candidates(specs, sources_dir=None) -> list[Candidate]:
    """Parse a list (or a comma-separated string) of candidates; duplicates are an error."""
    if isinstance(specs, str):
        specs = [s for s in specs.split(",") if s.strip()]
    specs = [str(s).strip() for s in specs]
    if not specs:
        raise CandidateError("no candidates given")
    dup = sorted({s for s in specs if specs.count(s) > 1})
    if dup:
        raise CandidateError(f"candidates listed twice: {dup}")
    return [parse_candidate(s, sources_dir) for s in specs]


def _weight_members(arch: str) -> list[str]:
    import torchvision.models as tvm

    try:
        return [w.name for w in tvm.get_model_weights(arch)]
    except (ValueError, KeyError):
        return []


def _default_weights(arch: str) -> str:
    import torchvision.models as tvm

    try:
        return tvm.get_model_weights(arch).DEFAULT.name
    except (ValueError, KeyError, AttributeError):
        raise CandidateError(f"torchvision architecture {arch!r} has no ImageNet weights; use {arch}:random")


def _weights(arch: str, member: str):
    import torchvision.models as tvm

    return tvm.get_model_weights(arch)[member]


def sidecar(path) -> dict:
    """The JSON sidecar of a checkpoint (``{}`` when there is none)."""
    side = Path(path).with_suffix(".json")
    if not side.is_file():
        return {}
    try:
        return json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"sidecar {side} is not valid JSON ({exc})") from exc


def is_keras(c: Candidate) -> bool:
    """A Keras ``.h5`` checkpoint candidate (converted by :mod:`helpers.rank.keras`)."""
    return c.kind in ("checkpoint", "source") and c.path.suffix.lower() in M.KERAS_SUFFIXES


def resolved_arch(c: Candidate) -> str:
    """The torchvision architecture of a checkpoint candidate (sidecar, else the given one, else inferred from
    its tensors; a Keras ``.h5``: ResNet-50, the one Keras model converted)."""
    if is_keras(c):
        if c.arch not in (None, "resnet50"):
            raise ValueError(f"{c.path}: a Keras .h5 is converted only as a ResNet-50 (helpers.rank.keras), "
                             f"not as {c.arch}")
        return "resnet50"
    meta = sidecar(c.path)
    side = meta.get("architecture")
    if str(meta.get("format", "")).startswith("helpers.segmentation"):
        side = meta.get("encoder")  # a segmentation U-Net: its encoder is the classifier (models.classifier_from_unet)
    if side and c.arch and side != c.arch:
        raise ValueError(f"{c.path}: its sidecar says {side!r} but the candidate names {c.arch!r}")
    arch = side or c.arch
    if not arch:
        arch = infer_arch(M.read_state_dict(c.path))
    if not arch:
        raise ValueError(f"{c.path}: no sidecar names its architecture and its tensors match none of "
                         f"{', '.join(INFER_ARCHS)}; write the candidate as ARCH:{c.weights}")
    if arch not in torchvision_architectures():
        raise ValueError(f"{c.path}: architecture {arch!r} is not a torchvision classification model"
                         f"{_suggest(arch, torchvision_architectures())}")
    return arch


_ARCH_KEYS: dict = {}


def _arch_keys(arch: str) -> dict:
    """Tensor names and shapes of a torchvision architecture, without its head (built on the meta device)."""
    if arch not in _ARCH_KEYS:
        import torchvision.models as tvm

        with torch.device("meta"):
            model = tvm.get_model(arch, weights=None, **_AUX_OFF.get(arch, {}))
        model.arch_name = arch
        head = M.head_path(model)
        _ARCH_KEYS[arch] = {k: tuple(v.shape) for k, v in model.state_dict().items()
                            if not k.startswith(head + ".") and not k.endswith("num_batches_tracked")}
    return _ARCH_KEYS[arch]


def infer_arch(state: dict) -> str | None:
    """The architecture of :data:`INFER_ARCHS` whose backbone tensors (names and shapes, head aside) the state
    dict has exactly; a U-Net's ResNet encoder counts as its ResNet. None when none or several match."""
    if M.is_unet_state(state):
        state = {k[len(M.UNET_ENCODER_PREFIX):]: v for k, v in state.items() if k.startswith(M.UNET_ENCODER_PREFIX)}
    shapes = {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    hits = []
    for arch in INFER_ARCHS:
        want = _arch_keys(arch)
        if all(shapes.get(k) == v for k, v in want.items()) and len(shapes) - len(want) <= 4:
            hits.append(arch)
    return hits[0] if len(hits) == 1 else None


def identity(c: Candidate, seed: int) -> dict:
    """What the candidate's weights are, for the feature cache key, without building the model."""
    if c.kind in ("checkpoint", "source"):
        if not c.path.is_file():
            raise M.SourceUnavailable(c.spec, f"checkpoint {c.path} does not exist" + (
                ": run the Pretraining chapter (02) first" if c.kind == "source" else ""))
        return {"kind": "checkpoint", "arch": resolved_arch(c), "sha256": file_hash(c.path)}
    if hub_candidate(c):  # the folder's config and weight files, hashed (a revision's snapshot, a local folder)
        folder = _hub_folder(c)
        return {"kind": c.kind, "arch": c.arch, "files": H.folder_identity(folder)}
    out = {"kind": c.kind, "arch": c.arch, "weights": c.weights}
    if c.weights == "random":
        out["seed"] = int(seed)
    return out


def preprocessing(c: Candidate, image_size: int | None = None) -> dict:
    """``{"image_size", "mean", "std"}`` of a candidate (module docstring), without building it."""
    mean, std, size = HALF_MEAN, HALF_STD, DEFAULT_SIZE
    if c.kind == "torchvision" and c.weights != "random":
        tf = _weights(c.arch, c.weights).transforms()
        mean, std, size = tuple(tf.mean), tuple(tf.std), int(tf.crop_size[0])
    elif hub_candidate(c):
        declared = H.declared_preprocessing(_hub_folder(c))
        mean, std, size = declared["mean"], declared["std"], int(declared["image_size"] or DEFAULT_SIZE)
    elif c.kind == "timm":
        cfg = _timm_cfg(c.arch)
        size = int(cfg.get("input_size", (3, DEFAULT_SIZE, DEFAULT_SIZE))[-1])
        if c.weights == "pretrained":
            mean, std = tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))
    elif c.kind in ("checkpoint", "source") and is_keras(c):
        mean, std = K.INPUT_SCALES["unit"]["mean"], K.INPUT_SCALES["unit"]["std"]
    elif c.kind in ("checkpoint", "source") and c.path.is_file():
        meta = sidecar(c.path)
        size = int(meta.get("image_size") or size)
        mean, std = tuple(meta.get("mean") or mean), tuple(meta.get("std") or std)
    size = int(c.image_size or image_size or size)
    return {"image_size": size, "mean": [float(v) for v in mean], "std": [float(v) for v in std]}


def hub_candidate(c: Candidate) -> bool:
    """An ``hf:`` candidate or a timm model from the hub's layout (``timm:hf-hub:`` / ``timm:local-dir:``)."""
    return c.kind == "hf" or (c.kind == "timm" and str(c.arch).startswith(("hf-hub:", "local-dir:")))


def _hub_folder(c: Candidate) -> Path:
    """The local folder of a hub candidate (:func:`helpers.rank.hub.resolve`: the folder, the hub cache's
    snapshot, or a download); :class:`helpers.models.SourceUnavailable` when it cannot be had."""
    if c.kind == "hf":
        return H.resolve(c.arch, c.spec)
    source, _, ref = c.arch.partition(":")
    return H.resolve(ref, c.spec)


def declared_preprocessing(c: Candidate) -> dict | None:
    """Everything a hub candidate declares for its input (:func:`helpers.rank.hub.declared_preprocessing`:
    also ``interpolation`` and ``crop``, which the target pipeline reports but does not apply); None for the
    other kinds."""
    return H.declared_preprocessing(_hub_folder(c)) if hub_candidate(c) else None


_timm = H.require_timm


def _timm_cfg(name: str) -> dict:
    """timm's pretrained configuration of a model name (input size, mean, std), read without any download."""
    timm = _timm()
    if not timm.is_model(name):
        raise ValueError(f"timm has no model {name!r}{_suggest(name, timm.list_models())}")
    cfg = timm.models.get_pretrained_cfg(name)
    return cfg.to_dict() if cfg is not None else {}


def _with_timeout(fn, what: str, spec: str, hint: str = ""):
    """Run a download-or-load call with a socket timeout; any failure means the weights are not here."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        with M.quiet_hub_download():  # torch.hub's "Downloading: <url> to <home path>" line stays out of outputs
            return fn()
    except Exception as exc:  # URLError, HTTPError, OSError, hub errors, a corrupt cached file: all "not here"
        raise M.SourceUnavailable(spec, f"could not load {what} ({type(exc).__name__}: {str(exc)[:200]})"
                                  f"{hint}") from exc
    finally:
        socket.setdefaulttimeout(old)


#: weights found unavailable in this process: an offline machine is asked once per weights, not per target
_UNAVAILABLE: dict = {}


def build_torchvision(arch: str, weights: str, spec: str = "") -> nn.Module:
    """A torchvision model with its own 1000-class head: ``weights`` ``random`` or a weights enum member.
    :class:`helpers.models.SourceUnavailable` when the weights cannot be had here (remembered for the
    process, with the reason)."""
    import torchvision.models as tvm

    kwargs = dict(_AUX_OFF.get(arch, {}))
    if weights == "random":
        model = tvm.get_model(arch, weights=None, **kwargs)
    else:
        w = _weights(arch, weights)
        kwargs.pop("init_weights", None)
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        if (arch, weights) in _UNAVAILABLE and not (hub / Path(w.url).name).is_file():
            raise M.SourceUnavailable(spec or f"{arch}:imagenet", _UNAVAILABLE[arch, weights])
        try:
            model = _with_timeout(lambda: tvm.get_model(arch, weights=w, progress=False, **kwargs),
                                  f"torchvision weights {w}", spec or f"{arch}:imagenet",
                                  f"; offline, put {Path(w.url).name} into {hub}")
        except M.SourceUnavailable as exc:
            _UNAVAILABLE[arch, weights] = exc.reason
            raise
    model.arch_name = arch
    return model


def load_checkpoint(c: Candidate) -> nn.Module:
    """A checkpoint candidate as a model with its own head; ``ValueError`` when it does not fit."""
    arch = resolved_arch(c)
    if is_keras(c):
        return K.build_resnet50(*K.convert_keras_resnet50(c.path))
    state = M.read_state_dict(c.path)
    meta = sidecar(c.path)
    if meta.get("stride_in_1x1"):  # converted from Keras (helpers.rank.keras)
        return K.build_resnet50(state, meta)
    if M.is_unet_state(state):  # a segmentation U-Net: its encoder as a classifier without a source head
        return M.classifier_from_unet(state, arch)
    model = build_torchvision(arch, "random")
    M.fit_head_to(model, state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{c.path}: checkpoint does not fit {arch}: {len(missing)} missing tensors "
                         f"{missing[:4]}, {len(unexpected)} unexpected {unexpected[:4]}")
    return model


class CandidateKind(SourceKind):
    """A kind of candidate (:data:`helpers.sources.CANDIDATE` domain): it matches a parsed :class:`Candidate` of
    its ``kind`` and builds it (:meth:`build` takes the candidate); where the weights come from is the
    candidate's ``weights`` (a named weight set, ``pretrained``, or a checkpoint path)."""

    domain, made_by = CANDIDATE, None

    def matches(self, c) -> bool:
        return isinstance(c, Candidate) and c.kind == self.name

    def weights(self, c, ctx=None) -> str:
        return c.weights

    def build(self, c) -> nn.Module:
        raise NotImplementedError(f"candidate kind {self.name!r} does not say how to build {c.spec!r}")


@register_source_kind("torchvision", CANDIDATE)
class _Torchvision(CandidateKind):
    """A torchvision architecture with a weights enum member (ImageNet) or random init: its 1000-class head."""

    checkpoint = False

    def build(self, c):
        return build_torchvision(c.arch, c.weights, c.spec)


@register_source_kind("checkpoint", CANDIDATE)
class _Checkpoint(CandidateKind):
    """A checkpoint file (its head counts where the file says so: models.has_source_head)."""

    source_head = None

    def build(self, c):
        if not c.path.is_file():
            raise M.SourceUnavailable(c.spec, f"checkpoint {c.path} does not exist")
        return load_checkpoint(c)


@register_source_kind("source", CANDIDATE)
class _ProjectSource(_Checkpoint):
    """A source trained by this project, by name (``results/<profile>/sources``, ``segmentation_sources``)."""

    made_by = "pretraining"


@register_source_kind("hf", CANDIDATE)
class _HubModel(CandidateKind):
    """A Hugging Face hub model or folder (:mod:`helpers.rank.hub`): an embedding without a source head."""

    source_head = False

    def build(self, c):
        return H.load_hf(c.arch, c.spec)


@register_source_kind("timm", CANDIDATE)
class _Timm(CandidateKind):
    """A timm model (pretrained from the hub, random, or in the hub's layout); a backbone without classifier has
    no source head (:func:`helpers.rank.hub.timm_embedding`)."""

    source_head = None

    def build(self, c):
        if hub_candidate(c):  # timm:hf-hub: / timm:local-dir: (helpers.rank.hub)
            return H.load_timm(c.arch, c.spec)
        timm = _timm()
        _timm_cfg(c.arch)
        if c.weights == "pretrained":
            model = _with_timeout(lambda: timm.create_model(c.arch, pretrained=True),
                                  f"timm weights of {c.arch}", c.spec)
        else:
            model = timm.create_model(c.arch, pretrained=False)
        return H.timm_embedding(model, c.spec)


def build_model(c: Candidate, seed: int = 0) -> nn.Module:
    """The candidate's model with its own head, in eval mode on the CPU.

    :class:`helpers.models.SourceUnavailable` when it cannot be had here (weights offline, file missing,
    timm not installed); ``ValueError`` / ``RuntimeError`` for a corrupt or non-fitting checkpoint."""
    torch.manual_seed(seed)
    model = source_kind(c, CANDIDATE).build(c)
    return M.guard_input_size(model.eval(), getattr(model, "arch_name", None) or c.spec)


def fu_layer_names(model: nn.Module) -> tuple[str, str] | None:
    """FU's two layers: [D]'s pair for the registered architectures, else the first two Conv2d (None when the
    model has fewer than two)."""
    arch = getattr(model, "arch_name", None)
    if arch in M.ARCHITECTURES:
        return M.ARCHITECTURES[arch].fu_layers
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    return (convs[0], convs[1]) if len(convs) >= 2 else None


def backbone_parameters(model: nn.Module) -> int:
    """Parameters of the model without its feature layer (the head that fine-tuning replaces)."""
    total = sum(p.numel() for p in model.parameters())
    head = M.get_submodule(model, M.feature_path(model))
    return int(total - sum(p.numel() for p in head.parameters()))


def imagenet_top1(c: Candidate) -> float | None:
    """ImageNet-1K top-1 accuracy (%) that torchvision's weights metadata records (offline), else None."""
    if c.kind != "torchvision" or c.weights == "random":
        return None
    metrics = _weights(c.arch, c.weights).meta.get("_metrics", {})
    value = metrics.get("ImageNet-1K", {}).get("acc@1")
    return float(value) if value is not None else None
