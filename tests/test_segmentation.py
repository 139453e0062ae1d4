"""Segmentation: the stored sets and their errors, a user's mask folder, the device dataset's augmentation,
the U-Net, Dice, the union label space, a tiny training run with a checkpoint, and the bank's resume."""
import json
import shutil

import numpy as np
import pytest
import torch

from helpers import segmentation as S
from helpers.stages import segmentation as SEG
from helpers.models import SourceUnavailable
from helpers.segmentation import training as ST

MANIFEST_CLASSES = {"kvasir_seg": 2, "busi": 2, "ph2": 2, "acdc": 4, "monuseg": 2}


@pytest.fixture(scope="module")
def seg_root(shared_data_root):
    if not (shared_data_root / "segmentation").is_dir():
        pytest.fail(f"data root {shared_data_root} has no segmentation/ folder")
    return shared_data_root


@pytest.fixture(scope="module")
def ph2(seg_root):
    return S.load_segmentation("ph2", seg_root)


def _copy_root(seg_root, tmp_path, names=("ph2",)):
    (tmp_path / "segmentation").mkdir(parents=True)
    shutil.copy(seg_root / "segmentation" / "MANIFEST.json", tmp_path / "segmentation" / "MANIFEST.json")
    for n in names:
        shutil.copy(seg_root / "segmentation" / f"{n}_128.npz", tmp_path / "segmentation" / f"{n}_128.npz")
    return tmp_path


def _write_npz(path, **arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def _tiny_arrays(n=4, size=8, rgb=False, mask_max=1):
    rng = np.random.default_rng(0)
    out = {}
    for s in ("train", "val", "test"):
        shape = (n, size, size, 3) if rgb else (n, size, size)
        out[f"{s}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        out[f"{s}_masks"] = rng.integers(0, mask_max + 1, (n, size, size), dtype=np.uint8)
        out[f"{s}_ids"] = np.array([f"{s}{i}" for i in range(n)])
    return out


# ------------------------------------------------------------------------------------------- stored sets
def test_manifest_names_match_the_sets(seg_root):
    assert tuple(S.read_manifest(seg_root)) == S.SEGMENTATION_SETS
    assert S.available_segmentation_sets(seg_root) == list(S.SEGMENTATION_SETS)


@pytest.mark.parametrize("name", S.SEGMENTATION_SETS)
def test_load_each_real_set(seg_root, name):
    d = S.load_segmentation(name, seg_root)
    info = S.read_manifest(seg_root)[name]
    assert d.n_classes == MANIFEST_CLASSES[name] and d.class_names[0] == "background"
    assert d.class_names == [info["classes"][str(k)] for k in range(d.n_classes)]
    for split in ("train", "val", "test"):
        x, m = d.split(split)
        assert x.dtype == np.uint8 and m.dtype == np.uint8
        assert len(x) == info["counts"][f"{split}_images"] == len(d.ids[split])
        assert m.shape == (len(x), 128, 128) and x.shape[:3] == m.shape
        assert x.ndim == (4 if "RGB" in info["modality"] else 3)
        assert int(m.max()) <= d.n_classes - 1 and x.max() > x.min()
    assert int(d.masks["train"].max()) == d.n_classes - 1  # every class occurs in train
    t = d.class_pixel_table()
    assert set(t["split"]) == {"train", "val", "test"} and t["pixel_share"].between(0, 1).all()


def test_missing_file_names_file_root_and_data_root(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        S.load_segmentation("ph2", tmp_path)
    msg = str(err.value)
    assert "ph2_128.npz" in msg and str(tmp_path) in msg and "DATA_ROOT" in msg
    with pytest.raises(FileNotFoundError, match="known sets"):
        S.load_segmentation("nosuchset", tmp_path)


def test_corrupt_file(seg_root, tmp_path):
    root = _copy_root(seg_root, tmp_path)
    path = root / "segmentation" / "ph2_128.npz"
    path.write_bytes(b"this is not a zip archive")
    with pytest.raises(S.SegmentationFileError, match="cannot be read"):
        S.load_segmentation("ph2", root)
    # a truncated archive: the zip directory is intact enough to open, one member is cut
    src = (seg_root / "segmentation" / "ph2_128.npz").read_bytes()
    path.write_bytes(src[: len(src) // 2])
    with pytest.raises(S.SegmentationFileError, match="corrupt"):
        S.load_segmentation("ph2", root)


def test_missing_keys_mismatched_masks_and_out_of_range(tmp_path):
    root = tmp_path
    arrays = _tiny_arrays()
    del arrays["val_masks"]
    _write_npz(root / "segmentation" / "mine_128.npz", **arrays)
    with pytest.raises(S.SegmentationFileError, match="missing keys.*val_masks"):
        S.load_segmentation("mine", root)

    arrays = _tiny_arrays()
    arrays["test_masks"] = arrays["test_masks"][:, :6]
    _write_npz(root / "segmentation" / "mine_128.npz", **arrays)
    with pytest.raises(S.SegmentationFileError, match="split 'test'.*masks have shape"):
        S.load_segmentation("mine", root)

    arrays = _tiny_arrays()
    arrays["train_masks"] = arrays["train_masks"][:3]
    _write_npz(root / "segmentation" / "mine_128.npz", **arrays)
    with pytest.raises(S.SegmentationFileError, match="masks have shape"):
        S.load_segmentation("mine", root)

    # without a manifest entry, classes come from the mask values
    _write_npz(root / "segmentation" / "mine_128.npz", **_tiny_arrays(mask_max=2))
    d = S.load_segmentation("mine", root)
    assert d.class_names == ["background", "class 1", "class 2"]

    # with one, values beyond the declared classes are an error
    (root / "segmentation" / "MANIFEST.json").write_text(json.dumps(
        {"mine": {"classes": {"0": "background", "1": "lesion"}}}))
    with pytest.raises(S.SegmentationFileError, match=r"mask values \[2\] are outside the declared classes"):
        S.load_segmentation("mine", root)


def test_out_of_range_in_a_real_set_copy(seg_root, tmp_path):
    d = S.load_segmentation("ph2", seg_root)
    arrays = {f"{s}_{k}": getattr(d, k)[s] for s in ("train", "val", "test") for k in ("images", "masks", "ids")}
    arrays["val_masks"] = arrays["val_masks"].copy()
    arrays["val_masks"][0, 0, 0] = 3
    (tmp_path / "segmentation").mkdir()
    shutil.copy(seg_root / "segmentation" / "MANIFEST.json", tmp_path / "segmentation" / "MANIFEST.json")
    np.savez(tmp_path / "segmentation" / "ph2_128.npz", **arrays)
    with pytest.raises(S.SegmentationFileError, match=r"\[3\].*outside the declared classes 0..1"):
        S.load_segmentation("ph2", tmp_path)


def test_data_root_from_environment(seg_root, monkeypatch, tmp_path):
    monkeypatch.setenv("DATA_ROOT", str(seg_root))
    assert S.load_segmentation("ph2").path == seg_root / "segmentation" / "ph2_128.npz"
    monkeypatch.setenv("DATA_ROOT", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        S.load_segmentation("ph2")


# ------------------------------------------------------------------------------------------- mask folder
def _write_folder(tmp_path, n=6, size=(20, 16), mode="L"):
    from PIL import Image

    folder = tmp_path / "mine"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        w, h = size
        img = rng.integers(0, 256, (h, w, 3) if mode == "RGB" else (h, w), dtype=np.uint8)
        Image.fromarray(img).save(folder / "images" / f"case{i}.{'jpg' if i % 2 else 'png'}")
        mask = np.zeros((h, w), np.uint8)
        mask[2:8, 3:9] = 1
        mask[10:12, 4:6] = 2 if i == 0 else 1
        Image.fromarray(mask).save(folder / "masks" / f"case{i}.png")
    return folder


def test_load_mask_folder(tmp_path):
    folder = _write_folder(tmp_path)
    d = S.load_mask_folder(folder, seed=0)
    assert isinstance(d, S.SegmentationData) and d.name == "mine"
    assert d.class_names == ["background", "class 1", "class 2"]
    assert [len(d.masks[s]) for s in ("train", "val", "test")] == [4, 1, 1]
    assert d.images["train"].shape == (4, 16, 20) and d.masks["train"].shape == (4, 16, 20)
    ids = sorted(np.concatenate([d.ids[s] for s in ("train", "val", "test")]).tolist())
    assert len(ids) == 6 and ids[0] == "case0.png" and "case1.jpg" in ids
    # the split is seeded: same seed, same split; another seed, (here) another one
    assert S.load_mask_folder(folder, seed=0).ids["test"].tolist() == d.ids["test"].tolist()
    other = [S.load_mask_folder(folder, seed=s).ids["test"].tolist() for s in range(1, 6)]
    assert any(o != d.ids["test"].tolist() for o in other)
    # resized: images bilinear, masks nearest (still class ids)
    r = S.load_mask_folder(folder, size=32, class_names=["bg", "a", "b"])
    assert r.images["train"].shape == (4, 32, 32) and set(np.unique(r.masks["train"])) <= {0, 1, 2}
    assert r.class_names == ["bg", "a", "b"]


def test_load_mask_folder_rgb_and_mask_map(tmp_path):
    from PIL import Image

    folder = _write_folder(tmp_path, mode="RGB")
    for f in (folder / "masks").iterdir():  # 0/255 binary masks
        m = np.asarray(Image.open(f))
        Image.fromarray(((m > 0) * 255).astype(np.uint8)).save(f)
    with pytest.raises(S.SegmentationFileError, match="mask_map"):
        S.load_mask_folder(folder)
    d = S.load_mask_folder(folder, mask_map={255: 1})
    assert d.images["train"].shape == (4, 16, 20, 3) and d.class_names == ["background", "class 1"]


def test_load_mask_folder_errors(tmp_path):
    from PIL import Image

    with pytest.raises(FileNotFoundError, match="images"):
        S.load_mask_folder(tmp_path / "nothing")
    folder = _write_folder(tmp_path)
    (folder / "masks" / "case3.png").rename(folder / "masks" / "other.png")
    with pytest.raises(S.SegmentationFileError, match=r"without a mask \['case3'\].*without an image \['other'\]"):
        S.load_mask_folder(folder)
    (folder / "masks" / "other.png").rename(folder / "masks" / "case3.png")
    (folder / "images" / "case2.png").write_bytes(b"not an image")
    with pytest.raises(S.SegmentationFileError, match="case2.png: cannot be read as an image"):
        S.load_mask_folder(folder)
    Image.fromarray(np.zeros((16, 20), np.uint8)).save(folder / "images" / "case2.png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(folder / "masks" / "case4.png")
    with pytest.raises(S.SegmentationFileError, match="must have the same size"):
        S.load_mask_folder(folder)
    Image.fromarray(np.zeros((16, 20), np.uint8)).save(folder / "masks" / "case4.png")
    with pytest.raises(S.SegmentationFileError, match=r"outside the 2 classes"):
        S.load_mask_folder(folder, class_names=["bg", "a"])
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(folder / "images" / "case5.png")  # beside case5.jpg
    with pytest.raises(S.SegmentationFileError, match="two files share the name 'case5'"):
        S.load_mask_folder(folder)
    (folder / "images" / "case5.jpg").unlink()
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(folder / "masks" / "case5.png")
    with pytest.raises(S.SegmentationFileError, match="different sizes.*size="):
        S.load_mask_folder(folder)
    assert S.load_mask_folder(folder, size=16).images["train"].shape[1:] == (16, 16)


# ------------------------------------------------------------------------------------------- device dataset
def test_dataset_resizes_normalises_and_subsets(ph2):
    ds = S.SegmentationTensorDataset.from_data(ph2, "val", image_size=64, indices=[0, 3, 5], device="cpu")
    assert len(ds) == 3 and ds.images.shape == (3, 3, 64, 64) and ds.masks.shape == (3, 64, 64)
    x, m = ds.batch([0, 1])
    assert x.shape == (2, 3, 64, 64) and x.dtype == torch.float32 and m.dtype == torch.int64
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0  # 0.5 / 0.5 normalisation
    assert torch.equal(m[0], torch.as_tensor(ph2.masks["val"][0][::2, ::2]).long())  # nearest, 2x down
    with pytest.raises(ValueError, match="out of range"):
        S.SegmentationTensorDataset.from_data(ph2, "val", image_size=64, indices=[999], device="cpu")
    gray = S.SegmentationTensorDataset(np.zeros((2, 8, 8), np.uint8), np.zeros((2, 8, 8), np.uint8), 8,
                                       mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), device="cpu")
    x, _ = gray.batch([0, 1])
    assert x.shape == (2, 3, 8, 8) and torch.allclose(x[0, :, 0, 0], torch.tensor([-0.485 / 0.229,
                                                                                  -0.456 / 0.224,
                                                                                  -0.406 / 0.225]))
    with pytest.raises(ValueError, match="masks must have shape"):
        S.SegmentationTensorDataset(np.zeros((2, 8, 8), np.uint8), np.zeros((2, 8, 7), np.uint8), 8, device="cpu")


def test_augmentation_moves_image_and_mask_together():
    # the mask is a threshold of the image, so any geometric change must keep that relation
    n, s = 32, 32
    rng = np.random.default_rng(0)
    images = np.zeros((n, s, s), np.uint8)
    for i in range(n):  # a bright block at a random place, so flips and rotations are visible
        r, c = rng.integers(2, 20, 2)
        images[i, r:r + 10, c:c + 6] = 255
    masks = (images > 127).astype(np.uint8)
    flip_only = S.SegAugmentConfig(flip_p=0.5, rotation_degrees=0.0, scale=(1.0, 1.0))
    ds = S.SegmentationTensorDataset(images, masks, s, device="cpu", augment=flip_only)
    x, m = next(ds.batches(n, augment=True, seed=3))
    raw = (x[:, 0] * 0.5 + 0.5) * 255
    assert torch.equal((raw > 127).long(), m)
    flipped = [not torch.equal(m[i], torch.as_tensor(masks[i]).long()) for i in range(n)]
    assert 0 < sum(flipped) < n  # some flipped, some not
    for i in range(n):
        ref = torch.as_tensor(masks[i]).long()
        assert torch.equal(m[i], ref.flip(-1) if flipped[i] else ref)
    # rotation + zoom: the mask follows the image up to interpolation at the block's edges
    ds.augment_config = S.SegAugmentConfig(flip_p=0.5, rotation_degrees=15.0, scale=(0.8, 1.2))
    x, m = next(ds.batches(n, augment=True, seed=4))
    raw = (x[:, 0] * 0.5 + 0.5) * 255
    agree = ((raw > 127).long() == m).float().mean()
    assert float(agree) > 0.97
    assert not torch.equal(m, torch.as_tensor(masks).long())
    # seeded: the same seed gives the same batch
    x2, m2 = next(ds.batches(n, augment=True, seed=4))
    assert torch.equal(x, x2) and torch.equal(m, m2)


# ------------------------------------------------------------------------------------------- model
def test_unet_shapes_and_decoder_features():
    model = S.UNet(3).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits, feats = model.decoder_features(x)
        assert torch.equal(model(x), logits)
    assert logits.shape == (2, 3, 64, 64)
    assert list(feats) == ["dec4", "dec3", "dec2", "dec1", "dec0"] == S.decoder_block_names()
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        "dec4": (2, 256, 4, 4), "dec3": (2, 128, 8, 8), "dec2": (2, 64, 16, 16), "dec1": (2, 32, 32, 32),
        "dec0": (2, 16, 64, 64)}
    assert set(model.encoder) == {"conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"}
    S.replace_head(model, 5)
    assert model(x).shape == (2, 5, 64, 64) and model.n_classes == 5
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.randn(1, 3, 40, 40))


def test_imagenet_encoder_available_or_unavailable_with_reason():
    try:
        model = S.UNet(2, encoder_weights="imagenet")
    except SourceUnavailable as exc:
        assert exc.source == "imagenet" and "resnet18" in exc.reason
    else:
        import torchvision

        ref = torchvision.models.resnet18(weights="IMAGENET1K_V1")
        assert torch.equal(model.encoder["conv1"].weight, ref.conv1.weight)


def test_checkpoint_round_trip(tmp_path):
    model = S.UNet(4, decoder_channels=(64, 32, 16, 16, 8)).eval()
    path = S.save_segmentation_checkpoint(model, tmp_path / "m", {"classes": ["a", "b", "c", "d"]})
    assert path.suffix == ".safetensors" and path.with_suffix(".json").is_file()
    loaded = S.load_segmentation_checkpoint(path).eval()
    assert loaded.decoder_channels == (64, 32, 16, 16, 8) and loaded.n_classes == 4
    assert loaded.checkpoint_meta["classes"] == ["a", "b", "c", "d"]
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x))
    # a .pt state dict goes through torch.load(weights_only=True)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    assert S.load_segmentation_checkpoint(tmp_path / "m.pt").n_classes == 4


# ------------------------------------------------------------------------------------------- Dice and loss
def test_dice_per_class_known_values():
    mask = np.zeros((3, 4, 4), np.int64)
    pred = np.zeros((3, 4, 4), np.int64)
    # case 0: class 1 GT 4 px, predicted 2 of them + 2 wrong px -> 2*2/(4+4) = 0.5; class 2 absent in both
    mask[0, 0, :4] = 1
    pred[0, 0, :2] = 1
    pred[0, 1, :2] = 1
    # case 1: class 1 perfect (2 px); class 2 GT 2 px, predicted none -> 0
    mask[1, 0, :2] = 1
    pred[1, 0, :2] = 1
    mask[1, 3, :2] = 2
    # case 2: class 1 absent in both (excluded); class 2 predicted but absent in GT -> 0; plus
    mask[2, 2, :] = 0
    pred[2, 2, :1] = 2
    per_case = S.dice_per_case(pred, mask, 3)
    np.testing.assert_allclose(per_case, [[0.5, np.nan], [1.0, 0.0], [np.nan, 0.0]])
    per_class = S.dice_per_class(pred, mask, 3)
    np.testing.assert_allclose(per_class, [0.75, 0.0])
    assert S.mean_foreground_dice(per_class) == pytest.approx(0.375)
    # torch tensors give the same; a class absent everywhere is NaN and skipped by the mean
    np.testing.assert_allclose(S.dice_per_class(torch.as_tensor(pred), torch.as_tensor(mask), 4),
                               [0.75, 0.0, np.nan])
    assert S.mean_foreground_dice([0.75, 0.0, np.nan]) == pytest.approx(0.375)
    assert np.isnan(S.mean_foreground_dice([np.nan]))


def test_dice_ce_loss():
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    target[:, 2:6, 2:6] = 1
    perfect = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float() * 40 - 20
    assert float(S.dice_ce_loss(perfect, target)) < 1e-6
    wrong = -perfect
    loss = float(S.dice_ce_loss(wrong, target, dice_weight=1, ce_weight=0))
    assert loss == pytest.approx(1 - 1 / (2 * 64 + 1), abs=1e-4)  # no overlap: Dice = smooth / (|P| + |G| + 1)


def test_union_label_mapping():
    space = S.SegUnionLabels.build({"kvasir_seg": ["background", "polyp"], "busi": ["background", "lesion"],
                                    "acdc": ["background", "right ventricle", "myocardium", "left ventricle"],
                                    "monuseg": ["background", "nucleus"]})
    assert space.class_names == ("background", "kvasir_seg:polyp", "busi:lesion", "acdc:right ventricle",
                                 "acdc:myocardium", "acdc:left ventricle", "monuseg:nucleus")
    assert space.n_classes == 7 and space.channels("acdc") == [3, 4, 5] and space.channels("monuseg") == [6]
    m = np.array([[0, 1], [2, 3]], np.uint8)
    np.testing.assert_array_equal(space.encode("acdc", m), [[0, 3], [4, 5]])
    np.testing.assert_array_equal(space.encode("kvasir_seg", m[:1]), [[0, 1]])
    np.testing.assert_array_equal(space.encode("monuseg", m[:1]), [[0, 6]])
    with pytest.raises(ValueError, match="beyond"):
        space.encode("busi", m)


# ------------------------------------------------------------------------------------------- training and bank
def test_tiny_training_lowers_the_loss_and_checkpoints(ph2, tmp_path):
    torch.manual_seed(0)
    train = S.SegmentationTensorDataset.from_data(ph2, "train", 32, indices=np.arange(32), device="cpu")
    val = S.SegmentationTensorDataset.from_data(ph2, "val", 32, indices=np.arange(8), device="cpu")
    model = S.UNet(2, decoder_channels=(64, 32, 16, 16, 8))
    recipe = S.SegRecipe(epochs=3, batch_size=8, lr=3e-3, seed=0)
    before = S.evaluate_segmentation(model, train, 2, recipe)["loss"]
    res = S.train_segmentation(model, train, val, recipe, 2)
    after = S.evaluate_segmentation(res["model"], train, 2, recipe)["loss"]
    assert after < before and res["epochs_run"] == 3 and len(res["history"]) == 3
    best = max(h["val_dice"] for h in res["history"])
    assert res["best"]["val_dice"] == best
    path = S.save_segmentation_checkpoint(res["model"], tmp_path / "tiny", {"classes": ph2.class_names})
    loaded = S.load_segmentation_checkpoint(path)
    assert S.evaluate_segmentation(loaded, val, 2)["dice"] == pytest.approx(
        S.evaluate_segmentation(res["model"], val, 2)["dice"])


def _tiny_profile():
    return {"name": "tiny", "segmentation": {
        "sets": ["ph2", "busi", "kvasir_seg"], "targets": ["ph2"],
        "sources": ["random", "imagenet", "union", "busi", "kvasir_seg"], "image_size": 32, "seed": 0,
        "model": {"decoder_channels": [32, 16, 16, 8, 8]},
        "pretraining": {"epochs": 1, "batch_size": 8, "max_train_images": 16, "max_val_images": 4},
        "finetuning": {"epochs": 1, "batch_size": 8, "max_train_images": 16, "max_val_images": 4,
                       "max_test_images": 6}}}


def test_bank_configs_and_source_table(tmp_path):
    p = _tiny_profile()
    configs = S.segmentation_pretraining_configs(p)
    assert [(c["kind"], c["name"], c["sets"]) for c in configs] == [
        ("single", "busi", ["busi"]), ("single", "kvasir_seg", ["kvasir_seg"]),
        ("union", "union__ph2", ["busi", "kvasir_seg"])]
    table = S.segmentation_source_table(p, tmp_path)
    assert table["source"].tolist() == ["random", "imagenet", "union", "busi", "kvasir_seg"]
    row = table.set_index("source")
    assert row.loc["random", "available"] and not row.loc["busi", "available"]
    assert "pretraining" in row.loc["busi", "reason"]


def test_bank_runs_and_resumes(seg_root, tmp_path):
    p = _tiny_profile()
    pre = SEG.run_segmentation_pretraining(p, tmp_path, seg_root, device="cpu", progress=False)
    assert sorted(pre["source"]) == ["busi", "kvasir_seg", "union__ph2"]
    union = pre.set_index("source").loc["union__ph2"]
    assert union["n_classes"] == 3 and json.loads(union["classes"]) == ["background", "busi:lesion",
                                                                       "kvasir_seg:polyp"]
    assert (tmp_path / "segmentation_pretraining.csv").is_file()
    mtimes = {f: f.stat().st_mtime_ns for f in (tmp_path / "segmentation_sources").iterdir()}
    again = SEG.run_segmentation_pretraining(p, tmp_path, seg_root, device="cpu", progress=False)
    assert {f: f.stat().st_mtime_ns for f in (tmp_path / "segmentation_sources").iterdir()} == mtimes
    assert again["key"].tolist() == pre["key"].tolist()

    src = S.load_segmentation_source("union", "ph2", p, tmp_path, seg_root)
    assert src.n_classes == 3 and src.normalization == ((0.5,) * 3, (0.5,) * 3)
    rnd = S.load_segmentation_source("random", "ph2", p, tmp_path, seg_root)
    assert rnd.n_classes == 2
    assert torch.equal(rnd.head.weight, S.load_segmentation_source("random", "ph2", p, tmp_path, seg_root).head.weight)

    runs, unavailable = SEG.run_segmentation_finetuning(p, tmp_path, seg_root, device="cpu", progress=False)
    assert sorted(runs["source"]) == ["busi", "kvasir_seg", "random", "union"]
    assert set(S.FINETUNING_COLUMNS) <= set(runs.columns) and "dice_lesion" in runs.columns
    assert runs["test_images"].eq(6).all() and runs["test_dice"].between(0, 1).all()
    assert (runs.loc[runs["source"] == "union", "source_checkpoint"].iloc[0]).endswith("union__ph2.safetensors")
    imagenet = unavailable.set_index("source").loc["imagenet"] if "imagenet" in set(unavailable["source"]) else None
    if imagenet is not None:
        assert imagenet["reason"]
    gt = S.segmentation_ground_truth(runs)
    assert list(gt.columns) == ["ph2"] and set(gt.index) >= {"random", "union", "busi", "kvasir_seg"}
    assert (tmp_path / "segmentation_finetuning.csv").is_file()
    assert (tmp_path / "segmentation_ground_truth.csv").is_file()
    long = S.dice_long_table(runs)
    assert set(long["class_name"]) == {"lesion"} and len(long) == len(runs)
    units = sorted((tmp_path / "segmentation_finetuning" / "units").iterdir())
    stamps = [u.stat().st_mtime_ns for u in units]
    runs2, _ = SEG.run_segmentation_finetuning(p, tmp_path, seg_root, device="cpu", progress=False)
    assert [u.stat().st_mtime_ns for u in units] == stamps
    assert runs2["test_dice"].tolist() == runs["test_dice"].tolist()


def test_training_resumes_after_an_interruption(ph2, tmp_path):
    train = S.SegmentationTensorDataset.from_data(ph2, "train", 32, indices=np.arange(16), device="cpu")
    val = S.SegmentationTensorDataset.from_data(ph2, "val", 32, indices=np.arange(4), device="cpu")
    recipe = S.SegRecipe(epochs=3, batch_size=8, seed=1)
    make = lambda: ST._seeded_unet(0, 2, {"decoder_channels": [32, 16, 16, 8, 8]})  # noqa: E731
    full = S.train_segmentation(make(), train, val, recipe, 2)

    class Kill(RuntimeError):
        pass

    def kill_after_first(row):
        if row["epoch"] == 1:
            raise Kill

    with pytest.raises(Kill):
        S.train_segmentation(make(), train, val, recipe, 2, workdir=tmp_path, save_every_s=0,
                             callback=kill_after_first)
    assert (tmp_path / "state.json").is_file()
    resumed = S.train_segmentation(make(), train, val, recipe, 2, workdir=tmp_path, save_every_s=0)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    np.testing.assert_allclose([h["val_loss"] for h in resumed["history"]],
                               [h["val_loss"] for h in full["history"]], rtol=1e-4)
    assert not list(tmp_path.glob("state*"))  # cleared once finished


def test_profiles_segmentation_sections(tmp_path):
    from helpers.profiles import ProfileError, load_profile

    quick, paper = load_profile("quick"), load_profile("paper")
    q, p = S.segmentation_section(quick), S.segmentation_section(paper)
    assert q["image_size"] == 64 and p["image_size"] == 128 and p["pretraining"]["max_train_images"] is None
    assert set(q["sets"]) == set(p["sets"]) == set(S.SEGMENTATION_SETS)
    for sec in (q, p):
        assert set(sec["scoring"]) >= {"max_images", "per_case", "global_per_case", "layers"}
        assert set(sec["scoring"]["layers"]) <= set(S.decoder_block_names())
    n_targets = len(q["targets"])
    configs = S.segmentation_pretraining_configs(quick)
    # the five sets, one leave-one-out union per target, and the union of all five: the seg_union source of the
    # classification benchmark (quick's sources.dataset lists seg_union)
    assert len(configs) == 5 + n_targets + 1
    union_all = next(c for c in configs if c["name"] == "union_all")
    assert union_all["kind"] == "union" and union_all["sets"] == list(q["sets"])
    no_seg = {**quick, "sources": {**quick["sources"], "dataset": ["random"]}}
    assert len(S.segmentation_pretraining_configs(no_seg)) == 5 + n_targets
    # random, imagenet, union, 4 sets; each once per fine-tuning seed (quick: two)
    assert len(S.segmentation_finetuning_configs(quick)) == n_targets * 7 * len(S.finetuning_seeds(q))
    # a profile without the section still loads; a broken section is refused
    text = (tmp_path / "q.yml")
    base = (load_profile("quick")["_path"])
    import yaml

    raw = yaml.safe_load(open(base))
    del raw["segmentation"]
    text.write_text(yaml.safe_dump(raw))
    assert "segmentation" not in load_profile(text)
    for change, match in [({"image_size": 48}, "multiple of 32"), ({"targets": ["nope"]}, "among segmentation.sets"),
                          ({"sources": ["radimagenet"]}, "sources"),
                          ({"scoring": {"max_images": 1, "per_case": 1, "global_per_case": 1, "layers": ["dec9"]}},
                           "layers")]:
        bad = dict(raw, segmentation={**load_profile("quick")["segmentation"], **change})
        text.write_text(yaml.safe_dump(bad))
        with pytest.raises(ProfileError, match=match):
            load_profile(text)
