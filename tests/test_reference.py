"""The reproduction of [D]'s published numbers, from the copy committed under data/reference/dovile2024."""
import numpy as np
import pandas as pd
import pytest

from helpers import evaluation as E
from helpers import reference as R
from helpers.paths import PROJECT_ROOT

REF = PROJECT_ROOT / "data" / "reference" / "dovile2024"


@pytest.fixture(scope="module")
def long():
    return pd.concat([R.reproduce("dataset", REF), R.reproduce("architecture", REF)], ignore_index=True)


def test_reference_dir_is_the_project_copy():
    assert R.reference_dir() == REF
    assert (REF / "LICENSE").is_file() and (REF / "README.md").is_file()
    with pytest.raises(FileNotFoundError):
        R.reference_dir(PROJECT_ROOT / "no-such-folder")


def test_table_formats():
    auc = R.load_ground_truth("dataset", REF)
    assert auc.shape == (15, 11) and auc.max().max() < 1.0
    model = R.load_ground_truth("architecture", REF)
    assert model.shape == (9, 11) and model.max().max() < 1.0
    assert R.load_ground_truth("architecture", REF, percent=True).max().max() > 90
    assert np.isnan(auc.at["bloodmnist", "bloodmnist"])
    ranks = R.load_rank_table("dataset", REF)
    assert list(ranks.columns) == ["logme", "sfda", "leep", "parc", "ncti", "nleep", "lp_x_fu"]
    with pytest.raises(ValueError):
        R.load_scores("nope", "dataset", REF)
    with pytest.raises(ValueError):
        R.load_scores("lp", "nope", REF)


@pytest.mark.parametrize("scenario", ["dataset", "architecture"])
def test_means_equal_published(long, scenario):
    means = E.wide(long[long.scenario == scenario]).mean()
    for metric, published in R.PUBLISHED_MEANS[scenario].items():
        assert abs(means[metric] - published) < 5e-4 + 1e-12, (scenario, metric, means[metric], published)
    comp = R.compare_with_published(long)
    assert comp["matches"].dropna().all()


def test_sfda_nan_targets_are_flagged(long):
    sfda = long[(long.scenario == "dataset") & (long.metric == "sfda")].set_index("target")
    assert sfda["weighted_tau"].notna().sum() == 9
    assert set(sfda.index[sfda["weighted_tau"].isna()]) == {"breastmnist", "pneumoniamnist"}
    assert sfda.loc[["breastmnist", "pneumoniamnist"], "constant_scores"].all()
    assert (R.ncti_range("dataset", REF)["max"] > 2).any()  # only possible with the "+ vc" defect


def test_flips_and_combination_options():
    noflip = E.wide(R.reproduce("architecture", REF, flips=())).mean()
    assert noflip["leep"] < 0 and abs(noflip["logme"] - 0.036) < 5e-4
    cand = E.wide(R.reproduce("dataset", REF, combine_over="candidates")).mean()
    assert round(cand["lp_x_fu"], 3) == 0.522
    with pytest.raises(ValueError):
        R.load_all_scores("dataset", REF, flips=("bogus",))


def test_dataset_ranks_equal_published_rank_table(long):
    methods = ["logme", "sfda", "leep", "parc", "ncti", "nleep", "lp_x_fu"]
    ours = E.rank_table(E.wide(long[long.scenario == "dataset"])[methods], method="min").astype(int)
    theirs = R.load_rank_table("dataset", REF)[methods]
    assert (ours.to_numpy() == theirs.loc[ours.index].to_numpy()).all()


@pytest.mark.parametrize("scenario", ["dataset", "architecture"])
def test_ground_truth_rederived_from_sweeps(scenario):
    derived = R.derive_ground_truth(scenario, "min_val_loss", REF)
    published = R.load_ground_truth(scenario, REF)
    assert R.compare_tables(derived, published, atol=1e-12).empty
    assert derived.shape[0] == published.shape[0]
    other = R.derive_ground_truth(scenario, "top3_val_auc", REF)
    assert not np.allclose(other.fillna(0), derived.fillna(0))
    with pytest.raises(ValueError):
        R.derive_ground_truth(scenario, "bogus", REF)


def test_write_weighted_tau(long, tmp_path):
    path = R.write_weighted_tau(long, tmp_path / "sub" / "wt.csv")
    back = pd.read_csv(path)
    assert list(back.columns) == ["scenario", "target", "metric", "weighted_tau"]
    assert len(back) == len(long)
    assert np.allclose(back["weighted_tau"], long["weighted_tau"], equal_nan=True, rtol=0, atol=1e-15)
    assert not list(path.parent.glob("*.tmp"))
    committed = PROJECT_ROOT / "results" / "reference" / "dovile2024_weighted_tau.csv"
    if committed.is_file():
        pub = pd.read_csv(committed)
        merged = pub.merge(back, on=["scenario", "target", "metric"], suffixes=("_c", "_n"))
        assert len(merged) == len(back)
        assert np.allclose(merged["weighted_tau_c"], merged["weighted_tau_n"], equal_nan=True, atol=1e-12)


def test_lp_x_fu_maps_to_the_code_name_in_one_place():
    """[D]'s LP x FU is ``lp_x_fu`` in its tables and this module, ``lp_fu`` in the metric registry; the
    mapping is :data:`helpers.reference.CODE_NAMES` alone."""
    from helpers.metrics import REGISTRY

    assert R.code_name("lp_x_fu") == "lp_fu" and "lp_fu" in REGISTRY
    assert R.code_name("logme") == "logme"
    assert "lp_x_fu" in R.load_rank_table("dataset").columns  # [D]'s ``our`` column, under [D]'s name
