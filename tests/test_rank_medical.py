"""helpers.rank on medical formats (helpers.rank.medical): DICOM and NIfTI in class folders and CSVs, int16 / float
npz, rescale to physical units, windowing, MONOCHROME1, slicing, central slices, groups, unreadable files.

The DICOM and NIfTI files are the real ones pydicom and nibabel ship (pydicom.data test files: CT_small.dcm,
MR_small.dcm, the MONOCHROME1 CR radiographs and the CT series of its dicomdirtests, the multi-frame rtdose.dcm,
the truncated MR_truncated.dcm; nibabel/tests/data: example4d.nii.gz, anatomical.nii), plus files the tests write
for what those do not cover (a multi-frame CT with known frames, a rescaled and reoriented NIfTI). Expected
values are computed here from the files' own tags with numpy, not with the module's functions."""
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file

from helpers import rank as R
from helpers.rank import medical as MD
from helpers.rank.__main__ import main as rank_main
from helpers.rank.targets import _stratified_groups

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

DICOM_DATA = Path(get_testdata_file("CT_small.dcm")).parent
DIRTESTS = DICOM_DATA / "dicomdirtests"
NIFTI_DATA = Path(nib.__file__).parent / "tests" / "data"
TINY = ["resnet18:random@28", "mobilenet_v3_small:random@32"]
FAST = dict(metrics=["knn_accuracy", "linear_probe"], recommend=["knn_accuracy", "linear_probe"], n_boot=5,
            device="cpu", progress=False)


def dicom_window(x, center, width):
    """DICOM PS3.3 C.11.2.1.2.1, written out independently of helpers.rank.medical."""
    lo, hi = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    y = ((x - (center - 0.5)) / (width - 1) + 0.5) * 255
    y = np.where(x <= lo, 0, np.where(x > hi, 255, y))
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def physical(path):
    ds = pydicom.dcmread(path)
    return ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0)), ds


@pytest.fixture
def dicom_tree(tmp_path):
    """Two classes of real DICOM files, named as PACS exports them (no suffix) and with .dcm: four patients,
    one of them (98890234) in both classes; a DICOMDIR and a text file that are no images."""
    root = tmp_path / "dicom"
    a, b = root / "class_a", root / "class_b"
    a.mkdir(parents=True)
    b.mkdir()
    shutil.copy(DICOM_DATA / "CT_small.dcm", a / "CT_small.dcm")                        # patient 1CT1
    for series in ("CT2N", "CT5N"):                                                    # patient 98890234
        for f in sorted((DIRTESTS / "98892001" / series).iterdir()):
            shutil.copy(f, a / f"1.2.840.{series}.{f.name}")  # a UID-like name: its "suffix" is a number
    for series in ("CR1", "CR2", "CR3", "CT2"):                                         # patient 77654033
        for f in sorted((DIRTESTS / "77654033" / series).iterdir()):
            shutil.copy(f, b / f"{series}_{f.name}")
    shutil.copy(DIRTESTS / "98892003" / "MR1" / "4919", b / "MR_4919")                 # patient 98890234 again
    shutil.copy(DICOM_DATA / "MR_small.dcm", b / "MR_small.dcm")                        # patient 4MR1
    shutil.copy(DIRTESTS / "DICOMDIR", b / "DICOMDIR")
    (b / "notes.txt").write_text("not an image")
    return root


def test_window_presets_and_the_dicom_linear_function():
    x = np.array([-1000, -160, -159.9, 39.5, 238.9, 239, 239.1, 3000.0])
    assert np.array_equal(MD.apply_window(x, 40, 400), dicom_window(x, 40, 400))
    assert MD.apply_window(x, 40, 400)[[0, 1, -2, -1]].tolist() == [0, 0, 255, 255]
    assert MD.apply_window(np.array([39.4, 39.6]), 40, 1).tolist() == [0, 255]
    assert MD.parse_window("ct-lung") == MD.Window("fixed", -600, 1500, "ct-lung")
    assert MD.parse_window(" -600, 1500 ") == MD.Window("fixed", -600, 1500)
    assert MD.parse_window(None).rule == "auto" and MD.parse_window("FILE").rule == "file"
    assert MD.parse_window("Bone") == MD.Window("fixed", 400, 1800, "ct-bone")
    for bad in ("lungs", "40", "40,0", "a,b", "40,400,3"):
        with pytest.raises(ValueError, match="window"):
            MD.parse_window(bad)
    assert MD.parse_slice_axis("Axial") == "axial" and MD.parse_slice_axis("1") == 1
    with pytest.raises(ValueError, match="slice axis 'z'"):
        MD.parse_slice_axis("z")


def test_dicom_tree_rescale_window_monochrome1_and_patient_groups(dicom_tree):
    t = R.load_target(dicom_tree, window="ct-mediastinum")
    assert t.kind == "folder" and t.classes == ["class_a", "class_b"] and len(t) == 17
    assert t.class_counts() == {"class_a": 8, "class_b": 9}
    assert "1 non-image files ignored" in t.description and "1 DICOM files without an image ignored" in t.description
    assert all(im.dtype == np.uint8 and im.ndim == 2 for im in t.images)  # what decode_images gives for gray
    by_file = {Path(f).name: i for i, f in enumerate(t.files)}
    # CT: stored values x RescaleSlope + RescaleIntercept = HU, then the mediastinum window (50, 350)
    hu, ds = physical(dicom_tree / "class_a" / "CT_small.dcm")
    assert float(ds.RescaleIntercept) == -1024 and hu.min() < 0
    assert np.array_equal(t.images[by_file["CT_small.dcm"]], dicom_window(hu, 50, 350))
    # MONOCHROME1 (CR, slope 0.684, intercept 200): windowed, then inverted
    cr = dicom_tree / "class_b" / "CR1_6154"
    values, ds = physical(cr)
    assert ds.PhotometricInterpretation == "MONOCHROME1" and float(ds.RescaleSlope) == pytest.approx(0.684)
    assert np.array_equal(t.images[by_file["CR1_6154"]], 255 - dicom_window(values, 50, 350))
    # each file's own window, the default
    own = R.load_target(dicom_tree)
    assert "16 grayscale with their file's own window, 1 grayscale by one min-max" in own.description
    wc, ww = float(ds.WindowCenter), float(ds.WindowWidth)
    assert np.array_equal(own.images[by_file["CR1_6154"]], 255 - dicom_window(values, wc, ww))
    mr, ds = physical(dicom_tree / "class_b" / "MR_small.dcm")
    assert np.array_equal(own.images[by_file["MR_small.dcm"]], dicom_window(mr, 600, 1600))
    # groups: one per PatientID, across class folders (98890234 is in both)
    patients = [str(pydicom.dcmread(f, stop_before_pixels=True).PatientID) for f in t.files]
    assert len(set(t.groups.tolist())) == 4 == len(set(patients))
    for p in set(patients):
        assert len({g for g, q in zip(t.groups, patients) if q == p}) == 1
    assert "4 groups (group_by=patient; 1 span several classes)" in t.description
    # by series / file instead
    assert len(np.unique(R.load_target(dicom_tree, group_by="file").groups)) == 17
    series = R.load_target(dicom_tree, group_by="series")
    assert len(np.unique(series.groups)) == len({str(pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID)
                                                 for f in t.files})
    # the file's own window where a file lacks one is an error naming it; minmax is one scale for all
    with pytest.raises(R.TargetError, match="CT_small.dcm has no window of its own"):
        R.load_target(_only(dicom_tree, "CT_small.dcm"), window="file")
    mm = R.load_target(dicom_tree, window="minmax")
    lo = min(float(physical(f)[0].min()) for f in mm.files)
    hi = max(float(physical(f)[0].max()) for f in mm.files)
    assert f"by one min-max over them, [{lo:g}, {hi:g}]" in mm.description
    expected = 255 - np.clip(np.round((values - lo) * 255 / (hi - lo)), 0, 255)  # the CR file, MONOCHROME1
    assert np.array_equal(mm.images[by_file["CR1_6154"]], expected)
    # same inputs, same answer
    assert R.load_target(dicom_tree, window="ct-mediastinum").fingerprint == t.fingerprint


def _only(root, name):
    """A copy of the tree's class_a with CT_small.dcm (no window of its own) and a windowed CT file."""
    out = root.parent / "only"
    for k, src in enumerate([root / "class_a" / name, next((root / "class_b").glob("CT2_*"))]):
        (out / f"c{k}").mkdir(parents=True, exist_ok=True)
        for j in range(2):
            shutil.copy(src, out / f"c{k}" / f"{j}_{src.name}")
    return out


def _multiframe(path, frames, patient):
    """A multi-frame CT written from CT_small.dcm: frame f holds the constant stored value ``frames[f]``."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    arr = np.stack([np.full((ds.Rows, ds.Columns), v, dtype=np.int16) for v in frames])
    ds.NumberOfFrames = len(frames)
    ds.PixelData = arr.tobytes()
    ds.PatientID = patient
    ds.WindowCenter, ds.WindowWidth = 0, 2000
    ds.save_as(path)


def test_central_slices_of_a_series_of_single_frame_files(dicom_tree):
    t = R.load_target(dicom_tree, central_slices=3)
    kept = {Path(f).name for f in t.files}
    # CT5N (5 files, one orientation): the middle 3 by position along the normal (here z, descending order)
    ct5 = sorted(dicom_tree.glob("class_a/*CT5N*"), key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))
    assert {f.name for f in ct5} & kept == {f.name for f in ct5[1:4]}
    # CT2 (4 files): positions -99.48 (17106), 103.02, 104.27, 105.52 (17196) -> (4 - 3) // 2 = 0 onwards
    assert sorted(f for f in kept if f.startswith("CT2_")) == ["CT2_17106", "CT2_17136", "CT2_17166"]
    assert len(t) == 17 - 2 - 1 and "3 single-frame files outside the central slices" in t.description


def test_multiframe_dicom_is_split_into_frames_with_central_slices(tmp_path):
    root = tmp_path / "frames"
    for k in range(2):
        (root / f"c{k}").mkdir(parents=True)
        for j in range(2):
            _multiframe(root / f"c{k}" / f"vol{j}", [100 * (k + 1) * f for f in range(7)], f"P{k}{j}")
    shutil.copy(get_testdata_file("rtdose.dcm"), root / "c1" / "rtdose.dcm")  # 15 real frames, patient id11111
    t = R.load_target(root, window="0,2000", central_slices=3)
    assert len(t) == 4 * 3 + 3 and t.slices[:3] == ["frame 2", "frame 3", "frame 4"]
    assert [s for s, f in zip(t.slices, t.files) if f.endswith("rtdose.dcm")] == ["frame 6", "frame 7", "frame 8"]
    # frame f of c0/vol0: stored 100 f, HU 100 f - 1024, window (0, 2000)
    for i, f in enumerate((2, 3, 4)):
        expected = dicom_window(np.array([100.0 * f - 1024]), 0, 2000)[0]
        assert (t.images[i] == expected).all()
    assert len(np.unique(t.groups)) == 5 and all(len(set(t.groups[i:i + 3])) == 1 for i in range(0, 15, 3))
    assert all(len({g for g, f in zip(t.groups, t.files) if f == file}) == 1 for file in set(t.files))
    assert "5 of them volumes split into slices" in t.description and "central 3 slices" in t.description
    full = R.load_target(root)
    assert len(full) == 4 * 7 + 15
    # max_images keeps or drops whole volumes (groups), stratified by class
    sub = R.load_target(root, max_images=20, seed=0)
    for g in np.unique(sub.groups):
        f = sub.files[int(np.flatnonzero(sub.groups == g)[0])]
        assert (sub.groups == g).sum() == (7 if not f.endswith("rtdose.dcm") else 15)
    assert set(sub.labels.tolist()) == {0, 1} and len(sub) < len(full)
    assert sub.files == R.load_target(root, max_images=20, seed=0).files


def test_colour_dicom_stays_rgb_and_large_slices_are_reduced(tmp_path):
    root = tmp_path / "colour"
    for k, name in enumerate(["examples_ybr_color.dcm", "CT_small.dcm"]):  # 30 YBR_FULL_422 US frames; a CT
        (root / f"c{k}").mkdir(parents=True)
        for j in range(2):
            shutil.copy(get_testdata_file(name), root / f"c{k}" / f"{j}.dcm")
    t = R.load_target(root, window="ct-abdomen", central_slices=2, max_side=100)
    ds = pydicom.dcmread(root / "c0" / "0.dcm")
    assert ds.PhotometricInterpretation == "YBR_FULL_422" and int(ds.NumberOfFrames) == 30
    assert len(t) == 2 * 2 + 2 and t.slices[:2] == ["frame 14", "frame 15"]
    assert "4 colour (RGB, not windowed)" in t.description and "grayscale replicated" in t.description
    assert t.images[0].shape == (75, 100, 3) and t.images[-1].shape == (100, 100, 3)  # 240x320, 128x128 reduced
    frame = ds.pixel_array[14]  # pydicom converts YBR to RGB
    from PIL import Image

    im = Image.fromarray(frame)
    im.thumbnail((100, 100), Image.LANCZOS)
    assert np.array_equal(t.images[0], np.asarray(im))
    assert (t.images[-1][..., 0] == t.images[-1][..., 2]).all()


def test_command_passes_the_medical_options(dicom_tree, monkeypatch, capsys):
    seen = {}

    def fake_rank(target, *a, **k):
        seen["target"] = target
        raise R.RankInputError("stop here")

    monkeypatch.setattr(R, "rank_models", fake_rank)
    shutil.copy(get_testdata_file("MR_truncated.dcm"), dicom_tree / "class_b" / "broken.dcm")
    argv = ["--target", str(dicom_tree), "--candidates", TINY[0], "--quiet"]
    assert rank_main(argv) == 2 and "broken.dcm cannot be decoded" in capsys.readouterr().err
    assert rank_main(argv + ["--skip-unreadable", "--window", "40,400", "--group-by", "file"]) == 2
    t = seen["target"]
    assert "stop here" in capsys.readouterr().err and len(t) == 17 and len(np.unique(t.groups)) == 17
    assert "1 unreadable files skipped" in t.description and "window C=40 W=400" in t.description


def test_csv_of_dicom_paths_group_column_and_unreadable_files(dicom_tree, tmp_path):
    files = sorted(p for p in dicom_tree.rglob("*") if p.is_file() and p.name not in ("DICOMDIR", "notes.txt"))
    rows = [{"path": str(p.relative_to(dicom_tree)), "finding": p.parent.name} for p in files]
    pd.DataFrame(rows).to_csv(dicom_tree / "labels.csv", index=False)
    t = R.load_target(dicom_tree / "labels.csv", window="ct-bone")
    assert t.kind == "csv" and len(t) == 17 and t.classes == ["class_a", "class_b"]
    assert len(np.unique(t.groups)) == 4
    folder = R.load_target(dicom_tree, window="ct-bone")
    assert sorted(map(str, t.files)) == sorted(folder.files)
    # a group column names the groups (patients across files); it is not a label
    pd.DataFrame(rows).assign(patient=[i // 3 for i in range(len(rows))]).to_csv(dicom_tree / "g.csv", index=False)
    g = R.load_target(dicom_tree / "g.csv")
    assert g.classes == ["class_a", "class_b"] and len(np.unique(g.groups)) == 6  # 17 rows, 3 a group
    # an unreadable file is named; skip_unreadable leaves it out and counts it
    shutil.copy(get_testdata_file("MR_truncated.dcm"), dicom_tree / "class_b" / "broken.dcm")
    (dicom_tree / "class_b" / "garbage.dcm").write_bytes(b"\x00" * 200)
    rows.extend([{"path": "class_b/broken.dcm", "finding": "class_b"}, {"path": "class_b/garbage.dcm",
                                                                         "finding": "class_b"}])
    pd.DataFrame(rows).to_csv(dicom_tree / "bad.csv", index=False)
    with pytest.raises(R.TargetError, match=r"DICOM file .*garbage.dcm cannot be read"):
        R.load_target(dicom_tree / "bad.csv")
    (dicom_tree / "class_b" / "garbage.dcm").unlink()
    with pytest.raises(R.TargetError, match=r"DICOM file .*broken.dcm cannot be decoded.*less than expected"):
        R.load_target(dicom_tree)
    (dicom_tree / "class_b" / "garbage.dcm").write_bytes(b"\x00" * 200)
    skipped = R.load_target(dicom_tree / "bad.csv", skip_unreadable=True)
    assert len(skipped) == 17 and "2 unreadable files skipped" in skipped.description
    # ordinary images with a window are refused; DICOM mixed with PNG is refused, naming one of each
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(dicom_tree / "class_a" / "x.png")
    with pytest.raises(R.TargetError, match=r"mixes ordinary images \(e.g. .*x.png\) with DICOM files"):
        R.load_target(dicom_tree)


def test_nifti_volumes_axes_central_slices_rescale_and_groups(tmp_path):
    root = tmp_path / "nifti"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    shutil.copy(NIFTI_DATA / "example4d.nii.gz", root / "a")   # (128, 96, 24, 2), cal 0..1162
    shutil.copy(NIFTI_DATA / "anatomical.nii", root / "b")     # (33, 41, 25), no window of its own
    # a written volume: int16 with scl_slope 2, scl_inter -100, stored S-A-R (voxel axis 0 is superior)
    stored = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    affine = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    img = nib.Nifti1Image(stored, affine)
    img.header.set_slope_inter(2.0, -100.0)
    nib.save(img, root / "b" / "written.nii.gz")
    t = R.load_target(root, central_slices=4, window="0,400")
    counts = {Path(f).name: n for f, n in zip(*np.unique(t.files, return_counts=True))}
    assert counts == {"example4d.nii.gz": 8, "anatomical.nii": 4, "written.nii.gz": 4}
    assert len(np.unique(t.groups)) == 3
    for name in counts:
        assert len({g for g, f in zip(t.groups, t.files) if Path(f).name == name}) == 1
    data = np.asanyarray(nib.load(root / "a" / "example4d.nii.gz").dataobj)
    i = t.slices.index("slice 10 of volume 1")  # (24 - 4) // 2 = 10: the first central slice
    assert np.array_equal(t.images[i], dicom_window(np.rot90(data[:, :, 10, 1].astype(float)), 0, 400))
    # stated axis 2 of the written volume: slices along its stored third axis, physical = 2 x stored - 100
    w = [j for j, f in enumerate(t.files) if f.endswith("written.nii.gz")]
    assert [t.slices[j] for j in w] == ["slice 1", "slice 2", "slice 3", "slice 4"]
    assert np.array_equal(t.images[w[0]], dicom_window(np.rot90(stored[:, :, 1] * 2.0 - 100), 0, 400))
    # 'axial' reorients to RAS+ first: the written volume's axial slices run along its stored axis 0
    ax = R.load_target(root, slice_axis="axial", window="0,400")
    w = [j for j, f in enumerate(ax.files) if f.endswith("written.nii.gz")]
    assert len(w) == 4 and ax.images[w[0]].shape == (5, 6)
    assert np.array_equal(ax.images[w[2]], dicom_window(np.rot90(stored[2].T * 2.0 - 100), 0, 400))
    # the same volume stored inferior to superior flipped (voxel axis 0 points to I): canonical slice k is
    # stored slice 3 - k
    flipped = affine.copy()
    flipped[2, 0] = -1
    nib.save(nib.Nifti1Image(stored, flipped), root / "b" / "flipped.nii.gz")
    ax = R.load_target(root, slice_axis="axial", window="0,400")
    f = [j for j, name in enumerate(ax.files) if name.endswith("flipped.nii.gz")]
    assert len(f) == 4 and all(np.array_equal(ax.images[f[k]], dicom_window(np.rot90(stored[3 - k].T * 1.0), 0, 400))
                               for k in range(4))
    (root / "b" / "flipped.nii.gz").unlink()
    # the default: example4d's own window (cal_min, cal_max), the others one min-max
    own = R.load_target(root, central_slices=2)
    assert "4 grayscale with their file's own window" in own.description
    j = own.files.index(next(f for f in own.files if f.endswith("example4d.nii.gz")))
    assert np.array_equal(own.images[j], dicom_window(np.rot90(data[:, :, 11, 0].astype(float)), 581, 1162))
    with pytest.raises(R.TargetError, match="anatomical.nii .*has no window of its own"):
        R.load_target(root, window="file")
    (root / "b" / "broken.nii").write_bytes(b"\x5c\x01\x00\x00" + b"\x00" * 100)
    with pytest.raises(R.TargetError, match=r"NIfTI file .*broken.nii cannot be read"):
        R.load_target(root)
    assert "1 unreadable files skipped" in R.load_target(root, skip_unreadable=True).description


def test_npz_int16_and_float_images_are_rescaled_and_windowed(tmp_path):
    rng = np.random.default_rng(0)
    hu = rng.integers(-1024, 2000, size=(12, 16, 16)).astype(np.int16)
    groups = np.repeat(np.arange(6), 2)  # 6 patients of 2 images, each of one class
    y = groups % 2
    np.savez(tmp_path / "ct.npz", images=hu, labels=y, groups=groups)
    t = R.load_target(tmp_path / "ct.npz", window="ct-lung")
    assert np.array_equal(np.stack(t.images), dicom_window(hu.astype(float), -600, 1500))
    assert np.array_equal(t.groups, groups)
    # stored values with a slope / intercept, float images, and the default (one min-max, as uint16 always was)
    np.savez(tmp_path / "stored.npz", images=(hu + 1024).astype(np.uint16), labels=y, rescale_slope=1.0,
             rescale_intercept=-1024.0)
    assert np.array_equal(np.stack(R.load_target(tmp_path / "stored.npz", window="ct-lung").images),
                          np.stack(t.images))
    np.savez(tmp_path / "float.npz", images=hu.astype(np.float32) / 1000, labels=y)
    f = R.load_target(tmp_path / "float.npz")
    lo, hi = hu.min() / 1000, hu.max() / 1000
    assert np.array_equal(np.stack(f.images), np.clip(np.round((hu / 1000 - lo) * 255 / (hi - lo)), 0, 255))
    np.savez(tmp_path / "own.npz", images=hu, labels=y, window_center=np.full(12, 40.0), window_width=400.0)
    assert np.array_equal(np.stack(R.load_target(tmp_path / "own.npz").images),
                          dicom_window(hu.astype(float), 40, 400))
    centers = np.linspace(-500, 500, 12)
    np.savez(tmp_path / "own12.npz", images=hu, labels=y, window_center=centers, window_width=400.0)
    sub = R.load_target(tmp_path / "own12.npz", max_images=6, seed=2)
    # every kept image is one source image under that image's own window (the per-image arrays follow the subset)
    source = [[i for i in range(12) if np.array_equal(dicom_window(hu[i].astype(float), centers[i], 400), im)]
              for im in sub.images]
    assert len(sub) == 6 and all(len(m) == 1 for m in source) and len({m[0] for m in source}) == 6
    # max_images keeps whole groups
    sub = R.load_target(tmp_path / "ct.npz", max_images=6, seed=1)
    # the quota is 3 images a class: one group of 2 fits, a second would exceed it
    assert len(sub) == 4 and np.bincount(sub.groups).tolist() == [2, 2] and sorted(sub.labels) == [0, 0, 1, 1]
    bad = {"u8.npz": (dict(images=hu.astype(np.uint8), labels=y), "ct-lung", "uint8 images"),
           "nan.npz": (dict(images=np.where(hu > 0, np.nan, hu).astype(np.float32), labels=y), None, "NaN"),
           "grp.npz": (dict(images=hu, labels=y, groups=groups[:5]), None, "'groups' has shape"),
           "rgb.npz": (dict(images=np.stack([hu] * 3, -1), labels=y), None, "colour 'images' must be uint8")}
    for name, (arrays, window, message) in bad.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(R.TargetError, match=message) as info:
            R.load_target(tmp_path / name, window=window)
        assert name in str(info.value)


def test_skip_unreadable_works_for_ordinary_images_too(tmp_path):
    from PIL import Image

    for k in range(2):
        (tmp_path / f"c{k}").mkdir()
        for j in range(3):
            Image.fromarray(np.full((8, 8), 40 * k + j, np.uint8)).save(tmp_path / f"c{k}" / f"{j}.png")
    (tmp_path / "c1" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(R.TargetError, match=r"image .*broken.png cannot be read .*--skip-unreadable"):
        R.load_target(tmp_path)
    t = R.load_target(tmp_path, skip_unreadable=True)
    assert len(t) == 6 and t.groups is None and "1 unreadable files skipped (the first: image" in t.description
    assert [Path(f).name for f in t.files] == ["0.png", "1.png", "2.png"] * 2 and t.labels.tolist() == [0] * 3 + [1] * 3
    with pytest.raises(R.TargetError, match="a window .* applies only to DICOM"):
        R.load_target(tmp_path, window="ct-lung")


def test_without_the_extra_the_error_says_what_to_install(dicom_tree, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(R.TargetError, match=r"needs pydicom: pip install \.\[medical\]"):
        R.load_target(dicom_tree)


def test_group_subsets_keep_whole_groups_stratified_and_seeded():
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(40), rng.integers(1, 9, size=40))
    labels = (np.arange(40) % 3)[groups]
    for n in (10, 30, 80):
        keep = _stratified_groups(labels, groups, n, seed=n)
        for g in np.unique(groups):
            assert np.isin(np.flatnonzero(groups == g), keep).all() or not np.isin(np.flatnonzero(groups == g),
                                                                                   keep).any()
        assert set(labels[keep].tolist()) == {0, 1, 2}
        assert np.array_equal(keep, _stratified_groups(labels, groups, n, seed=n))
    assert len(_stratified_groups(labels, groups, 80, seed=0)) <= 80 + 8
    # every class keeps 2 images: here class 1's groups are one of 1 image and one of 6, its quota 2
    labels, groups = np.array([0] * 10 + [1] * 7), np.array(list(range(10)) + [10] + [11] * 6)
    keep = _stratified_groups(labels, groups, 6, seed=0)
    assert (labels[keep] == 1).sum() == 7 and (labels[keep] == 0).sum() == 3
    # a class only present in a group counted for another class still gets that group
    labels, groups = np.array([0, 0, 0, 1, 0, 0, 0, 0]), np.array([0, 0, 0, 0, 1, 1, 2, 2])
    assert 3 in _stratified_groups(labels, groups, 4, seed=0)


def test_fingerprint_changes_with_groups_only_when_there_are_groups():
    import hashlib

    images = [np.full((4, 4), v, np.uint8) for v in range(4)]
    labels = np.array([0, 0, 1, 1])
    h = hashlib.sha256()  # the fingerprint as it was before groups existed
    for im in images:
        h.update(str(im.shape).encode())
        h.update(im.tobytes())
    h.update(str(labels.shape).encode())
    h.update(labels.tobytes())
    assert R.Target("t", "npz", images, labels, ["a", "b"]).fingerprint == h.hexdigest()[:16]
    a = R.Target("t", "npz", images, labels, ["a", "b"], groups=np.array([0, 0, 1, 1]))
    b = R.Target("t", "npz", images, labels, ["a", "b"], groups=np.array([0, 1, 2, 3]))
    assert len({a.fingerprint, b.fingerprint, h.hexdigest()[:16]}) == 3
    with pytest.raises(R.TargetError, match="groups of shape"):
        R.Target("t", "npz", images, labels, ["a", "b"], groups=np.array([0, 1]))


def test_dicom_tree_csv_and_nifti_folder_rank_end_to_end(dicom_tree, tmp_path, capsys):
    files = sorted(p for p in dicom_tree.rglob("*") if p.is_file() and p.name not in ("DICOMDIR", "notes.txt"))
    pd.DataFrame({"path": [str(p) for p in files], "label": [p.parent.name for p in files]}).to_csv(
        tmp_path / "dicom.csv", index=False)
    nifti = tmp_path / "nifti"
    for k, name in enumerate(["example4d.nii.gz", "anatomical.nii"]):
        (nifti / f"c{k}").mkdir(parents=True)
        shutil.copy(NIFTI_DATA / name, nifti / f"c{k}")
        vol = (np.random.default_rng(k).normal(100 * k, 30, (20, 24, 9))).astype(np.float32)
        nib.save(nib.Nifti1Image(vol, np.eye(4)), nifti / f"c{k}" / f"written{k}.nii.gz")
    for target, kw, n_groups in [(dicom_tree, {}, 4), (tmp_path / "dicom.csv", {}, 4),
                                 (nifti, dict(central_slices=3), 4)]:
        t = R.load_target(target, **kw)
        assert len(np.unique(t.groups)) == n_groups
        res = R.rank_models(t if kw else target, TINY, **FAST)  # a path: rank_models loads it with the defaults
        rec = res.recommendation
        assert len(rec) == 2 and (rec["status"] == "ok").all(), rec[["name", "status", "reason"]]
        assert (res.table["status"] == "ok").all() and len(res.table) == 2 * 3
        assert res.target["groups"] == n_groups and res.target["images"] == len(t)
    out = tmp_path / "out" / "ranking.csv"
    code = rank_main(["--target", str(nifti), "--candidates", ",".join(TINY), "--out", str(out),
                      "--metrics", "knn_accuracy", "--recommend", "knn_accuracy", "--n-boot", "3", "--device", "cpu",
                      "--window", "ct-soft-tissue", "--slice-axis", "axial", "--central-slices", "2", "--quiet"])
    assert code == 0, capsys.readouterr().err
    info = json.loads((out.parent / "ranking_target.json").read_text())
    assert info["groups"] == 4 and info["images"] == 2 * 2 + 2 + 2 + 2  # example4d: 2 volumes
    assert "window C=50 W=400 (ct-soft-tissue)" in capsys.readouterr().out
    for bad, message in [(["--window", "lungs"], "window 'lungs'"), (["--central-slices", "0"], "central_slices")]:
        assert rank_main(["--target", str(nifti), "--candidates", TINY[0], "--out", str(out), "--quiet"] + bad) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err
