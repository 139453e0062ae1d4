"""A RadImageNet ResNet-50 as published (a Keras ``.h5`` file) converted to torchvision's ResNet-50, exactly.

RadImageNet's checkpoints (``RadImageNet-ResNet50_notop.h5``) are ``tf.keras.applications.ResNet50`` weights
without the top. Reading them needs only ``h5py`` (no TensorFlow, no code from the file: HDF5 holds arrays and
names). The conversion, layer by layer (Keras names ``conv1_conv``, ``conv{S}_block{B}_{i}_conv`` /
``_bn``, shortcut ``_0_``):

* kernels: Keras ``(H, W, in, out)`` -> PyTorch ``(out, in, H, W)``;
* Keras convolutions have biases, torchvision's do not: each bias ``b`` is folded into the BatchNorm that
  follows (``running_mean - b``), exact since ``BN(conv(x) + b) = gamma (conv(x) - (mean - b)) / sqrt(var +
  eps) + beta``;
* Keras BatchNorm's ``epsilon`` is 1.001e-5, PyTorch's 1e-5: the difference is added to ``running_var``
  (exact);
* Keras's ResNet-50 is ResNet **v1**: a block's stride sits on its first 1x1 convolution; torchvision's is v1.5
  (on the 3x3). The converted model gets v1's strides (:func:`helpers.models.resnet_v1_strides`; the sidecar says
  ``stride_in_1x1``), so it computes what the Keras model computes. Keras's ``ZeroPadding2D`` + valid
  convolution / max-pool equal PyTorch's padded ones (the max-pool follows a ReLU, so zero and -inf padding
  give the same maximum);
* ``_notop``: no classifier, so the model has no source head (LEEP / NCE are skipped); ``fc`` is a seeded
  placeholder.

Channel order and input scale (``input_scale``): ``"unit"`` (default; RadImageNet's own recipe per
PROTOCOL.md section 8: RGB as Keras loads images, ``x / 255``: mean 0, std 1) or ``"caffe"`` (Keras's
``preprocess_input`` as [R] fed it: BGR, the ImageNet mean pixel subtracted, 0..255): the BGR order is folded
into the first convolution (its input channels reversed), so the pipeline still feeds RGB, with mean
``(123.68, 116.779, 103.939) / 255`` and std ``1 / 255``.

Any other Keras model (RadImageNet's DenseNet-121, Inception-V3, Inception-ResNet-V2, or Keras 2.2's old
``res2a_branch2a`` names) is refused with the layers it lacks.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .. import models as M
from ..runner import atomic_write_text

KERAS_EPS = 1.001e-5
TORCH_EPS = 1e-5
#: blocks per stage of ResNet-50 (Keras stages conv2..conv5 = torchvision layer1..layer4)
BLOCKS = (3, 4, 6, 3)
INPUT_SCALES = {"unit": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "bgr": False},
                "caffe": {"mean": [123.68 / 255, 116.779 / 255, 103.939 / 255], "std": [1 / 255] * 3,
                          "bgr": True}}
FORMAT = "helpers.rank.keras/1"


def read_keras_h5(path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """``{layer: {weight: array}}`` of a Keras ``.h5`` file (``model.save`` or ``save_weights``, Keras 2 or 3:
    weight names with or without ``:0``). :class:`helpers.models.CorruptCheckpointError` when it is not a
    readable HDF5 file; :class:`helpers.models.UnsupportedCheckpointError` without h5py."""
    try:
        import h5py
    except ImportError as exc:
        raise M.UnsupportedCheckpointError(f"{path}: a Keras .h5 file needs h5py to be read: pip install h5py"
                                           ) from exc
    try:
        fh = h5py.File(str(path), "r")
    except OSError as exc:
        raise M.CorruptCheckpointError(f"{path}: the file is corrupt or not HDF5 ({str(exc)[:160]})") from exc
    out: dict[str, dict[str, np.ndarray]] = {}
    try:
        with fh:
            _read_layers(fh, out, path)
    except M.UnsupportedCheckpointError:
        raise
    except (KeyError, OSError, ValueError) as exc:  # listed layers or weights that are not in the file
        raise M.CorruptCheckpointError(f"{path}: the file is corrupt (a Keras layer or weight it lists cannot be "
                                       f"read: {str(exc)[:160]})") from exc
    return out


def _read_layers(fh, out: dict, path) -> None:
    group = fh["model_weights"] if "model_weights" in fh else fh
    names = group.attrs.get("layer_names")
    if names is None:
        raise M.UnsupportedCheckpointError(f"{path}: an HDF5 file without Keras's layer_names (not a Keras "
                                           "weights file)")
    for layer in names:
        layer = layer.decode() if isinstance(layer, bytes) else str(layer)
        g = group[layer]
        weights = {}
        for w in g.attrs.get("weight_names", []):
            w = w.decode() if isinstance(w, bytes) else str(w)
            weights[w.split("/")[-1].split(":")[0]] = np.asarray(g[w], dtype=np.float32)
        if weights:
            out[layer] = weights


def layer_map() -> list[tuple[str, str, str, str]]:
    """(Keras conv, Keras BN, torchvision conv, torchvision BN) for every convolution of ResNet-50."""
    rows = [("conv1_conv", "conv1_bn", "conv1", "bn1")]
    for s, n in enumerate(BLOCKS):
        for b in range(n):
            k, t = f"conv{s + 2}_block{b + 1}", f"layer{s + 1}.{b}"
            for i in (1, 2, 3):
                rows.append((f"{k}_{i}_conv", f"{k}_{i}_bn", f"{t}.conv{i}", f"{t}.bn{i}"))
            if b == 0:
                rows.append((f"{k}_0_conv", f"{k}_0_bn", f"{t}.downsample.0", f"{t}.downsample.1"))
    return rows


def convert_keras_resnet50(path: str | os.PathLike, out: str | os.PathLike | None = None,
                           input_scale: str = "unit") -> tuple[dict[str, torch.Tensor], dict]:
    """The torchvision ``resnet50`` state dict (no ``fc``) and sidecar of a Keras ResNet-50 ``.h5`` (module
    docstring). With ``out``, also written as ``out.safetensors`` + ``out.json``
    (:func:`helpers.models.save_checkpoint`'s layout), a candidate of its own afterwards."""
    if input_scale not in INPUT_SCALES:
        raise ValueError(f"input_scale must be one of {sorted(INPUT_SCALES)}, got {input_scale!r}")
    layers = read_keras_h5(path)
    rows = layer_map()
    needed = [n for r in rows for n in r[:2]]
    missing = [n for n in needed if n not in layers]
    if missing:
        old = any(n.startswith(("res2a_", "bn2a_")) for n in layers)
        raise M.UnsupportedCheckpointError(
            f"{path}: not a Keras ResNet-50 (tf.keras.applications names): {len(missing)} of its "
            f"{len(needed)} layers are missing ({', '.join(missing[:4])}...)"
            + ("; this is Keras 2.2's ResNet50 naming (res2a_branch2a): load it in Keras and save it with a "
               "current tf.keras first" if old else
               "; only RadImageNet's ResNet-50 is converted (its DenseNet-121 / Inception checkpoints are not)"))
    state: dict[str, torch.Tensor] = {}
    scale = INPUT_SCALES[input_scale]
    for kconv, kbn, tconv, tbn in rows:
        conv, bn = layers[kconv], layers[kbn]
        kernel = conv.get("kernel")
        if kernel is None or kernel.ndim != 4:
            raise M.UnsupportedCheckpointError(f"{path}: layer {kconv} has no 4-d kernel")
        w = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        if tconv == "conv1" and scale["bgr"]:
            w = w.flip(1)  # the model was fed BGR: reverse its input channels so that RGB goes in
        bias = torch.from_numpy(conv["bias"]) if "bias" in conv else torch.zeros(w.shape[0])
        c = w.shape[0]
        gamma = torch.from_numpy(bn.get("gamma", np.ones(c, np.float32)))
        beta = torch.from_numpy(bn.get("beta", np.zeros(c, np.float32)))
        state[f"{tconv}.weight"] = w
        state[f"{tbn}.weight"] = gamma
        state[f"{tbn}.bias"] = beta
        state[f"{tbn}.running_mean"] = torch.from_numpy(bn["moving_mean"]) - bias
        state[f"{tbn}.running_var"] = torch.from_numpy(bn["moving_variance"]) + (KERAS_EPS - TORCH_EPS)
        state[f"{tbn}.num_batches_tracked"] = torch.tensor(0)
    meta = {"format": FORMAT, "architecture": "resnet50", "stride_in_1x1": True, "source_head": False,
            "converted_from": str(path), "input_scale": input_scale, "mean": scale["mean"], "std": scale["std"],
            "image_size": 224}
    if out is not None:
        from safetensors.torch import save_file

        out = Path(out).with_suffix(".safetensors")
        out.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in state.items()}, str(out), metadata={"architecture": "resnet50"})
        atomic_write_text(out.with_suffix(".json"), json.dumps(meta, indent=1, sort_keys=True))
    return state, meta


def build_resnet50(state: dict, meta: dict, head_seed: int = 0) -> nn.Module:
    """The converted model: torchvision's resnet50 with v1 strides, the state's weights and a seeded
    placeholder ``fc`` (no source head)."""
    import torchvision.models as tvm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(head_seed))
        model = tvm.resnet50(weights=None)
    model.arch_name = "resnet50"
    if meta.get("stride_in_1x1"):
        M.resnet_v1_strides(model)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise ValueError(f"converted weights do not fit resnet50: missing {missing[:4]}, unexpected {unexpected[:4]}")
    model.has_source_head = bool(meta.get("source_head", True))
    return model
