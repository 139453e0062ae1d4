"""Model zoo, source loading, safe checkpoints and penultimate-layer feature extraction.

Sources (PROTOCOL.md section 3) are named by a string:

``"random"``
    random initialisation (a baseline source).
``"imagenet"``
    torchvision's ImageNet weights (``IMAGENET1K_V1``) through the weights API. Offline, where the weights are
    neither in torch's hub cache nor downloadable, :class:`SourceUnavailable` is raised with the reason; the
    stages catch it, record the source as unavailable and go on.
a path
    a checkpoint: our own ``.safetensors`` (with its JSON sidecar) or a user's ``.pt`` / ``.pth`` /
    ``.safetensors`` file (for example a RadImageNet ResNet-18). Loading never unpickles arbitrary objects:
    ``.pt`` files go through ``torch.load(weights_only=True)``, which refuses anything but tensors and plain
    containers.

Checkpoints written by :func:`save_checkpoint` are a ``<name>.safetensors`` file of the state dict and a
``<name>.json`` sidecar (architecture, head, output classes, training configuration, data hashes).
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .data import HALF_MEAN, HALF_STD, IMAGENET_MEAN, IMAGENET_STD
from .runner import atomic_write_text
from .threads import fair_threads


class SourceUnavailable(RuntimeError):
    """A source model cannot be built here (weights not downloadable offline, checkpoint missing...)."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"source {source!r} is unavailable: {reason}")
        self.source = source
        self.reason = reason


class UnsafeCheckpointError(ValueError):
    """A checkpoint file holds something other than tensors and plain containers (it would run code)."""


class PickledModelError(UnsafeCheckpointError):
    """A checkpoint that is a whole pickled model (``torch.save(model)``), not its ``state_dict()``: loading it
    would import and run the model's code. The message carries the one-line fix."""


class CorruptCheckpointError(ValueError):
    """A checkpoint file that is damaged or not a checkpoint at all (truncated, empty, not zip/pickle/safetensors
    data). Nothing in it was run; it is broken, not unsafe."""


class UnsupportedCheckpointError(ValueError):
    """A checkpoint in a format this project does not read (a Keras/TensorFlow ``.h5`` file), with the reason
    and how to convert it."""


class InputSizeError(ValueError):
    """The input size is too small (or otherwise wrong) for the architecture; the message names both."""


@dataclass(frozen=True)
class Architecture:
    """A torchvision architecture: its builder, ImageNet weights enum member, FU layer pair, head and the layer
    whose input [D] takes as the penultimate features.

    ``head`` is the module a new head replaces (for architecture transfer [D] replaces efficientnet_v2_s's whole
    ``classifier``, its dropout included, and the last Linear elsewhere); ``features`` is the module whose
    *input* is the representation the metrics and FU see ([D] hooks ``classifier`` of mobilenet_v3_small, the
    576-d pooled features, not the 1024-d input of its last Linear); ``None`` means the same as ``head``.
    """

    name: str
    weights: str            # torchvision weights enum member used for the ``imagenet`` source
    fu_layers: tuple[str, str]
    head: str               # dotted path of the classifier that a new head replaces
    builder_kwargs: tuple = ()
    features: str | None = None

    @property
    def feature_layer(self) -> str:
        return self.features or self.head


#: The 9 architectures of PROTOCOL.md section 3 (and [R]'s resnet50, section 8) with the two early convolutions
#: FU uses, as dotted names that :func:`get_submodule` resolves (numeric parts index into Sequentials). Feature
#: widths as [D]'s ``transferability_scores.py`` takes them (input of ``features``): densenet121 1024,
#: efficientnet_v2_s 1280, googlenet 1024, mnasnet1_0 1280, mobilenet_v3_small 576, vgg11 4096, convnext_tiny 768,
#: shufflenet_v2_x0_5 1024, resnet18 512, resnet50 2048 (:data:`FEATURE_WIDTHS`, tested).
ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in [
    Architecture("densenet121", "IMAGENET1K_V1", ("features.conv0", "features.denseblock1.denselayer1.conv1"),
                 "classifier"),
    Architecture("efficientnet_v2_s", "IMAGENET1K_V1", ("features.0.0", "features.1.0.block.0.0"),
                 "classifier"),
    Architecture("googlenet", "IMAGENET1K_V1", ("conv1.conv", "conv2.conv"), "fc",
                 (("aux_logits", False), ("init_weights", True))),
    Architecture("mnasnet1_0", "IMAGENET1K_V1", ("layers.0", "layers.3"), "classifier.1"),
    Architecture("mobilenet_v3_small", "IMAGENET1K_V1", ("features.0.0", "features.1.block.0.0"),
                 "classifier.3", features="classifier"),
    Architecture("vgg11", "IMAGENET1K_V1", ("features.0", "features.3"), "classifier.6"),
    Architecture("convnext_tiny", "IMAGENET1K_V1", ("features.0.0", "features.1.0.block.0"), "classifier.2"),
    Architecture("shufflenet_v2_x0_5", "IMAGENET1K_V1", ("conv1.0", "stage2.0.branch1.0"), "fc"),
    Architecture("resnet18", "IMAGENET1K_V1", ("conv1", "layer1.0.conv1"), "fc"),
    # not one of [D]'s nine: [R]'s architecture (PROTOCOL.md section 8), for the Hidden representations stage
    Architecture("resnet50", "IMAGENET1K_V1", ("conv1", "layer1.0.conv1"), "fc"),
]}

#: penultimate feature width per architecture, as [D] takes it (see :data:`ARCHITECTURES`)
FEATURE_WIDTHS = {"densenet121": 1024, "efficientnet_v2_s": 1280, "googlenet": 1024, "mnasnet1_0": 1280,
                  "mobilenet_v3_small": 576, "vgg11": 4096, "convnext_tiny": 768, "shufflenet_v2_x0_5": 1024,
                  "resnet18": 512, "resnet50": 2048}

HEADS = ("dropout_linear", "linear")


def architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; expected one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def get_submodule(model: nn.Module, dotted: str) -> nn.Module:
    """``model.a.b.0.c`` from ``"a.b.0.c"`` (numeric parts index Sequentials / ModuleLists)."""
    return model.get_submodule(dotted) if dotted else model


def _set_submodule(model: nn.Module, dotted: str, new: nn.Module) -> None:
    parent, _, leaf = dotted.rpartition(".")
    setattr(get_submodule(model, parent), leaf, new)


def fu_layers(model: nn.Module, arch: str | None = None) -> tuple[nn.Module, nn.Module]:
    """The two convolutions whose weight gradients FU compares (first, second)."""
    spec = architecture(arch or getattr(model, "arch_name", ""))
    return tuple(get_submodule(model, n) for n in spec.fu_layers)


def head_path(model: nn.Module) -> str:
    """Dotted path of the classifier: the registered head (``Dropout+Linear`` or ``Linear``)."""
    arch = getattr(model, "arch_name", None)
    if arch in ARCHITECTURES:
        return ARCHITECTURES[arch].head
    last = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ValueError("the model has no Linear layer to use as its head")
    return last[-1]


def feature_path(model: nn.Module) -> str:
    """Dotted path of the module whose input is the penultimate representation: [D]'s choice for the registered
    architectures (:attr:`Architecture.feature_layer`), the last Linear for any other model."""
    arch = getattr(model, "arch_name", None)
    if arch in ARCHITECTURES:
        return ARCHITECTURES[arch].feature_layer
    return head_path(model)


def last_linear(model: nn.Module) -> nn.Linear:
    """The model's last ``nn.Linear`` (the output layer; its input is the penultimate representation)."""
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    if last is None:
        raise ValueError("the model has no Linear layer")
    return last


def _builder(arch: str):
    import torchvision.models as tvm

    return getattr(tvm, arch)


def _random_model(arch: str, num_classes: int = 1000) -> nn.Module:
    spec = architecture(arch)
    model = _builder(arch)(weights=None, num_classes=num_classes, **dict(spec.builder_kwargs))
    model.arch_name = arch
    return model


@contextlib.contextmanager
def quiet_hub_download():
    """Drop torch.hub's ``Downloading: "<url>" to <cache path>`` line, which it writes to stdout before every
    download attempt even with ``progress=False`` (so an offline build showed the builder's home path in every
    chapter that asks for ImageNet weights). Everything else written to stdout is passed on; exceptions are not
    touched (a failed download still raises, and callers report it)."""
    import io
    import sys

    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        kept = [line for line in buffer.getvalue().splitlines(keepends=True)
                if not line.startswith('Downloading: "')]
        if kept:
            sys.stdout.write("".join(kept))


def _imagenet_model(arch: str) -> nn.Module:
    """torchvision's ImageNet model; :class:`SourceUnavailable` when the weights cannot be had."""
    import torchvision.models as tvm

    spec = architecture(arch)
    weights = tvm.get_model_weights(arch)[spec.weights]
    kwargs = {k: v for k, v in spec.builder_kwargs if k != "init_weights"}
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        with quiet_hub_download():
            model = _builder(arch)(weights=weights, progress=False, **kwargs)
    except Exception as exc:  # URLError, HTTPError, OSError, RuntimeError (corrupt file): all mean "not here"
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        reason = (f"torchvision could not load {arch} weights {weights} ({type(exc).__name__}: "
                  f"{str(exc)[:200]}); offline, put {Path(weights.url).name} into {hub}")
        raise SourceUnavailable("imagenet", reason) from exc
    finally:
        socket.setdefaulttimeout(old_timeout)
    model.arch_name = arch
    return model


# ----------------------------------------------------------------------------------------------------------
# heads


def replace_head(model: nn.Module, num_outputs: int, head: str = "dropout_linear", dropout: float = 0.5,
                 generator: torch.Generator | None = None) -> nn.Module:
    """Replace the classifier in place: ``Dropout(0.5) + Linear`` (dataset transfer, [D]) or ``Linear``
    (architecture transfer). The new Linear has the input size of the old one and PyTorch's default init."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    path = head_path(model)
    in_features = last_linear(get_submodule(model, path)).in_features
    linear = nn.Linear(in_features, int(num_outputs))
    new = nn.Sequential(nn.Dropout(dropout), linear) if head == "dropout_linear" else linear
    ref = next(model.parameters())
    _set_submodule(model, path, new.to(ref.device, ref.dtype))
    model.head_kind = head
    return model


def penultimate_model(model: nn.Module, inplace: bool = False) -> nn.Module:
    """The model with its feature layer (:func:`feature_path`) replaced by ``Identity``, so that it outputs the
    penultimate representation (what FU's triplet loss sees). A deep copy unless ``inplace``."""
    out = model if inplace else copy.deepcopy(model)
    _set_submodule(out, feature_path(out), nn.Identity())
    return out


# ----------------------------------------------------------------------------------------------------------
# checkpoints


#: wrappers whose prefix every key of a state dict may carry: DistributedDataParallel / DataParallel
#: (``module.``), a PyTorch Lightning module holding the network as ``self.model`` (``model.``), torch.compile
#: (``_orig_mod.``)
STATE_PREFIXES = ("module.", "model.", "_orig_mod.")
#: keys under which training frameworks nest the state dict (Lightning: ``state_dict``)
STATE_KEYS = ("state_dict", "model_state_dict", "model", "net")


def _clean_state(state: dict) -> dict:
    """Unwrap the common checkpoint layouts: the state dict nested under a key (Lightning's ``state_dict``,
    ``model_state_dict``, ``model``, ``net``) and wrapper prefixes that **every** key carries
    (:data:`STATE_PREFIXES`: DDP's ``module.``, Lightning's ``model.``, torch.compile's ``_orig_mod.``, also
    stacked). A prefix only some keys carry is kept (the fit check then names the keys). Non-tensor entries
    (epoch counters, hyper-parameters) are dropped."""
    for key in STATE_KEYS:
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    out = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    changed = True
    while out and changed:
        changed = False
        for prefix in STATE_PREFIXES:
            if all(k.startswith(prefix) for k in out):
                out = {k[len(prefix):]: v for k, v in out.items()}
                changed = True
    return out


#: module prefixes of pickled globals that mean "a whole model was pickled" (its classes would be imported)
_MODEL_MODULES = ("torch.nn.modules.", "torchvision.models.", "timm.models.", "transformers.models.",
                  "monai.networks.", "segmentation_models_pytorch.", "lightning.", "pytorch_lightning.",
                  "helpers.")
_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE",
               "BINUNICODE8"}


def _pickle_bytes(path: Path) -> list[bytes]:
    """The pickle streams of a torch checkpoint, read as bytes without unpickling: ``*/data.pkl`` of the zip
    format, or the file itself (legacy format or a plain pickle). :class:`CorruptCheckpointError` when it is
    neither."""
    import zipfile

    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head:
        raise CorruptCheckpointError(f"{path}: the file is empty (a checkpoint whose writing was cut off?)")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.endswith("data.pkl")]
                if not names:
                    raise CorruptCheckpointError(f"{path}: a zip file without the data.pkl of a torch checkpoint")
                return [zf.read(names[0])]
        except (zipfile.BadZipFile, OSError, EOFError) as exc:  # CRC errors, truncated members
            raise CorruptCheckpointError(f"{path}: the file is corrupt (damaged zip archive: {exc})") from exc
    if head.startswith(b"PK"):
        raise CorruptCheckpointError(f"{path}: the file is corrupt (a truncated or damaged zip archive: "
                                     "torch.save's format without its central directory)")
    if head[:1] != b"\x80":
        raise CorruptCheckpointError(f"{path}: the file is corrupt or not a PyTorch checkpoint (it starts with "
                                     f"{head!r}, neither a zip archive, a pickle nor safetensors)")
    return [path.read_bytes()]


def pickle_globals(path: str | os.PathLike) -> list[str]:
    """The ``module.name`` globals a torch checkpoint's pickle would import, read with :mod:`pickletools`
    (which decodes opcodes and runs nothing). :class:`CorruptCheckpointError` when the pickle is malformed.
    For the legacy (non-zip) format the leading pickles are read (magic number, protocol, system info, the
    object) until the raw storage bytes."""
    import io
    import pickletools

    found: list[str] = []
    for data in _pickle_bytes(Path(path)):
        stream = io.BytesIO(data)
        for n_pickle in range(4):  # legacy format: 4 pickles, then raw storages
            strings, memo, last = [], {}, None
            try:
                for op, arg, _ in pickletools.genops(stream):
                    name = op.name
                    if name in _STRING_OPS:
                        last = arg if isinstance(arg, str) else arg.decode("latin-1", "replace")
                        strings.append(last)
                    elif name in ("BINGET", "LONG_BINGET", "GET"):
                        last = memo.get(arg)
                        strings.append(last)
                    elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                        memo[arg] = last
                    elif name == "MEMOIZE":
                        memo[len(memo)] = last
                    elif name == "GLOBAL":
                        found.append(str(arg).replace(" ", "."))
                        last = None
                    elif name == "STACK_GLOBAL":
                        mod, qual = (strings[-2:] + [None, None])[:2] if len(strings) >= 2 else (None, None)
                        found.append(f"{mod}.{qual}")
                        last = None
                    else:
                        last = None
            except Exception as exc:  # ValueError (bad opcode), EOF inside a pickle
                raise CorruptCheckpointError(f"{Path(path)}: the file is corrupt (its pickle data is malformed or "
                                             f"truncated: {str(exc)[:120]})") from exc
            if stream.tell() >= len(data) or data[stream.tell():stream.tell() + 1] != b"\x80":
                break
    return sorted(set(found))


def _load_failure(path: Path, exc: Exception) -> ValueError:
    """Why ``torch.load(weights_only=True)`` refused a file: corrupt, a whole pickled model (with the fix) or
    unsafe content (naming the globals it would import)."""
    try:
        globs = pickle_globals(path)
    except CorruptCheckpointError as corrupt:
        return corrupt
    models = [g for g in globs if g.startswith(_MODEL_MODULES) or g.startswith("__main__.")]
    if models:
        return PickledModelError(
            f"{path}: refused to load: the file is a whole pickled model ({', '.join(models[:3])}"
            f"{', ...' if len(models) > 3 else ''}), and loading it would import and run that code. Fix: save "
            "its state_dict() instead: torch.save(model.state_dict(), path)")
    import pickle

    if isinstance(exc, pickle.UnpicklingError):
        return UnsafeCheckpointError(
            f"{path}: refused to load: the file is not a plain tensor checkpoint; its pickle would import "
            f"{', '.join(globs[:6]) or 'objects'} ({type(exc).__name__}). Only tensors and plain containers are "
            "accepted (torch.load weights_only=True); re-save it as a state dict or as safetensors")
    return CorruptCheckpointError(f"{path}: the file is corrupt ({type(exc).__name__}: {str(exc)[:200]})")


#: suffixes of Keras / TensorFlow weight files
KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, never unpickling code: safetensors, or ``torch.load(weights_only=True)``.

    The layouts of :func:`_clean_state` are unwrapped (Lightning ``state_dict`` / ``model.``, DDP ``module.``).
    Refusals say why: :class:`PickledModelError` for ``torch.save(model)`` (with the fix: save
    ``state_dict()``), :class:`UnsafeCheckpointError` for other pickled objects (naming what would be imported),
    :class:`CorruptCheckpointError` for a damaged file, :class:`UnsupportedCheckpointError` for Keras ``.h5``
    (:func:`helpers.rank.keras.convert_keras_resnet50` converts a RadImageNet ResNet-50)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix.lower() in KERAS_SUFFIXES:
        raise UnsupportedCheckpointError(
            f"{path}: a Keras/TensorFlow weights file: its kernels are laid out (H, W, in, out) and its layers "
            "are named by Keras, so it is not a PyTorch state dict. A Keras ResNet-50 (RadImageNet's published "
            "RadImageNet-ResNet50_notop.h5) is converted by helpers.rank.keras.convert_keras_resnet50(path, "
            "out) (or the candidate radimagenet:PATH); any other Keras model: export its weights to PyTorch "
            "names yourself and save them with safetensors")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return _clean_state(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CorruptCheckpointError(f"{path}: the file is corrupt (safetensors: {str(exc)[:200]})") from exc
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError (refused globals), RuntimeError / EOFError (damaged file)
        raise _load_failure(path, exc) from exc
    if isinstance(state, nn.Module):  # pragma: no cover - weights_only never returns a module
        raise PickledModelError(f"{path}: a whole model; save its state_dict() instead")
    if not isinstance(state, dict):
        raise UnsafeCheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    return _clean_state(state)


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def save_checkpoint(model: nn.Module, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write ``model``'s state dict as safetensors and a JSON sidecar, each atomically. Returns the path."""
    from safetensors.torch import save_file

    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    head = last_linear(model)
    info = {"format": "helpers.models/1", "architecture": getattr(model, "arch_name", None),
            "head": getattr(model, "head_kind", "original"), "num_outputs": int(head.out_features),
            **(meta or {})}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp), metadata={"architecture": str(info["architecture"])})
    os.replace(tmp, path)
    atomic_write_text(sidecar_path(path), json.dumps(info, indent=1, sort_keys=True, default=str))
    return path


def read_sidecar(path: str | os.PathLike) -> dict:
    side = sidecar_path(path)
    return json.loads(side.read_text()) if side.is_file() else {}


def fit_head_to(model: nn.Module, state: dict) -> None:
    """Give ``model`` a head of the shape the checkpoint has (its source classes), Dropout+Linear or Linear."""
    path = head_path(model)
    w1, w0 = state.get(f"{path}.1.weight"), state.get(f"{path}.weight")
    if w1 is not None:
        replace_head(model, w1.shape[0], "dropout_linear")
    elif w0 is not None:
        replace_head(model, w0.shape[0], "linear")


#: key prefix of a segmentation U-Net's ResNet encoder (:mod:`helpers.segmentation.model`)
UNET_ENCODER_PREFIX = "encoder."


def is_unet_state(state: dict) -> bool:
    """True for the state dict of a :class:`helpers.segmentation.model.UNet` (an encoder and a 1x1 head)."""
    return "head.weight" in state and any(k.startswith(UNET_ENCODER_PREFIX) for k in state)


def classifier_from_unet(state: dict, arch: str = "resnet18", head_seed: int = 0) -> nn.Module:
    """A torchvision classifier whose backbone is a segmentation U-Net's encoder.

    The U-Net of :mod:`helpers.segmentation.model` wraps torchvision's ResNet-18 layers (``encoder.conv1``,
    ``encoder.bn1``, ``encoder.layer1`` .. ``layer4``), so the mapping is the identity on those names with the
    ``encoder.`` prefix dropped; avgpool has no weights. The decoder and the segmentation head have no place
    in a classifier and are left out. The classifier has **no source head**: ``fc`` is a seeded random
    1000-way layer (``head_seed``) so that the model runs, and ``model.has_source_head = False`` tells the
    scoring code that metrics of the source head's logits (LEEP, NCE) do not apply.
    """
    enc = {k[len(UNET_ENCODER_PREFIX):]: v for k, v in state.items() if k.startswith(UNET_ENCODER_PREFIX)}
    if not enc:
        raise ValueError("not a segmentation U-Net state dict: no 'encoder.' weights")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(head_seed))
        model = _random_model(arch)
    missing, unexpected = model.load_state_dict(enc, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked") and not k.startswith("fc.")]
    if missing or unexpected:
        raise ValueError(f"the U-Net encoder does not fit {arch}: missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}")
    model.has_source_head = False
    return model


def resnet_v1_strides(model: nn.Module) -> nn.Module:
    """torchvision's ResNet-50 (v1.5: a stage's stride on the 3x3 ``conv2``) made v1 (the stride on the first
    1x1 ``conv1``, as Keras's and Caffe's ResNet-50): what a checkpoint converted from Keras needs (its sidecar
    says ``stride_in_1x1``; :mod:`helpers.rank.keras`)."""
    for name in ("layer2", "layer3", "layer4"):
        block = getattr(model, name)[0]
        stride = block.conv2.stride
        block.conv1.stride, block.conv2.stride = stride, (1, 1)
    model.stride_in_1x1 = True
    return model


def has_source_head(source) -> bool:
    """Whether a source's model has a classification head of its own whose logits mean something (LEEP, NCE):
    False for a segmentation U-Net checkpoint (its encoder becomes the classifier, :func:`classifier_from_unet`);
    True otherwise (``random`` has an untrained head, as in [D])."""
    path = Path(str(source))
    if str(source) in NAMED_WEIGHTS or not path.is_file():
        return True
    meta = read_sidecar(path)
    if str(meta.get("format", "")).startswith("helpers.segmentation") or meta.get("source_head") is False:
        return False
    return not is_unet_state(read_state_dict(path))


def load_checkpoint(path: str | os.PathLike, arch: str | None = None) -> nn.Module:
    """A model with the checkpoint's weights and its own head (source classes). ``arch`` from the sidecar when
    there is one, else as given (user checkpoints), else ``resnet18``. A segmentation U-Net checkpoint
    (:mod:`helpers.segmentation`) becomes a classifier on its encoder without a source head
    (:func:`classifier_from_unet`)."""
    path = Path(path)
    meta = read_sidecar(path) if path.suffix == ".safetensors" else {}
    state = read_state_dict(path)
    if is_unet_state(state):
        model = classifier_from_unet(state, arch or "resnet18")
        model.checkpoint_meta = meta
        return model
    arch = meta.get("architecture") or arch or "resnet18"
    model = _random_model(arch)
    if meta.get("stride_in_1x1"):  # converted from Keras (helpers.rank.keras)
        resnet_v1_strides(model)
    fit_head_to(model, state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if meta.get("source_head") is False:  # a backbone without classifier (Keras _notop): the head stays random
        head = head_path(model) + "."
        missing = [k for k in missing if not k.startswith(head)]
        model.has_source_head = False
    if missing or unexpected:
        raise ValueError(f"{path}: checkpoint does not fit {arch}: missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}")
    model.checkpoint_meta = meta
    return model


# ----------------------------------------------------------------------------------------------------------
# building models by source


#: the weight sets a source names by a string, each a builder of ``arch`` with its own 1000-class head; any
#: other source is a checkpoint path (which source names resolve to which: :mod:`helpers.sources`)
NAMED_WEIGHTS = {"random": _random_model, "imagenet": _imagenet_model}


def load_source(source: str | os.PathLike, arch: str = "resnet18") -> nn.Module:
    """The source model with its own head (ImageNet's 1000 classes, a checkpoint's classes; random: 1000)."""
    if isinstance(source, str) and source in NAMED_WEIGHTS:
        return NAMED_WEIGHTS[source](arch)
    path = Path(source)
    if not path.is_file():
        raise SourceUnavailable(str(source), f"checkpoint {path} does not exist")
    return load_checkpoint(path, arch)


def build_model(arch: str = "resnet18", num_outputs: int | None = None, source: str | os.PathLike = "random",
                head: str = "dropout_linear") -> nn.Module:
    """A model of ``arch`` initialised from ``source`` with a fresh ``head`` of ``num_outputs`` units
    (``num_outputs=None`` keeps the source's own head, e.g. for extracting source logits)."""
    model = load_source(source, arch)
    if num_outputs is not None:
        replace_head(model, num_outputs, head)
    return model


def normalization_for(source: str | os.PathLike):
    """ImageNet mean/std for ImageNet weights, else 0.5/0.5 (PROTOCOL.md section 4)."""
    return (IMAGENET_MEAN, IMAGENET_STD) if str(source) == "imagenet" else (HALF_MEAN, HALF_STD)


# ----------------------------------------------------------------------------------------------------------
# input size


#: inputs at least this large are not probed (no architecture here needs more)
_PROBE_BELOW = 64
_PROBE_MAX = 512


def _runs_at(model: nn.Module, size: int, ref: torch.Tensor) -> str | None:
    """None when ``model`` runs on one zero image of ``size`` x ``size``, else the first line of its error."""
    x = torch.zeros(1, ref.shape[1], size, size, dtype=ref.dtype, device=ref.device)
    model._size_probing = True
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(x)
        return None
    except (RuntimeError, ValueError, AssertionError, IndexError) as exc:
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    finally:
        model._size_probing = False
        model.train(was_training)


def smallest_input_size(model: nn.Module, start: int, ref: torch.Tensor | None = None) -> int | None:
    """The smallest square input size >= ``start`` (up to 512) at which ``model`` runs, by bisection (sizes
    at which an architecture runs are upward closed for CNNs); None when none does."""
    ref = ref if ref is not None else torch.zeros(1, 3, 1, 1, device=next(model.parameters()).device)
    if _runs_at(model, _PROBE_MAX, ref) is not None:
        return None
    lo, hi = int(start), _PROBE_MAX  # hi runs
    while lo < hi:
        mid = (lo + hi) // 2
        if _runs_at(model, mid, ref) is None:
            hi = mid
        else:
            lo = mid + 1
    return hi


def _size_guard(module: nn.Module, args):
    if getattr(module, "_size_probing", False) or not args or not isinstance(args[0], torch.Tensor):
        return None
    x = args[0]
    if x.dim() != 4 or min(x.shape[-2:]) >= _PROBE_BELOW:
        return None
    size = (int(x.shape[-2]), int(x.shape[-1]))
    ok = module.__dict__.setdefault("_sizes_checked", {})
    if size not in ok:
        ok[size] = _runs_at(module, max(size), x)
    error = ok[size]
    if error is None:
        return None
    name = getattr(module, "input_size_name", None) or getattr(module, "arch_name", None) or type(module).__name__
    least = smallest_input_size(module, max(size) + 1, x)
    if least:
        raise InputSizeError(f"input size {size[0]}x{size[1]} px is too small for {name}: the smallest input size "
                             f"it runs at is {least} px (write the candidate with @{least} or larger); the model "
                             f"said: {error}")
    raise InputSizeError(f"input size {size[0]}x{size[1]} px does not fit {name} ({error}), and it does not run at "
                         f"{_PROBE_MAX} px either: a model with a fixed input size? use its own size")


def guard_input_size(model: nn.Module, name: str | None = None) -> nn.Module:
    """Make an input that is too small for the architecture an :class:`InputSizeError` naming the size, the
    architecture and the smallest size that runs, instead of a shape error from deep inside the network.

    A forward pre-hook: inputs smaller than 64 px are tried once per size on a single zero image (no cost for
    larger inputs, one small forward per new small size). It travels with ``copy.deepcopy``."""
    if name:
        model.input_size_name = name
    if not getattr(model, "_size_guarded", False):
        model.register_forward_pre_hook(_size_guard)
        model._size_guarded = True
    return model


# ----------------------------------------------------------------------------------------------------------
# feature extraction


def autocast_context(device, enabled: bool = True):
    """bf16 autocast on CUDA (and on the CPU when asked with ``enabled="cpu"``), nothing otherwise.

    Training uses it for speed. Features that feed a metric never do: see :func:`extract`."""
    device = torch.device(device)
    if enabled == "cpu" or (enabled and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def full_precision():
    """IEEE float32 inside: TF32 off for CUDA matmuls and cuDNN convolutions (PyTorch enables TF32 for cuDNN
    convolutions by default, 10-bit mantissa), float32 matmul precision "highest"; all restored on exit."""
    cuda_mm, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    precision = torch.get_float32_matmul_precision()
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = cuda_mm, cudnn
        torch.set_float32_matmul_precision(precision)


@fair_threads()
@torch.no_grad()
def extract(model: nn.Module, dataset, batch_size: int = 256, autocast: bool | str = False):
    """Penultimate features (input of :func:`feature_path`'s module: the last Linear's input, or [D]'s choice for
    the registered architectures), logits and labels of ``dataset``, in eval mode.

    ``dataset`` is a :class:`helpers.data.TensorImageDataset` (no augmentation is applied). Runs on the
    dataset's device (channels_last on CUDA) and returns float32 tensors ``features (N, D)``, ``logits (N, C)``
    and the labels ``(N,)`` or ``(N, L)``, all on that device.

    By default the forward pass is plain float32 with TF32 off (:func:`full_precision`): these features feed
    the transferability metrics, and a bf16 forward moves them by about 0.7 % (on a real network LogME moved
    8.252 -> 8.308 and PARC 0.186 -> -0.022, more than the gaps between sources in [D]'s tables).
    ``autocast=True`` runs under bf16 autocast on CUDA for speed where only speed matters (``"cpu"``: on the
    CPU too). A model whose parameters are not float32 is run as a float32 copy unless ``autocast`` is set.
    """
    device = dataset.device
    if not autocast and any(p.is_floating_point() and p.dtype != torch.float32 for p in model.parameters()):
        model = copy.deepcopy(model).float()
    was_training = model.training
    model.eval().to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    captured = []
    feature_module = get_submodule(model, feature_path(model))
    hook = feature_module.register_forward_hook(lambda m, inp, out: captured.append(inp[0].flatten(1).float()))
    feats, logits = [], []
    precision = full_precision() if not autocast else contextlib.nullcontext()
    try:
        with precision:
            for x, _ in dataset.batches(batch_size):
                if device.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast_context(device, autocast):
                    out = model(x)
                logits.append(out.float())
                feats.append(captured.pop())
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(feats), torch.cat(logits), dataset.targets.clone()


def to_numpy(*tensors):
    return tuple(np.asarray(t.detach().float().cpu()) if t.is_floating_point() else np.asarray(t.cpu())
                 for t in tensors)
