"""2D segmentation data: the shared sets under ``<data root>/segmentation/``, a user's own folder of images
and masks, and a dataset that lives on the device.

Stored sets (``<root>/segmentation/<name>_128.npz``, described by ``MANIFEST.json`` beside them) hold for each
split ``train``/``val``/``test``: ``<split>_images`` uint8 (N, H, W) gray or (N, H, W, 3) RGB,
``<split>_masks`` uint8 (N, H, W) class ids (0 = background) and ``<split>_ids`` (original file names). The
data root follows :func:`helpers.paths.data_root`: the ``root`` argument, else ``$DATA_ROOT``, else ``data/``.
Arrays are read with ``allow_pickle=False`` always; a missing, unreadable or inconsistent file raises
:class:`SegmentationFileError` (a ``FileNotFoundError`` for a missing file) naming the file and the problem.

Class names and the number of classes come from the set's ``MANIFEST.json`` entry when there is one, else
from the mask values (``0..max``; names ``background``, ``class 1``, ...). Mask values outside the declared
classes are an error.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import HALF_MEAN, HALF_STD, SPLITS, default_device, iterate_batches
from ..transforms import normalize_batch
from ..paths import data_root

#: the sets of ``MANIFEST.json``, in its order
SEGMENTATION_SETS = ("kvasir_seg", "busi", "ph2", "acdc", "monuseg")
STORED_SIZE = 128
#: without class_names, mask values of a folder must stay below this (a 0/255 mask needs mask_map)
MAX_IMPLICIT_CLASSES = 32
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class SegmentationFileError(ValueError):
    """A segmentation file or folder is unreadable or holds arrays that break the format."""


# --------------------------------------------------------------------------------------------------------------
# the stored sets


def segmentation_dir(root=None) -> Path:
    return data_root(root) / "segmentation"


def segmentation_path(name: str, root=None, size: int = STORED_SIZE) -> Path:
    """``<root>/segmentation/<name>_<size>.npz``."""
    return segmentation_dir(root) / f"{name}_{int(size)}.npz"


def read_manifest(root=None) -> dict:
    """``<root>/segmentation/MANIFEST.json`` as a dict (empty when the file is absent)."""
    path = segmentation_dir(root) / "MANIFEST.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SegmentationFileError(f"{path}: unreadable manifest ({exc})") from exc


@dataclass
class SegmentationData:
    """One segmentation set, all three splits in memory.

    ``images[split]`` uint8 (N, H, W) gray or (N, H, W, 3) RGB; ``masks[split]`` uint8 (N, H, W) class ids;
    ``ids[split]`` the original file names (strings). ``class_names[0]`` is the background.
    """

    name: str
    path: Path
    class_names: list[str]
    images: dict[str, np.ndarray] = field(repr=False)
    masks: dict[str, np.ndarray] = field(repr=False)
    ids: dict[str, np.ndarray] = field(repr=False)
    info: dict = field(default_factory=dict, repr=False)

    @property
    def n_classes(self) -> int:
        """Number of classes, background included."""
        return len(self.class_names)

    @property
    def foreground_classes(self) -> list[str]:
        return self.class_names[1:]

    @property
    def n_channels(self) -> int:
        return 3 if self.images["train"].ndim == 4 else 1

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.masks["train"].shape[1:3])

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return self.images[name], self.masks[name]

    def class_pixel_table(self):
        """Tidy table: per (split, class) the number of images, the images that contain the class and its
        share of the pixels."""
        import pandas as pd

        rows = []
        for s in SPLITS:
            m = self.masks[s]
            counts = np.bincount(m.reshape(-1), minlength=self.n_classes)
            present = [(m == k).reshape(len(m), -1).any(1).sum() for k in range(self.n_classes)]
            for k, name in enumerate(self.class_names):
                rows.append({"set": self.name, "split": s, "class_id": k, "class_name": name,
                             "images": int(len(m)), "images_with_class": int(present[k]),
                             "pixel_share": float(counts[k] / m.size)})
        return pd.DataFrame(rows)


def _missing_message(name: str, path: Path, root) -> str:
    folder = path.parent
    present = sorted(p.name for p in folder.glob("*.npz")) if folder.is_dir() else []
    known = f"; known sets: {', '.join(SEGMENTATION_SETS)}" if name not in SEGMENTATION_SETS else ""
    return (f"segmentation file {path.name} for set {name!r} is not in the data root {data_root(root)} "
            f"(looked for {path}; {folder} holds {', '.join(present) if present else 'no .npz files'}{known}). "
            f"Point DATA_ROOT (or the root argument) at a folder whose segmentation/ holds {path.name}.")


def load_segmentation(name: str, root=None, size: int = STORED_SIZE) -> SegmentationData:
    """Load ``<root>/segmentation/<name>_<size>.npz`` (see the module docstring).

    Raises ``FileNotFoundError`` for a missing file (naming the file, the data root and ``DATA_ROOT``) and
    :class:`SegmentationFileError` for an unreadable archive, missing keys, images and masks that do not
    match, or mask values outside the declared classes.
    """
    path = segmentation_path(name, root, size)
    if not path.is_file():
        raise FileNotFoundError(_missing_message(name, path, root))
    info = read_manifest(root).get(name, {})
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise SegmentationFileError(f"{path}: cannot be read as an npz archive ({exc}); the file is truncated "
                                    "or corrupt: copy it again") from exc
    images, masks, ids = {}, {}, {}
    with archive:
        missing = [f"{s}_{k}" for s in SPLITS for k in ("images", "masks") if f"{s}_{k}" not in archive.files]
        if missing:
            raise SegmentationFileError(f"{path}: missing keys {missing} (has {sorted(archive.files)})")
        for s in SPLITS:
            try:
                x, m = archive[f"{s}_images"], archive[f"{s}_masks"]
                i = archive[f"{s}_ids"] if f"{s}_ids" in archive.files else None
            except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
                raise SegmentationFileError(f"{path}: the arrays of split {s!r} cannot be read ({exc}); the "
                                            "file is truncated or corrupt") from exc
            images[s], masks[s], ids[s] = _check_split(f"{path}: split {s!r}", x, m, i)
    class_names = _class_names(path, info, masks)
    return SegmentationData(name=name, path=path, class_names=class_names, images=images, masks=masks,
                            ids=ids, info=info)


def _check_split(where: str, x: np.ndarray, m: np.ndarray, ids) -> tuple:
    if x.dtype != np.uint8:
        raise SegmentationFileError(f"{where}: images have dtype {x.dtype}, expected uint8")
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if not (x.ndim == 3 or (x.ndim == 4 and x.shape[-1] == 3)):
        raise SegmentationFileError(f"{where}: images have shape {x.shape}, expected (N, H, W) or (N, H, W, 3)")
    if len(x) == 0:
        raise SegmentationFileError(f"{where}: the split is empty")
    if m.dtype.kind not in "iub":
        raise SegmentationFileError(f"{where}: masks have dtype {m.dtype}, expected integer class ids")
    if m.shape != x.shape[:3]:
        raise SegmentationFileError(f"{where}: masks have shape {m.shape} but images {x.shape}; each image needs "
                                    "a mask of its height and width")
    if m.min() < 0 or m.max() > 255:
        raise SegmentationFileError(f"{where}: mask values must be class ids 0..255, found "
                                    f"{int(m.min())}..{int(m.max())}")
    if ids is None:
        ids = np.array([f"{i}" for i in range(len(x))])
    elif len(ids) != len(x):
        raise SegmentationFileError(f"{where}: {len(x)} images but {len(ids)} ids")
    return np.ascontiguousarray(x), np.ascontiguousarray(m, dtype=np.uint8), np.asarray(ids).astype(str)


def _class_names(path, info: dict, masks: dict) -> list[str]:
    values = sorted(set().union(*(np.unique(m).tolist() for m in masks.values())))
    classes = info.get("classes")
    if classes:
        ids = sorted(int(k) for k in classes)
        if ids != list(range(len(ids))):
            raise SegmentationFileError(f"{path}: MANIFEST.json class ids {ids} are not 0..{len(ids) - 1}")
        names = [str(classes[str(k)]) for k in ids]
        bad = [v for v in values if v >= len(names)]
        if bad:
            raise SegmentationFileError(f"{path}: mask values {bad} are outside the declared classes "
                                        f"0..{len(names) - 1} ({', '.join(names)}) of MANIFEST.json")
        return names
    return default_class_names(max(values) + 1 if values else 1)


def default_class_names(n_classes: int) -> list[str]:
    return ["background"] + [f"class {k}" for k in range(1, int(n_classes))]


def available_segmentation_sets(root=None, sets=SEGMENTATION_SETS) -> list[str]:
    """Sets whose file is present under the data root."""
    return [s for s in sets if segmentation_path(s, root).is_file()]


# --------------------------------------------------------------------------------------------------------------
# a user's own folder: <folder>/images/<stem>.<ext>, <folder>/masks/<stem>.<ext>


def _list_files(folder: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if not f.is_file() or f.name.startswith(".") or f.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if f.stem in out:
            raise SegmentationFileError(f"{folder}: two files share the name {f.stem!r} "
                                        f"({out[f.stem].name}, {f.name}); names must be unique per folder")
        out[f.stem] = f
    return out


def _to_uint8(a: np.ndarray) -> np.ndarray:
    """8-bit as is; 16-bit or float images rescaled per image from their min..max to 0..255."""
    if a.dtype == np.uint8:
        return a
    a = a.astype(np.float64)
    lo, hi = float(a.min()), float(a.max())
    return np.zeros(a.shape, np.uint8) if hi == lo else np.round((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _read_image(path: Path):
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("L", "I", "I;16", "I;16B", "I;16L", "F", "1"):
                return _to_uint8(np.asarray(im)), im.size
            if im.mode == "LA":
                return np.asarray(im.convert("L")), im.size
            return np.asarray(im.convert("RGB")), im.size
    except (OSError, ValueError, SyntaxError) as exc:
        raise SegmentationFileError(f"{path}: cannot be read as an image ({exc})") from exc


def _read_mask(path: Path):
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode == "P":  # palette images: the palette index is the class id
                arr = np.asarray(im)
            elif im.mode in ("RGB", "RGBA"):
                rgb = np.asarray(im.convert("RGB"))
                if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
                    raise SegmentationFileError(f"{path}: colour mask; masks must hold one class id per pixel "
                                                "(a gray or palette image)")
                arr = rgb[..., 0]
            else:
                arr = np.asarray(im)
            return np.asarray(arr).astype(np.int64), im.size
    except SegmentationFileError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:
        raise SegmentationFileError(f"{path}: cannot be read as a mask image ({exc})") from exc


def _resize(arr: np.ndarray, size: int, nearest: bool) -> np.ndarray:
    from PIL import Image

    if arr.shape[0] == size and arr.shape[1] == size:
        return arr
    if nearest:
        return np.asarray(Image.fromarray(arr.astype(np.uint8)).resize((size, size), Image.NEAREST))
    return np.asarray(Image.fromarray(arr).resize((size, size), Image.BILINEAR))


def load_mask_folder(folder, size: int | None = None, class_names=None, mask_map: dict | None = None,
                     val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0,
                     name: str | None = None) -> SegmentationData:
    """A user's own segmentation data: ``<folder>/images/`` and ``<folder>/masks/`` matched by file stem.

    Images and masks are PNG, JPEG, TIFF or BMP files read with PIL; an image and its mask share their stem
    (``images/case01.jpg`` goes with ``masks/case01.png``). Images become gray (N, H, W) when every image is
    single-channel, else RGB (N, H, W, 3); 16-bit and float images are rescaled per image to 0..255. Masks hold
    one class id per pixel (gray or palette images); ``mask_map`` maps raw values to class ids first (for
    example ``{255: 1}`` for a 0/255 binary mask).

    ``size`` resizes every pair to ``size`` x ``size`` (images bilinear, masks nearest); without it all pairs
    must already share one size. An image and its mask must have the same size before resizing.

    Classes: ``class_names`` (background first) fixes them; otherwise the mask values are the class ids, K is
    the largest value + 1 (at most 32, so that a 0/255 mask is caught) and the names are ``background``,
    ``class 1``, ...

    Split: the pairs, sorted by stem, are permuted with ``numpy.random.default_rng(seed)``; the first
    ``round(test_fraction * N)`` (at least 1) are the test split, the next ``round(val_fraction * N)`` (at least
    1) the val split, the rest train. At least 3 pairs are needed.
    """
    folder = Path(folder)
    img_dir, mask_dir = folder / "images", folder / "masks"
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"{d} does not exist; a mask folder holds images/ and masks/ with one mask "
                                    "per image under the same file name (any of "
                                    f"{', '.join(IMAGE_SUFFIXES)})")
    imgs, msks = _list_files(img_dir), _list_files(mask_dir)
    only_img, only_mask = sorted(set(imgs) - set(msks)), sorted(set(msks) - set(imgs))
    if only_img or only_mask:
        raise SegmentationFileError(
            f"{folder}: images and masks do not match by name: without a mask {only_img[:10]}"
            f"{' ...' if len(only_img) > 10 else ''}, without an image {only_mask[:10]}"
            f"{' ...' if len(only_mask) > 10 else ''}")
    stems = sorted(imgs)
    if len(stems) < 3:
        raise SegmentationFileError(f"{folder}: {len(stems)} image/mask pairs; at least 3 are needed for "
                                    "train, val and test splits")
    xs, ms = [], []
    for stem in stems:
        x, xsize = _read_image(imgs[stem])
        m, msize = _read_mask(msks[stem])
        if xsize != msize:
            raise SegmentationFileError(f"{imgs[stem]} is {xsize[0]}x{xsize[1]} but its mask {msks[stem]} is "
                                        f"{msize[0]}x{msize[1]}; an image and its mask must have the same size")
        if mask_map:
            mapped = m.copy()
            for raw, cls in mask_map.items():
                mapped[m == int(raw)] = int(cls)
            m = mapped
        if m.min() < 0 or m.max() > 255:
            raise SegmentationFileError(f"{msks[stem]}: mask values {int(m.min())}..{int(m.max())} are not "
                                        "class ids 0..255")
        m = m.astype(np.uint8)
        if size is not None:
            x, m = _resize(x, int(size), nearest=False), _resize(m, int(size), nearest=True)
        xs.append(x)
        ms.append(m)
    shapes = {x.shape[:2] for x in xs}
    if len(shapes) > 1:
        raise SegmentationFileError(f"{folder}: images have different sizes {sorted(shapes)[:5]}; pass size= to "
                                    "resize them to one square size")
    if any(x.ndim == 3 for x in xs):
        xs = [np.repeat(x[..., None], 3, -1) if x.ndim == 2 else x for x in xs]
    images, masks = np.stack(xs), np.stack(ms)
    values = np.unique(masks).tolist()
    if class_names is None:
        if max(values) >= MAX_IMPLICIT_CLASSES:
            raise SegmentationFileError(
                f"{folder}: mask values {values[:10]} are not class ids 0..K-1; pass mask_map "
                f"(e.g. {{{values[-1]}: 1}} for a binary mask) or class_names")
        class_names = default_class_names(max(values) + 1)
    else:
        class_names = [str(c) for c in class_names]
        bad = [v for v in values if v >= len(class_names)]
        if bad:
            raise SegmentationFileError(f"{folder}: mask values {bad} are outside the {len(class_names)} classes "
                                        f"{class_names}")
    n = len(stems)
    n_test = max(1, int(round(test_fraction * n)))
    n_val = max(1, int(round(val_fraction * n)))
    if n_test + n_val >= n:
        raise SegmentationFileError(f"{folder}: {n} pairs cannot be split into {n_test} test, {n_val} val and "
                                    "at least 1 train pair")
    order = np.random.default_rng(seed).permutation(n)
    parts = {"test": np.sort(order[:n_test]), "val": np.sort(order[n_test:n_test + n_val]),
             "train": np.sort(order[n_test + n_val:])}
    ids = np.asarray([imgs[s].name for s in stems])
    return SegmentationData(
        name=name or folder.name, path=folder, class_names=class_names,
        images={s: images[i] for s, i in parts.items()}, masks={s: masks[i] for s, i in parts.items()},
        ids={s: ids[i] for s, i in parts.items()},
        info={"split": f"random {1 - val_fraction - test_fraction:.2f}/{val_fraction:.2f}/{test_fraction:.2f} "
                       f"by stem, seed {seed}", "source": str(folder)})


# --------------------------------------------------------------------------------------------------------------
# a dataset on the device


@dataclass(frozen=True)
class SegAugmentConfig:
    """Training augmentation applied identically to an image and its mask.

    Horizontal flip with probability ``flip_p``; then, when ``rotation_degrees`` or ``scale`` is not trivial,
    one affine warp per image: a rotation uniform in +-``rotation_degrees`` and an isotropic zoom uniform in
    ``scale`` about the centre (image bilinear, mask nearest, zero / background fill outside).
    """

    flip_p: float = 0.5
    rotation_degrees: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)

    @classmethod
    def from_dict(cls, d: dict | None) -> "SegAugmentConfig":
        d = dict(d or {})
        if "scale" in d:
            d["scale"] = tuple(float(v) for v in d["scale"])
        return cls(**d)


class SegmentationTensorDataset:
    """Images and masks held as uint8 tensors on one device, normalised and augmented there in batches.

    At construction the uint8 images (N, H, W[, 3]) and masks (N, H, W) are moved to the device once and
    resized to ``image_size`` (images bilinear and rounded back to uint8, masks nearest). Each batch is then
    converted to float, gray repeated to 3 channels, augmented (training, :class:`SegAugmentConfig`, the same
    geometry for image and mask) and normalised with ``mean``/``std`` (ImageNet statistics for ImageNet
    encoders, else 0.5/0.5, PROTOCOL.md section 4). Masks come out as int64 (B, S, S) class ids.
    """

    def __init__(self, images, masks, image_size: int, mean=HALF_MEAN, std=HALF_STD, device=None,
                 augment: SegAugmentConfig | None = None):
        import torch
        import torch.nn.functional as F

        x = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
        m = masks if isinstance(masks, torch.Tensor) else torch.as_tensor(np.asarray(masks))
        if x.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 (0..255), got {x.dtype}")
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise ValueError(f"images must have shape (N, H, W) or (N, H, W, 3), got {tuple(x.shape)}")
        if len(x) == 0:
            raise ValueError("no images: the dataset is empty")
        if tuple(m.shape) != tuple(x.shape[:3]):
            raise ValueError(f"masks must have shape {tuple(x.shape[:3])} (one per image), got {tuple(m.shape)}")
        if int(image_size) < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.device = torch.device(device) if device is not None else default_device()
        self.image_size = s = int(image_size)
        x = x.permute(0, 3, 1, 2).contiguous().to(self.device)
        m = m.to(self.device)
        if tuple(x.shape[-2:]) != (s, s):
            x = F.interpolate(x.float(), size=(s, s), mode="bilinear", align_corners=False,
                              antialias=False).round_().clamp_(0, 255).to(torch.uint8)
            m = F.interpolate(m[:, None].float(), size=(s, s), mode="nearest")[:, 0].to(torch.uint8)
        self.images = x                      # (N, C, S, S) uint8, C in {1, 3}
        self.masks = m.to(torch.uint8)       # (N, S, S) uint8
        self.mean, self.std = tuple(mean), tuple(std)
        self.augment_config = augment or SegAugmentConfig()

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def from_data(cls, data: SegmentationData, split: str, image_size: int, indices=None, **kwargs):
        """One split of a loaded set, optionally restricted to ``indices``."""
        x, m = data.split(split)
        if indices is not None:
            indices = np.asarray(indices)
            if indices.size == 0:
                raise ValueError(f"{data.name} {split}: empty index subset")
            if indices.min() < 0 or indices.max() >= len(x):
                raise ValueError(f"{data.name} {split}: indices out of range 0..{len(x) - 1}")
            x, m = x[indices], m[indices]
        return cls(x, m, image_size, **kwargs)

    def augment(self, x, m, generator=None):
        """Augment a float batch ``x`` (B, C, S, S) on the 0..255 scale and its masks ``m`` (B, S, S) alike."""
        import math

        import torch
        import torch.nn.functional as F

        cfg = self.augment_config
        b = len(x)
        r = torch.rand(b, 3, generator=generator, device=x.device)
        flip = r[:, 0] < cfg.flip_p
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        m = torch.where(flip[:, None, None], m.flip(-1), m)
        lo, hi = cfg.scale
        if cfg.rotation_degrees == 0 and lo == 1 and hi == 1:
            return x, m
        theta = (2 * r[:, 1] - 1) * (cfg.rotation_degrees * math.pi / 180)
        zoom = lo + (hi - lo) * r[:, 2]
        cos, sin = torch.cos(theta) / zoom, torch.sin(theta) / zoom
        zero = torch.zeros_like(cos)
        affine = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        grid = F.affine_grid(affine.to(x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        m = F.grid_sample(m[:, None].to(x.dtype), grid, mode="nearest", padding_mode="zeros",
                          align_corners=False)[:, 0].round().to(m.dtype)
        return x, m

    def batch(self, index, augment: bool = False, generator=None):
        """Images (B, 3, S, S) float32, normalised, and masks (B, S, S) int64 for ``index``."""
        import torch

        index = torch.as_tensor(index, device=self.device)
        x = self.images.index_select(0, index).float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        m = self.masks.index_select(0, index).long()
        if augment:
            x, m = self.augment(x, m, generator)
        return normalize_batch(x, self.mean, self.std), m

    def batches(self, batch_size: int, shuffle: bool = False, augment: bool = False, seed: int = 0,
                drop_last: bool = False):
        """Iterate in batches; shuffling and augmentation draw from a generator seeded by ``seed``."""
        return iterate_batches(self, batch_size, shuffle, augment, seed, drop_last)
