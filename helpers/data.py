"""MedMNIST data layer: locating, downloading, verifying and loading the 2D flags, the paper's folds.

Files live under ``<data root>/medmnist/`` as ``<flag>.npz`` (28 px) or ``<flag>_<size>.npz``; the data root
follows :func:`helpers.paths.data_root` (explicit argument, else ``$DATA_ROOT``, else ``data/``).

Every file is checked against the MD5 that ``medmnist.INFO`` records for it. A file whose MD5 differs is told
apart by its content (:func:`content_sha256`, a hash of the decoded arrays): a re-saved copy of the official
images and labels (its content hash is in :data:`OFFICIAL_CONTENT_SHA256`) loads silently, since its results are
comparable with the official split; a subset (split sizes differ from ``medmnist.INFO``'s ``n_samples``), a
modified copy (the release's label counts differ) or a copy whose content cannot be verified loads with a
:class:`MD5MismatchWarning` that says which. ``MedMNISTData.provenance`` records the outcome. A file that cannot be
read, lacks keys or holds inconsistent arrays raises :class:`MedMNISTFileError` naming the file and the
problem. Arrays are read with ``allow_pickle=False`` always.
"""
from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .paths import data_root

SPLITS = ("train", "val", "test")
SIZES = (28, 64, 128, 224)
MEDMNIST_2D_FLAGS = (
    "pathmnist", "chestmnist", "dermamnist", "octmnist", "pneumoniamnist", "retinamnist",
    "breastmnist", "bloodmnist", "tissuemnist", "organamnist", "organcmnist", "organsmnist",
)
# ImageNet statistics for ImageNet-pretrained models; everything else uses 0.5 / 0.5 (PROTOCOL.md section 4).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF_MEAN = (0.5, 0.5, 0.5)
HALF_STD = (0.5, 0.5, 0.5)


class MedMNISTFileError(ValueError):
    """A MedMNIST file is missing, unreadable, or holds arrays that break the format."""


class MD5MismatchWarning(UserWarning):
    """A MedMNIST file loaded, its MD5 is not the one ``medmnist.INFO`` records, and its content is not the
    official release's: results on it are not comparable with the official split."""


# Provenance of a loaded file (``MedMNISTData.provenance``); only the first two are comparable with the release.
OFFICIAL = "official"
OFFICIAL_RESAVED = "official content, re-saved"
SUBSET = "subset"
MODIFIED = "modified"
UNVERIFIED = "unverified"
COMPARABLE = (OFFICIAL, OFFICIAL_RESAVED)

# SHA-256 of the decoded content (:func:`content_sha256`) of official releases, keyed by (flag, size). Recorded
# from files whose content is the release's: retinamnist's official file (its MD5 matches medmnist.INFO) and the
# re-saved breastmnist of the offline data folder (same images and labels; its split sizes match INFO's
# n_samples and its label counts match OFFICIAL_LABEL_COUNTS; only the label array's shape and dtype changed).
OFFICIAL_CONTENT_SHA256 = {
    ("retinamnist", 28): "39edee1960838590f215919f9c15c195732e04e2e367b0219f8566d0cdefd024",
    ("breastmnist", 28): "20155dcfbfa2bdee06850a355303a9139cc95215dc833e1ddb95acf688c63a1a",
}
# Images per class in each split of the official release (the same at every size), where known.
OFFICIAL_LABEL_COUNTS = {
    "breastmnist": {"train": (147, 399), "val": (21, 57), "test": (42, 114)},
    "pneumoniamnist": {"train": (1214, 3494), "val": (135, 389), "test": (234, 390)},
    "retinamnist": {"train": (486, 128, 206, 194, 66), "val": (54, 12, 28, 20, 6), "test": (174, 46, 92, 68, 20)},
}


def medmnist_info(flag: str) -> dict:
    """``medmnist.INFO[flag]`` for a 2D flag, with a clear error for an unknown or 3D flag."""
    if flag not in MEDMNIST_2D_FLAGS:
        raise ValueError(f"unknown MedMNIST 2D flag {flag!r}; expected one of {', '.join(MEDMNIST_2D_FLAGS)}")
    try:
        from medmnist import INFO
    except ImportError as exc:  # pragma: no cover - medmnist is a dependency
        raise ImportError("the medmnist package is needed for dataset metadata: pip install medmnist") from exc
    return INFO[flag]


def _size_suffix(size: int) -> str:
    if size not in SIZES:
        raise ValueError(f"MedMNIST size must be one of {SIZES}, got {size!r}")
    return "" if size == 28 else f"_{size}"


def candidate_paths(flag: str, size: int = 28, root=None) -> list[Path]:
    """Where a flag's file may live, in the order they are tried."""
    folder = data_root(root) / "medmnist"
    names = [f"{flag}{_size_suffix(size)}.npz"]
    if size == 28:
        names.append(f"{flag}_28.npz")
    return [folder / n for n in names]


def expected_md5(flag: str, size: int = 28) -> str:
    return medmnist_info(flag)[f"MD5{_size_suffix(size)}"]


def file_md5(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def download_medmnist(flag: str, size: int = 28, root=None) -> Path:
    """Download ``<flag>[_<size>].npz`` into ``<root>/medmnist`` with the medmnist package's URL and MD5 check.

    Raises :class:`FileNotFoundError` naming the file, the folder and how to supply it when the download fails
    (for example offline).
    """
    info = medmnist_info(flag)
    suffix = _size_suffix(size)
    target = candidate_paths(flag, size, root)[0]
    target.parent.mkdir(parents=True, exist_ok=True)
    url = info[f"url{suffix}"]
    try:
        from torchvision.datasets.utils import download_url

        download_url(url=url, root=str(target.parent), filename=target.name, md5=info[f"MD5{suffix}"])
    except Exception as exc:  # network errors come in many types; all mean the same to the user
        raise FileNotFoundError(_missing_message(flag, size, root, reason=f"download failed ({exc})")) from exc
    if not target.is_file():
        raise FileNotFoundError(_missing_message(flag, size, root, reason="download produced no file"))
    return target


def _missing_message(flag: str, size: int, root, reason: str) -> str:
    paths = candidate_paths(flag, size, root)
    info = medmnist_info(flag)
    suffix = _size_suffix(size)
    return (
        f"MedMNIST file {paths[0].name} for flag {flag!r} at size {size} is not in the data root "
        f"{data_root(root)} (looked for {', '.join(str(p) for p in paths)}); {reason}. "
        f"Supply it by downloading {info[f'url{suffix}']} (MD5 {info[f'MD5{suffix}']}) into "
        f"{paths[0].parent}, or point DATA_ROOT (or the root argument) at a folder whose medmnist/ holds it."
    )


@dataclass
class MedMNISTData:
    """One MedMNIST flag at one size, all three splits in memory.

    ``images[split]`` is uint8 of shape (N, H, W) for grayscale or (N, H, W, 3) for RGB;
    ``labels[split]`` is int64 of shape (N, n_labels): (N, 1) for single-label tasks, (N, 14) for chestmnist.
    """

    flag: str
    size: int
    path: Path
    task: str
    n_channels: int
    class_names: list[str]
    md5: str
    md5_ok: bool
    images: dict[str, np.ndarray] = field(repr=False)
    labels: dict[str, np.ndarray] = field(repr=False)
    provenance: str = OFFICIAL  # one of OFFICIAL, OFFICIAL_RESAVED, SUBSET, MODIFIED, UNVERIFIED

    @property
    def comparable(self) -> bool:
        """Whether results on this file are comparable with the official release (same images and labels)."""
        return self.provenance in COMPARABLE

    @property
    def multilabel(self) -> bool:
        return self.task.startswith("multi-label")

    @property
    def n_classes(self) -> int:
        """Number of classes (single-label) or of binary labels (multi-label)."""
        return len(self.class_names)

    @property
    def n_labels(self) -> int:
        return self.labels["train"].shape[1]

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return self.images[name], self.labels[name]

    def class_counts(self) -> "dict[str, np.ndarray]":
        """Per split: images per class (single-label) or positives per label (multi-label)."""
        out = {}
        for s in SPLITS:
            y = self.labels[s]
            out[s] = y.sum(axis=0) if self.multilabel else np.bincount(y[:, 0], minlength=self.n_classes)
        return out


def load_medmnist(flag: str, size: int = 28, root=None, download: bool | None = None,
                  verify_md5: bool = True) -> MedMNISTData:
    """Load a MedMNIST 2D flag from the data root.

    Parameters
    ----------
    flag : one of :data:`MEDMNIST_2D_FLAGS`.
    size : 28, 64, 128 or 224.
    root : data root (default: ``$DATA_ROOT`` or ``data/``).
    download : try the medmnist download when the file is absent (default True; set ``MEDMNIST_DOWNLOAD=0``
        to forbid it). Offline, the error names the file, the root and how to supply it.
    verify_md5 : compare with ``medmnist.INFO``; a mismatch warns (:class:`MD5MismatchWarning`), never silently.
    """
    info = medmnist_info(flag)
    path = next((p for p in candidate_paths(flag, size, root) if p.is_file()), None)
    if path is None:
        if download is None:
            download = os.environ.get("MEDMNIST_DOWNLOAD", "1") != "0"
        if not download:
            raise FileNotFoundError(_missing_message(flag, size, root, reason="downloads are switched off"))
        path = download_medmnist(flag, size, root)

    md5 = file_md5(path)
    md5_ok = md5 == expected_md5(flag, size)
    images, labels = _read_npz(path, flag, size, info)
    provenance, reason = (OFFICIAL, "") if md5_ok else classify_content(flag, size, images, labels)
    if verify_md5 and provenance not in COMPARABLE:
        warnings.warn(
            f"{path}: MD5 {md5} differs from medmnist.INFO's {expected_md5(flag, size)} for {flag} at {size} px "
            f"and its content is a {provenance} copy: {reason}; results are not comparable with the official split",
            MD5MismatchWarning, stacklevel=2,
        )
    n_classes = len(info["label"])
    return MedMNISTData(
        flag=flag, size=size, path=path, task=info["task"], n_channels=int(info["n_channels"]),
        class_names=[info["label"][str(i)] for i in range(n_classes)], md5=md5, md5_ok=md5_ok,
        images=images, labels=labels, provenance=provenance,
    )


def content_sha256(images: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> str:
    """SHA-256 of decoded content: per split, the uint8 images and the int64 (N, n_labels) labels, C order.

    Independent of how the file was saved (compression, label dtype, (N,) or (N, 1) labels)."""
    digest = hashlib.sha256()
    for s in SPLITS:
        x = np.ascontiguousarray(images[s], dtype=np.uint8)
        y = np.ascontiguousarray(labels[s], dtype=np.int64)
        y = y[:, None] if y.ndim == 1 else y
        for arr in (x, y):
            digest.update(f"{s}:{arr.shape}:".encode())
            digest.update(arr.tobytes())
    return digest.hexdigest()


def classify_content(flag: str, size: int, images: dict, labels: dict) -> tuple[str, str]:
    """Provenance of a file whose MD5 is not the official one, and the reason: ``(provenance, reason)``.

    A recorded content hash that matches gives :data:`OFFICIAL_RESAVED`; split sizes other than
    ``medmnist.INFO``'s ``n_samples`` give :data:`SUBSET`; the release's sizes with other label counts give
    :data:`MODIFIED`; anything else (no recorded hash, or one that differs) is :data:`UNVERIFIED`."""
    info = medmnist_info(flag)
    sizes = {s: len(labels[s]) for s in SPLITS}
    official_sizes = {s: int(info["n_samples"][s]) for s in SPLITS}
    recorded = OFFICIAL_CONTENT_SHA256.get((flag, size))
    if recorded is not None and content_sha256(images, labels) == recorded:
        return OFFICIAL_RESAVED, "its decoded images and labels are the official release's (content SHA-256)"
    if sizes != official_sizes:
        diff = ", ".join(f"{s} {sizes[s]} of {official_sizes[s]}" for s in SPLITS if sizes[s] != official_sizes[s])
        return SUBSET, f"split sizes differ from the release ({diff})"
    counts = OFFICIAL_LABEL_COUNTS.get(flag)
    if counts is not None and not info["task"].startswith("multi-label"):
        found = {s: tuple(np.bincount(labels[s][:, 0], minlength=len(counts[s])).tolist()) for s in SPLITS}
        bad = [s for s in SPLITS if found[s] != tuple(counts[s])]
        if bad:
            return MODIFIED, ("the release's split sizes but other label counts ("
                              + ", ".join(f"{s} {found[s]} vs {tuple(counts[s])}" for s in bad) + ")")
    what = ("its content hash differs from the recorded official one" if recorded
            else "no official content hash is recorded for it")
    return UNVERIFIED, f"the release's split sizes, but {what}, so the images cannot be verified"


def _read_npz(path: Path, flag: str, size: int, info: dict):
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise MedMNISTFileError(f"{path}: cannot be read as an npz archive ({exc}); the file is truncated or "
                                "corrupt: delete it and download it again") from exc
    images, labels = {}, {}
    with archive:
        missing = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels") if f"{s}_{k}" not in archive.files]
        if missing:
            raise MedMNISTFileError(f"{path}: missing keys {missing} (has {sorted(archive.files)})")
        for s in SPLITS:
            try:
                x = archive[f"{s}_images"]
                y = archive[f"{s}_labels"]
            except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
                raise MedMNISTFileError(f"{path}: the arrays of split {s!r} cannot be read ({exc}); the file is "
                                        "truncated or corrupt") from exc
            images[s], labels[s] = _check_split(path, s, x, y, size, info)
    return images, labels


def _check_split(path, split, x, y, size, info):
    where = f"{path}: split {split!r}"
    channels = int(info["n_channels"])
    if x.dtype != np.uint8:
        raise MedMNISTFileError(f"{where}: images have dtype {x.dtype}, expected uint8")
    expected = (size, size) if channels == 1 else (size, size, channels)
    if x.ndim == 4 and channels == 1 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.shape[1:] != expected:
        raise MedMNISTFileError(f"{where}: images have shape {x.shape}, expected (N, {', '.join(map(str, expected))})")
    if len(x) == 0:
        raise MedMNISTFileError(f"{where}: the split is empty")
    if y.dtype.kind not in "iub":
        raise MedMNISTFileError(f"{where}: labels have dtype {y.dtype}, expected integers")
    n_classes = len(info["label"])
    multilabel = info["task"].startswith("multi-label")
    if y.ndim == 1 and not multilabel:
        y = y[:, None]  # some re-saved copies store (N,); the format is (N, 1)
    n_labels = n_classes if multilabel else 1
    if y.ndim != 2 or y.shape[1] != n_labels:
        raise MedMNISTFileError(f"{where}: labels have shape {y.shape}, expected (N, {n_labels})")
    if len(y) != len(x):
        raise MedMNISTFileError(f"{where}: {len(x)} images but {len(y)} labels")
    y = y.astype(np.int64)
    upper = 1 if multilabel else n_classes - 1
    if y.min() < 0 or y.max() > upper:
        bad = sorted(set(np.unique(y[(y < 0) | (y > upper)]).tolist()))
        raise MedMNISTFileError(f"{where}: labels {bad} out of range 0..{upper} for {info['task']} "
                                f"with {n_classes} classes")
    return np.ascontiguousarray(x), y


def available_flags(size: int = 28, root=None, flags=MEDMNIST_2D_FLAGS) -> list[str]:
    """Flags whose file for ``size`` is present under the data root (no download)."""
    return [f for f in flags if any(p.is_file() for p in candidate_paths(f, size, root))]


def paper_fold_indices(n_train: int, n_val: int, n_classes: int, folds: int = 5,
                       seed: int = 24) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train/val subsets of [D]'s ground-truth protocol (PROTOCOL.md section 2), reproducing its random stream.

    ``np.random.seed(seed)`` once; then for each fold a train draw of ``n_classes * 100`` indices without
    replacement from ``range(n_train)``, and a val draw of ``n_classes * 25`` without replacement only when the
    val split is larger than that (otherwise the whole val split, in order, with no draw). The test split is
    always whole. Note that this seeds NumPy's global generator, as the reference does.
    """
    for name, v in (("n_train", n_train), ("n_val", n_val), ("n_classes", n_classes), ("folds", folds)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    n_train_draw, n_val_draw = n_classes * 100, n_classes * 25
    if n_train < n_train_draw:
        raise ValueError(f"the train split has {n_train} images, fewer than the {n_train_draw} "
                         f"(= {n_classes} classes x 100) that each fold draws")
    np.random.seed(seed)
    out = []
    for _ in range(folds):
        train_idx = np.random.choice(n_train, n_train_draw, replace=False)
        if n_val > n_val_draw:
            val_idx = np.random.choice(n_val, n_val_draw, replace=False)
        else:
            val_idx = np.arange(n_val)
        out.append((train_idx, val_idx))
    return out


# --------------------------------------------------------------------------------------------------------------
# Tensor datasets that live on the device
# --------------------------------------------------------------------------------------------------------------

def default_device() -> "torch.device":
    """CUDA when present, else CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def iterate_batches(dataset, batch_size: int, shuffle: bool = False, augment: bool = False, seed: int = 0,
                    drop_last: bool = False):
    """Batches ``dataset.batch(index, augment, generator)`` over a device dataset: one generator on its device,
    seeded by ``seed``, draws the order (``shuffle``) and the augmentation, so a run is reproducible."""
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    gen = torch.Generator(device=dataset.device)
    gen.manual_seed(int(seed))
    n = len(dataset)
    order = torch.randperm(n, generator=gen, device=dataset.device) if shuffle else torch.arange(n, device=dataset.device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield dataset.batch(order[start:start + batch_size], augment=augment, generator=gen)


class TensorImageDataset:
    """Images and labels held as tensors on one device, transformed there a batch at a time.

    The uint8 images are moved to the device once (at their stored resolution); each batch is converted to
    float, grayscale repeated to 3 channels, augmented (training) or resized (evaluation) to ``image_size``,
    and normalised, all as batched tensor ops (:mod:`helpers.transforms`). No PIL, no per-image Python work,
    no DataLoader workers.

    Parameters
    ----------
    images : uint8 array or tensor, (N, H, W) grayscale or (N, H, W, C) with C in {1, 3}.
    labels : int array (N,) or (N, L).
    image_size : side of the square model input.
    mean, std : per-channel normalisation (:data:`IMAGENET_MEAN`/``STD`` for ImageNet models, else 0.5/0.5).
    device : default :func:`default_device`.
    augment : the augmentation used when a batch asks for it: :class:`helpers.transforms.AugmentConfig` ([D]'s,
        the default) or :class:`helpers.transforms.AffineAugmentConfig` ([R]'s).
    """

    def __init__(self, images, labels, image_size: int, mean=HALF_MEAN, std=HALF_STD, device=None,
                 augment=None):
        import torch

        # here, not at the top: transforms imports torch, and ``import helpers.data`` (profiles, viz,
        # reference) stays torch-free
        from .transforms import AugmentConfig

        x = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
        y = torch.as_tensor(np.asarray(labels)) if not isinstance(labels, torch.Tensor) else labels
        if x.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 (0..255), got {x.dtype}")
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise ValueError(f"images must have shape (N, H, W) or (N, H, W, C) with C in (1, 3), got {tuple(x.shape)}")
        if len(x) == 0:
            raise ValueError("no images: the dataset is empty")
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2 or len(y) != len(x):
            raise ValueError(f"labels must have shape (N,) or (N, L) with N = {len(x)}, got {tuple(y.shape)}")
        if int(image_size) < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.device = torch.device(device) if device is not None else default_device()
        # (N, C, H, W) uint8, moved once
        self.images = x.permute(0, 3, 1, 2).contiguous().to(self.device, non_blocking=True)
        self.labels = y.to(torch.long).to(self.device, non_blocking=True)
        self.image_size = int(image_size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.augment_config = augment or AugmentConfig()

    def __len__(self) -> int:
        return len(self.images)

    @property
    def targets(self):
        """Labels as (N,) for single-label data, (N, L) for multi-label."""
        return self.labels[:, 0] if self.labels.shape[1] == 1 else self.labels

    def batch(self, index, augment: bool = False, generator=None):
        """Transformed images (B, 3, S, S) float32 and labels for ``index`` (a tensor or array of indices)."""
        import torch

        from .transforms import apply_augmentation, normalize_batch, resize_batch  # torch: see __init__

        index = torch.as_tensor(index, device=self.device)
        x = self.images.index_select(0, index).float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = apply_augmentation(x, self.image_size, self.augment_config, generator) if augment \
            else resize_batch(x, self.image_size)
        y = self.labels.index_select(0, index)
        return normalize_batch(x, self.mean, self.std), (y[:, 0] if y.shape[1] == 1 else y)

    def batches(self, batch_size: int, shuffle: bool = False, augment: bool = False, seed: int = 0,
                drop_last: bool = False):
        """Iterate over the dataset in batches; shuffling and augmentation draw from a generator seeded by ``seed``."""
        return iterate_batches(self, batch_size, shuffle, augment, seed, drop_last)

    @classmethod
    def from_medmnist(cls, data: MedMNISTData, split: str, image_size: int, indices=None, **kwargs):
        """A dataset of one split of a loaded flag, optionally restricted to ``indices`` (e.g. a paper fold)."""
        x, y = data.split(split)
        if indices is not None:
            indices = np.asarray(indices)
            if indices.size == 0:
                raise ValueError(f"{data.flag} {split}: empty index subset")
            if indices.min() < 0 or indices.max() >= len(x):
                raise ValueError(f"{data.flag} {split}: indices out of range 0..{len(x) - 1}")
            x, y = x[indices], y[indices]
        return cls(x, y, image_size, **kwargs)


# --------------------------------------------------------------------------------------------------------------
# Summaries for the Data chapter (tidy tables)
# --------------------------------------------------------------------------------------------------------------

def class_count_table(data: MedMNISTData):
    """Tidy table: one row per (flag, split, class) with the number of images (positives for multi-label)."""
    import pandas as pd

    rows = []
    for split, counts in data.class_counts().items():
        for k, n in enumerate(counts):
            rows.append({"flag": data.flag, "split": split, "class_id": k, "class_name": data.class_names[k],
                         "count": int(n), "split_size": int(len(data.labels[split]))})
    return pd.DataFrame(rows)


def fold_table(data: MedMNISTData, folds: int = 5, seed: int = 24):
    """Tidy table of [D]'s fold subsets: one row per (flag, fold, split, class) with the image count.

    Multi-label flags count positives per label; the test split is the whole official test split.
    """
    import pandas as pd

    n_train, n_val = len(data.labels["train"]), len(data.labels["val"])
    rows = []
    for fold, (tr, va) in enumerate(paper_fold_indices(n_train, n_val, data.n_classes, folds, seed), start=1):
        for split, idx in (("train", tr), ("val", va), ("test", np.arange(len(data.labels["test"])))):
            y = data.labels[split][idx]
            counts = y.sum(0) if data.multilabel else np.bincount(y[:, 0], minlength=data.n_classes)
            for k, n in enumerate(counts):
                rows.append({"flag": data.flag, "fold": fold, "split": split, "class_id": k,
                             "class_name": data.class_names[k], "count": int(n), "subset_size": int(len(idx))})
    return pd.DataFrame(rows)


def sample_indices(data: MedMNISTData, split: str = "train", per_class: int = 6, seed: int = 0) -> np.ndarray:
    """Up to ``per_class`` image indices per class (first label for multi-label), drawn with a fixed seed."""
    rng = np.random.default_rng(seed)
    y = data.labels[split]
    cls = y.argmax(1) if data.multilabel else y[:, 0]
    picks = []
    for k in range(data.n_classes):
        idx = np.flatnonzero(cls == k)
        picks.append(rng.choice(idx, min(per_class, len(idx)), replace=False) if len(idx) else idx)
    return np.concatenate(picks) if picks else np.zeros(0, dtype=int)
