"""Targets for :mod:`helpers.rank`: a user's labelled images, read once, resized on the device per candidate.

Four forms (:func:`load_target` tells them apart):

``FLAG`` or ``FLAG:SPLIT`` (a MedMNIST 2D flag, e.g. ``breastmnist``, ``pneumoniamnist:test``)
    read through :func:`helpers.data.load_medmnist` from the data root. The default split ``fold1`` is
    [D]'s fold-1 train subset (:func:`helpers.data.paper_fold_indices`), the images the scoring stage scores
    and the fine-tuning stage fine-tunes on, so a ranking can be compared with the ground truth of
    ``results/<profile>/ground_truth.csv``; ``train``, ``val`` and ``test`` are the whole official splits.
    ``max_images`` takes the *first* images of the subset (as the scoring stage does: the fold is already a
    random draw).
a folder with one sub-folder per class
    ``<folder>/<class>/<image>``; PNG, JPEG, TIFF or BMP; any size; grayscale or colour; or DICOM / NIfTI
    files (below). Class ids follow the sorted sub-folder names. Hidden files and files with other suffixes
    are ignored (and counted).
an ``.npz`` file with ``images`` and ``labels``
    ``images`` uint8 (N, H, W) or (N, H, W, 1 | 3), or grayscale int16 / uint16 / int32 / float (N, H, W),
    taken as physical values and windowed like DICOM (below; without a window, one min-max over the target,
    which is how uint16 was always scaled); ``labels`` integer (N,) class ids or an (N, L) 0/1 multi-hot
    matrix; an optional ``classes`` string array names them. Optional: ``groups`` (N,) (images of one patient),
    ``rescale_slope`` / ``rescale_intercept`` and ``window_center`` / ``window_width`` (a number or one per
    image). Read with ``allow_pickle=False``.
a ``.csv`` of image paths
    a ``path`` column (else the first column) of image (or DICOM / NIfTI) paths relative to the CSV, and one
    column per label: several 0/1 columns make a multi-label target; a single column is a class label (names
    or integers). A column named ``group``, ``patient`` or ``patient_id`` is each row's group, not a label.

DICOM and NIfTI (:mod:`helpers.rank.medical`, the optional extra ``medical``), in folders and CSVs: rescaled to
physical units, windowed to 0..255 (``window``), MONOCHROME1 inverted, multi-frame files and volumes split into
2-D slices (``slice_axis``, ``central_slices``), each slice labelled like its file; :attr:`Target.groups` keeps
the slices of one file and the files of one patient (``group_by``) together. A target is either ordinary
images or DICOM / NIfTI files, not both.

Decoding (folders and CSVs): :mod:`helpers.rank.images`, which also writes image folders.

Images keep their own size up to ``max_side`` (512) pixels on the longer side (larger ones are reduced by
PIL with antialiasing when decoded, to bound memory); each candidate's input is made on the device, a batch
at a time (:class:`TargetImages`): bilinear resize to its square input size (antialiased when shrinking, no
crop) and its own normalisation.

``max_images`` on folders, npz and CSV targets keeps a seeded class-stratified subset (every class keeps at
least 2 images where it has them) *before* decoding, so a large folder is never read whole (DICOM / NIfTI:
every header is read, the pixels of the subset only). With groups it keeps or drops whole groups
(:func:`_stratified_groups`), so it can keep fewer images (or, to keep 2 images a class, more).

``skip_unreadable`` leaves out files that cannot be read, counts them in :attr:`Target.description` and
names the first, instead of stopping at the first with its name.

Bad input raises :class:`TargetError` (a ``ValueError``) naming the file or value: a missing path, an empty
folder, a single class, a class with fewer than 2 images, an unreadable image, mixed bit depths, labels
that do not match the images.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import (MEDMNIST_2D_FLAGS, default_device, iterate_batches, load_medmnist,
                    paper_fold_indices)
from ..transforms import normalize_batch
from . import medical as MD
from .images import (IMAGE_SUFFIXES, MAX_SIDE, RankInputError, TargetError, decode_files,  # noqa: F401
                     decode_images, skipped_note, write_busi_folder, write_image_folder)
from .order import canonical_order

MEDMNIST_SPLITS = ("fold1", "train", "val", "test")
#: a CSV column with one of these names (any case) is the group (patient) of each row, not a label
GROUP_COLUMNS = ("group", "patient", "patient_id", "patientid")


@dataclass
class Target:
    """Labelled target images: ``images`` is a list of uint8 arrays (H, W) or (H, W, 3), any sizes;
    ``labels`` int64 (N,) class ids or (N, L) 0/1 multi-hot; ``classes`` the class (or label) names."""

    name: str
    kind: str
    images: list = field(repr=False)
    labels: np.ndarray = field(repr=False)
    classes: list
    description: str = ""
    files: list | None = field(default=None, repr=False)
    _fingerprint: str | None = field(default=None, repr=False)
    #: one group id per image (int64; the slices of one volume, the files of one patient share one), kept
    #: together by the bootstrap, the probe folds and ``max_images`` subsets; None: every image its own group
    groups: np.ndarray | None = field(default=None, repr=False)
    #: per image, where in its file it is (``"frame 3"``, ``"slice 12 of volume 0"``; ``""`` for a 2-D file);
    #: None for targets of 2-D files only
    slices: list | None = field(default=None, repr=False)

    def __post_init__(self):
        if len(self.images) != len(self.labels):
            raise TargetError(f"target {self.name!r}: {len(self.images)} images but {len(self.labels)} labels")
        if self.groups is not None:
            self.groups = np.asarray(self.groups)
            if self.groups.shape != (len(self.images),):
                raise TargetError(f"target {self.name!r}: groups of shape {self.groups.shape} for "
                                  f"{len(self.images)} images; one group id per image")
        for name in ("files", "slices"):
            value = getattr(self, name)
            if value is not None and len(value) != len(self.images):
                raise TargetError(f"target {self.name!r}: {len(value)} {name} for {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def multilabel(self) -> bool:
        return self.labels.ndim == 2

    @property
    def fingerprint(self) -> str:
        """SHA-256 (16 hex) of the images and labels (and the groups, when there are): what the feature cache
        keys on."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for im in self.images:
                h.update(str(im.shape).encode())
                h.update(np.ascontiguousarray(im).tobytes())
            h.update(str(self.labels.shape).encode())
            h.update(np.ascontiguousarray(self.labels).tobytes())
            if self.groups is not None:  # only then, so the fingerprints of targets without groups stay
                h.update(b"groups")
                h.update(np.ascontiguousarray(self.groups.astype(str) if self.groups.dtype.kind in "OUS"
                                              else self.groups.astype(np.int64)).tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def class_counts(self) -> dict:
        """Images per class (positives per label for multi-label)."""
        counts = self.labels.sum(0) if self.multilabel else np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}

    def dataset(self, image_size: int, mean, std, device=None) -> "TargetImages":
        """The images on ``device`` as candidate inputs: (B, 3, S, S) float batches, normalised."""
        return TargetImages(self.images, self.labels, image_size, mean, std, device)


class TargetImages:
    """Target images held on the device as uint8 at their own sizes (grouped by shape), turned into a
    candidate's input a batch at a time: grayscale repeated to 3 channels, bilinear resize to
    ``image_size`` x ``image_size`` (antialiased when shrinking, no crop), ``(x / 255 - mean) / std``.

    It has the interface :func:`helpers.models.extract` and FU use (``device``, ``batch``, ``batches``,
    ``targets``, ``len``), like :class:`helpers.data.TensorImageDataset`."""

    def __init__(self, images, labels, image_size: int, mean, std, device=None):
        import torch

        self.device = torch.device(device) if device is not None else default_device()
        self.image_size = int(image_size)
        if self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.mean, self.std = tuple(mean), tuple(std)
        shapes: dict = {}
        group = np.empty(len(images), dtype=np.int64)
        pos = np.empty(len(images), dtype=np.int64)
        members: list[list[int]] = []
        for i, im in enumerate(images):
            g = shapes.setdefault(im.shape, len(shapes))
            if g == len(members):
                members.append([])
            group[i], pos[i] = g, len(members[g])
            members[g].append(i)
        self.groups = []
        for shape, g in shapes.items():
            stack = np.stack([images[i] for i in members[g]])
            if stack.ndim == 3:
                stack = stack[..., None]
            self.groups.append(torch.from_numpy(stack).permute(0, 3, 1, 2).contiguous().to(self.device))
        self.group = torch.from_numpy(group).to(self.device)
        self.pos = torch.from_numpy(pos).to(self.device)
        y = torch.as_tensor(np.asarray(labels))
        self.labels = (y[:, None] if y.ndim == 1 else y).to(torch.long).to(self.device)

    def __len__(self) -> int:
        return len(self.group)

    @property
    def targets(self):
        return self.labels[:, 0] if self.labels.shape[1] == 1 else self.labels

    def batch(self, index, augment: bool = False, generator=None):
        import torch
        import torch.nn.functional as F

        if augment:
            raise ValueError("target images are never augmented")
        index = torch.as_tensor(index, device=self.device)
        size = self.image_size
        out = torch.empty(len(index), 3, size, size, device=self.device)
        groups = self.group.index_select(0, index)
        for g in torch.unique(groups).tolist():
            sel = torch.nonzero(groups == g).flatten()
            x = self.groups[g].index_select(0, self.pos.index_select(0, index[sel])).float()
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            if x.shape[-2:] != (size, size):
                shrink = x.shape[-2] > size or x.shape[-1] > size
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
            out[sel] = x
        y = self.labels.index_select(0, index)
        return normalize_batch(out, self.mean, self.std), (y[:, 0] if y.shape[1] == 1 else y)

    def batches(self, batch_size: int, shuffle: bool = False, augment: bool = False, seed: int = 0,
                drop_last: bool = False):
        return iterate_batches(self, batch_size, shuffle, augment, seed, drop_last)


# ----------------------------------------------------------------------------------------------------------
# loading


def load_target(spec, *, max_images: int | None = None, seed: int = 0, data_root=None, split: str | None = None,
                medmnist_size: int = 28, max_side: int = MAX_SIDE, window=None, slice_axis=None,
                central_slices: int | None = None, skip_unreadable: bool = False,
                group_by: str = "patient") -> Target:
    """A :class:`Target` from a MedMNIST flag (``FLAG`` or ``FLAG:SPLIT``), an image folder, an ``.npz`` or a
    ``.csv`` (module docstring). ``max_images`` subsamples (seeded by ``seed``); :class:`TargetError` on bad
    input.

    DICOM and NIfTI (folders, CSVs) and int16 / float ``.npz`` images (:mod:`helpers.rank.medical`):
    ``window`` (None: each file's own, else one min-max; ``"CENTER,WIDTH"``, a preset such as ``"ct-lung"``,
    ``"file"``, ``"minmax"``), ``slice_axis`` (NIfTI: 0, 1, 2 or sagittal / coronal / axial; default 2),
    ``central_slices`` (keep the K central slices of every volume), ``group_by`` (``patient``, ``series``,
    ``file``). ``skip_unreadable``: leave out files that cannot be read (the description counts them and
    names the first) instead of stopping at the first."""
    if isinstance(spec, Target):
        return spec
    if max_images is not None and int(max_images) < 4:
        raise TargetError(f"max_images must be at least 4, got {max_images}")
    opts = _medical_options(window, slice_axis, central_slices, group_by, skip_unreadable)
    text = str(spec)
    path = Path(text).expanduser()
    flag, _, flag_split = text.partition(":")
    if not path.exists() and flag.lower() in MEDMNIST_2D_FLAGS:
        _refuse_window(opts, f"MedMNIST {flag.lower()}", "8-bit images")
        return _medmnist_target(flag.lower(), split or flag_split or "fold1", max_images, data_root, medmnist_size)
    if not path.exists():
        import difflib

        close = difflib.get_close_matches(flag.lower(), MEDMNIST_2D_FLAGS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else (
            f"; a target is a folder, an .npz, a .csv or a MedMNIST flag ({', '.join(MEDMNIST_2D_FLAGS)})")
        raise TargetError(f"target {text!r} does not exist{hint}")
    if path.is_dir():
        return _folder_target(path, max_images, seed, max_side, opts)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _npz_target(path, max_images, seed, opts)
    if suffix == ".csv":
        return _csv_target(path, max_images, seed, max_side, opts)
    raise TargetError(f"target {path}: expected a folder of class sub-folders, an .npz or a .csv file "
                      f"(got a {suffix or 'suffix-less'} file)")


@dataclass(frozen=True)
class _Options:
    window: object
    slice_axis: object
    central_slices: int | None
    group_by: str
    skip_unreadable: bool


def _medical_options(window, slice_axis, central_slices, group_by, skip_unreadable) -> _Options:
    try:
        window = MD.parse_window(window)
        slice_axis = MD.parse_slice_axis(slice_axis)
    except ValueError as exc:
        raise TargetError(str(exc)) from exc
    if central_slices is not None and (int(central_slices) != central_slices or int(central_slices) < 1):
        raise TargetError(f"central_slices must be a positive integer, got {central_slices!r}")
    if group_by not in MD.GROUP_RULES:
        raise TargetError(f"group_by {group_by!r}: expected one of {', '.join(MD.GROUP_RULES)}")
    return _Options(window, slice_axis, None if central_slices is None else int(central_slices), group_by,
                    bool(skip_unreadable))


def _refuse_window(opts: _Options, where: str, what: str) -> None:
    if opts.window.rule != "auto":
        raise TargetError(f"{where} holds {what}; a window ({opts.window}) applies only to DICOM, NIfTI and "
                          "int16 / uint16 / float .npz images")


def _medmnist_target(flag, split, max_images, data_root, size) -> Target:
    if split not in MEDMNIST_SPLITS:
        raise TargetError(f"MedMNIST split {split!r} for {flag}: expected one of {', '.join(MEDMNIST_SPLITS)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d = load_medmnist(flag, size=size, root=data_root)
    except (FileNotFoundError, ValueError) as exc:
        raise TargetError(f"MedMNIST target {flag!r}: {exc}") from exc
    if split == "fold1":
        idx = paper_fold_indices(len(d.labels["train"]), len(d.labels["val"]), d.n_classes, 1)[0][0]
        x, y = d.images["train"][idx], d.labels["train"][idx]
        where = "fold 1's train subset of [D] (paper_fold_indices)"
    else:
        x, y = d.images[split], d.labels[split]
        where = f"the {split} split"
    if max_images is not None:
        x, y = x[: int(max_images)], y[: int(max_images)]
        where += f", first {len(x)} images"
    labels = y if d.multilabel else y[:, 0]
    target = Target(flag if split == "fold1" else f"{flag}:{split}", "medmnist", list(x), labels.astype(np.int64),
                    list(d.class_names), f"MedMNIST {flag} at {size} px, {where}")
    _check_classes(target, f"MedMNIST {flag}")
    return target


def _stratified(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Indices of a seeded subset of ``n`` samples, stratified by class (by first positive for multi-label);
    every class keeps at least 2 samples where it has them. Sorted; everything when ``n`` is None or >= N."""
    N = len(labels)
    if n is None or n >= N:
        return np.arange(N)
    key = labels.argmax(1) if labels.ndim == 2 else labels
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(key, return_counts=True)
    quota = np.maximum(np.minimum(counts, 2), np.floor(counts * n / N).astype(int))
    while quota.sum() < n:  # hand out the rounding remainder to the classes with the most left
        quota[np.argmax(counts - quota)] += 1
    picks = [rng.choice(np.flatnonzero(key == c), int(q), replace=False) for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picks))


def _stratified_groups(labels: np.ndarray, groups: np.ndarray | None, n: int | None, seed: int) -> np.ndarray:
    """Like :func:`_stratified`, but whole groups are kept or dropped: each group counts for the class most of
    its images have (the lowest on a tie; first positive for multi-label), the groups of each class are drawn
    in a seeded random order and taken while the class's quota of images is not exceeded; then the smallest
    groups are added to a class with fewer than 2 images (where it has them), and a class with no image at
    all gets the smallest group that has one. Sorted; everything when ``n`` is None or
    >= N, or ``groups`` is None (then :func:`_stratified`)."""
    N = len(labels)
    if groups is None:
        return _stratified(labels, n, seed)
    if n is None or n >= N:
        return np.arange(N)
    key = labels.argmax(1) if labels.ndim == 2 else labels
    gid = np.unique(np.asarray(groups), return_inverse=True)[1].reshape(-1)
    n_groups = int(gid.max()) + 1
    size = np.bincount(gid, minlength=n_groups)
    classes, counts = np.unique(key, return_counts=True)
    votes = np.zeros((n_groups, len(classes)), dtype=np.int64)
    np.add.at(votes, (gid, np.searchsorted(classes, key)), 1)
    group_class = votes.argmax(1)
    quota = np.maximum(np.minimum(counts, 2), np.floor(counts * n / N).astype(int))
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(len(classes)):
        members = np.flatnonzero(group_class == c)
        if not len(members):
            continue
        taken, total = [], 0
        for g in rng.permutation(members):
            if total + size[g] <= quota[c]:
                taken.append(g)
                total += size[g]
        rest = sorted((g for g in members if g not in taken), key=lambda g: (size[g], g))
        while total < min(2, counts[c]) and rest:  # every class keeps 2 images where it has them
            taken.append(rest.pop(0))
            total += size[taken[-1]]
        chosen.extend(taken)
    for c in classes:  # a class whose images all sit in groups counted for other classes
        if not (key[np.isin(gid, chosen)] == c).any():
            chosen.append(min(np.unique(gid[key == c]), key=lambda g: (size[g], g)))
    return np.flatnonzero(np.isin(gid, chosen))


def _group_ids(keys) -> np.ndarray:
    """int64 ids 0..G-1 of group keys, in the sorted order of the keys (the same keys, the same ids)."""
    return np.unique(np.asarray([str(k) for k in keys]), return_inverse=True)[1].reshape(-1).astype(np.int64)


def _file_kind(f: Path) -> str | None:
    """``"image"`` (PNG, JPEG, TIFF, BMP), ``"dicom"``, ``"nifti"`` or None (neither)."""
    if f.suffix.lower() in IMAGE_SUFFIXES:
        return "image"
    return MD.medical_kind(f)


def _refuse_mix(kinds: dict, where: str) -> None:
    if "image" in kinds and len(kinds) > 1:
        other = next(k for k in kinds if k != "image")
        raise TargetError(f"{where} mixes ordinary images (e.g. {kinds['image'][0]}) with {other.upper()} files "
                          f"(e.g. {kinds[other][0]}); use one or the other (a DICOM or NIfTI is windowed from "
                          "physical units, an ordinary image is already display values)")


def _folder_target(folder: Path, max_images, seed, max_side, opts) -> Target:
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        loose = [p.name for p in folder.iterdir() if p.is_file() and _file_kind(p) is not None]
        hint = (f" (it holds {len(loose)} images directly: put them into one sub-folder per class)" if loose
                else "")
        raise TargetError(f"image folder {folder} has no class sub-folders{hint}")
    files, labels, ignored, kinds = [], [], 0, {}
    for k, d in enumerate(class_dirs):
        found = 0
        for f in sorted(d.iterdir()):
            if f.name.startswith(".") or not f.is_file():
                continue
            kind = _file_kind(f)
            if kind is None:
                ignored += 1
                continue
            kinds.setdefault(kind, []).append(f)
            files.append(f)
            labels.append(k)
            found += 1
        if not found:
            raise TargetError(f"class folder {d} holds no images ({', '.join(IMAGE_SUFFIXES)}, DICOM or NIfTI)")
    classes = [d.name for d in class_dirs]
    if len(classes) < 2:
        raise TargetError(f"image folder {folder} has a single class ({classes[0]!r}); ranking needs at least "
                          "2 classes (one sub-folder per class)")
    _refuse_mix(kinds, f"image folder {folder}")
    labels = np.asarray(labels, dtype=np.int64)
    extra = f"; {ignored} non-image files ignored" if ignored else ""
    if "image" not in kinds:
        return _medical_target(folder.name, "folder", f"folder {folder}", files, labels, classes, None,
                               max_images, seed, max_side, opts, extra, ignore_empty=True)
    _refuse_window(opts, f"image folder {folder}", "ordinary images")
    keep = _stratified(labels, max_images, seed)
    files = [files[i] for i in keep]
    images, note, kept, skipped = decode_files(files, max_side, opts.skip_unreadable)
    target = Target(folder.name, "folder", images, labels[keep][kept], classes,
                    f"image folder {folder}: {len(images)} images{_subset_note(len(keep), len(labels))}, "
                    f"{note}{extra}{skipped_note(skipped)}", [str(files[i]) for i in kept])
    _check_classes(target, f"image folder {folder}")
    return target


def _medical_target(name, kind, where, files, labels, classes, group_keys, max_images, seed, max_side, opts,
                    extra="", ignore_empty=False) -> Target:
    """A target of DICOM / NIfTI files (:mod:`helpers.rank.medical`): every slice gets its file's labels,
    ``group_keys`` (one per file; None: the medical rule) its group. Headers are read for all files, pixels
    only for the slices of the ``max_images`` subset."""
    skipped, volumes, vol_labels, vol_keys, no_image = [], [], [], [], 0
    try:
        for i, f in enumerate(files):
            try:
                vol = MD.scan(f, slice_axis=opts.slice_axis, central_slices=opts.central_slices,
                              group_by=opts.group_by)
            except MD.MedicalReadError as exc:
                if not opts.skip_unreadable:
                    raise TargetError(f"{exc} (skip_unreadable / --skip-unreadable leaves such files out)") from exc
                skipped.append(str(exc))
                continue
            if not vol.has_image:
                if not ignore_empty:
                    raise TargetError(f"{where}: DICOM file {f} holds no image (no Rows / Columns: a DICOMDIR "
                                      "or a report?)")
                no_image += 1
                continue
            volumes.append(vol)
            vol_labels.append(labels[i])
            vol_keys.append(vol.group if group_keys is None else f"group:{group_keys[i]}")
    except ImportError as exc:
        raise TargetError(f"{where}: {exc}") from exc
    if not volumes:
        raise TargetError(f"{where}: no readable DICOM / NIfTI image{skipped_note(skipped)}")
    series_cut = 0
    if opts.central_slices is not None:  # a series of single-frame files keeps its central files
        kept_vols = MD.central_of_series(volumes, opts.central_slices)
        series_cut = len(volumes) - len(kept_vols)
        volumes = [volumes[i] for i in kept_vols]
        vol_labels = [vol_labels[i] for i in kept_vols]
        vol_keys = [vol_keys[i] for i in kept_vols]
    item_vol = np.repeat(np.arange(len(volumes)), [len(v.refs) for v in volumes])
    item_ref = [r for v in volumes for r in v.refs]
    item_labels = np.asarray(vol_labels, dtype=np.int64)[item_vol]
    item_groups = _group_ids(vol_keys)[item_vol]
    keep = _stratified_groups(item_labels, item_groups, max_images, seed)
    wanted: dict = {}
    for i in keep:
        wanted.setdefault(int(item_vol[i]), []).append(i)
    slices, rows, read_skipped = [], [], 0
    for v, items in wanted.items():
        try:
            got = MD.read_slices(volumes[v], [item_ref[i] for i in items], slice_axis=opts.slice_axis)
        except MD.MedicalReadError as exc:
            if not opts.skip_unreadable:
                raise TargetError(f"{exc} (skip_unreadable / --skip-unreadable leaves such files out)") from exc
            skipped.append(str(exc))
            read_skipped += 1
            continue
        for i, sl in zip(items, got):
            sl.pixels = MD.shrink(sl.pixels, max_side)
            slices.append(sl)
            rows.append(i)
    if not slices:
        raise TargetError(f"{where}: no readable DICOM / NIfTI image{skipped_note(skipped)}")
    order = np.argsort(rows, kind="stable")  # the items' order (files, then slices), whatever the read order
    slices = [slices[j] for j in order]
    rows = np.asarray(rows)[order]
    names = [f"{volumes[item_vol[i]].path}" + (f" ({volumes[item_vol[i]].where(item_ref[i])})"
                                               if volumes[item_vol[i]].where(item_ref[i]) else "") for i in rows]
    try:
        images, note = MD.to_uint8(slices, opts.window, names)
    except ValueError as exc:
        raise TargetError(str(exc)) from exc
    groups = _group_ids(item_groups[rows])
    used = sorted({int(item_vol[i]) for i in rows})
    n_dicom = sum(volumes[v].kind == "dicom" for v in used)
    modalities = sorted({volumes[v].modality for v in used if volumes[v].modality})
    multi = sum(len(volumes[v].refs) > 1 or volumes[v].where(volumes[v].refs[0]) != "" for v in used)
    axis = opts.slice_axis
    sizes = {a.shape[:2] for a in images}
    size = (f"size {next(iter(sizes))[1]}x{next(iter(sizes))[0]}" if len(sizes) == 1 else
            f"{len(sizes)} different sizes, {min(min(s) for s in sizes)} to {max(max(s) for s in sizes)} px")
    spans = sum(len(np.unique(item_labels[rows][groups == g], axis=0)) > 1 for g in np.unique(groups))
    lone = [] if item_labels.ndim == 2 else [
        classes[c] for c in np.unique(item_labels[rows]) if len(np.unique(groups[item_labels[rows] == c])) < 2]
    desc = (f"{where}: {len(images)} images{_subset_note(len(keep), len(item_labels))} from {len(used)} files "
            f"({n_dicom} DICOM{' ' + '/'.join(modalities) if modalities else ''}, {len(used) - n_dicom} NIfTI)"
            + (f", {multi} of them volumes split into slices (DICOM: frames; NIfTI: axis {axis})" if multi else "")
            + (f", the central {opts.central_slices} slices of each volume" if opts.central_slices else "")
            + (f" ({series_cut} single-frame files outside the central slices of their series left out)"
               if series_cut else "")
            + f", {int(groups.max()) + 1} groups (group_by={opts.group_by}"
            + (f"; {spans} span several classes" if spans else "")
            + (f"; classes with a single group, which no fold can split: {lone}" if lone else "")
            + f"), in physical units, {note}, {size}"
            + extra + (f"; {no_image} DICOM files without an image ignored" if no_image else "")
            + skipped_note(skipped))
    target = Target(name, kind, images, item_labels[rows], classes, desc,
                    [str(volumes[item_vol[i]].path) for i in rows], groups=groups,
                    slices=[volumes[item_vol[i]].where(item_ref[i]) for i in rows])
    _check_classes(target, where)
    return target


def _subset_note(kept: int, total: int) -> str:
    return f" (a stratified subset of {total})" if kept < total else ""


_NPZ_EXTRA = ("groups", "rescale_slope", "rescale_intercept", "window_center", "window_width")


def _npz_target(path: Path, max_images, seed, opts) -> Target:
    import zipfile

    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise TargetError(f"{path}: cannot be read as an npz archive ({type(exc).__name__}: {exc})") from exc
    with archive:
        missing = [k for k in ("images", "labels") if k not in archive.files]
        if missing:
            raise TargetError(f"{path}: missing arrays {missing}; an npz target needs 'images' and 'labels' "
                              f"(it has {sorted(archive.files)})")
        try:
            x, y = archive["images"], archive["labels"]
            names = archive["classes"] if "classes" in archive.files else None
            more = {k: archive[k] for k in _NPZ_EXTRA if k in archive.files}
        except ValueError as exc:  # object arrays refused by allow_pickle=False
            raise TargetError(f"{path}: {exc} (store plain numeric arrays, and 'classes' as a string array)") from exc
    if x.dtype.kind not in "uif" or x.dtype.itemsize > 8 or x.dtype == np.uint64:
        raise TargetError(f"{path}: 'images' has dtype {x.dtype}; expected uint8, or int16 / uint16 / int32 / "
                          "float (rescaled and windowed)")
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if not (x.ndim == 3 or (x.ndim == 4 and x.shape[-1] == 3)):
        raise TargetError(f"{path}: 'images' has shape {x.shape}; expected (N, H, W) or (N, H, W, 1 | 3)")
    if x.ndim == 4 and x.dtype != np.uint8:
        raise TargetError(f"{path}: colour 'images' must be uint8 (got {x.dtype}); rescaling and windowing "
                          "apply to grayscale (N, H, W) images")
    labels, classes = _check_label_array(y, len(x), f"{path}: 'labels'")
    if names is not None:
        names = [str(n) for n in np.asarray(names).ravel()]
        if len(names) != len(classes):
            raise TargetError(f"{path}: 'classes' names {len(names)} classes but the labels have {len(classes)}")
        classes = names
    for k, v in more.items():
        if v.ndim > 1 or (v.ndim == 1 and len(v) != len(x)) or (k != "groups" and v.dtype.kind not in "uif"):
            raise TargetError(f"{path}: '{k}' has shape {v.shape} and dtype {v.dtype}; expected "
                              + ("one group id per image (N,)" if k == "groups" else "a number or one per image (N,)"))
    if x.dtype == np.uint8 and set(more) - {"groups"}:
        raise TargetError(f"{path}: {sorted(set(more) - {'groups'})} given for uint8 images; rescaling and "
                          "windowing apply to int16 / uint16 / int32 / float images")
    if x.dtype == np.uint8:
        _refuse_window(opts, str(path), "uint8 images")
    groups = more.get("groups")
    if groups is not None:
        groups = _group_ids(groups)
    if max_images is not None and int(max_images) < len(x):
        # the subset is drawn from the canonical order, so the same images stored in another order give the
        # same subset (helpers.rank.order)
        order = canonical_order(x, labels)
        x, labels = x[order], labels[order]
        groups = None if groups is None else groups[order]
        more = {k: (v[order] if v.ndim == 1 else v) for k, v in more.items()}
    keep = _stratified_groups(labels, groups, max_images, seed)
    x, labels = x[keep], labels[keep]
    groups = None if groups is None else _group_ids(groups[keep])
    if x.dtype == np.uint8:
        images, note = list(x), "8-bit"
    else:
        per = {k: np.broadcast_to(np.asarray(v, np.float64), (len(keep),) if v.ndim == 0 else v.shape)
               for k, v in more.items() if k != "groups"}
        per = {k: (v if v.ndim == 0 or len(v) == len(keep) else v[keep]) for k, v in per.items()}
        if ("window_center" in per) != ("window_width" in per):
            raise TargetError(f"{path}: 'window_center' and 'window_width' come together")
        slope = per.get("rescale_slope", np.ones(len(keep)))
        inter = per.get("rescale_intercept", np.zeros(len(keep)))
        slices = []
        for i in range(len(keep)):
            phys = x[i].astype(np.float64) * float(slope[i]) + float(inter[i])
            if not np.isfinite(phys).all():
                raise TargetError(f"{path}: image {int(keep[i])} has NaN or infinite values")
            window = ((float(per["window_center"][i]), float(per["window_width"][i]))
                      if "window_center" in per else None)
            if window is not None and not window[1] >= 1:
                raise TargetError(f"{path}: image {int(keep[i])} has window width {window[1]:g} < 1")
            slices.append(MD.Slice(phys, window=window))
        try:
            images, rules = MD.to_uint8(slices, opts.window, [f"{path}: image {int(k)}" for k in keep])
        except ValueError as exc:
            raise TargetError(str(exc)) from exc
        scaled = ("rescale_slope" in per or "rescale_intercept" in per)
        note = f"{x.dtype}{', rescaled by its slope / intercept' if scaled else ''}: {rules}"
    grouped = f", {int(groups.max()) + 1} groups" if groups is not None else ""
    target = Target(path.stem, "npz", images, labels, classes,
                    f"npz {path}: {len(images)} images{_subset_note(len(keep), len(y))} of {x.shape[1:]}{grouped} "
                    f"({note})", groups=groups)
    _check_classes(target, f"{path}")
    return target


def _check_label_array(y, n: int, where: str):
    """int64 labels (N,) 0..C-1 or (N, L) 0/1, and default class names; TargetError otherwise."""
    y = np.asarray(y)
    if y.dtype.kind not in "iub":
        raise TargetError(f"{where} has dtype {y.dtype}; expected integers")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim not in (1, 2):
        raise TargetError(f"{where} has shape {y.shape}; expected (N,) class ids or (N, L) 0/1 labels")
    if len(y) != n:
        raise TargetError(f"{where}: {len(y)} labels for {n} images; they must match one to one")
    y = y.astype(np.int64)
    if y.ndim == 2:
        if not np.isin(y, (0, 1)).all():
            raise TargetError(f"{where}: a multi-label (N, L) matrix must hold only 0 and 1")
        return y, [f"label_{j}" for j in range(y.shape[1])]
    if y.min() < 0:
        raise TargetError(f"{where}: negative class id {int(y.min())}; class ids are 0..C-1")
    present = np.unique(y)
    if len(present) != y.max() + 1:
        raise TargetError(f"{where}: class ids {sorted(set(range(int(y.max()) + 1)) - set(present.tolist()))} "
                          f"have no image; class ids must be 0..C-1 with every class present")
    return y, [str(c) for c in range(int(y.max()) + 1)]


def _csv_target(path: Path, max_images, seed, max_side, opts) -> Target:
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except Exception as exc:  # pandas raises many types for bad CSVs
        raise TargetError(f"{path}: cannot be read as CSV ({type(exc).__name__}: {exc})") from exc
    if df.shape[1] < 2 or df.empty:
        raise TargetError(f"{path}: expected a path column and at least one label column with one row per "
                          f"image (got {df.shape[0]} rows, columns {list(df.columns)})")
    path_col = next((c for c in df.columns if str(c).strip().lower() in ("path", "image", "file", "filename")),
                    df.columns[0])
    group_col = next((c for c in df.columns if c != path_col and str(c).strip().lower() in GROUP_COLUMNS), None)
    label_cols = [c for c in df.columns if c not in (path_col, group_col)]
    if df[path_col].isna().any():
        raise TargetError(f"{path}: column {path_col!r} has {int(df[path_col].isna().sum())} empty paths")
    # rows sorted by path: the same files listed in another order give the same subset (helpers.rank.order)
    df = df.iloc[np.argsort(df[path_col].astype(str).to_numpy(), kind="stable")].reset_index(drop=True)
    if not label_cols:
        raise TargetError(f"{path}: no label column (columns {list(df.columns)}: {path_col!r} is the path, "
                          f"{group_col!r} the group)")
    group_keys = None
    if group_col is not None:
        if df[group_col].isna().any():
            raise TargetError(f"{path}: column {group_col!r} has {int(df[group_col].isna().sum())} empty groups")
        group_keys = df[group_col].astype(str).to_numpy()
    if len(label_cols) == 1:
        col = df[label_cols[0]]
        if col.isna().any():
            raise TargetError(f"{path}: column {label_cols[0]!r} has {int(col.isna().sum())} empty labels")
        classes = sorted(col.astype(str).unique(), key=lambda s: (not s.lstrip("-").isdigit(),
                                                                  int(s) if s.lstrip("-").isdigit() else 0, s))
        labels = col.astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
    else:
        block = df[label_cols]
        bad = [c for c in label_cols if not block[c].isin([0, 1]).all()]
        if bad:
            raise TargetError(f"{path}: multi-label columns must hold 0 or 1 in every row; {bad} do not")
        labels = block.to_numpy(np.int64)
        classes = [str(c) for c in label_cols]
        if (labels.sum(0) == 0).all() or (labels.sum(0) == len(labels)).all():
            raise TargetError(f"{path}: every label column is constant; nothing to rank on")
    kind = "multi-label" if labels.ndim == 2 else "single-label"
    where = f"CSV {path} ({kind}, {len(classes)} {'labels' if labels.ndim == 2 else 'classes'})"
    paths = [str(p) for p in df[path_col]]
    if not all(Path(p).suffix.lower() in IMAGE_SUFFIXES for p in paths):  # DICOM / NIfTI: every file's header
        files = [(path.parent / p).resolve() for p in paths]
        _check_exist(path, files)
        kinds: dict = {}
        for f in files:
            k = _file_kind(f)
            if k is None:
                raise TargetError(f"{path}: {f} is neither an image ({', '.join(IMAGE_SUFFIXES)}) nor DICOM / "
                                  "NIfTI")
            kinds.setdefault(k, []).append(f)
        _refuse_mix(kinds, str(path))
        if "image" not in kinds:
            return _medical_target(path.stem, "csv", where, files, labels, classes, group_keys, max_images, seed,
                                   max_side, opts)
    _refuse_window(opts, str(path), "ordinary images")
    groups = None if group_keys is None else _group_ids(group_keys)
    keep = _stratified_groups(labels, groups, max_images, seed)
    files = [(path.parent / paths[i]).resolve() for i in keep]
    _check_exist(path, files)
    images, note, kept, skipped = decode_files(files, max_side, opts.skip_unreadable)
    rows = keep[kept]
    grouped = "" if groups is None else f", {len(np.unique(groups[rows]))} groups (column {group_col!r})"
    target = Target(path.stem, "csv", images, labels[rows], classes,
                    f"{where}: {len(images)} images{_subset_note(len(keep), len(labels))}{grouped}, {note}"
                    f"{skipped_note(skipped)}", [str(files[i]) for i in kept],
                    groups=None if groups is None else _group_ids(groups[rows]))
    _check_classes(target, str(path))
    return target


def _check_exist(csv: Path, files) -> None:
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise TargetError(f"{csv}: {len(missing)} image paths do not exist (relative to {csv.parent}), "
                          f"e.g. {missing[0]}")


def _check_classes(target: Target, where: str) -> None:
    """At least 2 classes, each with at least 2 images (the metrics fit per-class statistics)."""
    counts = target.class_counts()
    if target.multilabel:
        if not any(0 < n < len(target) for n in counts.values()):
            raise TargetError(f"{where}: every label is constant over the {len(target)} images; nothing to rank")
        return
    present = {c: n for c, n in counts.items() if n > 0}
    if len(present) < 2:
        raise TargetError(f"{where}: a single class ({next(iter(present), '?')!r}) among the {len(target)} images; "
                          "ranking needs at least 2 classes")
    small = {c: n for c, n in counts.items() if n < 2}
    if small:
        raise TargetError(f"{where}: classes {small} have fewer than 2 images; every class needs at least 2")


def describe(target: Target) -> dict:
    """A JSON-friendly summary of a target (for tables and the command's output)."""
    return {"target": target.name, "kind": target.kind, "images": len(target), "multilabel": target.multilabel,
            "classes": json.dumps(target.class_counts()), "fingerprint": target.fingerprint,
            "groups": None if target.groups is None else int(len(np.unique(target.groups))),
            "description": target.description}
