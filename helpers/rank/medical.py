"""Medical image formats for :mod:`helpers.rank` targets: DICOM (pydicom) and NIfTI (nibabel), the optional
extra ``pip install .[medical]``.

They are read in every target form of :func:`helpers.rank.load_target` (a class-per-folder tree, a CSV of
paths) and give 2-D uint8 images like :func:`helpers.rank.decode_images` (grayscale (H, W) 0..255, colour
(H, W, 3)), so nothing after loading changes. The rules, in the order they are applied:

Recognising files
    DICOM: the suffix ``.dcm``, ``.dicom`` or ``.ima``, or, whatever the name (PACS exports often have no
    suffix, or a UID with dots as the name), the ``DICM`` marker at byte 128 of a DICOM Part-10 file. A
    DICOM file without pixel data (a DICOMDIR, a report) in a class folder is ignored and counted. NIfTI:
    ``.nii`` or ``.nii.gz``.
Physical units
    DICOM: the modality LUT, i.e. ``RescaleSlope`` x stored value + ``RescaleIntercept`` (Hounsfield units for
    CT), or a Modality LUT Sequence (:func:`pydicom.pixels.apply_modality_lut`); an enhanced multi-frame file
    without them at the top level uses its shared functional group's Pixel Value Transformation.
    NIfTI: ``scl_slope`` / ``scl_inter`` (:meth:`nibabel.Nifti1Image.get_fdata`).
Windowing (``window``, :func:`parse_window`), to 0..255 with DICOM's linear VOI function (PS3.3 C.11.2.1.2):
    ``(CENTER, WIDTH)`` or ``"CENTER,WIDTH"``: that window for every grayscale image;
    a preset name (:data:`PRESETS`, e.g. ``ct-lung``): a standard CT window;
    ``"file"``: each file's own window (DICOM ``WindowCenter`` / ``WindowWidth``, the first when it has
    several; NIfTI ``cal_min`` / ``cal_max``); a file without one is an error naming it;
    ``"minmax"``: one minimum and maximum over every grayscale image of the target (relative intensities
    between images survive; the rule :func:`~helpers.rank.decode_images` applies to 16-bit TIFFs);
    ``None`` (the default): what a DICOM viewer shows, the file's own window where it has one, and the
    ``minmax`` rule over the images of the files that have none.
Photometric interpretation
    ``MONOCHROME1`` (high values dark, as in many CR/DX radiographs) is inverted after windowing
    (``255 - v``), so bone is bright in every image. Colour (``RGB``, ``YBR_*``, converted to RGB by pydicom;
    ``PALETTE COLOR`` through its palette) is kept as RGB and never windowed; colour deeper than 8 bits is
    scaled by ``2**BitsStored - 1``.
Slices
    A multi-frame DICOM file is split along its frame axis. A 3-D NIfTI volume is split along ``slice_axis``:
    ``0``, ``1`` or ``2`` are voxel axes of the stored array (default ``2``, the third), ``"sagittal"``,
    ``"coronal"`` and ``"axial"`` reorient the volume to the closest canonical RAS+ orientation first
    (:func:`nibabel.as_closest_canonical`'s rule) and take its axis 0, 1 or 2. A 4-D (or higher) NIfTI is a
    series of 3-D volumes (the 4th and later axes), each split the same way. Each 2-D slice is shown as
    ``np.rot90(slice)`` (first in-plane axis across, second up: an axial slice of a RAS+ volume has anterior
    at the top). ``central_slices=K`` keeps the K central slices (frames) of every volume, indices
    ``(n - K) // 2`` onwards; a volume with at most K slices keeps all of them. A DICOM series stored as
    single-frame files (one file a slice) is a volume too: :func:`central_of_series` orders its files by
    position along the slice normal and keeps the K central files.
Groups (:attr:`helpers.rank.Target.groups`: images of one group are kept together in every bootstrap
    replicate, probe fold and ``max_images`` subset)
    ``group_by="patient"`` (the default): DICOM files with a non-empty ``PatientID`` are grouped by it (all
    slices of all files of one patient, in any class folder); a DICOM file without one by its
    ``SeriesInstanceUID``, and without that by the file; a NIfTI file is one group (all its slices and
    volumes: NIfTI has no patient field; a CSV ``group`` column names patients across files).
    ``group_by="series"``: ``SeriesInstanceUID``, else the file; ``group_by="file"``: every file its own group.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: standard CT windows, (center, width) in Hounsfield units, from Radiopaedia's "Windowing (CT)" (where it gives a
#: range, as for subdural and soft tissue, the middle of it); a name may drop the ``ct-`` prefix
PRESETS = {
    "ct-lung": (-600.0, 1500.0),
    "ct-mediastinum": (50.0, 350.0),
    "ct-soft-tissue": (50.0, 400.0),
    "ct-abdomen": (40.0, 400.0),
    "ct-liver": (30.0, 150.0),
    "ct-bone": (400.0, 1800.0),
    "ct-brain": (40.0, 80.0),
    "ct-subdural": (75.0, 215.0),
    "ct-stroke": (32.0, 8.0),
}
WINDOW_RULES = ("file", "minmax")
GROUP_RULES = ("patient", "series", "file")
SLICE_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}


class MedicalReadError(Exception):
    """A DICOM / NIfTI file that cannot be read: the message names the file and the reason."""


def _missing_extra(module: str) -> ImportError:
    return ImportError(f"reading {'DICOM' if module == 'pydicom' else 'NIfTI'} files needs {module}: "
                       "pip install .[medical] (pydicom and nibabel)")


def _pydicom():
    try:
        import pydicom
    except ImportError as exc:
        raise _missing_extra("pydicom") from exc
    return pydicom


def _nibabel():
    try:
        import nibabel
    except ImportError as exc:
        raise _missing_extra("nibabel") from exc
    return nibabel


# ----------------------------------------------------------------------------------------------------------
# options


@dataclass(frozen=True)
class Window:
    """A windowing rule: ``center`` / ``width`` set for a fixed window, else ``rule`` ``file``, ``minmax`` or
    ``auto`` (module docstring); ``name`` says where a fixed window came from."""

    rule: str = "auto"
    center: float | None = None
    width: float | None = None
    name: str = ""

    def __str__(self) -> str:
        if self.rule == "fixed":
            return f"window C={self.center:g} W={self.width:g}" + (f" ({self.name})" if self.name else "")
        return {"file": "each file's own window", "minmax": "one min-max over the target",
                "auto": "each file's own window, else one min-max"}[self.rule]


def parse_window(spec) -> Window:
    """``None`` (auto), ``"file"``, ``"minmax"``, a preset of :data:`PRESETS`, ``"CENTER,WIDTH"`` or a
    ``(center, width)`` pair; ``ValueError`` naming the accepted forms otherwise. The width must be >= 1."""
    if spec is None or isinstance(spec, Window):
        return spec if isinstance(spec, Window) else Window()
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text in ("auto", ""):
            return Window()
        if text in WINDOW_RULES:
            return Window(text)
        if text in PRESETS or f"ct-{text}" in PRESETS:
            name = text if text in PRESETS else f"ct-{text}"
            return Window("fixed", *PRESETS[name], name=name)
        parts = [p for p in re.split(r"[,\s]+", text) if p]
        if len(parts) != 2:
            raise ValueError(f"window {spec!r}: expected CENTER,WIDTH (e.g. 40,400), 'file', 'minmax' or a "
                             f"preset ({', '.join(PRESETS)})")
        try:
            center, width = float(parts[0]), float(parts[1])
        except ValueError:
            raise ValueError(f"window {spec!r}: CENTER and WIDTH must be numbers (e.g. 40,400), or use 'file', "
                             f"'minmax' or a preset ({', '.join(PRESETS)})") from None
    else:
        try:
            center, width = (float(v) for v in spec)
        except (TypeError, ValueError):
            raise ValueError(f"window {spec!r}: expected a (center, width) pair") from None
    if not (np.isfinite(center) and np.isfinite(width)) or width < 1:
        raise ValueError(f"window {spec!r}: the width must be a finite number >= 1 (DICOM's rule)")
    return Window("fixed", center, width)


def parse_slice_axis(spec) -> int | str:
    """0, 1, 2 (voxel axes of the stored array) or ``sagittal`` / ``coronal`` / ``axial`` (after canonical
    reorientation); ``None`` is 2."""
    if spec is None:
        return 2
    text = str(spec).strip().lower()
    if text in SLICE_AXES:
        return text
    if text in ("0", "1", "2"):
        return int(text)
    raise ValueError(f"slice axis {spec!r}: expected 0, 1, 2 (voxel axes) or sagittal, coronal, axial")


def apply_window(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM's linear VOI function (PS3.3 C.11.2.1.2.1) to uint8 0..255: values at or below
    ``center - 0.5 - (width - 1) / 2`` are 0, above ``center - 0.5 + (width - 1) / 2`` are 255, linear between."""
    x = np.asarray(x, dtype=np.float64)
    c, w = float(center), float(width)
    if w < 1:
        raise ValueError(f"window width {w:g} < 1")
    if w == 1:
        return np.where(x <= c - 0.5, 0, 255).astype(np.uint8)
    y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0
    y = np.where(x <= c - 0.5 - (w - 1) / 2, 0.0, np.where(x > c - 0.5 + (w - 1) / 2, 255.0, y))
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def minmax_uint8(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``(x - lo) * 255 / (hi - lo)`` rounded to uint8 (all 0 when ``hi <= lo``)."""
    if hi <= lo:
        return np.zeros(np.shape(x), dtype=np.uint8)
    return np.clip(np.round((np.asarray(x, np.float64) - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------
# recognising and scanning files


def _is_nifti_name(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def has_dicom_marker(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def medical_kind(path) -> str | None:
    """``"dicom"``, ``"nifti"`` or None (not a medical file) by the recognition rule of the module docstring."""
    path = Path(path)
    if _is_nifti_name(path):
        return "nifti"
    if path.suffix.lower() in DICOM_SUFFIXES or has_dicom_marker(path):
        return "dicom"
    return None


@dataclass
class Volume:
    """One medical file's header: its slices (``refs``, what :func:`read_slices` takes), group key and
    modality; ``has_image`` False for a DICOM without pixel data."""

    path: Path
    kind: str
    refs: list = field(default_factory=list)
    group: str = ""
    modality: str = ""
    has_image: bool = True
    #: DICOM: SeriesInstanceUID, ImageOrientationPatient, ImagePositionPatient, InstanceNumber (or None)
    series: str = ""
    orientation: tuple | None = None
    position: tuple | None = None
    instance: int | None = None

    def where(self, ref) -> str:
        """A slice reference in words (empty for a single 2-D image)."""
        if self.kind == "dicom":
            return "" if ref is None else f"frame {ref}"
        t, k = ref
        if k is None:
            return ""
        return f"slice {k}" + (f" of volume {t}" if t is not None else "")


def _central(n: int, k: int | None) -> range:
    if k is None or n <= k:
        return range(n)
    start = (n - k) // 2
    return range(start, start + k)


def _dcmread(path: Path, **kw):
    pydicom = _pydicom()
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, **kw)
    except InvalidDicomError:
        if path.suffix.lower() not in DICOM_SUFFIXES:
            raise
        ds = pydicom.dcmread(path, force=True, **kw)  # a .dcm without the Part-10 preamble (ACR-NEMA style)
        if not any(tag.group in (0x0008, 0x0010, 0x0020, 0x0028) for tag in ds.keys()):
            raise InvalidDicomError("no DICM marker and no DICOM data elements: not a DICOM file") from None
        return ds


def _dicom_group(ds, path: Path, group_by: str) -> str:
    patient = str(ds.get("PatientID", "") or "").strip()
    series = str(ds.get("SeriesInstanceUID", "") or "").strip()
    if group_by == "patient" and patient:
        return f"patient:{patient}"
    if group_by in ("patient", "series") and series:
        return f"series:{series}"
    return f"file:{path.resolve()}"


def scan(path, *, slice_axis=2, central_slices: int | None = None, group_by: str = "patient") -> Volume:
    """The header of one DICOM or NIfTI file (no pixel data read): which slices it gives and its group.
    :class:`MedicalReadError` names the file when it cannot be read."""
    path = Path(path)
    kind = medical_kind(path)
    if kind is None:
        raise MedicalReadError(f"{path} is neither DICOM nor NIfTI")
    if group_by not in GROUP_RULES:
        raise ValueError(f"group_by {group_by!r}: expected one of {', '.join(GROUP_RULES)}")
    try:
        if kind == "dicom":
            ds = _dcmread(path, stop_before_pixels=True)
            if "Rows" not in ds or "Columns" not in ds:
                return Volume(path, kind, [], "", str(ds.get("Modality", "")), has_image=False)
            if "NumberOfFrames" in ds:  # a multi-frame file (even of 1 frame): its frames are the slices
                refs = list(_central(int(ds.NumberOfFrames or 1), central_slices))
            else:
                refs = [None]
            return Volume(path, kind, refs, _dicom_group(ds, path, group_by), str(ds.get("Modality", "") or ""),
                          series=str(ds.get("SeriesInstanceUID", "") or "").strip(),
                          orientation=_floats(ds.get("ImageOrientationPatient"), 6),
                          position=_floats(ds.get("ImagePositionPatient"), 3),
                          instance=_int(ds.get("InstanceNumber")))
        img = _nibabel().load(str(path))
        shape = tuple(int(s) for s in img.shape)
        if len(shape) < 2 or min(shape) < 1:
            raise MedicalReadError(f"NIfTI file {path} has shape {shape}; expected 2-D, 3-D or 4-D")
        if len(shape) == 2:
            refs = [(None, None)]
        else:
            axis = _voxel_axis(img, slice_axis)
            n = shape[axis]
            extra = int(np.prod(shape[3:])) if len(shape) > 3 else None
            volumes = [None] if extra is None else list(range(extra))
            refs = [(t, k) for t in volumes for k in _central(n, central_slices)]
        return Volume(path, kind, refs, f"file:{path.resolve()}", "")
    except MedicalReadError:
        raise
    except ImportError:
        raise
    except Exception as exc:  # pydicom and nibabel raise many types for a bad file
        raise MedicalReadError(f"{'DICOM' if kind == 'dicom' else 'NIfTI'} file {path} cannot be read "
                               f"({type(exc).__name__}: {exc})") from exc


def _floats(value, n: int) -> tuple | None:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def central_of_series(volumes: list, k: int) -> list[int]:
    """Indices of ``volumes`` kept when a DICOM series stored as single-frame files (one file a slice, as
    PACS exports a CT) is cut to its ``k`` central slices: the files of one ``SeriesInstanceUID`` are ordered
    by their position along the slice normal (ImagePositionPatient . (row x column of
    ImageOrientationPatient)) when they share one orientation, else by InstanceNumber, else by file name; the
    ``(n - k) // 2``-th onwards are kept. Multi-frame files, NIfTI and files without a series are kept."""
    series: dict = {}
    for i, v in enumerate(volumes):
        if v.kind == "dicom" and v.refs == [None] and v.series:
            series.setdefault(v.series, []).append(i)
    drop = set()
    for members in series.values():
        if len(members) <= k:
            continue
        vols = [volumes[i] for i in members]
        orientations = {v.orientation for v in vols}
        if len(orientations) == 1 and None not in orientations and all(v.position for v in vols):
            o = np.asarray(next(iter(orientations)))
            normal = np.cross(o[:3], o[3:])
            key = [(float(np.dot(v.position, normal)), v.path.name) for v in vols]
        elif all(v.instance is not None for v in vols):
            key = [(v.instance, v.path.name) for v in vols]
        else:
            key = [(0, v.path.name) for v in vols]
        order = [members[j] for j in sorted(range(len(members)), key=lambda j: key[j])]
        keep = set(order[j] for j in _central(len(order), k))
        drop.update(i for i in members if i not in keep)
    return [i for i in range(len(volumes)) if i not in drop]


def _voxel_axis(img, slice_axis) -> int:
    """The stored array's axis that ``slice_axis`` names (an int is that axis; a name the voxel axis closest
    to the world axis R, A or S)."""
    if isinstance(slice_axis, int):
        return slice_axis
    nib = _nibabel()
    ornt = nib.orientations.io_orientation(img.affine)
    return int(np.flatnonzero(ornt[:, 0] == SLICE_AXES[slice_axis])[0])


# ----------------------------------------------------------------------------------------------------------
# reading slices


@dataclass
class Slice:
    """A decoded 2-D slice: ``pixels`` float64 physical values (H, W), or uint8 RGB (H, W, 3) when ``colour``;
    ``window`` the file's own (center, width) or None; ``inverted`` for MONOCHROME1."""

    pixels: np.ndarray
    colour: bool = False
    window: tuple | None = None
    inverted: bool = False


def _first(value):
    if value is None:
        return None
    try:
        return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _dicom_window(ds) -> tuple | None:
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is None or width is None:
        shared = ds.get("SharedFunctionalGroupsSequence")
        voi = shared[0].get("FrameVOILUTSequence") if shared else None
        if voi:
            center, width = _first(voi[0].get("WindowCenter")), _first(voi[0].get("WindowWidth"))
    if center is None or width is None or not np.isfinite(center) or not np.isfinite(width) or width < 1:
        return None
    return center, width


def _dicom_physical(arr: np.ndarray, ds) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut

    if "RescaleSlope" not in ds and "ModalityLUTSequence" not in ds:
        shared = ds.get("SharedFunctionalGroupsSequence")
        pvt = shared[0].get("PixelValueTransformationSequence") if shared else None
        if pvt and "RescaleSlope" in pvt[0]:
            return arr.astype(np.float64) * float(pvt[0].RescaleSlope) + float(pvt[0].get("RescaleIntercept", 0))
    return np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)


def read_slices(volume: Volume, refs=None, *, slice_axis=2) -> list[Slice]:
    """The slices ``refs`` (default all of ``volume.refs``) of one file, in that order, in physical units
    (module docstring). :class:`MedicalReadError` names the file when its pixels cannot be decoded."""
    refs = volume.refs if refs is None else refs
    path = volume.path
    try:
        if volume.kind == "dicom":
            return _read_dicom(path, refs)
        return _read_nifti(path, refs, slice_axis)
    except MedicalReadError:
        raise
    except ImportError:
        raise
    except Exception as exc:
        raise MedicalReadError(f"{'DICOM' if volume.kind == 'dicom' else 'NIfTI'} file {path} cannot be "
                               f"decoded ({type(exc).__name__}: {exc})") from exc


def _read_dicom(path: Path, refs) -> list[Slice]:
    ds = _dcmread(path)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise MedicalReadError(f"DICOM file {path} has no pixel data")
    arr = ds.pixel_array
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    multi = "NumberOfFrames" in ds
    if multi and int(ds.NumberOfFrames) == 1 and arr.ndim == (3 if samples == 3 else 2):
        arr = arr[None]
    colour = samples == 3 or photometric == "PALETTE COLOR"
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
    window = None if colour else _dicom_window(ds)
    out = []
    for ref in refs:
        frame = arr if ref is None else arr[ref]
        if colour:
            if frame.ndim != 3 or frame.shape[-1] != 3:
                raise MedicalReadError(f"DICOM file {path}: colour frame of shape {frame.shape}")
            if frame.dtype != np.uint8:
                bits = int(ds.get("BitsStored", 16) or 16) if photometric != "PALETTE COLOR" else 16
                frame = minmax_uint8(frame, 0, 2 ** bits - 1)
            out.append(Slice(np.ascontiguousarray(frame), colour=True))
            continue
        if frame.ndim != 2:
            raise MedicalReadError(f"DICOM file {path}: a frame of shape {frame.shape}; expected 2-D")
        out.append(Slice(_dicom_physical(frame, ds), window=window, inverted=photometric == "MONOCHROME1"))
    return out


def _read_nifti(path: Path, refs, slice_axis) -> list[Slice]:
    """The slices ``refs`` read one at a time through nibabel's array proxy (which applies scl_slope /
    scl_inter), so a large 4-D file is never loaded whole."""
    nib = _nibabel()
    img = nib.load(str(path))
    cal_min, cal_max = float(img.header.get("cal_min", 0) or 0), float(img.header.get("cal_max", 0) or 0)
    window = ((cal_min + cal_max) / 2, cal_max - cal_min) if cal_max - cal_min >= 1 else None
    shape = tuple(img.shape)
    if len(shape) >= 3:
        axis = _voxel_axis(img, slice_axis)
        ornt = nib.orientations.io_orientation(img.affine) if isinstance(slice_axis, str) else None
    out = []
    for t, k in refs:
        if k is None:
            plane = np.asanyarray(img.dataobj)
        else:
            stored = k
            if ornt is not None and ornt[axis, 1] == -1:  # k counts along the canonical (flipped) axis
                stored = shape[axis] - 1 - k
            index = [slice(None)] * 3
            index[axis] = slice(stored, stored + 1)
            extra = () if t is None else tuple(int(i) for i in np.unravel_index(t, shape[3:]))
            slab = np.asanyarray(img.dataobj[tuple(index) + extra])  # 3-D, 1 thick along axis
            if ornt is not None:  # closest canonical RAS+: the slab's thin axis lands on the named axis
                slab = nib.orientations.apply_orientation(slab, ornt)
                plane = np.take(slab, 0, axis=SLICE_AXES[slice_axis])
            else:
                plane = np.take(slab, 0, axis=axis)
        plane = np.asarray(plane, dtype=np.float64)
        if plane.ndim != 2:
            raise MedicalReadError(f"NIfTI file {path}: a slice of shape {plane.shape}; expected 2-D")
        finite = np.isfinite(plane)
        if not finite.all():  # NaN / inf (masked maps) become the slice's lowest finite value
            plane = np.where(finite, plane, float(plane[finite].min()) if finite.any() else 0.0)
        out.append(Slice(np.ascontiguousarray(np.rot90(plane)), window=window))
    return out


# ----------------------------------------------------------------------------------------------------------
# intensities to uint8


def shrink(x: np.ndarray, max_side: int) -> np.ndarray:
    """Reduce a slice to at most ``max_side`` on its longer side (PIL: bilinear on float, Lanczos on RGB),
    as :func:`~helpers.rank.decode_images` does."""
    if max(x.shape[:2]) <= max_side:
        return x
    from PIL import Image

    if x.ndim == 3:
        im = Image.fromarray(np.ascontiguousarray(x, dtype=np.uint8))
        im.thumbnail((max_side, max_side), Image.LANCZOS)
        return np.asarray(im, dtype=np.uint8)
    im = Image.fromarray(np.ascontiguousarray(x, dtype=np.float32))  # mode F
    im.thumbnail((max_side, max_side), Image.BILINEAR)
    return np.asarray(im, dtype=np.float64)


def to_uint8(slices: list[Slice], window: Window, names=None) -> tuple[list, str]:
    """uint8 images of ``slices`` by ``window`` (module docstring), MONOCHROME1 inverted, grayscale replicated
    to 3 channels when the target also has colour; and a note of the rules applied. ``names`` (one per slice)
    name a slice in an error."""
    gray = [i for i, s in enumerate(slices) if not s.colour]
    colour = [i for i, s in enumerate(slices) if s.colour]
    out: list = [None] * len(slices)
    notes = []
    fixed, by_file, by_minmax = [], [], []
    for i in gray:
        s = slices[i]
        if window.rule == "fixed":
            fixed.append(i)
        elif window.rule == "minmax" or (window.rule == "auto" and s.window is None):
            by_minmax.append(i)
        elif s.window is None:
            where = names[i] if names is not None else f"slice {i}"
            raise ValueError(f"{where} has no window of its own (DICOM WindowCenter/WindowWidth, NIfTI "
                             "cal_min/cal_max); pass a window CENTER,WIDTH, a preset or 'minmax'")
        else:
            by_file.append(i)
    for i in fixed:
        out[i] = apply_window(slices[i].pixels, window.center, window.width)
    if fixed:
        notes.append(f"{len(fixed)} grayscale with {window}")
    for i in by_file:
        out[i] = apply_window(slices[i].pixels, *slices[i].window)
    if by_file:
        notes.append(f"{len(by_file)} grayscale with their file's own window")
    if by_minmax:
        lo = min(float(slices[i].pixels.min()) for i in by_minmax)
        hi = max(float(slices[i].pixels.max()) for i in by_minmax)
        for i in by_minmax:
            out[i] = minmax_uint8(slices[i].pixels, lo, hi)
        notes.append(f"{len(by_minmax)} grayscale by one min-max over them, [{lo:g}, {hi:g}] to 0..255")
    inverted = [i for i in gray if slices[i].inverted]
    for i in inverted:
        out[i] = 255 - out[i]
    if inverted:
        notes.append(f"{len(inverted)} MONOCHROME1 inverted")
    for i in colour:
        out[i] = slices[i].pixels
    if colour:
        notes.append(f"{len(colour)} colour (RGB, not windowed)")
        if gray:
            out = [np.repeat(a[..., None], 3, -1) if a.ndim == 2 else a for a in out]
            notes.append("grayscale replicated to 3 channels")
    return out, ", ".join(notes)
