"""helpers.evaluation's "which metric to trust" functions (helpers/evaluation_trust.py) on crafted cases whose
answers are known, plus checks on [D]'s published tables."""
import itertools

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers import evaluation as E
from helpers import evaluation_trust as T
from helpers import ground_truth as G
from helpers import reference as R
from helpers.paths import PROJECT_ROOT

REF = PROJECT_ROOT / "data" / "reference" / "dovile2024"


def test_old_names_under_helpers_evaluation_warn_and_forward():
    """The functions once reached as ``helpers.evaluation.<name>`` still are, through one table, with a
    DeprecationWarning that names their home."""
    from helpers.compat import MOVED

    moved = MOVED["helpers.evaluation"]
    assert set(moved) == set(T.__all__)
    for name, home in moved.items():
        with pytest.warns(DeprecationWarning, match=home.replace(".", r"\.")):
            assert getattr(E, name) is getattr(T, name)
    assert G.select_ground_truth is T.select_ground_truth  # the ground-truth names keep their trust path
    with pytest.warns(DeprecationWarning):
        from helpers.evaluation import ground_truth_noise  # noqa: F401  (the from-import form works too)
    with pytest.raises(AttributeError):
        E.no_such_function


def test_evaluation_modules_import_no_module_built_on_them():
    """evaluation_core is the bottom: evaluation, evaluation_trust and ground_truth import it, never each other's
    internals, and helpers.evaluation loads neither trust module until an old name is asked for."""
    import subprocess
    import sys

    code = ("import sys, helpers.evaluation; "
            "print(sorted(m for m in sys.modules if m in ('helpers.evaluation_trust', 'helpers.ground_truth')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ----------------------------------------------------------------------------------------------------
# baselines


def test_training_set_sizes_order_and_union():
    from medmnist import INFO

    sources = ["imagenet", "radimagenet", "medmnist", "breastmnist", "tissuemnist", "random", "mystery"]
    targets = ["breastmnist", "bloodmnist"]
    sizes = T.training_set_sizes(sources, targets)
    assert sizes.at["imagenet", "bloodmnist"] == 1_281_167
    assert sizes.at["radimagenet", "bloodmnist"] == 1_350_000
    assert sizes.at["breastmnist", "bloodmnist"] == INFO["breastmnist"]["n_samples"]["train"]
    assert sizes.at["random", "breastmnist"] == 0
    assert sizes["breastmnist"].isna()["mystery"]
    total = sum(INFO[f]["n_samples"]["train"] for f in T.MEDMNIST_2D_FLAGS)
    for t in targets:  # the union leaves the target out
        assert sizes.at["medmnist", t] == total - INFO[t]["n_samples"]["train"]
    # ordering by the baseline is the size order
    order = sizes["bloodmnist"].dropna().sort_values(ascending=False).index.tolist()
    assert order == ["radimagenet", "imagenet", "medmnist", "tissuemnist", "breastmnist", "random"]
    # a truth that grows with size is ranked perfectly
    truth = np.log1p(sizes.fillna(0))
    res = E.correlate(sizes.drop(index="mystery"), truth.drop(index="mystery"), exclude_self=False)
    assert np.allclose(res["weighted_tau"], 1.0)
    # own numbers override, per target too
    own = T.training_set_sizes(["breastmnist", "medmnist_union"], targets,
                               extra={"breastmnist": 600, "medmnist_union": {"bloodmnist": 400}})
    assert own.at["breastmnist", "bloodmnist"] == 600 and own.at["medmnist_union", "bloodmnist"] == 400
    assert np.isnan(own.at["medmnist_union", "breastmnist"])
    with pytest.raises(ValueError, match="not MedMNIST"):
        T.medmnist_train_sizes(["nomnist"])


def test_architecture_baselines_from_torchvision_metadata():
    import torchvision

    meta = T.torchvision_imagenet_meta({"resnet": "resnet18", "vgg": "vgg11"})
    tv = torchvision.models.get_model_weights("resnet18").IMAGENET1K_V1.meta
    assert meta.at["resnet", "num_params"] == tv["num_params"]
    assert meta.at["resnet", "imagenet_top1"] == tv["_metrics"]["ImageNet-1K"]["acc@1"]
    assert meta.at["vgg", "num_params"] > meta.at["resnet", "num_params"]
    tables = T.architecture_baselines({"resnet": "resnet18", "vgg": "vgg11"}, ["a", "b"])
    assert set(tables) == {"num_params", "imagenet_top1"}
    assert (tables["num_params"]["a"] == tables["num_params"]["b"]).all()
    with pytest.raises(ValueError, match="no architecture"):
        T.torchvision_imagenet_meta(["resnet999"])
    st = T.static_baseline({"x": 1.0, "y": 2.0}, ["t1", "t2"])
    assert st.shape == (2, 2) and st.at["y", "t2"] == 2.0


def test_loto_prior_hand_values_and_no_use_of_the_target():
    truth = pd.DataFrame({"t1": [0.9, 0.8, 0.7], "t2": [0.7, 0.9, 0.8], "t3": [0.9, 0.7, 0.8]},
                         index=["a", "b", "c"])
    prior = T.loto_prior(truth)
    # normalised ranks (0 = best): t1 a0 b.5 c1; t2 a1 b0 c.5; t3 a0 b1 c.5
    assert prior.at["a", "t1"] == pytest.approx(1 - (1 + 0) / 2)
    assert prior.at["b", "t1"] == pytest.approx(1 - (0 + 1) / 2)
    assert prior.at["c", "t1"] == pytest.approx(1 - (0.5 + 0.5) / 2)
    assert prior.at["a", "t2"] == pytest.approx(1 - (0 + 0) / 2)
    # the prior of a target does not depend on that target's ground truth
    changed = truth.copy()
    changed["t1"] = [0.1, 0.2, 0.3]
    pd.testing.assert_series_equal(T.loto_prior(changed)["t1"], prior["t1"])
    # with a static hierarchy (same order on every target) the prior ranks perfectly
    rng = np.random.default_rng(0)
    quality = np.arange(8.0)
    static = pd.DataFrame({f"t{j}": quality + rng.normal(0, 0.01, 8) for j in range(5)},
                          index=[f"s{i}" for i in range(8)])
    res = E.correlate(T.loto_prior(static), static)
    assert np.allclose(res["weighted_tau"], 1.0)
    # the source equal to a target is left out of that target's ranking
    named = pd.DataFrame({"bloodmnist": [np.nan, 0.9, 0.8], "pathmnist": [0.5, np.nan, 0.9]},
                         index=["bloodmnist", "pathmnist", "imagenet"])
    p = T.loto_prior(named)
    assert p.at["imagenet", "bloodmnist"] == pytest.approx(1.0) and p.at["imagenet", "pathmnist"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="at least 2 targets"):
        T.loto_prior(truth[["t1"]])


def test_truth_concordance():
    col = np.arange(6.0)
    truth = pd.DataFrame({"a": col, "b": col * 2, "c": -col}, index=list("uvwxyz"))
    c = T.truth_concordance(truth)
    assert c.at["a", "b"] == pytest.approx(1.0) and c.at["a", "c"] == pytest.approx(-1.0)
    assert np.isnan(c.at["a", "a"])


# ----------------------------------------------------------------------------------------------------
# selection rules and the noise ceiling


def test_parse_rule():
    assert G.parse_rule("min_val_loss") == ([("val_loss", True)], 1)
    assert G.parse_rule("max_val_auc") == ([("val_auc", False), ("val_loss", True)], 1)
    assert G.parse_rule("top5_val_acc") == ([("val_acc", False), ("val_loss", True)], 5)
    for bad in ("max_val_loss", "min_val_auc", "top0_val_loss", "best", "top3_test_auc"):
        with pytest.raises(ValueError):
            G.parse_rule(bad)


def _runs():
    return pd.DataFrame({
        "source": ["a"] * 4 + ["b"] * 3,
        "target": ["t"] * 7,
        "val_loss": [0.5, 0.2, 0.2, 0.9, 0.3, 0.1, 0.4],
        "val_auc": [0.9, 0.7, 0.8, 0.9, 0.6, 0.5, 0.6],
        "val_acc": [0.5, 0.6, 0.7, 0.8, 0.9, 0.5, 0.5],
        "test_auc": [0.60, 0.70, 0.75, 0.80, 0.50, 0.55, 0.65],
    })


def test_select_ground_truth_rules():
    runs = _runs()
    gt = G.select_ground_truth(runs, "min_val_loss")
    assert gt.at["a", "t"] == 0.70  # tie at 0.2: the first in the table
    assert gt.at["b", "t"] == 0.55
    # highest val AUC, tie (0.9, 0.9) broken by the lower val loss
    assert G.select_ground_truth(runs, "max_val_auc").at["a", "t"] == 0.60
    assert G.select_ground_truth(runs, "max_val_acc").at["b", "t"] == 0.50
    assert G.select_ground_truth(runs, "top2_val_loss").at["a", "t"] == pytest.approx((0.70 + 0.75) / 2)
    assert G.select_ground_truth(runs, "top9_val_loss").at["b", "t"] == pytest.approx((0.5 + 0.55 + 0.65) / 3)
    # strata are selected separately, then averaged
    two = pd.concat([runs.assign(fold=1), runs.assign(fold=2, test_auc=runs["test_auc"] + 0.1)])
    st = G.select_ground_truth(two, "min_val_loss", strata=("fold",))
    assert st.at["a", "t"] == pytest.approx(0.75)
    # a failed run (NaN metrics) is not a candidate
    failed = pd.concat([runs, pd.DataFrame([{"source": "a", "target": "t", "val_loss": np.nan, "val_auc": np.nan,
                                             "val_acc": np.nan, "test_auc": np.nan}])])
    assert G.select_ground_truth(failed).at["a", "t"] == 0.70
    with pytest.raises(ValueError, match="lack the columns"):
        G.select_ground_truth(runs.drop(columns="val_loss"))


def test_select_ground_truth_max_val_auc_tie():
    runs = _runs()
    # b has val_auc 0.6 twice (val loss 0.3 -> test .50 and 0.4 -> test .65): the lower val loss wins
    assert G.select_ground_truth(runs, "max_val_auc").at["b", "t"] == 0.50


def _sweep(noise: float, seed: int = 0, n_sources: int = 6, n_targets: int = 3, n_runs: int = 30):
    rng = np.random.default_rng(seed)
    rows = []
    for j in range(n_targets):
        for i in range(n_sources):
            for r in range(n_runs):
                e = noise * rng.normal()
                rows.append({"source": f"s{i}", "target": f"t{j}", "val_loss": 1 - 0.1 * i + e,
                             "val_auc": 0.5 + 0.05 * i - e, "val_acc": 0.5 + 0.05 * i - e,
                             "test_auc": 0.5 + 0.05 * i - e})
    return pd.DataFrame(rows)


def test_noise_ceiling_of_a_noiseless_sweep_is_one():
    res = G.ground_truth_noise(_sweep(0.0), rules=["min_val_loss", "top3_val_auc"], n_boot=20)
    s = res["summary"]
    assert s.loc["min_val_loss", "ceiling"] == pytest.approx(1.0, abs=1e-12)
    assert s.loc["top3_val_auc", "ceiling"] == pytest.approx(1.0, abs=1e-12)
    assert (res["per_target"]["p_best_kept"] == 1).all()
    assert res["per_target"]["tau_between"].to_numpy() == pytest.approx(1.0)
    assert len(res["replicates"]) == 2 * 20 * 3


def test_ground_truth_noise_largely_cancels_in_a_paired_difference():
    """The noise ceiling bounds one metric's agreement with a re-drawn ground truth, not the difference of two:
    both are scored against the same replicate. A metric that ranks the sources as another does moves with it
    exactly (difference 0, SD 0) while its own agreement moves (SD > 0); a noiseless sweep adds no spread."""
    runs = _sweep(0.3)
    truth = G.select_ground_truth(runs)
    rng = np.random.default_rng(3)
    scores = {"a": truth, "a_monotone": truth * 3 + 1,
              "other": pd.DataFrame(rng.normal(size=truth.shape), index=truth.index, columns=truth.columns)}
    res = G.noise_in_differences(scores, runs, reference="a", n_boot=40, seed=1)
    assert res.at["a_monotone", "difference"] == 0 and res.at["a_monotone", "sd_difference"] == 0
    assert res.at["a", "sd_alone"] > 0.01
    assert res.at["other", "sd_difference"] > 0
    reps = G.ground_truth_replicates(runs, n_boot=5, seed=1)
    assert len(reps) == 5 and reps[0].shape == truth.shape and not reps[0].equals(reps[1])
    calm = G.noise_in_differences({"a": truth, "other": scores["other"]}, _sweep(0.0), reference="a", n_boot=10)
    assert calm["sd_alone"].max() < 1e-12 and calm["sd_difference"].max() < 1e-12
    with pytest.raises(ValueError, match="reference"):
        G.noise_in_differences(scores, runs, reference="missing", n_boot=5)


def test_noise_ceiling_of_a_noisy_sweep_is_below_one_and_seeded():
    runs = _sweep(0.2)
    a = G.ground_truth_noise(runs, n_boot=40, seed=1)
    b = G.ground_truth_noise(runs, n_boot=40, seed=1)
    pd.testing.assert_frame_equal(a["per_target"], b["per_target"])
    s = a["summary"].loc["min_val_loss"]
    assert -1 <= s["ceiling_low"] <= s["ceiling"] <= s["ceiling_high"] <= 1
    assert s["ceiling"] < 1 and s["tau_full"] == pytest.approx(1.0)
    # a replicate's tau, recomputed by hand with scipy, for one target
    rep = a["replicates"]
    assert rep["weighted_tau"].between(-1, 1).all()
    # more noise, lower ceiling
    noisier = G.ground_truth_noise(_sweep(1.0), n_boot=40, seed=1)["summary"].loc["min_val_loss", "ceiling"]
    assert noisier < s["ceiling"]
    with pytest.raises(ValueError, match="n_boot"):
        G.ground_truth_noise(runs, n_boot=1)
    with pytest.raises(ValueError, match="unknown selection rule"):
        G.ground_truth_noise(runs, rules=["best"], n_boot=5)
    # one run per cell (a sweep of one configuration per seed): nothing to resample, not a ceiling of 1
    one = _sweep(0.3, n_runs=1, n_sources=5, n_targets=2)
    with pytest.raises(ValueError, match="no sweep to resample"):
        G.ground_truth_noise(one, n_boot=5)


def test_noise_replicate_equals_direct_weighted_tau():
    # four runs per source: rebuild replicate 0 by hand and check its weighted tau against scipy directly
    runs = _sweep(0.3, n_runs=4, n_sources=5, n_targets=1)
    res = G.ground_truth_noise(runs, n_boot=10, seed=2)
    ref = G.select_ground_truth(runs)["t0"].to_numpy()
    # the first replicate rebuilt by hand: the same draws, cell by cell in the table's order
    rng = np.random.default_rng(2)
    first = []
    for name, cell in runs.groupby(["source", "target"], sort=False):
        d = rng.integers(0, len(cell), size=(10, len(cell)))[0]
        sub = cell.iloc[d]
        first.append(sub.sort_values("val_loss", kind="stable")["test_auc"].iloc[0])
    expect = stats.weightedtau(np.array(first), ref).statistic
    got = res["replicates"].query("replicate == 0")["weighted_tau"].iloc[0]
    assert got == pytest.approx(expect, abs=1e-12)


# ----------------------------------------------------------------------------------------------------
# ensembles and selection


@pytest.fixture
def tables():
    rng = np.random.default_rng(3)
    idx = ["imagenet", "alpha", "beta", "gamma", "bloodmnist", "pathmnist"]
    cols = ["bloodmnist", "pathmnist", "retinamnist"]
    truth = pd.DataFrame(rng.uniform(0.6, 0.99, size=(6, 3)), index=idx, columns=cols)
    noise = pd.DataFrame(rng.normal(size=(6, 3)), index=idx, columns=cols)
    return truth, noise


def test_rank_average_of_identical_metrics_equals_the_metric(tables):
    truth, noise = tables
    ens = T.rank_average({"m": noise, "m_copy": noise.copy(), "m_again": noise * 3 + 1})
    a, b = E.correlate(ens, truth), E.correlate(noise, truth)
    assert np.allclose(a["weighted_tau"], b["weighted_tau"], atol=1e-12)
    assert np.isnan(ens.at["bloodmnist", "bloodmnist"])  # self cell left out
    # a metric and its reverse cancel: constant ensemble, flagged
    flat = E.correlate(T.rank_average({"m": noise, "neg": -noise}), truth)
    assert flat["constant_scores"].all() and flat["weighted_tau"].isna().all()
    # a perfect metric stays perfect when averaged with itself
    perfect = E.correlate(T.rank_average({"p": truth, "p2": truth}), truth)
    assert np.allclose(perfect["weighted_tau"], 1.0)


def test_rank_average_hand_values():
    a = pd.DataFrame({"t": [1.0, 2.0, 3.0]}, index=list("xyz"))
    b = pd.DataFrame({"t": [3.0, 1.0, 2.0]}, index=list("xyz"))
    ens = T.rank_average({"a": a, "b": b})
    assert ens["t"].tolist() == pytest.approx([(1 / 3 + 3 / 3) / 2, (2 / 3 + 1 / 3) / 2, (3 / 3 + 2 / 3) / 2])


def test_ensembles_enumerates_combinations(tables):
    truth, noise = tables
    four = {k: noise + i for i, k in enumerate("abcd")}
    ens = T.ensembles(four, sizes=(2, 3))
    assert len(ens) == 6 + 4 + 1
    assert "a + b" in ens and "b + c + d" in ens and "all 4" in ens
    assert "all 3" not in T.ensembles({k: four[k] for k in "abc"}, sizes=(2, 3))
    with pytest.raises(ValueError):
        T.ensembles({"a": noise})


def test_loto_selection_picks_the_known_best():
    w = pd.DataFrame({"good": [0.8, 0.7, 0.9, 0.6], "lucky": [0.1, 0.2, 0.95, 0.99], "bad": [0.0, 0.1, 0.0, 0.1]},
                     index=["t1", "t2", "t3", "t4"])
    res = T.loto_selection(w, focus="good")
    folds = res["folds"]
    # held out t1: means good .733, lucky .713 -> good; t2: good .767, lucky .68 -> good;
    # t3: good .7, lucky .43 -> good; t4: good .8, lucky .417 -> good
    assert (folds["chosen"] == "good").all()
    assert folds["held_out"].tolist() == w["good"].tolist()
    sm = res["summary"]
    assert sm["loto_mean"] == pytest.approx(w["good"].mean())
    assert sm["in_sample_best"] == "good" and sm["optimism"] == pytest.approx(0)
    assert sm["focus_chosen"] == 4 and sm["focus_in_sample_rank"] == 1
    # a candidate that is best only in-sample: LOTO exposes the optimism
    w2 = pd.DataFrame({"steady": [0.5, 0.5, 0.5], "spiky": [1.0, 0.2, 0.4]}, index=["t1", "t2", "t3"])
    r2 = T.loto_selection(w2)
    assert r2["summary"]["in_sample_best"] == "spiky"  # mean .533 > .5
    # held out t1: steady .5 vs spiky .3 -> steady (.5); t2: spiky .7 -> 0.2; t3: spiky .6 -> 0.4
    assert r2["folds"]["chosen"].tolist() == ["steady", "spiky", "spiky"]
    assert r2["summary"]["loto_mean"] == pytest.approx((0.5 + 0.2 + 0.4) / 3)
    assert r2["summary"]["optimism"] == pytest.approx((1.6 / 3) - 1.1 / 3)
    with pytest.raises(ValueError, match="focus"):
        T.loto_selection(w, focus="nope")
    with pytest.raises(ValueError, match="at least 2 targets"):
        T.loto_selection(w.iloc[:1])


def test_nested_prior_values_use_nothing_of_the_held_out_target():
    rng = np.random.default_rng(4)
    truth = pd.DataFrame(rng.uniform(size=(7, 4)), index=[f"s{i}" for i in range(7)], columns=list("abcd"))
    prior = T.loto_prior(truth)
    w = E.wide(E.tidy(E.correlate_many({"loto_prior": prior, "other": truth * 0 + rng.normal(size=(7, 4))}, truth)))
    fn = T.nested_prior_values(w, truth)
    train_a = fn("a")
    assert "a" not in train_a.index and list(train_a.columns) == list(w.columns)
    changed = truth.copy()
    changed["a"] = rng.uniform(size=7)
    pd.testing.assert_frame_equal(T.nested_prior_values(w, changed)("a"), train_a)
    # on the training targets the "other" column is unchanged; the prior's is recomputed without "a"
    assert train_a["other"].tolist() == w.drop(index="a")["other"].tolist()
    res = T.loto_selection(w, train_values=fn)
    assert len(res["folds"]) == 4


def test_bootstrap_differences_are_paired(tables):
    truth, noise = tables
    scores = {"m": noise, "copy": noise.copy(), "perfect": truth}
    d = T.bootstrap_differences(scores, truth, reference="m", n_boot=50, seed=1)
    assert d.loc["m"].tolist() == [0, 0, 0, 0, 0]
    assert d.loc["copy", "difference"] == 0 and d.loc["copy", "ci_low"] == 0 and d.loc["copy", "p_above"] == 0
    b = E.bootstrap_means(scores, truth, n_boot=50, seed=1)
    assert d.at["perfect", "difference"] == pytest.approx(b.at["perfect", "mean"] - b.at["m", "mean"])
    assert d.at["perfect", "ci_low"] >= 0
    with pytest.raises(ValueError, match="reference"):
        T.bootstrap_differences(scores, truth, reference="nope", n_boot=5)


# ----------------------------------------------------------------------------------------------------
# cost against quality


def test_read_metric_benchmark_crafted_and_committed(tmp_path):
    text = ("# header\n\n## N = 100\nmetric                       cpu s      cuda s  baseline s   |ours-base|\n"
            "logme                        0.500       0.010       0.600      1.00e-15\n"
            "#   lp on cuda: RuntimeError: boom\n"
            "lp                           1.000         ERR           -             -\n"
            "TOTAL                        1.500       0.010\n\n# large-N forms\nparc exact 1 (2 s)\n")
    path = tmp_path / "bench.txt"
    path.write_text(text)
    b = T.read_metric_benchmark(path)
    assert len(b) == 4 and set(b["device"]) == {"cpu", "cuda"}
    row = b[(b.metric == "logme") & (b.device == "cuda")].iloc[0]
    assert row["seconds"] == 0.010 and row["baseline_seconds"] == 0.6 and row["abs_diff"] == 1e-15
    assert np.isnan(b[(b.metric == "lp") & (b.device == "cuda")]["seconds"].iloc[0])
    assert "parc" not in set(b["metric"])
    committed = T.read_metric_benchmark(PROJECT_ROOT / "benchmarks" / "results" / "metrics_cpu.txt")
    assert sorted(committed["n"].unique()) == [1000, 10000, 100000]
    assert {"logme", "lp", "nleep", "ncti_parts"} <= set(committed["metric"])
    assert (committed["seconds"].dropna() >= 0).all()
    with pytest.raises(FileNotFoundError):
        T.read_metric_benchmark(tmp_path / "none.txt")


def test_nearest_size_pareto_and_figure():
    assert T.nearest_size(200, [1000, 10000]) == 1000
    assert T.nearest_size(3000, [1000, 10000]) == 1000 and T.nearest_size(3500, [1000, 10000]) == 10000
    cost = pd.Series({"free": 0.0, "cheap": 0.1, "mid": 1.0, "dear": 10.0, "waste": 5.0, "untimed": np.nan})
    quality = pd.Series({"free": 0.2, "cheap": 0.3, "mid": 0.5, "dear": 0.6, "waste": 0.4, "untimed": 0.9})
    front = T.pareto_front(cost, quality)
    assert front[front].index.tolist() == ["free", "cheap", "mid", "dear"]
    table = T.cost_quality(quality, cost, lower_bound=["mid"], front_of=["cheap", "mid", "dear", "waste"])
    assert table.index[0] == "free" and not table.at["free", "pareto"] and table.at["cheap", "pareto"]
    assert table.at["mid", "cost_is_lower_bound"] and not table.at["waste", "pareto"]
    fig = T.cost_quality_figure(table, title="t")
    assert fig.axes
    import matplotlib.pyplot as plt

    plt.close("all")


# ----------------------------------------------------------------------------------------------------
# on [D]'s published tables


def test_published_baselines_shapes_and_values():
    truth = R.load_ground_truth("dataset", REF)
    b = R.baselines("dataset", REF)
    assert set(b) == {"train_size", "loto_prior"}
    assert b["train_size"].shape == truth.shape and b["train_size"].notna().all().all()
    assert b["loto_prior"].shape == truth.shape and b["loto_prior"].stack().between(0, 1).all()
    a = R.baselines("architecture", REF)
    assert set(a) == {"num_params", "imagenet_top1", "loto_prior"}
    assert a["num_params"].idxmax().eq("vgg").all()
    res = E.correlate_many({**b, "lp_x_fu": R.load_all_scores("dataset", REF)["lp_x_fu"]}, truth)
    for r in res.values():
        assert r["weighted_tau"].between(-1, 1).all() and len(r) == 11
    assert R.study_sizes()["breastmnist"] == 200 and R.study_sizes()["organamnist"] == 1100
    assert R.display_name("lp + fu") == "LP + FU" and R.display_name("all 8") == "all 8 metrics"


def test_published_noise_ceiling_and_runs():
    runs = R.load_runs("architecture", REF, targets=("breastmnist", "retinamnist"))
    assert set(runs["source"]) == set(R.ARCHITECTURE_NAMES)
    assert (runs[runs.source == "resnet"].groupby("target").size() == 120).all()
    assert runs["duration_s"].gt(0).all()
    res = G.ground_truth_noise(runs, rules=["min_val_loss", "max_val_auc"], n_boot=20)
    s = res["summary"]
    assert 0 < s.at["min_val_loss", "ceiling"] < 1 and s.at["min_val_loss", "tau_full"] == pytest.approx(1.0)
    assert s.at["max_val_auc", "tau_full"] < 1
    derived = R.derive_ground_truth("architecture", "min_val_loss", REF, targets=("breastmnist", "retinamnist"))
    assert R.compare_tables(derived, R.load_ground_truth("architecture", REF), atol=1e-12).empty
    assert R._duration_seconds("1.5h") == 5400 and R._duration_seconds("18.4s") == pytest.approx(18.4)
    assert np.isnan(R._duration_seconds(np.nan))
    with pytest.raises(ValueError):
        R._duration_seconds("soon")


def test_published_loto_selection_of_the_metrics():
    truth = R.load_ground_truth("dataset", REF)
    scores = R.load_all_scores("dataset", REF)
    w = E.wide(E.tidy(E.correlate_many(scores, truth)))
    res = T.loto_selection(w, focus="lp_x_fu")
    assert res["summary"]["in_sample_best"] == "lp_x_fu"
    assert 0 <= res["summary"]["focus_chosen"] <= 11 and len(res["folds"]) == 11
    # every chosen candidate was the best on the other targets
    for t, row in res["folds"].iterrows():
        assert row["chosen"] == w.drop(index=t).mean().idxmax()
    combos = list(itertools.combinations(R.METRICS, 2))
    assert len(T.ensembles({m: scores[m] for m in R.METRICS}, sizes=(2,), include_all=False)) == len(combos)


# ----------------------------------------------------------------------------------------------------------
# verdicts in words (the Trust chapter's prose)


def test_metric_against_baseline_needs_a_strictly_higher_mean():
    assert T.metric_against_baseline(0.5, 0.4) == "is ahead of"
    assert T.metric_against_baseline(0.4, 0.4) == "does not beat"   # a tie: the free baseline is as good
    assert T.metric_against_baseline(0.3, 0.4) == "does not beat"
    assert T.metric_against_baseline(float("nan"), 0.4) == "does not beat"


def test_interval_verdict_separates_only_when_zero_is_outside():
    assert "excludes zero" in T.interval_verdict(0.01, 0.2)
    assert "excludes zero" in T.interval_verdict(-0.2, -0.01)
    assert "cannot separate" in T.interval_verdict(-0.1, 0.2)
    assert "cannot separate" in T.interval_verdict(0.0, 0.2)   # zero on the bound: not excluded


def test_cancellation_verdict_thresholds():
    assert "largely cancels" in T.cancellation_verdict(0.3)
    assert "only in part" in T.cancellation_verdict(0.5)
    assert "only in part" in T.cancellation_verdict(0.89)
    assert "does not cancel" in T.cancellation_verdict(0.9)
    assert "does not cancel" in T.cancellation_verdict(1.2)


# ----------------------------------------------------------------------------------------------------------
# reliability_verdict: what the metrics can be shown to do at a ground truth's reliability


def test_reliability_verdict_at_high_reliability_accounts_for_the_gap():
    text = T.reliability_verdict(0.8, 12, "LogME", 0.3, 0.1, 0.5, baseline="LOTO prior", diff_low=0.02,
                                 diff_high=0.2, n_other=5, n_worse=5, needed=4)
    # tau ceiling (2/pi) asin(sqrt(0.8)) = 0.705: 0.295 of the gap of 0.7 (42 %) is the ground truth's
    assert "split-half reliability of 0.80" in text and "about 0.89" in text and "about 0.70 on the scale" in text
    assert "a gap of 0.70), 0.30 (42%) is the ground truth's unreliability and 0.40 is the metric's own" in text
    assert "lies above zero, so it is shown to rank the sources better than chance" in text
    assert "shown to beat the best static baseline, LOTO prior" in text
    assert "all 5 other metrics are shown to be worse" in text
    assert "no longer the main limit, and what is shown here is not an artefact" in text


def test_reliability_verdict_at_low_reliability_blames_the_noise():
    text = T.reliability_verdict(0.3, 3, "LogME", 0.2, -0.1, 0.5, baseline="LOTO prior", diff_low=-0.2,
                                 diff_high=0.3, n_other=4, n_worse=0, needed=28)
    assert "includes zero, so it is not shown to rank the sources better than chance" in text
    assert "cannot be told apart from the best static baseline, LOTO prior" in text
    assert "none of the other 4 metrics is shown to be worse than it" in text
    assert "mostly seed noise" in text and "28 seeds would be needed for a reliability of 0.8" in text
    mid = T.reliability_verdict(0.6, 6, "LogME", 0.2, -0.1, 0.5, n_other=4, n_worse=1)
    assert "still hides part of any difference" in mid and "1 of the other 4 metrics is shown to be worse" in mid
    assert "2 of the other 4 metrics are shown" in T.reliability_verdict(0.6, 6, "LogME", 0.2, -0.1, 0.5,
                                                                           n_other=4, n_worse=2)
    top = T.reliability_verdict(0.9, 12, "LogME", 0.8, 0.6, 0.9)  # above the tau ceiling of 0.80
    assert "reaches that ceiling" in top
    below = T.reliability_verdict(0.9, 12, "LogME", -0.4, -0.6, -0.1, baseline="LOTO prior", diff_low=-0.9,
                                  diff_high=-0.1)
    assert "lies below zero" in below and "shown to be worse than the best static baseline" in below


def test_reliability_verdict_without_a_measured_reliability():
    for r, k in ((None, 1), (float("nan"), 1), (float("nan"), 3)):
        text = T.reliability_verdict(r, k, "LogME", 0.3, 0.1, 0.5)
        assert "reliability of the ground truth cannot be measured" in text and "cannot be said" in text
    assert "With one seed" in T.reliability_verdict(None, 1, "LogME", 0.3, 0.1, 0.5)
    assert "does not agree with itself" in T.reliability_verdict(-0.2, 4, "LogME", 0.3, 0.1, 0.5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(reliability=0.5, replicates=1), "cannot have been measured"),
    (dict(replicates=0), "positive integer"),
    (dict(reliability=1.5), r"\[-1, 1\]"),
    (dict(best_low=0.6), "low <= high"),
    (dict(best_mean=float("nan")), "finite mean"),
    (dict(baseline="LOTO prior"), "finite interval"),
    (dict(n_other=2, n_worse=3), "n_worse"),
    (dict(low=0.9), "low < level"),
])
def test_reliability_verdict_bad_input_names_the_problem(kwargs, message):
    args = dict(reliability=0.5, replicates=4, best_metric="LogME", best_mean=0.3, best_low=0.1, best_high=0.5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        T.reliability_verdict(**args)


def test_full_coverage_keeps_the_metrics_that_rank_every_source():
    long = pd.DataFrame({"metric": ["a", "a", "leep", "leep", "b", "b"], "target": ["t1", "t2"] * 3,
                         "n_sources": [9, 10, 4, 5, 9, 10]})
    assert T.full_coverage(long) == ["a", "b"]
    assert T.full_coverage(long, ["b", "leep", "zzz"]) == ["b"]
    with pytest.raises(ValueError, match="empty"):
        T.full_coverage(long.iloc[:0])
