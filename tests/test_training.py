"""Training: MedMNIST metrics, union labels, early stopping / selection, resume, grouped runs, stages."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from sklearn.metrics import accuracy_score, roc_auc_score

from helpers import models as M
from helpers import training as T
from helpers.data import TensorImageDataset


# ---------------------------------------------------------------------------------------------- metrics
def test_binary_auc_acc_against_sklearn():
    y = np.array([0, 1, 1, 0, 1, 0])
    p1 = np.array([0.2, 0.7, 0.4, 0.6, 0.9, 0.1])
    score = np.stack([1 - p1, p1], 1)
    assert T.medmnist_auc(y[:, None], score, "binary-class") == pytest.approx(roc_auc_score(y, p1))
    assert T.medmnist_acc(y[:, None], score, "binary-class") == pytest.approx(accuracy_score(y, p1 > 0.5))
    # the threshold is on the positive class, 0.5 exactly counts as negative
    assert T.medmnist_acc(np.array([[1]]), np.array([[0.5, 0.5]]), "binary-class") == 0.0


def test_multiclass_auc_acc_against_sklearn():
    rng = np.random.default_rng(0)
    y = np.array([0, 1, 2, 2, 1, 0, 2, 1, 0, 1])
    s = rng.random((10, 3))
    s /= s.sum(1, keepdims=True)
    expected = np.mean([roc_auc_score(y == k, s[:, k]) for k in range(3)])
    assert T.medmnist_auc(y[:, None], s, "multi-class") == pytest.approx(expected)
    assert T.medmnist_auc(y[:, None], s, "multi-class") == pytest.approx(
        roc_auc_score(y, s, multi_class="ovr", average="macro"))
    assert T.medmnist_auc(y[:, None], s, "ordinal-regression") == pytest.approx(expected)
    assert T.medmnist_acc(y[:, None], s, "multi-class") == pytest.approx(accuracy_score(y, s.argmax(1)))


def test_multilabel_auc_acc_against_sklearn():
    y = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 0], [1, 0, 1]])
    s = np.array([[.9, .2, .6], [.3, .8, .4], [.6, .7, .3], [.1, .4, .2], [.4, .1, .9]])
    assert T.medmnist_auc(y, s, "multi-label, binary-class") == pytest.approx(
        roc_auc_score(y, s, average="macro"))
    expected_acc = np.mean([accuracy_score(y[:, i], s[:, i] > 0.5) for i in range(3)])
    assert T.medmnist_acc(y, s, "multi-label, binary-class") == pytest.approx(expected_acc)


def test_metrics_match_medmnist_evaluator():
    evaluator = pytest.importorskip("medmnist.evaluator")
    rng = np.random.default_rng(1)
    for task, y, s in [
        ("binary-class", rng.integers(0, 2, (30, 1)), rng.random((30, 2))),
        ("multi-class", rng.integers(0, 4, (30, 1)), rng.random((30, 4))),
        ("multi-label, binary-class", rng.integers(0, 2, (30, 5)), rng.random((30, 5))),
    ]:
        assert T.medmnist_auc(y, s, task) == pytest.approx(evaluator.getAUC(y, s, task))
        assert T.medmnist_acc(y, s, task) == pytest.approx(evaluator.getACC(y, s, task))


# ---------------------------------------------------------------------------------------------- union
def test_union_layout_with_chest():
    space = T.UnionLabelSpace.build(["chestmnist", "pneumoniamnist", "breastmnist", "organamnist", "organsmnist"])
    # chest 0..14 (14 = no finding), breast 15..16, organ block 17..27 shared
    assert space.n_outputs == 15 + 2 + 11
    chest = np.zeros((2, 14), dtype=int)
    chest[0, [2, 6]] = 1
    enc = space.encode("chestmnist", chest)
    exp = np.zeros((2, 28), dtype=np.float32)
    exp[0, [2, 6]] = 1
    exp[1, 14] = 1
    np.testing.assert_array_equal(enc, exp)
    pn = space.encode("pneumoniamnist", np.array([[0], [1]]))
    exp = np.zeros((2, 28), dtype=np.float32)
    exp[0, 14] = 1  # normal -> chest's no finding
    exp[1, 6] = 1   # pneumonia -> chest's pneumonia unit
    np.testing.assert_array_equal(pn, exp)
    br = space.encode("breastmnist", np.array([[1]]))
    assert br.nonzero()[1].tolist() == [16]
    oa = space.encode("organamnist", np.array([[0], [10]]))
    os_ = space.encode("organsmnist", np.array([[0], [10]]))
    np.testing.assert_array_equal(oa, os_)
    assert oa.nonzero()[1].tolist() == [17, 27]
    assert space.unit_names()[14] == "chest:no finding"


def test_union_layout_without_chest():
    space = T.UnionLabelSpace.build(["organcmnist", "retinamnist", "pneumoniamnist"])
    # order: pneumonia (own 2 units), retina 2..6, organ 7..17
    assert space.n_outputs == 2 + 5 + 11
    np.testing.assert_array_equal(space.encode("pneumoniamnist", np.array([[1]]))[0],
                                  np.eye(18, dtype=np.float32)[1])
    np.testing.assert_array_equal(space.encode("retinamnist", np.array([[4]]))[0], np.eye(18, dtype=np.float32)[6])
    np.testing.assert_array_equal(space.encode("organcmnist", np.array([[3]]))[0], np.eye(18, dtype=np.float32)[10])


def test_balanced_weights_equalise_classes():
    keys = np.array([0, 0, 0, 1, 2, 2])
    w = T.balanced_weights(keys)
    per_class = [float(w[keys == k].sum()) for k in range(3)]
    assert per_class == pytest.approx([1, 1, 1])
    draws = torch.multinomial(w, 30000, replacement=True, generator=torch.Generator().manual_seed(0))
    freq = np.bincount(keys[draws.numpy()], minlength=3) / 30000
    assert np.allclose(freq, 1 / 3, atol=0.02)


# ---------------------------------------------------------------------------------------------- engine
class Tiny(nn.Module):
    def __init__(self, n_out=2):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Sequential(nn.Dropout(0.5), nn.Linear(4, n_out))

    def forward(self, x):
        return self.fc(self.body(x))


def _data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = (rng.integers(0, 100, (n, 8, 8)) + 120 * y[:, None, None]).astype(np.uint8)
    return TensorImageDataset(x, y, 8, device="cpu")


def _run(cfg, workdir=None, seed=0):
    torch.manual_seed(seed)
    return T.Run(Tiny(), cfg, "binary-class", "cpu", workdir=workdir, save_every_s=0)


def test_early_stopping_and_best_epoch():
    run = _run(T.RunConfig(epochs=10, patience=2, monitor="val_auc"))
    for auc in [0.5, 0.7, 0.6, 0.65, 0.9]:
        if run.stopped:
            break
        run.start_epoch()
        run.end_epoch({"val_loss": 1.0 - auc, "val_auc": auc, "val_acc": auc}, 0.0)
    assert run.stopped and run.epoch == 4 and run.best["epoch"] == 2 and run.best["val_auc"] == 0.7
    run = _run(T.RunConfig(epochs=3, patience=None, monitor="val_loss"))
    for loss in [1.0, 0.5, 0.7]:
        run.start_epoch()
        run.end_epoch({"val_loss": loss, "val_auc": 0.5, "val_acc": 0.5}, 0.0)
    assert run.stopped and run.epoch == 3 and run.best["epoch"] == 2


def test_auc_over_the_classes_present():
    """A validation subset without one class: MedMNIST's multi-class AUC is undefined (scikit-learn raises or,
    in recent versions, warns and gives NaN); ours averages the one-vs-rest AUC of the classes present and says
    how many it used."""
    import warnings

    rng = np.random.default_rng(1)
    y = np.array([0, 1, 0, 1, 1, 0, 0, 1, 1, 0])  # class 2 of 3 absent
    s = rng.dirichlet(np.ones(3), size=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            reference = T.medmnist_auc(y[:, None], s, "multi-class")
        except ValueError:
            reference = float("nan")
    assert math.isnan(reference)
    auc, used, total = T.auc_over_present(y[:, None], s, "multi-class")
    expected = np.mean([roc_auc_score(y == c, s[:, c]) for c in (0, 1)])
    assert auc == pytest.approx(expected) and (used, total) == (2, 3)
    assert T.safe_auc(y[:, None], s, "multi-class") == pytest.approx(expected)
    assert math.isnan(T.safe_auc(np.zeros((4, 1)), np.full((4, 2), 0.5), "binary-class"))


def test_early_stopping_on_a_validation_subset_missing_a_class(shared_data_root):
    """retinamnist, 5 classes, a validation subset without grade 4: the AUC stays defined, the best epoch is the
    one with the highest validation AUC (a NaN AUC used to freeze the run at its epoch-1 weights)."""
    from helpers.data import load_medmnist

    d = load_medmnist("retinamnist", size=28)
    yv = d.labels["val"][:, 0]
    va = np.flatnonzero(yv != 4)[:40]
    train = TensorImageDataset.from_medmnist(d, "train", 16, indices=np.arange(80), device="cpu")
    val = TensorImageDataset.from_medmnist(d, "val", 16, indices=va, device="cpu")
    torch.manual_seed(0)
    run = T.Run(Tiny(5), T.RunConfig(epochs=4, batch_size=16, lr=0.05, momentum=0.9, monitor="val_auc"),
                d.task, "cpu")
    T.train_runs([run], train, val)
    aucs = [h["val_auc"] for h in run.history]
    assert all(np.isfinite(aucs)), aucs
    assert all(h["val_auc_classes"] == 4 and h["val_auc_classes_total"] == 5 for h in run.history)
    assert run.best["val_auc"] == max(aucs) and run.best["epoch"] == 1 + int(np.argmax(aucs))


def test_undefined_auc_falls_back_to_val_loss():
    run = _run(T.RunConfig(epochs=3, patience=None, monitor="val_auc"))
    for loss in [1.0, 0.5, 0.7]:
        run.start_epoch()
        run.end_epoch({"val_loss": loss, "val_auc": float("nan"), "val_acc": 0.5}, 0.0)
    assert run.best["epoch"] == 2
    assert [h.get("monitor_fallback") for h in run.history] == [None, "val_loss", "val_loss"]


def test_recipes_augment_as_their_references():
    """MedMNIST's recipe (single-dataset sources) has no augmentation; [D]'s union and RadImageNet recipes do,
    and RadImageNet stops early on val loss (patience 10) as [D]'s radimagenet_pretraining.py."""
    from helpers.profiles import load_profile

    for name in ("quick", "paper"):
        profile = load_profile(name)
        assert T._section(profile, "single_dataset")["augment"] is False
        assert T._section(profile, "union")["augment"] is True
        assert T._run_config(T._section(profile, "single_dataset")).augment is False
    assert T.RADIMAGENET_RECIPE["augment"] and T.RADIMAGENET_RECIPE["patience"] == 10
    assert T.RADIMAGENET_RECIPE["monitor"] == "val_loss"


def test_training_without_augmentation_never_augments(monkeypatch):
    seen = []
    original = TensorImageDataset.batch

    def spy(self, index, augment=False, generator=None):
        seen.append(augment)
        return original(self, index, augment=augment, generator=generator)

    monkeypatch.setattr(TensorImageDataset, "batch", spy)
    T.train_runs([_run(T.RunConfig(epochs=1, batch_size=8, augment=False))], _data(16, 0), _data(8, 1))
    assert seen and not any(seen)
    seen.clear()
    T.train_runs([_run(T.RunConfig(epochs=1, batch_size=8))], _data(16, 0), _data(8, 1))
    assert any(seen)


def test_selection_rule_lowest_val_loss():
    runs = pd.DataFrame({
        "source": ["a", "a", "a", "b", "b", "a", "a"], "target": ["t"] * 5 + ["u", "u"],
        "fold": [1, 1, 1, 1, 1, 1, 1], "val_loss": [0.5, 0.3, 0.4, 0.9, 0.8, 0.2, 0.1],
        "val_auc": [0.9, 0.6, 0.99, 0.5, 0.5, 0.5, 0.5], "test_auc": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]})
    gt = T.ground_truth_table(runs)
    assert gt.loc["a", "t"] == 0.2 and gt.loc["b", "t"] == 0.5 and gt.loc["a", "u"] == 0.7
    assert math.isnan(gt.loc["b", "u"])


def test_ground_truth_is_fold_1_as_D_and_the_fold_mean_is_extra(tmp_path):
    runs = pd.DataFrame({
        "source": ["a", "a", "a", "a", "b", "b"], "target": ["t"] * 6, "fold": [1, 1, 2, 2, 1, 2],
        "val_loss": [0.5, 0.3, 0.4, 0.2, 0.9, 0.8], "test_auc": [0.1, 0.6, 0.3, 0.8, 0.5, 0.7]})
    assert T.ground_truth_table(runs).loc["a", "t"] == 0.6  # fold 1 only: [D]'s fine-tuning.py
    assert T.ground_truth_table(runs, "mean").loc["a", "t"] == pytest.approx(0.7)
    folds = T.ground_truth_folds(runs).set_index("source")
    assert folds.loc["b", "fold1"] == 0.5 and folds.loc["b", "mean"] == pytest.approx(0.6)
    assert folds.loc["a", "n_folds"] == 2 and folds.loc["a", "sd"] == pytest.approx(np.std([0.6, 0.8], ddof=1))
    T.write_ground_truth(runs, tmp_path)
    for name in ("ground_truth.csv", "ground_truth_mean.csv", "ground_truth_folds.csv", "ground_truth_runs.csv"):
        assert (tmp_path / name).is_file(), name
    assert pd.read_csv(tmp_path / "ground_truth.csv").set_index("source").loc["a", "t"] == 0.6


def _weights(run):
    return {k: v.clone() for k, v in run.model.state_dict().items()}


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
    train, val = _data(24, 0), _data(10, 1)
    cfg = T.RunConfig(epochs=4, batch_size=8, lr=0.1, momentum=0.9, seed=3)
    ref = T.train_runs([_run(cfg)], train, val)[0]

    def kill_after_2(run, row):
        if row["epoch"] == 2:
            raise T.InterruptTraining("simulated kill")

    with pytest.raises(T.InterruptTraining):
        T.train_runs([_run(cfg, tmp_path)], train, val, callback=kill_after_2)
    assert (tmp_path / "state.json").is_file()
    resumed_run = _run(cfg, tmp_path, seed=99)  # different init: everything must come from the saved state
    epochs_seen = []
    T.train_runs([resumed_run], train, val, callback=lambda r, row: epochs_seen.append(row["epoch"]))
    assert epochs_seen == [3, 4]
    assert resumed_run.epoch == 4
    for k, v in _weights(ref).items():
        torch.testing.assert_close(resumed_run.model.state_dict()[k], v)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed_run.history) == strip(ref.history)
    assert resumed_run.best["epoch"] == ref.best["epoch"]
    assert resumed_run.opt.param_groups[0]["lr"] == pytest.approx(ref.opt.param_groups[0]["lr"])


def test_grouped_runs_equal_solo_runs():
    train, val = _data(24, 0), _data(10, 1)
    cfgs = [T.RunConfig(epochs=2, batch_size=8, lr=lr, momentum=0.9, seed=1) for lr in (0.01, 0.1)]
    solo = [T.train_runs([_run(c)], train, val)[0] for c in cfgs]
    grouped = T.train_runs([_run(c) for c in cfgs], train, val)
    for a, b in zip(solo, grouped):
        for k, v in _weights(a).items():
            torch.testing.assert_close(b.model.state_dict()[k], v)


def test_state_serialisation_round_trip(tmp_path):
    state = {"a": torch.arange(3), "b": [1, 2.5, None, float("nan")], "c": {0: {"m": torch.ones(2)}},
             "d": (1, "x")}
    T.save_state(tmp_path / "s.json", state)
    T.save_state(tmp_path / "s.json", state)  # overwrite leaves one tensor file
    assert len(list(tmp_path.glob("s-*.safetensors"))) == 1
    back = T.load_state(tmp_path / "s.json")
    assert torch.equal(back["a"], state["a"]) and back["b"][:3] == [1, 2.5, None] and math.isnan(back["b"][3])
    assert torch.equal(back["c"][0]["m"], torch.ones(2)) and back["d"] == (1, "x")


# ---------------------------------------------------------------------------------------------- stages
def test_image_folder_pretraining(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 3)):
        for k, cls in enumerate(["ct_a", "mr_b"]):
            (tmp_path / "rad" / split / cls).mkdir(parents=True)
            for i in range(n):
                arr = (rng.integers(0, 80, (20, 20)) + 150 * k).astype(np.uint8)
                Image.fromarray(arr).save(tmp_path / "rad" / split / cls / f"{i}.png")
    x, y, classes = T.read_image_folder(tmp_path / "rad" / "train", 16)
    assert x.shape == (12, 16, 16, 3) and classes == ["ct_a", "mr_b"] and y.tolist() == [0] * 6 + [1] * 6
    path = T.pretrain_image_folder(tmp_path / "rad", tmp_path / "radimagenet", tmp_path / "work",
                                   {"epochs": 1, "batch_size": 6, "image_size": 16}, device="cpu")
    meta = M.read_sidecar(path)
    assert meta["classes"] == ["ct_a", "mr_b"] and meta["num_outputs"] == 2
    assert M.build_model("resnet18", 3, path).fc[1].out_features == 3


def test_finetuning_stage_end_to_end(tmp_path, shared_data_root):
    from helpers.profiles import load_profile

    profile = load_profile("quick")
    profile["finetuning"].update({"epochs": 1, "patience": 1, "image_size": 16, "max_train_images": 12,
                                  "max_test_images": 20, "grid": {"lr": [0.01, 0.1], "batch_size": [6],
                                                                  "momentum": [0.9], "weight_decay": [0.0]},
                                  "seeds": [0, 1]})
    profile["data"]["folds"] = 1
    runs, unavailable = T.run_finetuning(profile, ["random", "imagenet_missing_source"], ["breastmnist"],
                                         tmp_path, device="cpu", progress=False)
    assert len(runs) == 4 and set(T.RUN_COLUMNS) <= set(runs.columns)
    assert sorted(runs["seed"].unique()) == [0, 1]
    seeds = T.ground_truth_seeds(runs)  # one selected run per seed, each seed's own choice
    assert len(seeds) == 2 and set(seeds["seed"]) == {0, 1}
    assert unavailable["source"].tolist() == ["imagenet_missing_source"]
    path = T.write_ground_truth(runs, tmp_path)
    gt = pd.read_csv(path)
    assert gt["source"].tolist() == ["random"] and "breastmnist" in gt.columns
    per_seed = runs.sort_values("val_loss").groupby("seed").head(1)["test_auc"]  # each seed's selection
    assert gt.loc[0, "breastmnist"] == pytest.approx(per_seed.mean())
    # resumable: nothing recomputed
    again, _ = T.run_finetuning(profile, ["random"], ["breastmnist"], tmp_path, device="cpu", progress=False)
    assert again["unit_seconds"].tolist() == runs["unit_seconds"].tolist()


def test_improves_rule_shared_by_classification_and_segmentation_training():
    from helpers.trainer.state import improves
    assert improves(0.5, None, lower_is_better=False)
    assert improves(0.6, 0.5, lower_is_better=False) and not improves(0.5, 0.5, lower_is_better=False)
    assert improves(0.1, float("nan"), lower_is_better=False)  # a defined AUC beats an undefined one
    assert not improves(float("nan"), 0.5, lower_is_better=False)
    assert improves(0.4, 0.5, lower_is_better=True) and not improves(0.6, 0.5, lower_is_better=True)
