"""Hidden representations ([R]): its augmentation, its recipe on the engine, the folds, input scales, the pair
list, and the stage end to end on a tiny configuration with real images."""
import copy

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torchvision import transforms as TV
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from helpers import models as M
from helpers import reference_r as RR
from helpers import representations as RP
from helpers import trainer as T
from helpers import transforms as X
from helpers.data import TensorImageDataset
from helpers.profiles import ProfileError, load_profile
from helpers.runner import Stage
from helpers.stages import representations as RS


# ---------------------------------------------------------------------------------------------- augmentation
@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (5, 3, 24, 24), generator=g).float()


def test_affine_warp_matches_torchvision_randomaffine(images):
    """Parameters drawn by torchvision's RandomAffine ([R]'s ranges, torchvision's parametrisation), applied by
    torchvision's affine and by our batched warp: the same images (bilinear, zero fill)."""
    torch.manual_seed(3)
    params = [TV.RandomAffine.get_params(degrees=[-10.0, 10.0], translate=[0.1, 0.1], scale_ranges=[0.9, 1.1],
                                         shears=[-5.0, 5.0], img_size=[24, 24]) for _ in images]
    ref = torch.stack([TF.affine(im, angle=a, translate=list(t), scale=s, shear=list(sh),
                                 interpolation=InterpolationMode.BILINEAR) for im, (a, t, s, sh) in zip(images, params)])
    ours = X.affine_warp(images, 24, [p[0] for p in params], [list(p[1]) for p in params], [p[2] for p in params],
                         [p[3][0] for p in params])
    torch.testing.assert_close(ours, ref, rtol=0, atol=2e-3)


def test_affine_warp_identity_is_a_bilinear_resize_and_flip_mirrors(images):
    up = X.affine_warp(images, 48, torch.zeros(5), fill="nearest")  # zeros would blend the outer half pixel with 0
    torch.testing.assert_close(up, F.interpolate(images, size=(48, 48), mode="bilinear", align_corners=False),
                               rtol=0, atol=1e-3)
    flipped = X.affine_warp(images, 24, torch.zeros(5), flip=torch.ones(5, dtype=torch.bool))
    torch.testing.assert_close(flipped, images.flip(-1), rtol=0, atol=1e-3)


def test_nearest_fill_repeats_the_edge_as_keras(images):
    shift = torch.tensor([[3.0, 0.0]]).expand(5, 2)
    near = X.affine_warp(images, 24, torch.zeros(5), translate=shift, fill="nearest")
    zero = X.affine_warp(images, 24, torch.zeros(5), translate=shift, fill="zeros")
    for c in range(3):
        torch.testing.assert_close(near[..., c], images[..., 0], rtol=0, atol=1e-3)
    assert float(zero[..., :3].abs().max()) < 1e-3  # zero fill (float32 grid rounding aside)
    torch.testing.assert_close(near[..., 3:], images[..., :-3], rtol=0, atol=1e-3)


def test_sampled_parameters_follow_the_config():
    cfg = X.AffineAugmentConfig()
    p = X.sample_affine_params(20000, cfg, 50, torch.Generator().manual_seed(0))
    assert p["angle"].abs().max() <= 10 and p["angle"].abs().max() > 9.9
    assert p["translate"].abs().max() <= 5 and p["translate"].abs().max() > 4.9
    assert p["shear"].abs().max() <= 0.1
    z = 1 / p["scale"]  # Keras's zoom factors, uniform in [0.9, 1.1] per axis, drawn independently
    assert z.min() >= 0.9 - 1e-6 and z.max() <= 1.1 + 1e-6 and abs(float(z.mean()) - 1.0) < 0.005
    assert abs(float(np.corrcoef(z[:, 0], z[:, 1])[0, 1])) < 0.03
    assert abs(float(p["flip"].float().mean()) - 0.5) < 0.02
    tv = X.sample_affine_params(1000, X.AffineAugmentConfig(scale_mode="torchvision", flip_p=0.0), 50)
    assert torch.equal(tv["scale"][:, 0], tv["scale"][:, 1]) and not tv["flip"].any()
    with pytest.raises(ValueError, match="fill"):
        X.AffineAugmentConfig(fill="reflect")
    with pytest.raises(ValueError, match="scale_mode"):
        X.AffineAugmentConfig(scale_mode="keras2")


def test_dataset_applies_the_affine_augmentation():
    rng = np.random.default_rng(0)
    ds = TensorImageDataset(rng.integers(0, 256, (6, 20, 20), dtype=np.uint8), np.arange(6) % 2, 32, device="cpu",
                            augment=X.AffineAugmentConfig())
    a, _ = ds.batch(np.arange(6), augment=True, generator=torch.Generator().manual_seed(1))
    b, _ = ds.batch(np.arange(6), augment=True, generator=torch.Generator().manual_seed(1))
    e, _ = ds.batch(np.arange(6))
    assert a.shape == (6, 3, 32, 32) and torch.equal(a, b) and not torch.allclose(a, e)
    with pytest.raises(TypeError, match="augmentation config"):
        X.apply_augmentation(torch.zeros(1, 3, 8, 8), 8, object())


# ---------------------------------------------------------------------------------------------- recipe
def test_recipe_is_R_s():
    st = RP.representations_settings({"data": {"file_size": 28}})
    full, head = RP._run_config(st["finetune"]), RP._run_config(st["freeze"], trainable=("fc",))
    assert (full.optimizer, full.lr, full.batch_size, full.epochs, full.patience, full.monitor, full.scheduler) == \
        ("adam", 1e-5, 128, 200, 30, "val_loss", None)
    assert (head.optimizer, head.lr, head.monitor, head.trainable) == ("adam", 1e-3, "val_acc", ("fc",))
    model = RP.load_network("random", "resnet18", 2, st["head"], "half", 0)
    assert isinstance(model.fc[0], torch.nn.Dropout) and model.fc[0].p == 0.5 and model.fc[1].out_features == 2
    assert isinstance(RP.load_network("random", "resnet18", 2, st["random_head"], "half", 0).fc, torch.nn.Linear)
    run = T.Run(model, full, "binary-class", "cpu")
    assert isinstance(run.opt, torch.optim.Adam) and run.sched is None


def test_early_stopping_on_val_loss_keeps_the_best():
    run = T.Run(RP.load_network("random", "resnet18", 2, "dropout_linear", "half", 0),
                RP._run_config({"lr": 1e-5, "batch_size": 8, "epochs": 50, "patience": 3, "monitor": "val_loss"}),
                "binary-class", "cpu")
    for loss in [0.9, 0.7, 0.8, 0.75, 0.71, 0.6]:
        if run.stopped:
            break
        run.start_epoch()
        run.end_epoch({"val_loss": loss, "val_auc": 0.5, "val_acc": 0.5}, 0.0)
    assert run.stopped and run.epoch == 5 and run.best["epoch"] == 2 and run.best["val_loss"] == 0.7


def _tiny_data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = (rng.integers(0, 120, (n, 16, 16)) + 100 * y[:, None, None]).astype(np.uint8)
    return TensorImageDataset(x, y, 16, device="cpu", augment=X.AffineAugmentConfig())


def test_freeze_phase_leaves_the_backbone_untouched_then_everything_trains():
    train, val = _tiny_data(16, 0), _tiny_data(8, 1)
    model = RP.load_network("random", "resnet18", 2, "dropout_linear", "half", 0)
    before = copy.deepcopy(model.state_dict())
    head = T.Run(model, RP._run_config({"lr": 1e-2, "batch_size": 8, "epochs": 2, "patience": 10,
                                        "monitor": "val_acc"}, trainable=("fc",)), "binary-class", "cpu")
    T.train_runs([head], train, val)
    after = model.state_dict()
    backbone = [k for k in before if not k.startswith("fc.")]
    assert all(torch.equal(before[k], after[k]) for k in backbone)  # weights and BatchNorm statistics
    assert not torch.equal(before["fc.1.weight"], after["fc.1.weight"])
    assert head.steps == 4 and [h["steps"] for h in head.history] == [2, 4]
    for p in model.parameters():
        p.requires_grad_(True)
    full = T.Run(model, RP._run_config({"lr": 1e-2, "batch_size": 8, "epochs": 1, "patience": 3}), "binary-class", "cpu")
    T.train_runs([full], train, val)
    assert not torch.equal(before["conv1.weight"], model.state_dict()["conv1.weight"])
    assert not torch.equal(before["bn1.running_mean"], model.state_dict()["bn1.running_mean"])
    with pytest.raises(ValueError, match="no module named"):
        T.Run(model, RP._run_config({"lr": 1e-2, "batch_size": 8, "epochs": 1}, trainable=("head",)),
              "binary-class", "cpu")


# ---------------------------------------------------------------------------------------------- data, scales
def test_stratified_folds_partition_every_image():
    y = np.array([0] * 70 + [1] * 30)
    folds = RP.stratified_folds(y, 5, seed=2, val_fraction=0.2)
    tests = np.concatenate([f["test"] for f in folds])
    assert sorted(tests.tolist()) == list(range(100))
    for f in folds:
        parts = [set(f[s].tolist()) for s in ("train", "val", "test")]
        assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
        assert sum(map(len, parts)) == 100 and len(f["test"]) == 20 and len(f["val"]) == 16
        assert y[f["test"]].mean() == pytest.approx(0.3) and y[f["val"]].mean() == pytest.approx(0.3, abs=0.07)
    assert all(np.array_equal(a["train"], b["train"]) for a, b in zip(folds, RP.stratified_folds(y, 5, seed=2)))
    with pytest.raises(ValueError, match="fewer than 5"):
        RP.stratified_folds(np.array([0] * 10 + [1] * 3))


def test_caffe_input_scale_equals_keras_preprocessing():
    """(x / 255 - mean) / std with the caffe scale is Keras's x - mean pixel, and reversing the first conv's input
    channels equals feeding BGR images to the original network."""
    scale = RP.INPUT_SCALES["caffe"]
    x = torch.rand(2, 3, 8, 8) * 255
    z = (x / 255 - torch.tensor(scale.mean).view(1, 3, 1, 1)) / torch.tensor(scale.std).view(1, 3, 1, 1)
    bgr = x.flip(1) - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)  # keras preprocess_input "caffe"
    torch.testing.assert_close(z, bgr.flip(1), rtol=0, atol=1e-3)
    plain = RP.load_network("random", "resnet18", 2, "linear", "half", 5)
    flipped = RP.load_network("random", "resnet18", 2, "linear", "caffe", 5)
    torch.testing.assert_close(F.conv2d(z, flipped.conv1.weight, stride=2, padding=3),
                               F.conv2d(bgr, plain.conv1.weight, stride=2, padding=3), rtol=1e-5, atol=1e-3)


def test_profiles_validate_the_section():
    quick = load_profile("quick")
    assert quick["representations"]["targets"] == ["breastmnist", "pneumoniamnist"]
    assert load_profile("paper")["representations"]["architecture"] == "resnet50"
    from helpers.profiles import validate_representations_section as check

    for bad, match in (({"freeze_sources": ["x"]}, "freeze_sources"), ({"untrained_seeds": [1, 1]}, "seeds"),
                       ({"input_scale": {"default": "bgr"}}, "input_scale"), ({"folds": [6]}, "folds"),
                       ({"similarity": {"measures": ["svd"]}}, "measures"), ({"colour": 1}, "unknown keys")):
        with pytest.raises(ProfileError, match=match):
            check(bad, "p.yml")


# ---------------------------------------------------------------------------------------------- pairs
def _r_name(net, target="breast"):
    src = {"srcA": "ImageNet", "srcB": "RadImageNet", "random": "random"}[net["source"]]
    if net["role"] == "untrained":
        return "random"
    if net["role"] == "pretrained":
        return src
    return f"{target}-{src}-freeze{net['variant'] == 'freeze'}"


def _tiny_profile(tmp_path, freeze=("srcA", "srcB")):
    for name in ("srcA", "srcB"):
        torch.manual_seed(hash(name) % 1000)
        M.save_checkpoint(M.build_model("resnet18", 3, "random", head="linear"), tmp_path / "sources" / name,
                          {"source": name})
    profile = copy.deepcopy(load_profile("quick"))
    profile["representations"] = {
        "architecture": "resnet18", "targets": ["breastmnist"], "sources": ["srcA", "srcB"],
        "freeze_sources": list(freeze), "image_size": 32, "input_scale": {"default": "half"}, "folds": [1],
        "max_train_images": 24, "max_val_images": 12, "max_test_images": 20,
        "finetune": {"lr": 1e-3, "batch_size": 8, "epochs": 1, "patience": 3},
        "freeze": {"lr": 1e-3, "batch_size": 8, "epochs": 1, "patience": 3},
        "similarity": {"points": 64, "channels": 8, "repeats": 1, "max_stimulus_images": 24, "batch_size": 32},
    }
    return profile


def test_pair_list_is_R_s(tmp_path):
    """With two sources that both run the freeze variant, the pairs of [R]'s form are exactly the 14 of [R]'s
    CCA tables (model names mapped), of the 6 kinds of PROTOCOL.md section 8; every other pair is labelled."""
    plan = RS.representations_configs(_tiny_profile(tmp_path), tmp_path)
    sims = [c for c in plan.analysis if c["unit"] == "similarity"]
    ours = {frozenset((_r_name(c["a"]), _r_name(c["b"]))) for c in sims if c["in_r"]}
    ref = RR.load_cca(targets=["breast"])
    theirs = {frozenset((a, b)) for a, b in zip(ref.model1, ref.model2)}
    assert ours == theirs and len([c for c in sims if c["in_r"]]) == 14
    assert {c["kind"] for c in sims if c["in_r"]} == set(RR.PAIR_KINDS)
    kinds = {c["kind"] for c in sims if not c["in_r"]}
    assert kinds <= {"other", "vs_untrained", "untrained_vs_finetuned", "pretrained_vs_recalibrated",
                     "recalibrated_vs_finetuned", "finetuned_across_sources"}
    assert {"untrained_vs_finetuned", "recalibrated_vs_finetuned"} <= kinds
    preds = [c for c in plan.analysis if c["unit"] == "predictions"]
    assert {(c["a"]["variant"], c["b"]["variant"]) for c in preds} == {("none", "none"), ("freeze", "freeze")}
    assert len(plan.finetune) == 5 and plan.unavailable.empty


# ---------------------------------------------------------------------------------------------- the stage
def test_stage_end_to_end_resumes_and_reports(tmp_path, shared_data_root, monkeypatch):
    profile = _tiny_profile(tmp_path, freeze=("srcA",))
    tables = RS.run_representations(profile, tmp_path, device="cpu", progress=False)
    for name in RS.TABLES:
        assert (tmp_path / f"representations_{name}.csv").is_file(), name
    runs, w, sim, acts, pred = (tables[k] for k in ("runs", "weights", "similarity", "activations", "predictions"))
    assert len(runs) == 4 and (runs.steps == 3).all()  # 24 images, batch 8, 1 epoch
    assert runs.set_index("variant").loc["freeze", "steps_head"] == 3
    assert runs[runs.source == "random"].relative_gain.eq(0).all()
    for ck in runs.checkpoint:
        assert ck.endswith(".safetensors") and M.load_checkpoint(ck).arch_name == "resnet18"
    # weight change per stage of every run, the fc head included
    assert set(w.stage) == {"conv1", "layer1", "layer2", "layer3", "layer4", "fc"} and len(w) == 4 * 6
    assert (w.relative_change > 0).all() and (w.cosine <= 1 + 1e-9).all()
    # n < 10 d: layer4 is 1 x 1 at 32 px, so its cell has one point per stimulus image (24 < 80)
    flags = acts.groupby("layer").few_points.all()
    assert flags["layer4"] and not flags["relu"]
    assert sim[sim.layer == "layer4"].few_points.all() and (sim[sim.layer == "layer4"].n_points == 24).all()
    # a real pairing against the permutation null: a network and its fine-tuned self
    # (whole images deranged: a cell of one image has no null, and says so)
    one = sim[sim.n_images == 1]
    assert one.null_value.isna().all() and (one.null_kind == "none (one image in the cell)").all()
    many = sim[sim.n_images >= 2]
    assert len(many) and many.null_value.notna().all() and (many.null_kind == "images").all()
    pf = many[(many.kind == "pretrained_vs_finetuned") & (many.measure == "cca")]
    assert len(pf) and pf.value.mean() > pf.null_value.mean() + 0.02  # per cell it is noisy at this size
    assert set(sim.measure) == {"cca", "linear_cka", "linear_cka_debiased"}
    # prediction similarity rows: the correct baseline and [R]'s as coded
    assert len(pred) == 3
    row = pred.iloc[0]
    a, b = row.accuracy_a, row.accuracy_b
    assert row.independent_baseline == pytest.approx(a * b + (1 - a) * (1 - b))
    assert row.r_baseline_as_coded == pytest.approx(a**2 + (1 - a) ** 2)
    gain = tables["gain"]
    assert set(gain.source) == {"srcA", "srcB"} and gain.relative_change.notna().all()
    # resume: a second run recomputes nothing
    for fn in ("finetune_unit", "activation_unit", "analysis_unit"):
        monkeypatch.setattr(RP, fn, lambda *a, **k: pytest.fail("a stored unit was recomputed"))
    again = RS.run_representations(profile, tmp_path, device="cpu", progress=False)
    pd.testing.assert_frame_equal(again["similarity"], sim)
    units = Stage("representations", tmp_path).collect()
    assert units.drop_duplicates("key")["config.unit"].value_counts()["finetune"] == 4


# ---------------------------------------------------------------------------------------------- the null
def test_image_null_deranges_whole_images_and_keeps_positions():
    rng = np.random.default_rng(0)
    for n_img in (2, 3, 7, 40):
        rows = RP.null_rows(n_img, 6, "images", rng)
        img, pos = rows // 6, rows % 6
        assert sorted(rows.tolist()) == list(range(n_img * 6))
        assert (pos == np.tile(np.arange(6), n_img)).all()           # position p stays position p
        assert (img != np.repeat(np.arange(n_img), 6)).all()         # no image is paired with itself
        assert (img.reshape(n_img, 6) == img.reshape(n_img, 6)[:, :1]).all()  # an image moves whole
    assert RP.null_rows(1, 6, "images", rng) is None                 # one image: no derangement
    assert RP.null_rows(4, 6, "none", rng) is None
    assert RP.null_kind(True) == "images" and RP.null_kind(False) == "none"
    with pytest.raises(ValueError, match="unknown permutation null"):
        RP.null_kind("pixels")


def test_image_null_keeps_what_two_networks_share_by_position():
    """Two 'networks' whose activations share only a position-dependent mean (padding, borders) and are
    independent across images: the image derangement keeps that shared part (what unrelated images give), the
    position shuffle removes it and sits far lower. The position shuffle was the earlier null."""
    g = np.random.default_rng(1)
    n_img, hw, d = 40, 16, 8
    pos_mean = g.normal(size=(hw, d)) * 3
    mix = g.normal(size=(d, d))
    x = (np.tile(pos_mean, (n_img, 1)) + g.normal(size=(n_img * hw, d)))
    y = (np.tile(pos_mean @ mix, (n_img, 1)) + g.normal(size=(n_img * hw, d)))
    curve = {k: RP.similarity_vs_points(x, y, [n_img * hw], measures=("linear_cka",), points_per_image=hw,
                                        null=k).iloc[0] for k in ("images", "positions")}
    assert curve["images"].null_value > 0.5
    assert curve["positions"].null_value < 0.1
    assert curve["images"].value == pytest.approx(curve["positions"].value)
    # sizes are whole images: 50 points of 16-point images use 3 images (48 points)
    c = RP.similarity_vs_points(x, y, [50], measures=("linear_cka",), points_per_image=hw)
    assert c.iloc[0].n == 48 and c.iloc[0].images == 3
    with pytest.raises(ValueError, match="two whole images"):
        RP.similarity_vs_points(x, y, [20], points_per_image=hw)


def test_chapter_run_says_to_pretrain_first(tmp_path, shared_data_root):
    """Run before the pretraining stage (a chapter on a fresh clone), the stage names the command to run first
    instead of running what it can and failing later; without the switch the blocked units are only blocked."""
    from helpers.paths import MissingResultError

    cfg = load_profile("quick")
    with pytest.raises(MissingResultError, match=r"python -m helpers.run pretraining --profile quick"):
        RS.run_representations(cfg, tmp_path, root=shared_data_root, device="cpu", progress=False,
                               require_sources=True)
    assert not any(tmp_path.iterdir())  # nothing ran
    env = RS.make_env(cfg, tmp_path, shared_data_root, "cpu", False)
    assert {w.split(":", 1)[0] for w in RS.missing_pretraining(env.profile, env)} == {"pretraining"}
