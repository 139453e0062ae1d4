"""Inputs a stage needs from outside the project (data files, weights, user checkpoints): whether they are here,
and how to get each. Offline and without downloading anything."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .. import models as M
from ..data import candidate_paths, data_root, medmnist_info
from ..segmentation.data import segmentation_path


def row(what: str, path, how: str, nbytes: int | None = None, exact: bool = False) -> dict:
    """A missing input; ``bytes``: what downloading it weighs (None: unknown), ``bytes_exact``: whether that is
    the file's size or an upper bound."""
    return {"what": what, "path": str(path), "how": how, "bytes": nbytes, "bytes_exact": exact}


def medmnist_bytes(flag: str, size: int) -> int:
    """Upper bound of a MedMNIST file's size: its arrays' bytes (images x px x px x channels, uint8, plus int64
    labels) from ``medmnist.INFO``'s ``n_samples``. The release's npz files are compressed, so the download is
    smaller (retinamnist at 28 px: a 3.3 MB file for 3.8 MB of arrays); INFO records no file size."""
    info = medmnist_info(flag)
    n = sum(int(v) for v in info["n_samples"].values())
    labels = len(info["label"]) if info["task"].startswith("multi-label") else 1
    return n * (size * size * int(info["n_channels"]) + 8 * labels)


def medmnist_files(flags, size: int, root=None) -> list[dict]:
    """One row per MedMNIST file of ``flags`` at ``size`` that the data root lacks."""
    out = []
    suffix = "" if size == 28 else f"_{size}"
    for flag in flags:
        paths = candidate_paths(flag, size, root)
        if any(p.is_file() for p in paths):
            continue
        info = medmnist_info(flag)
        out.append(row(f"MedMNIST {flag} at {size} px", paths[0],
                       f"downloaded on first use when a network is available; else fetch {info[f'url{suffix}']} "
                       f"(MD5 {info[f'MD5{suffix}']}) into {paths[0].parent}", medmnist_bytes(flag, size)))
    return out


def imagenet_weights(arch: str = "resnet18") -> list[dict]:
    """A row when torchvision's ImageNet weights of ``arch`` are not in torch's hub cache."""
    import torchvision.models as tvm

    weights = tvm.get_model_weights(arch)[M.architecture(arch).weights]
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if path.is_file():
        return []
    return [row(f"ImageNet weights of {arch} ({weights})", path,
                f"downloaded by torchvision on first use when a network is available; else fetch {weights.url} "
                f"into {path.parent} (torch.hub.get_dir() / checkpoints)",
                round(weights.meta["_file_size"] * 2**20) if "_file_size" in weights.meta else None, True)]


def radimagenet_checkpoint(profile: dict) -> list[dict]:
    path = (profile.get("sources") or {}).get("radimagenet_checkpoint") or os.environ.get("RADIMAGENET_CHECKPOINT")
    if path and Path(path).is_file():
        return []
    return [row("RadImageNet ResNet-18 checkpoint", path or "(not configured)",
                "needs a user checkpoint (RadImageNet's data-use agreement): set sources.radimagenet_checkpoint "
                "in the profile or $RADIMAGENET_CHECKPOINT; or train one from the image folders with "
                "helpers.trainer.pretrain_image_folder")]


def segmentation_sets(names, root=None) -> list[dict]:
    out = []
    for name in names:
        try:
            path = segmentation_path(name, root)
        except Exception as exc:  # an unknown name or a missing file: both are what the user must fix
            out.append(row(f"segmentation set {name}", data_root(root) / "segmentation", str(exc)[:300]))
            continue
        if not Path(path).exists():
            out.append(row(f"segmentation set {name}", path, "see data/README.md for how each set is prepared"))
    return out
