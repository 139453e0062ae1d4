"""The MedMNIST data layer: loading, MD5 outcomes, label shapes, bad input, the paper's folds."""
import shutil
import warnings
import zipfile

import numpy as np
import pytest

from helpers import data as D
from helpers.paths import data_root


def _write_npz(folder, name, **arrays):
    (folder / "medmnist").mkdir(parents=True, exist_ok=True)
    path = folder / "medmnist" / name
    np.savez(path, **arrays)
    return path


def _breast_like(n=(20, 6, 8), labels_shape=lambda n: (n, 1), classes=2, size=28):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, k in zip(D.SPLITS, n):
        arrays[f"{split}_images"] = rng.integers(0, 256, (k, size, size), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, classes, labels_shape(k)).astype(np.uint8)
    return arrays


# ---------------------------------------------------------------------------------------------- data root

def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("DATA_ROOT", str(tmp_path / "env"))
    assert data_root(tmp_path / "explicit") == (tmp_path / "explicit").resolve()
    assert data_root() == (tmp_path / "env").resolve()
    monkeypatch.delenv("DATA_ROOT")
    assert data_root().name == "data"


# ---------------------------------------------------------------------------------------------- MD5 outcomes

def test_official_file_loads_without_warning(shared_data_root):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = D.load_medmnist("retinamnist", root=shared_data_root)
    assert d.md5_ok and d.task == "ordinal-regression" and d.n_classes == 5 and d.n_channels == 3
    assert d.images["train"].shape == (1080, 28, 28, 3) and d.images["train"].dtype == np.uint8
    assert d.labels["train"].shape == (1080, 1) and d.labels["train"].dtype == np.int64
    assert [len(d.labels[s]) for s in D.SPLITS] == [1080, 120, 400]


def test_subset_loads_with_visible_warning(shared_data_root):
    with pytest.warns(D.MD5MismatchWarning, match=r"pneumoniamnist.npz: MD5 .* differs.*subset copy.*"
                                                   r"train 3882 of 4708.*not comparable"):
        d = D.load_medmnist("pneumoniamnist", root=shared_data_root)
    assert not d.md5_ok and d.provenance == D.SUBSET and not d.comparable
    assert d.labels["train"].shape[1] == 1 and d.n_classes == 2


def test_resaved_official_content_loads_without_warning(shared_data_root):
    """The shipped breastmnist is the official images and labels, re-saved: MD5 differs, content does not."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = D.load_medmnist("breastmnist", root=shared_data_root)
    assert not d.md5_ok and d.provenance == D.OFFICIAL_RESAVED and d.comparable
    assert D.content_sha256(d.images, d.labels) == D.OFFICIAL_CONTENT_SHA256[("breastmnist", 28)]
    # the official file's content hash is the one recorded for it, too
    r = D.load_medmnist("retinamnist", root=shared_data_root)
    assert r.provenance == D.OFFICIAL and D.content_sha256(r.images, r.labels) == D.OFFICIAL_CONTENT_SHA256[
        ("retinamnist", 28)]


def test_content_hash_ignores_how_labels_are_saved(shared_data_root, tmp_path):
    """Re-saving the official content with (N,) uint8 labels, compressed, keeps it comparable."""
    src = np.load(shared_data_root / "medmnist" / "breastmnist.npz")
    arrays = {k: (src[k].reshape(-1).astype(np.uint8) if k.endswith("labels") else src[k]) for k in src.files}
    (tmp_path / "medmnist").mkdir()
    np.savez_compressed(tmp_path / "medmnist" / "breastmnist.npz", **arrays)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = D.load_medmnist("breastmnist", root=tmp_path, download=False)
    assert d.provenance == D.OFFICIAL_RESAVED


@pytest.mark.parametrize("change, provenance, message", [
    ("swap_labels", D.MODIFIED, r"modified copy: the release's split sizes but other label counts \(train"),
    ("one_pixel", D.UNVERIFIED, "unverified copy: the release's split sizes, but its content hash differs"),
    ("drop_test", D.SUBSET, "subset copy: split sizes differ from the release \\(test 155 of 156\\)"),
])
def test_altered_official_content_warns(shared_data_root, tmp_path, change, provenance, message):
    src = np.load(shared_data_root / "medmnist" / "breastmnist.npz")
    arrays = {k: src[k].copy() for k in src.files}
    if change == "swap_labels":  # one training label flipped: the class counts no longer match the release
        arrays["train_labels"][0] = 1 - arrays["train_labels"][0]
    elif change == "one_pixel":  # same sizes and labels, one pixel changed: only the content hash can tell
        arrays["val_images"][0, 0, 0] ^= 1
    else:
        arrays["test_images"], arrays["test_labels"] = arrays["test_images"][1:], arrays["test_labels"][1:]
    (tmp_path / "medmnist").mkdir()
    np.savez(tmp_path / "medmnist" / "breastmnist.npz", **arrays)
    with pytest.warns(D.MD5MismatchWarning, match=message):
        d = D.load_medmnist("breastmnist", root=tmp_path, download=False)
    assert d.provenance == provenance and not d.comparable


def test_truncated_file_is_a_clear_error(shared_data_root, tmp_path):
    (tmp_path / "medmnist").mkdir()
    src = shared_data_root / "medmnist" / "breastmnist.npz"
    blob = src.read_bytes()
    (tmp_path / "medmnist" / "breastmnist.npz").write_bytes(blob[: len(blob) // 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", D.MD5MismatchWarning)
        with pytest.raises(D.MedMNISTFileError, match=r"breastmnist.npz.*(truncated or corrupt)"):
            D.load_medmnist("breastmnist", root=tmp_path, download=False)


def test_garbage_file_is_a_clear_error(tmp_path):
    (tmp_path / "medmnist").mkdir()
    (tmp_path / "medmnist" / "breastmnist.npz").write_bytes(b"not a zip file at all")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", D.MD5MismatchWarning)
        with pytest.raises(D.MedMNISTFileError, match="breastmnist.npz: cannot be read"):
            D.load_medmnist("breastmnist", root=tmp_path, download=False)


def test_corrupt_member_is_a_clear_error(tmp_path):
    path = _write_npz(tmp_path, "breastmnist.npz", **_breast_like())
    # flip bytes inside the stored val_images member: the archive opens, the array does not read back
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("val_images.npy")
    blob = bytearray(path.read_bytes())
    name_len, extra_len = np.frombuffer(bytes(blob[info.header_offset + 26: info.header_offset + 30]), "<u2")
    start = info.header_offset + 30 + int(name_len) + int(extra_len)
    blob[start: start + 8] = b"\x00" * 8  # destroys the .npy magic of that member
    path.write_bytes(bytes(blob))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", D.MD5MismatchWarning)
        with pytest.raises(D.MedMNISTFileError, match="breastmnist.npz"):
            D.load_medmnist("breastmnist", root=tmp_path, download=False)


def test_missing_file_offline_names_file_root_and_remedy(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        D.load_medmnist("dermamnist", size=64, root=tmp_path, download=False)
    msg = str(info.value)
    assert "dermamnist_64.npz" in msg and str(tmp_path) in msg and "DATA_ROOT" in msg and "MD5" in msg


def test_size_suffix_files(tmp_path):
    _write_npz(tmp_path, "breastmnist_64.npz", **_breast_like(size=64))
    with pytest.warns(D.MD5MismatchWarning):
        d = D.load_medmnist("breastmnist", size=64, root=tmp_path, download=False)
    assert d.images["test"].shape[1:] == (64, 64)
    with pytest.raises(ValueError, match="size must be one of"):
        D.load_medmnist("breastmnist", size=32, root=tmp_path, download=False)
    with pytest.raises(ValueError, match="unknown MedMNIST 2D flag"):
        D.load_medmnist("organmnist3d", root=tmp_path, download=False)


# ---------------------------------------------------------------------------------------------- labels

def test_multilabel_chestmnist_like(tmp_path):
    arrays = _breast_like(labels_shape=lambda n: (n, 14))
    _write_npz(tmp_path, "chestmnist.npz", **arrays)
    with pytest.warns(D.MD5MismatchWarning):
        d = D.load_medmnist("chestmnist", root=tmp_path, download=False)
    assert d.multilabel and d.n_classes == 14 and d.n_labels == 14
    assert d.labels["train"].shape == (20, 14) and d.labels["train"].dtype == np.int64
    assert d.class_counts()["train"].shape == (14,)


def test_flat_labels_are_reshaped(tmp_path):
    _write_npz(tmp_path, "breastmnist.npz", **_breast_like(labels_shape=lambda n: (n,)))
    with pytest.warns(D.MD5MismatchWarning):
        d = D.load_medmnist("breastmnist", root=tmp_path, download=False)
    assert d.labels["val"].shape == (6, 1)


# ---------------------------------------------------------------------------------------------- bad input

def _corrupt(arrays, **changes):
    out = dict(arrays)
    for key, value in changes.items():
        if value is None:
            out.pop(key)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("change, message", [
    (dict(val_labels=None), r"missing keys \['val_labels'\]"),
    (dict(train_images=np.zeros((20, 28, 28), np.float32)), "dtype float32, expected uint8"),
    (dict(train_images=np.zeros((20, 28, 27), np.uint8)), r"shape \(20, 28, 27\), expected \(N, 28, 28\)"),
    (dict(test_labels=np.full((8, 1), 2, np.uint8)), r"labels \[2\] out of range 0..1"),
    (dict(test_labels=np.full((8, 1), -1, np.int64)), r"labels \[-1\] out of range"),
    (dict(test_labels=np.zeros((8, 1), np.float32)), "labels have dtype float32"),
    (dict(val_labels=np.zeros((5, 1), np.uint8)), "6 images but 5 labels"),
    (dict(train_labels=np.zeros((20, 3), np.uint8)), r"labels have shape \(20, 3\), expected \(N, 1\)"),
    (dict(val_images=np.zeros((0, 28, 28), np.uint8), val_labels=np.zeros((0, 1), np.uint8)), "split is empty"),
])
def test_bad_input_names_file_and_problem(tmp_path, change, message):
    _write_npz(tmp_path, "breastmnist.npz", **_corrupt(_breast_like(), **change))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", D.MD5MismatchWarning)
        with pytest.raises(D.MedMNISTFileError, match=message) as info:
            D.load_medmnist("breastmnist", root=tmp_path, download=False)
    assert "breastmnist.npz" in str(info.value)


def test_pickled_npz_is_refused(tmp_path):
    arrays = _breast_like()
    arrays["train_labels"] = np.array([object()] * 20, dtype=object)
    _write_npz(tmp_path, "breastmnist.npz", **arrays)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", D.MD5MismatchWarning)
        with pytest.raises(D.MedMNISTFileError, match="train"):
            D.load_medmnist("breastmnist", root=tmp_path, download=False)


def test_available_flags(shared_data_root, tmp_path):
    assert set(D.available_flags(root=shared_data_root)) == {"breastmnist", "pneumoniamnist", "retinamnist"}
    assert D.available_flags(root=tmp_path) == []


# ---------------------------------------------------------------------------------------------- folds

def _reference_stream(n_train, n_val, n_classes, folds=5):
    """The reference code's stream, written out the way it is written there."""
    np.random.seed(24)
    out = []
    for _ in range(folds):
        tr = np.random.choice(n_train, n_classes * 100, replace=False)
        va = np.random.choice(n_val, n_classes * 25, replace=False) if n_val > n_classes * 25 else np.arange(n_val)
        out.append((tr, va))
    return out


def test_folds_breastmnist_sizes_draw_val():
    folds = D.paper_fold_indices(546, 78, 2)
    ref = _reference_stream(546, 78, 2)
    assert len(folds) == 5
    for (tr, va), (rtr, rva) in zip(folds, ref):
        np.testing.assert_array_equal(tr, rtr)
        np.testing.assert_array_equal(va, rva)
        assert len(tr) == 200 and len(set(tr)) == 200 and len(va) == 50 and len(set(va)) == 50
    # pinned values: guard against a change of NumPy's legacy stream or of the draw order
    assert folds[0][0][:5].tolist() == [33, 90, 499, 527, 104]
    assert folds[0][1][:5].tolist() == [75, 48, 7, 12, 74]
    assert not np.array_equal(folds[0][0], folds[1][0])


def test_folds_retinamnist_sizes_keep_whole_val():
    folds = D.paper_fold_indices(1080, 120, 5)
    ref = _reference_stream(1080, 120, 5)
    for (tr, va), (rtr, rva) in zip(folds, ref):
        np.testing.assert_array_equal(tr, rtr)
        np.testing.assert_array_equal(va, np.arange(120))
        assert len(tr) == 500
    # no val draw consumed the stream: fold 2's train draw follows fold 1's directly
    np.random.seed(24)
    np.random.choice(1080, 500, replace=False)
    np.testing.assert_array_equal(folds[1][0], np.random.choice(1080, 500, replace=False))


def test_folds_bad_arguments():
    with pytest.raises(ValueError, match="fewer than the 500"):
        D.paper_fold_indices(400, 50, 5)
    with pytest.raises(ValueError, match="n_classes must be a positive integer"):
        D.paper_fold_indices(400, 50, 0)

