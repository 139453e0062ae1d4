"""A U-Net with a torchvision ResNet-18 encoder, its decoder features, and safe checkpoints.

Architecture (input side ``S``, a multiple of 32)::

    encoder (torchvision resnet18, fc and avgpool dropped)
      conv1 + bn1 + relu  -> 64 ch,  S/2     (skip of dec1)
      maxpool + layer1    -> 64 ch,  S/4     (skip of dec2)
      layer2              -> 128 ch, S/8     (skip of dec3)
      layer3              -> 256 ch, S/16    (skip of dec4)
      layer4              -> 512 ch, S/32    (bottleneck)
    decoder: five up blocks, deep to shallow
      dec4 -> S/16, dec3 -> S/8, dec2 -> S/4, dec1 -> S/2, dec0 -> S (no skip)
      each: 2x nearest upsampling, concatenation of the skip (when there is one), then
      (3x3 conv, BatchNorm, ReLU) twice; widths ``decoder_channels`` (default 256, 128, 64, 32, 16)
    head: 1x1 conv from the last decoder width to ``n_classes`` logits, at the input size

:meth:`UNet.decoder_features` returns the logits together with each decoder block's output, keyed by the
block name (``dec4`` ... ``dec0``, deep to shallow), so a transferability scorer can upsample several decoder
depths to the output size.

ImageNet encoder weights come from torchvision (``resnet18(weights="IMAGENET1K_V1")``); where they cannot be
had (offline, no cached file) :class:`helpers.models.SourceUnavailable` is raised with the reason.

Checkpoints are a ``.safetensors`` state dict plus a JSON sidecar (:func:`save_segmentation_checkpoint`);
loading goes through :func:`helpers.models.read_state_dict`, which never unpickles code.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models import SourceUnavailable, quiet_hub_download, read_state_dict, sidecar_path
from ..runner import atomic_write_text

ENCODERS = ("resnet18",)
DEFAULT_DECODER_CHANNELS = (256, 128, 64, 32, 16)
#: encoder stages whose outputs feed the decoder as skips, shallow to deep, with their widths
_SKIP_CHANNELS = (64, 64, 128, 256)
_BOTTLENECK_CHANNELS = 512
CHECKPOINT_FORMAT = "helpers.segmentation/1"


def decoder_block_names(n_blocks: int = len(DEFAULT_DECODER_CHANNELS)) -> list[str]:
    """Names of the decoder blocks, deep to shallow: ``dec4, dec3, dec2, dec1, dec0`` for five blocks
    (``dec0`` is at the input resolution)."""
    return [f"dec{i}" for i in range(n_blocks - 1, -1, -1)]


class DecoderBlock(nn.Module):
    """2x nearest upsampling, optional skip concatenation, then (conv3x3-BN-ReLU) x 2."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.skip_channels = skip_channels
        self.conv1 = nn.Conv2d(in_channels + skip_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], 1)
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(x)), inplace=True)


def _resnet18(weights: str | None) -> nn.Module:
    import torchvision.models as tvm

    with quiet_hub_download():
        return tvm.resnet18(weights=weights, progress=False)


_IMAGENET_FAILURE: dict = {}


def imagenet_resnet18() -> nn.Module:
    """torchvision's ResNet-18 with ImageNet weights (``IMAGENET1K_V1``).

    Raises :class:`helpers.models.SourceUnavailable` when they cannot be loaded (no network and no cached
    file); the failure is remembered for the process so that an offline machine is asked once.
    """
    if "resnet18" in _IMAGENET_FAILURE:
        raise _IMAGENET_FAILURE["resnet18"]
    import torchvision.models as tvm

    weights = tvm.ResNet18_Weights.IMAGENET1K_V1
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        return _resnet18(weights)
    except Exception as exc:  # URLError, HTTPError, OSError, RuntimeError (corrupt file): all mean "not here"
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        err = SourceUnavailable("imagenet", f"torchvision could not load resnet18 weights {weights} "
                                f"({type(exc).__name__}: {str(exc)[:200]}); offline, put "
                                f"{Path(weights.url).name} into {hub}")
        _IMAGENET_FAILURE["resnet18"] = err
        raise err from exc
    finally:
        socket.setdefaulttimeout(old)


#: the encoder's weight sets by name: random initialisation (``None``) or torchvision's ImageNet weights
ENCODER_WEIGHTS = {None: lambda: _resnet18(None), "imagenet": imagenet_resnet18}


class UNet(nn.Module):
    """U-Net with a torchvision ResNet-18 encoder (see the module docstring for the layout).

    Parameters
    ----------
    n_classes : output channels of the 1x1 head (background included).
    encoder : ``"resnet18"`` (the only encoder so far).
    encoder_weights : ``None`` (random) or ``"imagenet"`` (torchvision's ``IMAGENET1K_V1``; raises
        :class:`helpers.models.SourceUnavailable` where they cannot be had).
    decoder_channels : widths of the five decoder blocks, deep to shallow.
    """

    def __init__(self, n_classes: int, encoder: str = "resnet18", encoder_weights: str | None = None,
                 decoder_channels=DEFAULT_DECODER_CHANNELS):
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {encoder!r}; expected one of {ENCODERS}")
        if encoder_weights not in list(ENCODER_WEIGHTS):  # list: an unhashable value is just not one
            raise ValueError(f"encoder_weights must be None or 'imagenet', got {encoder_weights!r}")
        if int(n_classes) < 1:
            raise ValueError(f"n_classes must be positive, got {n_classes}")
        decoder_channels = tuple(int(c) for c in decoder_channels)
        if len(decoder_channels) != 5 or min(decoder_channels) < 1:
            raise ValueError(f"decoder_channels must be five positive widths, got {decoder_channels}")
        self.n_classes = int(n_classes)
        self.encoder_name = encoder
        self.encoder_weights = encoder_weights
        self.decoder_channels = decoder_channels
        self.block_names = decoder_block_names(len(decoder_channels))

        net = ENCODER_WEIGHTS[encoder_weights]()
        self.encoder = nn.ModuleDict({name: getattr(net, name) for name in
                                      ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")})
        skips = list(reversed(_SKIP_CHANNELS)) + [0]  # deep to shallow: layer3, layer2, layer1, conv1, none
        blocks, width = {}, _BOTTLENECK_CHANNELS
        for name, skip, out in zip(self.block_names, skips, decoder_channels):
            blocks[name] = DecoderBlock(width, skip, out)
            width = out
        self.decoder = nn.ModuleDict(blocks)
        self.head = nn.Conv2d(width, self.n_classes, 1)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"UNet expects (B, 3, H, W) input, got {tuple(x.shape)}")
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ValueError(f"UNet input height and width must be multiples of 32, got {tuple(x.shape[-2:])}")

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder outputs shallow to deep: conv1 stage (S/2), layer1 (S/4), layer2, layer3, layer4 (S/32)."""
        self._check_input(x)
        e = self.encoder
        x0 = e["relu"](e["bn1"](e["conv1"](x)))
        x1 = e["layer1"](e["maxpool"](x0))
        x2 = e["layer2"](x1)
        x3 = e["layer3"](x2)
        x4 = e["layer4"](x3)
        return [x0, x1, x2, x3, x4]

    def decoder_features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(logits, features)``: logits (B, n_classes, H, W) and a dict of the decoder blocks' outputs
        ``{"dec4": (B, 256, H/16, W/16), ..., "dec0": (B, 16, H, W)}``, ordered deep to shallow."""
        feats = self.encode(x)
        skips = [feats[3], feats[2], feats[1], feats[0], None]
        y = feats[4]
        out = {}
        for name, skip in zip(self.block_names, skips):
            y = self.decoder[name](y, skip)
            out[name] = y
        return self.head(y), out

    forward_features = decoder_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder_features(x)[0]


def replace_head(model: UNet, n_classes: int) -> UNet:
    """Give ``model`` a fresh 1x1 head of ``n_classes`` outputs (PyTorch's default init), in place, on the
    device and dtype of the old one. Every other layer is kept (and stays trainable)."""
    old = model.head
    new = nn.Conv2d(old.in_channels, int(n_classes), 1).to(old.weight.device, old.weight.dtype)
    model.head = new
    model.n_classes = int(n_classes)
    return model


# ----------------------------------------------------------------------------------------------------------
# checkpoints


def save_segmentation_checkpoint(model: UNet, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write the state dict as ``<path>.safetensors`` and a ``<path>.json`` sidecar, each atomically."""
    from safetensors.torch import save_file

    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    info = {"format": CHECKPOINT_FORMAT, "architecture": f"unet_{model.encoder_name}",
            "encoder": model.encoder_name, "n_classes": model.n_classes,
            "decoder_channels": list(model.decoder_channels), **(meta or {})}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp), metadata={"format": CHECKPOINT_FORMAT})
    os.replace(tmp, path)
    atomic_write_text(sidecar_path(path), json.dumps(info, indent=1, sort_keys=True, default=str))
    return path


def _decoder_channels_of(state: dict) -> tuple[int, ...]:
    names = decoder_block_names()
    try:
        return tuple(int(state[f"decoder.{n}.conv1.weight"].shape[0]) for n in names)
    except KeyError as exc:
        raise ValueError(f"not a helpers.segmentation UNet state dict: no {exc.args[0]}") from exc


def load_segmentation_checkpoint(path: str | os.PathLike, device=None) -> UNet:
    """The UNet stored at ``path`` with its own head (the classes it was trained on).

    ``.safetensors`` files are read with safetensors, anything else with ``torch.load(weights_only=True)``
    (:func:`helpers.models.read_state_dict`). Widths and classes are read from the tensors themselves; the
    sidecar, when present, is attached as ``model.checkpoint_meta``.
    """
    path = Path(path)
    state = read_state_dict(path)
    if "head.weight" not in state:
        raise ValueError(f"{path}: not a helpers.segmentation UNet checkpoint (no head.weight)")
    model = UNet(int(state["head.weight"].shape[0]), decoder_channels=_decoder_channels_of(state))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{path}: checkpoint does not fit the UNet: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    side = sidecar_path(path)
    model.checkpoint_meta = json.loads(side.read_text()) if side.is_file() else {}
    return model.to(device) if device is not None else model
