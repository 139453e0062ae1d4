"""Segmentation fine-tuning seeds (``segmentation.finetuning.seeds``): the key is validated, the unit of the
section's own seed keeps the config (and key) it had before seeds, a fine-tuning seed leaves the image subsets
and the source alone, a tiny two-seed run gives one row per (source, target, seed) and the mean ground truth."""
import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import segmentation as S
from helpers.profiles import ProfileError, load_profile
from helpers.runner import config_key
from helpers.segmentation import training as ST
from helpers.stages import segmentation as SEG
from helpers.stages.base import Env


@pytest.fixture(scope="module")
def seg_root(shared_data_root):
    if not (shared_data_root / "segmentation").is_dir():
        pytest.fail(f"data root {shared_data_root} has no segmentation/ folder")
    return shared_data_root


def _tiny_profile(seeds=None, sources=("random", "busi")):
    ft = {"epochs": 1, "batch_size": 8, "max_train_images": 16, "max_val_images": 4, "max_test_images": 6}
    if seeds is not None:
        ft["seeds"] = list(seeds)
    return {"name": "tiny", "segmentation": {
        "sets": ["ph2", "busi"], "targets": ["ph2"], "sources": list(sources), "image_size": 32, "seed": 0,
        "model": {"decoder_channels": [32, 16, 16, 8, 8]},
        "pretraining": {"epochs": 1, "batch_size": 8, "max_train_images": 16, "max_val_images": 4},
        "finetuning": ft}}


def _config_before_seeds(profile, source, target):
    """The fine-tuning unit config as the code built it before ``finetuning.seeds`` existed."""
    sec = ST.segmentation_section(profile)
    recipe = {k: v for k, v in sec["finetuning"].items() if k not in ("union", "single", "seeds")}
    unit = ST.source_unit(profile, source, target)
    return {"stage": "segmentation_finetuning", "source": source, "target": target, "fold": 1,
            "source_key": config_key(unit) if unit is not None else None, "image_size": int(sec["image_size"]),
            "model": sec["model"], "loss": sec["loss"], "augment": sec["augment"], "recipe": recipe,
            "seed": int(sec["seed"])}


def test_seed_zero_keeps_its_key_and_other_seeds_get_their_own(seg_root, tmp_path):
    for profile in (_tiny_profile(), _tiny_profile([0, 1])):
        configs = S.segmentation_finetuning_configs(profile)
        zero = [c for c in configs if S.finetuning_seed(c) == 0]
        assert [config_key(c) for c in zero] == [config_key(_config_before_seeds(profile, c["source"], "ph2"))
                                                 for c in zero]
    two = S.segmentation_finetuning_configs(_tiny_profile([0, 1]))
    assert [(c["source"], S.finetuning_seed(c)) for c in two] == [("random", 0), ("random", 1), ("busi", 0),
                                                                  ("busi", 1)]
    one = next(c for c in two if S.finetuning_seed(c) == 1)
    # the section's seed (subsets, sources) is untouched; the fine-tuning seed is its own key
    assert one["seed"] == 0 and one["finetuning_seed"] == 1 and "seeds" not in one["recipe"]
    assert len({config_key(c) for c in two}) == 4
    # task ids: the section's seed keeps today's, another seed is marked
    env = Env(results_dir=tmp_path, profile=_tiny_profile([0, 1]), data_root=str(seg_root), device="cpu",
              progress=False, options={"parts": ("finetuning",)})
    ids = [t.id for t in SEG.plan(_tiny_profile([0, 1]), env)[0]]
    assert ids == ["segmentation:finetuning:random->ph2", "segmentation:finetuning:random->ph2@seed1",
                   "segmentation:finetuning:busi->ph2", "segmentation:finetuning:busi->ph2@seed1"]
    # a profile whose seed is not among the fine-tuning seeds
    p = _tiny_profile([5])
    p["segmentation"]["seed"] = 3
    (c, *_) = S.segmentation_finetuning_configs(p)
    assert c["seed"] == 3 and S.finetuning_seed(c) == 5


@pytest.mark.parametrize("seeds, match", [([], "non-empty"), ([0, 0], "repeat"), (["1"], "integers"),
                                          ("0", "integers"), ([True], "integers")])
def test_bad_seeds_are_refused_in_code(seeds, match):
    with pytest.raises(ValueError, match=match):
        S.segmentation_section(_tiny_profile(seeds))


@pytest.mark.parametrize("seeds, match", [([], "seeds"), ([0, 0], "repeat"), (["a"], "seeds"), (0.5, "seeds")])
def test_bad_seeds_are_refused_by_the_profile_schema(tmp_path, seeds, match):
    raw = yaml.safe_load(open(load_profile("quick")["_path"]))
    raw["segmentation"]["finetuning"]["seeds"] = seeds
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ProfileError, match=match):
        load_profile(path)


def test_shipped_profiles_seeds():
    quick, paper = load_profile("quick"), load_profile("paper")
    assert S.finetuning_seeds(S.segmentation_section(quick)) == [0, 1]
    assert S.finetuning_seeds(S.segmentation_section(paper)) == [0]   # [S] ran one fine-tuning per pair
    n_targets = len(S.segmentation_section(quick)["targets"])
    assert len(S.segmentation_finetuning_configs(quick)) == n_targets * 7 * 2


def test_finetuning_seed_leaves_the_subsets_and_the_source_alone(seg_root, tmp_path, monkeypatch):
    p = _tiny_profile([0, 1], sources=("random",))
    calls = []
    real = ST.subset_indices

    def recording(n, limit, seed, split):
        calls.append(seed)
        return real(n, limit, seed, split)

    monkeypatch.setattr(ST, "subset_indices", recording)
    rows = {}
    for c in S.segmentation_finetuning_configs(p):
        seed = S.finetuning_seed(c)
        rows[seed] = ST.finetune_segmentation_unit(c, p, tmp_path / f"w{seed}", tmp_path, seg_root, "cpu")
    assert calls and set(calls) == {0}                  # every subset drawn with the section's seed
    assert rows[0]["seed"] == 0 and rows[1]["seed"] == 1
    assert rows[0]["train_images"] == rows[1]["train_images"] == 16
    # other batches / augmentation: the training differs
    assert rows[0]["history"][0]["train_loss"] != rows[1]["history"][0]["train_loss"]


def test_two_seed_run_gives_a_row_per_seed_and_the_mean_ground_truth(seg_root, tmp_path):
    p = _tiny_profile([0, 1])
    SEG.run_segmentation_pretraining(p, tmp_path, seg_root, device="cpu", progress=False)
    runs, unavailable = SEG.run_segmentation_finetuning(p, tmp_path, seg_root, device="cpu", progress=False)
    assert unavailable.empty
    assert sorted(zip(runs["source"], runs["seed"])) == [("busi", 0), ("busi", 1), ("random", 0), ("random", 1)]
    assert list(runs.columns).index("seed") == list(runs.columns).index("fold") + 1
    gt = S.segmentation_ground_truth(runs)
    mean = runs.groupby("source")["test_dice"].mean()
    np.testing.assert_allclose(gt["ph2"].reindex(mean.index), mean)
    stored = pd.read_csv(tmp_path / "segmentation_ground_truth.csv").set_index("source")
    np.testing.assert_allclose(stored["ph2"].reindex(mean.index), mean)
    per_seed = pd.read_csv(tmp_path / "segmentation_ground_truth_seeds.csv")
    assert list(per_seed.columns) == ["source", "target", "seed", "test_dice", "rank"] and len(per_seed) == 4
    table = pd.read_csv(tmp_path / "segmentation_finetuning.csv")
    assert sorted(table["seed"]) == [0, 0, 1, 1]
    long = S.dice_long_table(runs)
    assert sorted(long["seed"]) == [0, 0, 1, 1]
    # the seed-0 units are those of a profile without seeds: it finds them done and reads the same Dice
    before = {u.name: u.stat().st_mtime_ns for u in (tmp_path / "segmentation_finetuning" / "units").iterdir()}
    runs0, _ = SEG.run_segmentation_finetuning(_tiny_profile(), tmp_path, seg_root, device="cpu", progress=False)
    assert {u.name: u.stat().st_mtime_ns for u in (tmp_path / "segmentation_finetuning" / "units").iterdir()} == before
    assert runs0["seed"].eq(0).all() and len(runs0) == 2
    zero = runs[runs["seed"] == 0].set_index("source")["test_dice"]
    assert runs0.set_index("source")["test_dice"].reindex(zero.index).tolist() == zero.tolist()


def test_seed_column_for_units_stored_before_seeds():
    runs = pd.DataFrame({"config.seed": [0, 0], "config.finetuning_seed": [np.nan, 1.0], "source": ["a", "a"],
                         "target": ["t", "t"], "fold": [1, 1], "test_dice": [0.4, 0.6]})
    out = SEG._seed_column(runs)
    assert out["seed"].tolist() == [0, 1] and list(out.columns).index("seed") == 5
    assert S.segmentation_ground_truth(out).loc["a", "t"] == pytest.approx(0.5)
