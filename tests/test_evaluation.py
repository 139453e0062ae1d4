"""helpers.evaluation on crafted tables: against direct scipy calls, flags, top-1/regret, Nemenyi, errors."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers import evaluation as E
from helpers import evaluation_core as C

SOURCES = ["imagenet", "alpha", "beta", "gamma", "delta", "bloodmnist", "organamnist"]
TARGETS = ["bloodmnist", "organamnist", "retinamnist"]


@pytest.fixture
def tables():
    rng = np.random.default_rng(1)
    scores = pd.DataFrame(rng.normal(size=(len(SOURCES), len(TARGETS))), index=SOURCES, columns=TARGETS)
    truth = pd.DataFrame(rng.uniform(0.6, 0.99, size=(len(SOURCES), len(TARGETS))), index=SOURCES, columns=TARGETS)
    return scores, truth


def test_canonical_name():
    assert E.canonical_name("BloodMNIST") == E.canonical_name("blood") == E.canonical_name("bloodmnist") == "blood"
    assert E.canonical_name("organ_a_mnist") == "organa"
    assert E.canonical_name("resnet") == "resnet"
    assert E.canonical_name("mnist") == "mnist"


def test_correlate_matches_scipy(tables):
    scores, truth = tables
    res = E.correlate(scores, truth)
    assert list(res.index) == TARGETS
    for t in TARGETS:
        keep = [s for s in SOURCES if s != t]
        x, y = scores.loc[keep, t].to_numpy(), truth.loc[keep, t].to_numpy()
        assert res.at[t, "weighted_tau"] == pytest.approx(stats.weightedtau(x, y).statistic, abs=1e-15)
        assert res.at[t, "kendall_tau"] == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-15)
        assert res.at[t, "pearson"] == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
        assert res.at[t, "spearman"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
        assert res.at[t, "n_sources"] == len(keep)
        assert not res.at[t, "constant_scores"]


def test_exclude_self_uses_name_rule(tables):
    scores, truth = tables
    # the truth names the target the short way; the rule still matches it with the scores' source
    short = truth.rename(columns={"bloodmnist": "blood"})
    on, off = E.correlate(scores, short), E.correlate(scores, short, exclude_self=False)
    assert on.at["bloodmnist", "n_sources"] == len(SOURCES) - 1
    assert off.at["bloodmnist", "n_sources"] == len(SOURCES)
    assert on.at["retinamnist", "n_sources"] == len(SOURCES)  # no retinamnist source: nothing excluded
    x, y = scores["bloodmnist"].to_numpy(), truth["bloodmnist"].to_numpy()
    assert off.at["bloodmnist", "weighted_tau"] == pytest.approx(stats.weightedtau(x, y).statistic)


def test_missing_values_are_skipped(tables):
    scores, truth = tables
    scores.loc["alpha", "retinamnist"] = np.nan
    truth.loc["beta", "retinamnist"] = np.inf
    res = E.correlate(scores, truth)
    keep = ["imagenet", "gamma", "delta", "bloodmnist", "organamnist"]
    assert res.at["retinamnist", "n_sources"] == len(keep)
    assert res.at["retinamnist", "weighted_tau"] == pytest.approx(
        stats.weightedtau(scores.loc[keep, "retinamnist"], truth.loc[keep, "retinamnist"]).statistic)


def test_constant_scores_are_flagged_nan(tables):
    scores, truth = tables
    scores["organamnist"] = 1.0
    res = E.correlate(scores, truth)
    row = res.loc["organamnist"]
    assert row["constant_scores"] and np.isnan(row["weighted_tau"]) and np.isnan(row["kendall_tau"])
    assert np.isnan(row["pearson"])
    # a random pick among the tied sources: expected value = the mean truth
    keep = [s for s in SOURCES if s != "organamnist"]
    y = truth.loc[keep, "organamnist"]
    assert row["top1_relative"] == pytest.approx(y.mean() / y.max())
    assert row["regret"] == pytest.approx(y.max() - y.mean())
    assert not res.loc["bloodmnist", "constant_scores"]


def test_top1_and_regret_crafted():
    scores = pd.DataFrame({"t": [3.0, 2.0, 1.0, 0.5]}, index=["a", "b", "c", "d"])
    truth = pd.DataFrame({"t": [0.80, 0.90, 0.70, 0.85]}, index=["a", "b", "c", "d"])
    row = E.correlate(scores, truth).loc["t"]
    assert row["top1_relative"] == pytest.approx(0.80 / 0.90)
    assert row["regret"] == pytest.approx(0.10)
    assert row["top_source"] == "a" and row["best_source"] == "b"
    # a perfect metric: no regret
    perfect = E.correlate(truth, truth).loc["t"]
    assert perfect["regret"] == 0 and perfect["top1_relative"] == 1
    assert perfect["weighted_tau"] == pytest.approx(1.0)
    # a tie at the top averages the tied sources
    tied = pd.DataFrame({"t": [3.0, 3.0, 1.0, 0.5]}, index=["a", "b", "c", "d"])
    row = E.correlate(tied, truth).loc["t"]
    assert row["regret"] == pytest.approx(0.90 - 0.85)
    assert row["top_source"] == "a|b"
    summary = E.practical_summary(E.tidy({"m": E.correlate(tied, truth)}))
    assert summary.at["m", "top1_is_best"] == pytest.approx(0.5)


def test_bad_inputs_raise_value_error(tables):
    scores, truth = tables
    with pytest.raises(ValueError, match="DataFrame"):
        E.correlate(scores.to_numpy(), truth)
    with pytest.raises(ValueError, match="non-numeric"):
        E.correlate(scores.astype(str), truth)
    with pytest.raises(ValueError, match="no source in common"):
        E.correlate(scores.rename(index=lambda s: s + "_x"), truth)
    with pytest.raises(ValueError, match="no target in common"):
        E.correlate(scores.rename(columns=lambda s: s + "_x"), truth)
    clash = scores.copy()
    clash.index = ["blood"] + SOURCES[1:5] + ["bloodmnist", "organamnist"]
    with pytest.raises(ValueError, match="both map to"):
        E.correlate(clash, truth)
    with pytest.raises(ValueError, match="empty"):
        E.correlate(pd.DataFrame(), truth)
    with pytest.raises(ValueError):
        E.correlate_many({}, truth)


def test_summaries_and_minmax(tables):
    scores, truth = tables
    long = E.tidy(E.correlate_many({"m1": scores, "m2": -scores}, truth))
    assert set(long.columns) >= {"metric", "target", "weighted_tau", "regret", "constant_scores"}
    summ = E.summarize(long)
    w = E.wide(long)
    assert summ.loc["m1", "mean"] == pytest.approx(w["m1"].mean())
    assert summ.loc["m2", "median"] == pytest.approx(w["m2"].median())
    a = pd.DataFrame({"t": [1.0, 2.0, 3.0]}, index=["x", "y", "t"])
    b = pd.DataFrame({"t": [3.0, 1.0, 2.0]}, index=["x", "y", "t"])
    prod = E.minmax_product(a, b)
    assert prod["t"].tolist() == pytest.approx([0.0, 0.0, 0.5])
    prod_c = E.minmax_product(a, b, exclude_self=True)
    assert prod_c.loc[["x", "y"], "t"].tolist() == pytest.approx([0.0, 0.0]) and np.isnan(prod_c.at["t", "t"])


def test_bootstrap_is_seeded_and_uses_scipy_values(tables):
    scores, truth = tables
    d = {"m1": scores, "m2": -scores}
    b1 = E.bootstrap_means(d, truth, n_boot=50, seed=3)
    b2 = E.bootstrap_means(d, truth, n_boot=50, seed=3)
    pd.testing.assert_frame_equal(b1, b2)
    full = E.summarize(E.tidy(E.correlate_many(d, truth)))["mean"]
    assert b1["mean"].to_numpy() == pytest.approx(full.to_numpy())
    assert (b1["ci_low"] <= b1["ci_high"]).all()
    assert b1["p_best"].sum() == pytest.approx(1.0)
    # the fast kernel of the bootstrap equals the public function, ties included
    rng = np.random.default_rng(5)
    for _ in range(20):
        x = rng.integers(0, 4, 12).astype(float)
        y = rng.integers(0, 5, 12).astype(float)
        if len(set(x)) > 1 and len(set(y)) > 1:
            assert C._weighted_tau_fast(x, y) == pytest.approx(stats.weightedtau(x, y).statistic, abs=1e-14)


def test_nemenyi_cd_against_hand_value():
    # Demšar (2006), Table 5(a): q_0.05 = 2.949 for k = 7 and 1.960 for k = 2
    assert E.nemenyi_q(7) == pytest.approx(2.949, abs=1e-3)  # table rounding: 2.9483
    assert E.nemenyi_q(2) == pytest.approx(1.960, abs=5e-4)
    # CD = 2.949 * sqrt(7 * 8 / (6 * 11)) = 2.7164
    assert E.nemenyi_cd(7, 11) == pytest.approx(2.949 * np.sqrt(56 / 66), abs=1e-3)
    assert E.nemenyi_cd(7, 11) == pytest.approx(2.7164, abs=1e-3)
    with pytest.raises(ValueError):
        E.nemenyi_cd(1, 11)


def test_ranks_friedman_nemenyi_and_figures():
    rng = np.random.default_rng(0)
    w = pd.DataFrame(rng.normal(size=(10, 4)), columns=list("abcd"), index=[f"t{i}" for i in range(10)])
    w["a"] += 2.0
    r = E.rank_table(w)
    assert (r.sum(axis=1) == 10).all()
    fr = E.friedman(w)
    direct = stats.friedmanchisquare(*[w[c] for c in w.columns])
    assert fr["statistic"] == pytest.approx(direct.statistic) and fr["pvalue"] == pytest.approx(direct.pvalue)
    nem = E.nemenyi(w)
    assert nem["avg_ranks"].index[0] == "a"
    assert nem["cd"] == pytest.approx(E.nemenyi_cd(4, 10))
    assert nem["significant"].equals(nem["significant"].T)
    # NaN: worst rank ("bottom") or the target dropped
    w2 = w.copy()
    w2.iloc[0, 0] = np.nan
    assert E.rank_table(w2).iloc[0, 0] == 4
    assert len(E.rank_table(w2, na="drop")) == 9
    fig = E.cd_diagram(nem["avg_ranks"], nem["cd"], title="t")
    assert fig.axes
    scores = pd.DataFrame(rng.normal(size=(5, 2)), index=list("vwxyz"), columns=["p", "q"])
    truth = pd.DataFrame(rng.uniform(size=(5, 2)), index=list("vwxyz"), columns=["p", "q"])
    fig2 = E.scatter_grid({"m": scores, "c": scores * 0 + 1}, truth)
    assert len(fig2.axes) == 4
    import matplotlib.pyplot as plt

    plt.close("all")


def test_scatter_target_facets_one_target_legibly():
    """18 metrics of one target: 3 rows of 6 panels, each titled with its metric and weighted tau, ticks >= 7 pt,
    at most 12 inches wide (page width at the book's resolution), the unused panels switched off."""
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    sources = list("abcdefgh")
    truth = pd.DataFrame(rng.uniform(size=(8, 2)), index=sources, columns=["t1", "t2"])
    scores = {f"metric_{i}": pd.DataFrame(rng.normal(size=(8, 2)), index=sources, columns=["t1", "t2"])
              for i in range(17)}
    scores["flat"] = truth * 0 + 1
    fig = E.scatter_target(scores, truth, "t1", ncols=6)
    shown = [a for a in fig.axes if a.axison]
    assert len(fig.axes) == 18 and len(shown) == 18
    titles = [a.get_title() for a in shown]
    assert titles[0].startswith("metric_0\nτw = ") and titles[-1] == "flat\nτw = NaN (constant)"
    assert min(t.get_fontsize() for a in shown for t in a.get_xticklabels()) >= 7
    assert fig.get_size_inches()[0] <= 12
    fig2 = E.scatter_target({k: scores[k] for k in list(scores)[:4]}, truth, "t2", ncols=3)
    assert sum(a.axison for a in fig2.axes) == 4 and len(fig2.axes) == 6  # 2 rows of 3, two panels off
    plt.close("all")


def test_bootstrap_of_an_all_constant_metric_is_nan_without_warnings():
    import warnings

    rng = np.random.default_rng(1)
    idx, cols = list("abcdef"), ["t1", "t2"]
    truth = pd.DataFrame(rng.uniform(size=(6, 2)), index=idx, columns=cols)
    scores = {"m": pd.DataFrame(rng.normal(size=(6, 2)), index=idx, columns=cols),
              "flat": pd.DataFrame(1.0, index=idx, columns=cols)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        boot = E.bootstrap_means(scores, truth, n_boot=20, seed=0)
    assert np.isnan(boot.loc["flat", ["ci_low", "ci_high", "boot_sd"]].astype(float)).all()
    assert np.isfinite(boot.loc["m", ["ci_low", "ci_high"]].astype(float)).all()
