"""The image files of a :mod:`helpers.rank` target: decoding them by one stated rule, and writing image folders;
and the errors of bad rank input (raised here first, so they live here; :mod:`helpers.rank.targets` re-exports
them).

Decoding (folders and CSVs) uses PIL, and every mode is converted by one stated rule: 8-bit grayscale
(``L``, ``LA``, ``1``, ``P`` without colour) stays one channel; colour (``RGB``, ``RGBA``, ``P``, ``CMYK``,
``YCbCr``, ...) becomes RGB (alpha dropped); 16-bit and 32-bit images (``I;16``, ``I``, ``F``, typical of
medical TIFFs) are rescaled to 0..255 with *one* minimum and maximum over all such images of the target, so
relative intensities between images survive. A target that mixes 8-bit and high-bit-depth images is refused
(there is no single rule that puts both on one intensity scale); the error names one file of each. Mixing
grayscale and colour images is accepted: grayscale images are replicated to three channels, which is what
every candidate sees for them anyway; :attr:`helpers.rank.targets.Target.description` counts both.

Images keep their own size up to ``max_side`` (:data:`MAX_SIDE`, 512) pixels on the longer side (larger ones
are reduced by PIL with antialiasing when decoded, to bound memory).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..segmentation.data import load_segmentation, read_manifest, segmentation_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MAX_SIDE = 512


class RankInputError(ValueError):
    """Bad input to :func:`helpers.rank.rank_models` (the command prints it and exits with status 2)."""


class TargetError(RankInputError):
    """A target that cannot be used: the message names the file or value and the problem."""


def skipped_note(skipped: list) -> str:
    """``; N unreadable files skipped (the first: ...)``, or nothing when none was."""
    if not skipped:
        return ""
    return f"; {len(skipped)} unreadable files skipped (the first: {skipped[0]})"


_GRAY_MODES = {"1", "L", "LA"}
_HIGH_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _rescale(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros(x.shape, dtype=np.uint8)
    return np.clip(np.round((x - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


def decode_images(files, max_side: int = MAX_SIDE) -> tuple[list, str]:
    """uint8 arrays (H, W) or (H, W, 3) of ``files`` by the mode rules of the module docstring, and a note
    that counts what was read. :class:`TargetError` names an unreadable file or a bit-depth mix."""
    images, note, _, _ = decode_files(files, max_side)
    return images, note


def decode_files(files, max_side: int = MAX_SIDE, skip_unreadable: bool = False):
    """:func:`decode_images`, and the indices of the files decoded and the messages of those skipped
    (``skip_unreadable``: an unreadable file is left out instead of raising)."""
    from PIL import Image, UnidentifiedImageError

    decoded, kinds, kept, skipped = [], {}, [], []
    for j, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im.load()
                mode = im.mode
                if mode in _HIGH_DEPTH or mode.startswith("I;16"):
                    kind = "high"
                    if max(im.size) > max_side:
                        im = im.convert("F")
                        im.thumbnail((max_side, max_side), Image.BILINEAR)
                    arr = np.asarray(im, dtype=np.float64)
                    if arr.ndim != 2:
                        raise TargetError(f"image {f}: a {mode} image with shape {arr.shape}; expected 2-D")
                else:
                    gray = mode in _GRAY_MODES or (mode == "P" and _palette_is_gray(im))
                    im = im.convert("L" if gray else "RGB")
                    if max(im.size) > max_side:
                        im.thumbnail((max_side, max_side), Image.LANCZOS)
                    arr = np.asarray(im, dtype=np.uint8)
                    kind = "gray" if gray else "rgb"
            if arr.ndim == 2 and min(arr.shape) < 1:
                raise TargetError(f"image {f} is empty ({arr.shape})")
        except (TargetError, UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            message = str(exc) if isinstance(exc, TargetError) else \
                f"image {f} cannot be read ({type(exc).__name__}: {exc})"
            if skip_unreadable:
                skipped.append(message)
                continue
            if isinstance(exc, TargetError):
                raise
            raise TargetError(message + " (skip_unreadable / --skip-unreadable leaves such files out)") from exc
        kinds.setdefault(kind, []).append(str(f))
        decoded.append((kind, arr))
        kept.append(j)
    if not decoded:
        raise TargetError(f"no readable image among {len(files)} files{skipped_note(skipped)}")
    if "high" in kinds and len(kinds) > 1:
        other = next(k for k in kinds if k != "high")
        raise TargetError(f"the target mixes 8-bit images (e.g. {kinds[other][0]}) with 16/32-bit ones (e.g. "
                          f"{kinds['high'][0]}); convert them to one bit depth first (no single rule puts both "
                          "on one intensity scale)")
    notes = []
    if "high" in kinds:
        lo = min(float(a.min()) for _, a in decoded)
        hi = max(float(a.max()) for _, a in decoded)
        decoded = [("gray", _rescale(a, lo, hi)) for _, a in decoded]
        notes.append(f"{len(kinds['high'])} 16/32-bit grayscale rescaled from [{lo:g}, {hi:g}] to 0..255")
    images = [a for _, a in decoded]
    if "gray" in kinds and "rgb" in kinds:
        images = [np.repeat(a[..., None], 3, -1) if a.ndim == 2 else a for a in images]
    for k, label in (("gray", "grayscale"), ("rgb", "colour (RGB)")):
        if k in kinds:
            notes.append(f"{len(kinds[k])} {label}")
    if "gray" in kinds and "rgb" in kinds:
        notes.append("grayscale replicated to 3 channels")
    sizes = {a.shape[:2] for a in images}
    notes.append(f"size {next(iter(sizes))[1]}x{next(iter(sizes))[0]}" if len(sizes) == 1 else
                 f"{len(sizes)} different sizes, {min(min(s) for s in sizes)} to {max(max(s) for s in sizes)} px")
    return images, ", ".join(notes), np.asarray(kept, dtype=np.int64), skipped


def _palette_is_gray(im) -> bool:
    pal = im.getpalette() or []
    rgb = np.asarray(pal[: 3 * 256]).reshape(-1, 3) if len(pal) >= 3 else np.zeros((0, 3))
    return bool(len(rgb)) and bool((rgb[:, :1] == rgb).all())


# ----------------------------------------------------------------------------------------------------------
# writing targets



def write_image_folder(images, labels, classes, folder, names=None) -> Path:
    """Write uint8 images (N, H, W) or (N, H, W, 3) as PNGs into ``<folder>/<class>/<name>.png``, the layout
    :func:`helpers.rank.targets.load_target` reads. Files already there with the same name are kept (a re-run
    writes nothing); each file is written to a temp name and renamed. ``names``: file stems (default
    ``00000``...)."""
    from PIL import Image

    folder = Path(folder)
    labels = np.asarray(labels)
    if len(images) != len(labels):
        raise TargetError(f"{len(images)} images but {len(labels)} labels")
    for k in np.unique(labels):
        (folder / str(classes[int(k)])).mkdir(parents=True, exist_ok=True)
    for i, (im, k) in enumerate(zip(images, labels)):
        stem = Path(str(names[i])).stem if names is not None else f"{i:05d}"
        path = folder / str(classes[int(k)]) / f"{stem}.png"
        if path.is_file():
            continue
        tmp = path.with_name(f".{path.stem}.tmp.png")
        Image.fromarray(np.asarray(im, dtype=np.uint8)).save(tmp)
        os.replace(tmp, path)
    return folder


def write_busi_folder(folder, split: str = "train", root=None) -> Path:
    """BUSI's image-level labels (benign / malignant, ``<split>_labels`` of ``segmentation/busi_128.npz``) as an
    image folder: a real breast-ultrasound classification target outside MedMNIST (128 px, grayscale; the
    file names are BUSI's own). BreastMNIST is made from the same BUSI images (Yang et al., 2023), so a source
    trained on BreastMNIST has seen these images."""
    data = load_segmentation("busi", root)
    with np.load(segmentation_path("busi", root), allow_pickle=False) as archive:
        if f"{split}_labels" not in archive.files:
            raise TargetError(f"{data.path}: no image-level labels {split}_labels")
        labels = archive[f"{split}_labels"].reshape(-1).astype(np.int64)
    names = read_manifest(root).get("busi", {}).get("image_labels", {"0": "benign", "1": "malignant"})
    classes = [names[str(k)] for k in range(len(names))]
    return write_image_folder(data.images[split], labels, classes, folder, data.ids[split])
