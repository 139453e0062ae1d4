"""Profiles to recipes: the pretraining recipe sections with PROTOCOL.md's defaults, recipe dicts to
:class:`RunConfig`, subsampling, data hashes, cached MedMNIST loading, and training a source on an image folder
(RadImageNet's layout)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import models as M
from ..data import TensorImageDataset, load_medmnist
from .auc import BINARY, MULTICLASS
from .loop import Run, RunConfig, train_runs
from .union import balanced_weights


def recipe_section(profile: dict, kind: str) -> dict:
    """The pretraining recipe of ``kind`` (single_dataset | union), defaults from PROTOCOL.md."""
    pre = profile["pretraining"]
    base = {k: v for k, v in pre.items() if k not in ("single_dataset", "union")}
    own = pre.get(kind, {})
    defaults = {
        # MedMNIST's benchmark recipe: no augmentation
        "single_dataset": {"epochs": 100, "batch_size": 128, "optimizer": {"name": "adam", "lr": 0.001},
                           "milestones": [50, 75], "gamma": 0.1, "monitor": "val_auc", "patience": None,
                           "augment": False},
        # [D]'s leave-one-out-pretrain.py: its training augmentation, early stopping on val loss
        "union": {"epochs": 45, "batch_size": 128,
                  "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
                  "step_size": 15, "gamma": 0.1, "monitor": "val_loss", "patience": 20, "augment": True},
    }[kind]
    out = {**defaults, **base, **own}
    out.setdefault("architecture", "resnet18")
    return out


def run_config(recipe: dict, seed: int = 0) -> RunConfig:
    opt = recipe["optimizer"]
    if "milestones" in recipe and recipe.get("milestones"):
        sched = "multistep"
    elif "step_size" in recipe:
        sched = "step"
    else:
        sched = None
    return RunConfig(epochs=int(recipe["epochs"]), batch_size=int(recipe["batch_size"]), optimizer=opt["name"],
                     lr=float(opt["lr"]), momentum=float(opt.get("momentum", 0.0)),
                     weight_decay=float(opt.get("weight_decay", 0.0)), scheduler=sched,
                     step_size=int(recipe.get("step_size", 15)), gamma=float(recipe.get("gamma", 0.1)),
                     milestones=tuple(recipe.get("milestones") or ()), monitor=recipe.get("monitor", "val_auc"),
                     patience=recipe.get("patience"), balanced=bool(recipe.get("balanced", False)),
                     augment=bool(recipe.get("augment", True)), seed=seed,
                     compile=bool(recipe.get("compile", False)))


def subsample(n: int, k: int | None, seed: int) -> np.ndarray:
    """``k`` of ``range(n)`` drawn without replacement by ``seed``, sorted (all of them when ``k`` is None or
    at least ``n``)."""
    if k is None or k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, int(k), replace=False))


def data_hash(*arrays) -> str:
    import hashlib

    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def load_flag(flag, size, root, cache: dict):
    key = (flag, size)
    if key not in cache:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cache[key] = load_medmnist(flag, size=size, root=root)
    return cache[key]


# ----------------------------------------------------------------------------------------------------------
# RadImageNet (or any image-folder data set): <root>/<split>/<class>/<image files>

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def read_image_folder(folder, size: int, classes: list[str] | None = None):
    """uint8 images (N, size, size, 3) and labels (N,) of an image folder ``<folder>/<class>/<file>``.

    Images are decoded with PIL once, converted to RGB and resized to ``size`` (bilinear); training then runs
    on the device like MedMNIST. ``classes`` fixes the class order (default: sorted folder names).
    """
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    classes = classes or sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"{folder}: no class folders")
    xs, ys = [], []
    for k, name in enumerate(classes):
        for f in sorted((folder / name).iterdir()) if (folder / name).is_dir() else []:
            if f.suffix.lower() in IMAGE_SUFFIXES:
                with Image.open(f) as im:
                    xs.append(np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.uint8))
                ys.append(k)
    if not xs:
        raise ValueError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return np.stack(xs), np.asarray(ys, dtype=np.int64), classes


#: [D]'s RadImageNet recipe (PROTOCOL.md section 3; its radimagenet_pretraining.py): augmented, class-balanced,
#: early stopping on val loss with patience 10, best checkpoint kept
RADIMAGENET_RECIPE = {"epochs": 45, "batch_size": 256, "image_size": 224, "balanced": True, "augment": True,
                      "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
                      "step_size": 15, "gamma": 0.1, "monitor": "val_loss", "patience": 10}


def pretrain_image_folder(root, out_path, workdir, recipe: dict | None = None, arch: str = "resnet18",
                          store_size: int | None = None, device=None, callback=None,
                          save_every_s: float = 60.0) -> Path:
    """Train a source from scratch on ``<root>/train/<class>/*`` with ``<root>/val/<class>/*`` for model
    selection (RadImageNet's layout after a split), class-balanced; writes a safetensors checkpoint + JSON."""
    recipe = {**RADIMAGENET_RECIPE, **(recipe or {})}
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    size = int(store_size or recipe["image_size"])
    xt, yt, classes = read_image_folder(Path(root) / "train", size)
    xv, yv, _ = read_image_folder(Path(root) / "val", size, classes)
    train = TensorImageDataset(xt, yt, recipe["image_size"], device=device)
    val = TensorImageDataset(xv, yv, recipe["image_size"], device=device)
    cfg = run_config(recipe)
    torch.manual_seed(cfg.seed)
    model = M.build_model(arch, len(classes), "random", head="linear")
    run = Run(model, cfg, MULTICLASS if len(classes) > 2 else BINARY, device, workdir=workdir,
              save_every_s=save_every_s)
    train_runs([run], train, val, sample_weights=balanced_weights(yt) if cfg.balanced else None, callback=callback)
    run.load_best()
    path = M.save_checkpoint(run.model, out_path, {"source": "image_folder", "classes": classes,
                                                   "training": recipe, "root": str(root),
                                                   "train_hash": data_hash(xt, yt), "best": run.best})
    run.clear_workdir()
    return path

