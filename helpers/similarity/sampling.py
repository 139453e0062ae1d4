"""Sampling layer activations as [R] did: forward hooks on named layers, a seeded plan of images and channels
that two networks of one architecture share, and :func:`compare_models`, which runs both and applies the
measures of :mod:`helpers.similarity.measures`."""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
import torch.nn as nn

from helpers.metrics._common import to_tensor
from helpers.similarity.measures import MEASURES

#: the five places [R] compares a ResNet, as torchvision module names (stem ReLU, then the residual stages)
RESNET_LAYERS = ("relu", "layer1", "layer2", "layer3", "layer4")
#: torchvision layer name -> the column name of [R]'s tables (Keras conv1_relu, conv2_block3_out, ...)
R_STAGE_OF_LAYER = {"relu": "conv1", "layer1": "block1", "layer2": "block2", "layer3": "block3",
                    "layer4": "block4"}


# ----------------------------------------------------------------------------------------------------------
# sampling layer activations as [R] did


@dataclass(frozen=True)
class LayerSample:
    """One draw of [R]'s sampling: which images and channels of one layer, for one repeat.

    ``images`` (sorted indices into the image set) and ``channels`` (indices into the layer's channels) are what
    makes two networks comparable: pass the same samples to both. ``n_images_wanted`` is
    ``max(1, round(points / (h * w)))``; fewer are used when the set is smaller (then every repeat uses all the
    images and only the channels change).
    """

    layer: str
    repeat: int
    images: tuple[int, ...]
    channels: tuple[int, ...]
    height: int
    width: int
    n_images_wanted: int

    @property
    def n_points(self) -> int:
        return len(self.images) * self.height * self.width

    @property
    def n_channels(self) -> int:
        return len(self.channels)


def _images_batch(images, index: torch.Tensor) -> torch.Tensor:
    """Model inputs for ``index``: a :class:`helpers.data.TensorImageDataset` (evaluation transform) or a float
    tensor / array (N, C, H, W) already prepared."""
    if hasattr(images, "batch") and hasattr(images, "device"):
        return images.batch(index.to(images.device))[0]
    return images.index_select(0, index.to(images.device))


def _image_source(images):
    if hasattr(images, "batch") and hasattr(images, "device"):
        return images, len(images), images.device
    t = to_tensor(images, "images")
    if t.ndim != 4:
        raise ValueError(f"images must be a TensorImageDataset or a (N, C, H, W) array, got shape {tuple(t.shape)}")
    if len(t) == 0:
        raise ValueError("images: the image set is empty")
    if not t.is_floating_point():
        raise ValueError(f"images must be prepared float model inputs (normalised), got {t.dtype}; "
                         "wrap raw uint8 images in helpers.data.TensorImageDataset")
    return t, len(t), t.device


def _modules(model: nn.Module, layers) -> dict[str, nn.Module]:
    if isinstance(layers, str):
        layers = (layers,)
    layers = tuple(layers)
    if not layers:
        raise ValueError("no layers given")
    named = dict(model.named_modules())
    missing = [l for l in layers if l not in named or l == ""]
    if missing:
        top = [n for n in named if n and "." not in n]
        raise ValueError(f"model has no module named {missing}; top-level modules: {top}")
    return {l: named[l] for l in layers}


def _as_map(out, layer: str) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"layer {layer!r} returns {type(out).__name__}, not a tensor; pick a module that returns one")
    if out.ndim == 2:
        return out[:, :, None, None]
    if out.ndim != 4:
        raise ValueError(f"layer {layer!r} returns shape {tuple(out.shape)}; expected (B, C, H, W) or (B, C)")
    return out


class _Hooks:
    """Forward hooks on named modules that hand each output to ``sink(layer, output)``; removed on exit. A module
    that runs more than once per forward pass (a shared ReLU inside a block) is an error: its output is ambiguous."""

    def __init__(self, modules: Mapping[str, nn.Module], sink):
        self.modules, self.sink, self.handles, self.calls = modules, sink, [], {}

    def __enter__(self):
        for name, mod in self.modules.items():
            self.handles.append(mod.register_forward_hook(self._hook(name)))
        return self

    def _hook(self, name):
        def fn(module, inputs, output):
            self.calls[name] = self.calls.get(name, 0) + 1
            if self.calls[name] > 1:
                raise ValueError(f"module {name!r} runs {self.calls[name]} times in one forward pass; its output is "
                                 "ambiguous: hook a module that runs once (e.g. the block, not its shared ReLU)")
            self.sink(name, output)
        return fn

    def forward(self, model, x):
        self.calls = {}
        return model(x)

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles = []
        return False


@torch.no_grad()
def layer_shapes(model: nn.Module, images, layers=RESNET_LAYERS, device=None) -> dict[str, tuple[int, int, int]]:
    """(channels, height, width) of each layer's output for these images (one image through the model, eval mode)."""
    src, _, src_device = _image_source(images)
    device = torch.device(device) if device is not None else src_device
    mods = _modules(model, layers)
    shapes = {}
    was_training = model.training
    model.eval().to(device)
    try:
        with _Hooks(mods, lambda name, out: shapes.__setitem__(name, tuple(_as_map(out, name).shape[1:]))) as hooks:
            hooks.forward(model, _images_batch(src, torch.arange(1)).to(device))
    finally:
        model.train(was_training)
    return {l: shapes[l] for l in mods}


def _rng(seed: int, layer: str, repeat: int) -> np.random.Generator:
    # one stream per (seed, layer, repeat): the draws of a layer do not depend on which other layers are asked for
    return np.random.default_rng([int(seed), zlib.crc32(layer.encode()), int(repeat)])


def sampling_plan(shapes: Mapping[str, tuple[int, int, int]], n_images: int, *, n_channels: int = 64,
                  points: int = 10_000, repeats: int = 5, seed: int = 0) -> list[LayerSample]:
    """[R]'s draws for every (layer, repeat), from the layer shapes (:func:`layer_shapes`) and the number of images.

    Per layer with output (C, h, w) and repeat r: ``max(1, round(points / (h * w)))`` images drawn without
    replacement (all of them when the set is smaller) and ``min(n_channels, C)`` channels drawn without
    replacement, from a generator seeded by (seed, layer name, r). Deterministic: the same arguments give the
    same plan, so two networks with the same layer shapes get the same images and channels.
    """
    if n_images < 1:
        raise ValueError(f"n_images must be positive, got {n_images}")
    if n_channels < 1 or points < 1 or repeats < 1:
        raise ValueError(f"n_channels, points and repeats must be positive, got {n_channels}, {points}, {repeats}")
    plan = []
    for layer, (c, h, w) in shapes.items():
        wanted = max(1, round(points / (h * w)))
        for r in range(repeats):
            rng = _rng(seed, layer, r)
            imgs = np.sort(rng.choice(n_images, size=min(wanted, n_images), replace=False))
            chans = rng.choice(c, size=min(n_channels, c), replace=False)
            plan.append(LayerSample(layer, r, tuple(int(i) for i in imgs), tuple(int(i) for i in chans),
                                    int(h), int(w), wanted))
    return plan


@torch.no_grad()
def layer_activations(model: nn.Module, images, layers=RESNET_LAYERS, *, plan: list[LayerSample] | None = None,
                      n_channels: int = 64, points: int = 10_000, repeats: int = 5, seed: int = 0,
                      batch_size: int = 128, device=None) -> dict[tuple[str, int], torch.Tensor]:
    """Activations of ``model`` sampled as [R] did, keyed by ``(layer, repeat)``: float32 tensors
    (n_images * h * w, n_channels) on the compute device, one row per spatial position of every sampled image
    (ordered image, row, column), one column per sampled channel.

    ``images``: a :class:`helpers.data.TensorImageDataset` (its evaluation transform is applied) or prepared
    float inputs (N, C, H, W). ``layers``: module names (``model.named_modules()``; for torchvision ResNets
    :data:`RESNET_LAYERS`); outputs (B, C, H, W), or (B, C) taken as 1 x 1 maps. ``plan``: the draws
    (:func:`sampling_plan`); without one it is drawn from ``n_channels``, ``points``, ``repeats`` and ``seed``,
    which gives two networks of the same architecture the same images and channels. Every image any draw needs
    goes through the model once, in eval mode, in float32 (no autocast: reduced precision would lower the
    similarity; TF32 convolutions on CUDA follow torch's ``allow_tf32`` settings); the model is moved to ``device`` (default: the images'), its train/eval mode is restored and
    the hooks are removed afterwards, also on error.
    """
    src, n_total, src_device = _image_source(images)
    device = torch.device(device) if device is not None else src_device
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    mods = _modules(model, layers)
    if plan is None:
        plan = sampling_plan(layer_shapes(model, src, tuple(mods), device), n_total, n_channels=n_channels,
                             points=points, repeats=repeats, seed=seed)
    plan = [s for s in plan if s.layer in mods]
    if not plan:
        raise ValueError(f"the plan has no draw for the layers {list(mods)}")
    if max(max(s.images) for s in plan) >= n_total:
        raise ValueError(f"the plan indexes images beyond the {n_total} given")
    union = np.unique(np.concatenate([np.asarray(s.images) for s in plan]))
    by_layer: dict[str, list[tuple[LayerSample, np.ndarray, torch.Tensor]]] = {}
    for s in plan:
        pos = np.searchsorted(union, np.asarray(s.images))  # where each of its images sits in the union order
        by_layer.setdefault(s.layer, []).append((s, pos, torch.as_tensor(s.channels, device=device)))
    pieces: dict[tuple[str, int], list[torch.Tensor]] = {(s.layer, s.repeat): [] for s in plan}
    window = [0, 0]

    def sink(layer, out):
        fmap = _as_map(out, layer)
        for s, pos, chans in by_layer[layer]:
            if fmap.shape[2:] != (s.height, s.width) or int(chans.max()) >= fmap.shape[1]:
                raise ValueError(f"layer {layer!r} outputs {tuple(fmap.shape[1:])}, the plan expects "
                                 f"{s.height}x{s.width} maps with channel {int(chans.max())}")
            rows = pos[(pos >= window[0]) & (pos < window[1])] - window[0]
            if rows.size:
                sel = fmap.index_select(0, torch.as_tensor(rows, device=fmap.device)).index_select(1, chans)
                pieces[(s.layer, s.repeat)].append(sel.permute(0, 2, 3, 1).reshape(-1, chans.numel()).float())

    was_training = model.training
    model.eval().to(device)
    try:
        with _Hooks(mods, sink) as hooks:
            union_t = torch.as_tensor(union, device=src_device)
            for start in range(0, len(union), batch_size):
                window[:] = [start, min(start + batch_size, len(union))]
                x = _images_batch(src, union_t[start:window[1]]).to(device)
                hooks.forward(model, x)
    finally:
        model.train(was_training)
    return {key: torch.cat(parts) for key, parts in pieces.items()}


def compare_models(model_a: nn.Module, model_b: nn.Module, images, layers=RESNET_LAYERS, *,
                   measures=("cca", "linear_cka"), n_channels: int = 64, points: int = 10_000, repeats: int = 5,
                   seed: int = 0, batch_size: int = 128, device=None):
    """Layer-by-layer similarity of two networks on the same images, sampled as [R] did (same images and channels
    for both, drawn from ``seed`` and ``model_a``'s layer shapes; ``model_b`` must have the same shapes).

    Returns a tidy DataFrame, one row per (layer, repeat, measure): ``layer, stage`` ([R]'s column name where
    the layer is a ResNet stage), ``repeat, n_images, n_images_wanted, height, width, n_points, n_channels,
    few_points, measure, value``. [R] reports the mean over repeats of ``measure == "cca"``. ``measures``: names
    of :data:`MEASURES` or a mapping name -> function(x, y). ``few_points`` flags ``n_points < 10 *
    n_channels``, where CCA is inflated (see :func:`cca`).
    """
    import pandas as pd

    if isinstance(measures, Mapping):
        fns = dict(measures)
    else:
        unknown = [m for m in measures if m not in MEASURES]
        if unknown:
            raise ValueError(f"unknown measures {unknown}; expected names of {sorted(MEASURES)} or a mapping")
        fns = {m: MEASURES[m] for m in measures}
    src, n_total, src_device = _image_source(images)
    shapes_a = layer_shapes(model_a, src, layers, device)
    shapes_b = layer_shapes(model_b, src, layers, device)
    if shapes_a != shapes_b:
        raise ValueError(f"the two models' layer outputs differ: {shapes_a} vs {shapes_b}")
    plan = sampling_plan(shapes_a, n_total, n_channels=n_channels, points=points, repeats=repeats, seed=seed)
    acts_a = layer_activations(model_a, src, layers, plan=plan, batch_size=batch_size, device=device)
    acts_b = layer_activations(model_b, src, layers, plan=plan, batch_size=batch_size, device=device)
    rows = []
    for s in plan:
        xa, xb = acts_a[(s.layer, s.repeat)], acts_b[(s.layer, s.repeat)]
        for name, fn in fns.items():
            rows.append({"layer": s.layer, "stage": R_STAGE_OF_LAYER.get(s.layer, s.layer), "repeat": s.repeat,
                         "n_images": len(s.images), "n_images_wanted": s.n_images_wanted, "height": s.height,
                         "width": s.width, "n_points": s.n_points, "n_channels": s.n_channels,
                         "few_points": s.n_points < 10 * s.n_channels, "measure": name, "value": float(fn(xa, xb))})
    return pd.DataFrame(rows)
