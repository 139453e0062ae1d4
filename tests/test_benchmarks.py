"""helpers.benchmarks: the tidy format and its validation, the conventions against their authors' numbers,
the loaders and the command."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from helpers import benchmarks as B
from helpers.benchmarks.conventions import pooled_components
from helpers.paths import PROJECT_ROOT


def _toy(n_targets=3, n_cand=5, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(n_targets):
        truth = rng.random(n_cand)
        for c in range(n_cand):
            rows.append({"target": f"t{t}", "candidate": f"c{c}", "truth": truth[c],
                         "a": truth[c] + 0.1 * rng.random(), "b": rng.random()})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------
# conventions reproduce published numbers


def test_chaves_pooled_reproduces_overall_values():
    df = B.load("chaves2024")
    pooled = B.summarize(df, "pooled", constant="zero").set_index("metric")["weighted_tau"]
    # Chaves et al. TMLR 2024, overall grouped weighted tau (quoted in issue 21)
    for metric, published in {"etran_energy_score": 0.6677, "ncti_score": 0.6634, "imagenet": 0.6455,
                              "sfda_score": 0.2071}.items():
        assert round(pooled[metric], 4) == published, metric
    mean = B.summarize(df, "scipy", constant="zero").set_index("metric")["weighted_tau"]
    assert round(mean["sfda_score"], 4) == 0.2192  # SFDA ties its scores on flowers102: pooled != mean
    untied = [m for m in pooled.index if m != "sfda_score"]
    np.testing.assert_allclose(pooled[untied], mean[untied], atol=1e-12)


def test_modelspider_truth_weighted_reproduces_readme_table():
    df = B.load("modelspider")
    per = B.correlations(df, "truth_weighted")
    pub = B.loaders.modelspider_published()
    labels = B.loaders.MODELSPIDER_LABELS
    matched, differ = 0, []
    for _, r in per.iterrows():
        p = pub.at[labels[r["metric"]], r["target"] if r["target"] != "Pet" else "Pet"]
        if abs(r["weighted_tau"] - p) <= 0.0005 + 1e-9:
            matched += 1
        else:
            differ.append((r["target"], r["metric"]))
    assert len(per) == 72
    assert matched >= 69
    # the three Aircraft cells whose published scores do not give the README value under any convention
    assert sorted(differ) == [("Aircraft", "LEEP"), ("Aircraft", "LogME"), ("Aircraft", "NLEEP")]
    # and the scipy default does not reproduce the table (the convention matters)
    scipy_per = B.correlations(df, "scipy")
    hits = sum(abs(r["weighted_tau"] - pub.at[labels[r["metric"]], r["target"]]) <= 0.0005
               for _, r in scipy_per.iterrows())
    assert hits < 60


def test_dovile_means_reproduced():
    from helpers import reference as ref

    s = B.summarize(B.load("dovile2024"))
    n = 0
    for _, r in s.iterrows():
        published = ref.PUBLISHED_MEANS[r["scenario"]].get(r["metric"])
        if published is not None:
            assert round(r["weighted_tau"], 3) == published, (r["scenario"], r["metric"])
            n += 1
    assert n == 14


def _brute_pooled(groups, weighted=True):
    c = d = tx = ty = W = 0.0
    for x, y in groups:
        n = len(x)
        rx = np.empty(n)
        rx[np.lexsort((y, x))[::-1]] = np.arange(n)
        ry = np.empty(n)
        ry[np.lexsort((x, y))[::-1]] = np.arange(n)
        for i in range(n):
            for j in range(i + 1, n):
                w = (1 / (1 + rx[i]) + 1 / (1 + rx[j]) + 1 / (1 + ry[i]) + 1 / (1 + ry[j])) if weighted else 1.0
                s = np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
                if s > 0:
                    c += w
                elif s < 0:
                    d += w
                else:
                    tx += w * (x[i] == x[j])
                    ty += w * (y[i] == y[j])
                W += w
    return (c - d) / np.sqrt((W - tx) * (W - ty))


def test_pooled_tau_against_pairwise_definition_with_ties():
    rng = np.random.default_rng(3)
    groups = [(rng.integers(0, 4, 9).astype(float), rng.integers(0, 5, 9).astype(float)) for _ in range(4)]
    for weighted in (True, False):
        assert B.pooled_tau(groups, weighted) == pytest.approx(_brute_pooled(groups, weighted), abs=1e-12)
    # one untied group: the pooled tau is scipy's weighted tau
    from scipy import stats
    x, y = rng.random(8), rng.random(8)
    assert B.pooled_tau([(x, y)]) == pytest.approx(stats.weightedtau(x, y).statistic, abs=1e-12)
    assert pooled_components(x[:1], y[:1]).sum() == 0


def test_constant_scores_nan_or_zero():
    assert np.isnan(B.pair_taus([1, 1, 1], [1, 2, 3])[0])
    assert B.pair_taus([1, 1, 1], [1, 2, 3], constant="zero") == (0.0, 0.0)
    assert np.isnan(B.pooled_tau([([2, 2, 2], [1, 2, 3])]))
    assert B.pooled_tau([([2, 2, 2], [1, 2, 3])], constant="zero") == 0.0
    with pytest.raises(ValueError, match="unknown convention"):
        B.pair_taus([1, 2, 3], [1, 2, 3], convention="spearman")


# ----------------------------------------------------------------------------------------------------
# format and validation


def _long(df):
    return B.read_wide(df, ["a", "b"])


def test_read_wide_and_long_agree():
    wide = _toy()
    a = B.correlations(_long(wide))
    long = wide.melt(id_vars=["target", "candidate", "truth"], var_name="m", value_name="s")
    b = B.correlations(B.read_long(long, metric="m", score="s"))
    pd.testing.assert_frame_equal(a.sort_values(["target", "metric"]).reset_index(drop=True),
                                  b.sort_values(["target", "metric"]).reset_index(drop=True))


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.drop(columns="truth"), "column 'truth'"),
    (lambda d: d.assign(truth=d["truth"].where(d.index != 4)), "has a score for metric 'a' but no truth"),
    (lambda d: d.assign(truth=d["truth"].astype(object).where(d.index != 2, "high")),
     "column 'truth' is not numeric at data row 3 .*'high'"),
    (lambda d: d.assign(a=d["a"].astype(object).where(d.index != 1, "x")), "column 'a' is not numeric at data row 2"),
    (lambda d: pd.concat([d, d.iloc[[0]]], ignore_index=True), "duplicate"),
    (lambda d: d[~((d.target == "t1") & d.candidate.isin(["c0", "c1", "c2"]))], "target 't1'.*2 candidate"),
])
def test_validation_errors_name_the_problem(mutate, message):
    with pytest.raises(B.BenchmarkError, match=message):
        _long(mutate(_toy()))


def test_scores_without_truth_are_named():
    wide = _toy()
    scores = wide.melt(id_vars=["target", "candidate"], value_vars=["a"], var_name="metric", value_name="score")
    truth = wide[["target", "candidate", "truth"]]
    with pytest.raises(B.BenchmarkError, match="'c4' of target 't0' has a score .* but no truth"):
        B.from_tables(scores, truth[~((truth.target == "t0") & (truth.candidate == "c4"))])
    assert len(B.from_tables(scores, truth)) == len(scores)


def test_lower_is_better_negates():
    wide = _toy()
    wide["neg_a"] = -wide["a"]
    r = B.evaluate(wide, scores=["a", "neg_a"], lower_is_better=["neg_a"])
    allr = r[r.target == "ALL"].set_index("metric")
    assert allr.at["a", "weighted_tau"] == pytest.approx(allr.at["neg_a", "weighted_tau"])
    with pytest.raises(B.BenchmarkError, match="not in the table"):
        B.evaluate(wide, scores=["a"], lower_is_better=["zzz"])


def test_evaluate_output_shape_and_summary():
    r = B.evaluate(_toy(), scores="a,b", convention="pooled")
    assert list(r.columns) == ["target", "metric", "weighted_tau", "kendall_tau", "n_candidates"]
    assert len(r) == 3 * 2 + 2
    assert set(r.loc[r.target == "ALL", "metric"]) == {"a", "b"}
    a = r[(r.metric == "a") & (r.target != "ALL")]
    assert (a["n_candidates"] == 5).all()
    assert r.loc[(r.target == "ALL") & (r.metric == "a"), "weighted_tau"].item() > 0.5


def test_bootstrap_point_mean_and_pairing():
    df = _long(_toy(n_targets=4, n_cand=8))
    s_point = B.bootstrap_summary(df, n_boot=50, seed=1)
    s_mean = B.bootstrap_summary(df, n_boot=50, seed=1, statistic="mean")
    np.testing.assert_allclose(s_point["value"], s_point["point"])
    np.testing.assert_allclose(s_mean["value"], s_mean["boot_mean"])
    assert (s_point["ci_low"] <= s_point["ci_high"]).all()
    reps = B.bootstrap_replicates(df, n_boot=50, seed=1)[("benchmark", "default")]
    point = s_point.set_index("metric")["point"]
    d = B.paired_differences(reps, point, "a")
    assert d.loc["a"].tolist()[:3] == [0, 0, 0]
    assert d.at["b", "difference"] < 0
    cand = B.bootstrap_summary(df, n_boot=20, seed=1, resample="candidates")
    np.testing.assert_allclose(cand["point"], s_point["point"])
    assert not np.allclose(cand["ci_low"], s_point["ci_low"])
    pooled = B.bootstrap_summary(df, "pooled", n_boot=20, seed=1)
    assert (pooled["ci_low"] <= pooled["ci_high"]).all()


def test_loaders_hold_what_they_say():
    sizes = {"chaves2024": (11, 10, 14), "modelspider": (8, 10, 9), "chaves2023": (3, 10, 7),
             "schlimme2023": (12, 4, 3), "juodelyte2023": (7, 3, 1), "stable_transfer": (9, 19, 5)}
    for name, (n_t, n_c, n_m) in sizes.items():
        df = B.load(name)
        assert (df["target"].nunique(), df["candidate"].nunique(), df["metric"].nunique()) == (n_t, n_c, n_m), name
    reps = B.load_replicates("juodelyte2023")
    assert reps.groupby(["target", "candidate"]).size().eq(5).all()
    truth = B.load("juodelyte2023").set_index(["target", "candidate"])["truth"]
    np.testing.assert_allclose(reps.groupby(["target", "candidate"])["truth"].mean().reindex(truth.index), truth)
    with pytest.raises(B.BenchmarkError, match="unknown benchmark"):
        B.load("nope")


# ----------------------------------------------------------------------------------------------------
# the command


def _run(*args):
    return subprocess.run([sys.executable, "-m", "helpers.benchmarks", *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT)


def test_command_wide_and_long(tmp_path):
    wide = _toy()
    path, out = tmp_path / "t.csv", tmp_path / "o.csv"
    wide.to_csv(path, index=False)
    p = _run("evaluate", str(path), "--target", "target", "--candidate", "candidate", "--truth", "truth",
             "--scores", "a,b", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert "weighted tau" in p.stdout
    res = pd.read_csv(out)
    pd.testing.assert_frame_equal(res, B.evaluate(wide, scores=["a", "b"]).reset_index(drop=True),
                                  check_dtype=False)
    long = wide.melt(id_vars=["target", "candidate", "truth"], var_name="m", value_name="s")
    long.to_csv(path, index=False)
    p = _run("evaluate", str(path), "--target", "target", "--candidate", "candidate", "--truth", "truth",
             "--metric", "m", "--score", "s", "--convention", "truth_weighted")
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("args, message", [
    (["--scores", "a,zzz"], "column 'zzz'"),
    (["--scores", "a", "--target", "nope"], "column 'nope'"),
    (["--metric", "m"], "both --metric and --score"),
    (["--scores", "a", "--convention", "bogus"], "invalid choice"),
    ([], "--metric COL --score COL"),
])
def test_command_bad_input_exits_2_with_one_line(tmp_path, args, message):
    path = tmp_path / "t.csv"
    _toy().to_csv(path, index=False)
    base = ["evaluate", str(path), "--target", "target", "--candidate", "candidate", "--truth", "truth"]
    if "--target" in args:
        base = ["evaluate", str(path), "--candidate", "candidate", "--truth", "truth"]
    p = _run(*base, *args)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert message in p.stderr


def test_command_missing_file():
    p = _run("evaluate", "/nonexistent.csv", "--target", "t", "--candidate", "c", "--truth", "y", "--scores", "a")
    assert p.returncode == 2 and "no such file" in p.stderr and "Traceback" not in p.stderr


# ----------------------------------------------------------------------------------------------------
# across benchmarks (helpers.benchmarks.evidence)


def test_loto_prior_matches_the_trust_chapters_rule():
    from helpers.benchmarks import evidence as V
    from helpers.evaluation_trust import loto_prior

    d = B.load("dovile2024")
    d = d[d.scenario == "architecture"]
    x = V.with_loto_prior(d)
    x = x[x.metric == "loto_prior"].pivot(index="candidate", columns="target", values="score")
    truth = d.drop_duplicates(["target", "candidate"]).pivot(index="candidate", columns="target", values="truth")
    ref = loto_prior(truth)
    np.testing.assert_allclose(x.to_numpy(), ref.loc[x.index, x.columns].to_numpy(), atol=1e-12)


def test_noise_ceiling_from_replicates():
    from helpers.benchmarks import evidence as V

    rng = np.random.default_rng(0)
    base = rng.random(6)
    rows = [{"benchmark": "b", "scenario": "s", "target": "t", "candidate": f"c{i}", "replicate": r,
             "truth": base[i]} for r in range(3) for i in range(6)]
    same = V.noise_ceiling(pd.DataFrame(rows))
    assert same.loc[0, "seed_pairs"] == pytest.approx(1.0) and same.loc[0, "one_vs_rest"] == pytest.approx(1.0)
    noisy = pd.DataFrame(rows).assign(truth=lambda d: d["truth"] + rng.normal(0, 0.5, len(d)))
    got = V.noise_ceiling(noisy)
    assert got.loc[0, "seed_pairs"] < 1 and got.loc[0, "n_replicates"] == 3


def test_combine_weighs_groups_equally_and_decision_row():
    from helpers.benchmarks import evidence as V

    units = pd.DataFrame([
        ("b1", "s", "LogME", 0.8, 40, "g1"), ("b2", "s", "LogME", 0.6, 3, "g1"), ("b3", "s", "LogME", 0.1, 3, "g2"),
        ("b1", "s", "LOTO prior", 0.5, 40, "g1"), ("b2", "s", "LOTO prior", 0.5, 3, "g1"),
        ("b3", "s", "LOTO prior", 0.5, 3, "g2"), ("b3", "s", "OTCE", 0.9, 3, "g2"),
    ], columns=["benchmark", "scenario", "scorer", "mean", "n_targets", "group"])
    comb = V.combine(units)
    assert comb.at["LogME", "pooled"] == pytest.approx((0.7 + 0.1) / 2)
    assert comb.at["LogME", "n_groups"] == 2 and comb.at["LogME", "n_targets"] == 46
    row = V.decision_row(units)
    assert row["score"] == "LogME" and row["baseline"] == "LOTO prior"  # OTCE: one unit of three
    assert row["wins"] == "2 of 3" and row["recommend"] == "LogME"
    assert row["top_single"].startswith("OTCE 0.900")
    assert V.decision_row(units.iloc[0:0])["units"] == 0
    assert V.scorer_name("logme_score") == V.scorer_name("LogME") == "LogME"


def test_chaves_per_dataset_cells_equal_scipy_on_the_authors_table():
    """All 154 (data set, scorer) cells of Chaves et al.: our long-format pipeline gives exactly scipy's
    weightedtau(score, truth) and kendalltau on the authors' rows (constant scores count 0, as in their code)."""
    from scipy import stats

    df = B.load("chaves2024")
    per = B.correlations(df, "scipy", constant="zero").set_index(["target", "metric"])
    assert len(per) == 154
    for (t, m), g in df.groupby(["target", "metric"]):
        x, y = g["score"].to_numpy(float), g["truth"].to_numpy(float)
        assert per.at[(t, m), "weighted_tau"] == pytest.approx(stats.weightedtau(x, y).statistic, abs=1e-12)
        assert per.at[(t, m), "kendall_tau"] == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)


# ----------------------------------------------------------------------------------------------------
# the loaders added for issue 21's remaining sources: shapes, cells against the copied files, duplicates


@pytest.mark.parametrize("name, scenario, n_targets, per_target, n_metrics", [
    ("stable_transfer_seg", "dataset_segmentation", 17, 16, 5),
    ("model_selection_nlp", "language_model", 8, 6, 20),
    ("sfda", "supervised_cnn", 11, 11, 1),
    ("sfda", "self_supervised", 11, 12, 1),
    ("emms", "supervised_cnn", 11, 11, 1),
    ("emms", "vit", 11, 13, 1),
    ("emms", "captioning", 5, 9, 1),
    ("parc", "model_bank", 7, 67, 1),
])
def test_new_loaders_shapes(name, scenario, n_targets, per_target, n_metrics):
    df = B.load(name)
    g = df[df["scenario"] == scenario]
    assert g["target"].nunique() == n_targets
    assert g.groupby("target")["candidate"].nunique().eq(per_target).all()
    assert g["metric"].nunique() == n_metrics
    B.validate(df)  # the loader's table passes validation as returned


def test_transferability_graph_shape_and_static_baseline():
    df = B.load("transferability_graph")
    assert df["target"].nunique() == 13 and set(df["metric"]) == {"loto_prior", "num_params"}
    per = df[df.metric == "num_params"].groupby("target")["candidate"].nunique()
    assert per.max() == 180 and per.min() == 112  # food101 has 112 runs
    assert df.loc[df.medical, "target"].unique().tolist() == ["diabetic_retinopathy_detection"]
    vit = df[(df.target == "cifar100") & (df.candidate == "google/vit-base-patch16-224") & (df.metric == "num_params")]
    assert vit["truth"].item() == pytest.approx(0.9172666668891908)
    meta = pd.read_csv(PROJECT_ROOT / "data/reference/transferability_graph/model_config_dataset.csv")
    meta = meta.set_index("model")
    assert vit["score"].item() == meta.at["google/vit-base-patch16-224", "number_of_parameters"]


def test_new_loaders_known_cells():
    """Cells read back against the authors' files (values as in the source repositories)."""
    def cell(df, **kw):
        m = np.logical_and.reduce([df[k] == v for k, v in kw.items()])
        return df[m]

    seg = B.load("stable_transfer_seg")  # row 610 of source_datasets_table.csv
    r = cell(seg, metric="gbc", candidate="scannet", target="ade")
    assert r["score"].item() == -1509.1784510639136 and r["truth"].item() == 0.2047383189201355

    nlp = B.load("model_selection_nlp")
    r = cell(nlp, target="cola", candidate="roberta-base", metric="GBC")
    assert r["truth"].item() == 63.6  # TUNED_RESULTS["cola"][4]
    assert cell(nlp, target="cola", candidate="bert-base-uncased", metric="GBC")["score"].item() == \
        pytest.approx(-0.3868755408109916)
    # EarlyStop-500 on CoLA: the mean of the 5 repeats equals the file's avg_score
    assert cell(nlp, target="cola", candidate="bert-base-uncased", metric="EarlyStop-500")["score"].item() == \
        pytest.approx(0.5132892904210709, abs=1e-12)
    assert not nlp.loc[nlp.metric == "PACTran-1-10", "higher_is_better"].any()
    assert nlp.loc[nlp.metric != "PACTran-1-10", "higher_is_better"].all()

    sfda = B.load("sfda")
    assert cell(sfda, scenario="supervised_cnn", target="aircraft", candidate="mnasnet1_0")["truth"].iloc[0] == 66.48
    assert cell(sfda, scenario="self_supervised", target="cifar100", candidate="byol")["truth"].iloc[0] == 83.86
    pub = B.loaders.sfda_published()
    assert pub.shape == (5, 11) and pub.at["SFDA", "Aircraft"] == 0.615 and pub.at["LEEP", "Flowers"] == -0.243
    assert set(pub.columns) == set(B.loaders.SFDA_README_TARGETS)

    emms = B.load("emms")
    assert cell(emms, scenario="vit", target="aircraft", candidate="swin_s")["truth"].iloc[0] == 83.24
    assert cell(emms, scenario="captioning", target="flickr8k", candidate="vit_bert")["truth"].iloc[0] == 0.18513

    parc = B.load("parc")
    assert cell(parc, target="cifar10", candidate="resnet50/panoptic-rcnn_fpn_139514544")["truth"].iloc[0] == 89.1


def test_ground_truth_only_tables_carry_the_loto_prior():
    from helpers.benchmarks import evidence as V

    df = B.load("sfda")
    again = V.with_loto_prior(df)  # recomputed, not duplicated
    assert len(again) == len(df)
    np.testing.assert_allclose(again.sort_values(["scenario", "target", "candidate"])["score"].to_numpy(),
                               df.sort_values(["scenario", "target", "candidate"])["score"].to_numpy())


def test_duplicate_targets_found_and_dropped():
    from helpers.benchmarks import evidence as V

    both = pd.concat([B.load("sfda"), B.load("emms")], ignore_index=True)
    dups = V.find_duplicate_targets(both)
    # EMMS's CNN table is SFDA's group 1, target for target; nothing else is a copy
    assert set(dups["benchmark"] + "/" + dups["scenario"]) == {"emms/supervised_cnn"}
    assert len(dups) == 11 and (dups["copy_of"] == "sfda/supervised_cnn/" + dups["target"]).all()
    kept = V.drop_duplicate_targets(both, dups)
    assert not ((kept.benchmark == "emms") & (kept.scenario == "supervised_cnn")).any()
    assert len(kept) == len(both) - 121

    # a copy on another scale (0-1 against %) under another target name is found; a changed value is not
    rows = [("a", "s", "t1", f"m{i}", v) for i, v in enumerate([81.5, 70.25, 90.0, 66.1])]
    rows += [("b", "s", "T-one", f"M{i}", v / 100) for i, v in enumerate([81.5, 70.25, 90.0, 66.1])]
    rows += [("c", "s", "t1", f"m{i}", v) for i, v in enumerate([81.5, 70.25, 90.0, 66.3])]
    toy = pd.DataFrame(rows, columns=["benchmark", "scenario", "target", "candidate", "truth"])
    toy = toy.assign(metric="x", score=0.0)
    d = V.find_duplicate_targets(toy)
    assert d[["benchmark", "target", "copy_of"]].values.tolist() == [["b", "T-one", "a/s/t1"]]


# ----------------------------------------------------------------------------------------------------------
# the reliability of a replicate table, and the book's own benchmark in the long format

def _replicates(values: dict) -> pd.DataFrame:
    """``{target: (rep1 values, rep2 values)}`` over candidates a, b, c, d -> a replicate table."""
    rows = []
    for t, reps in values.items():
        for r, vals in enumerate(reps):
            rows += [{"benchmark": "x", "scenario": "s", "target": t, "candidate": c, "replicate": r, "truth": v}
                     for c, v in zip("abcd", vals)]
    return pd.DataFrame(rows)


def test_replicate_reliability_known_values():
    from helpers.benchmarks.evidence import replicate_reliability

    high = replicate_reliability(_replicates({"t1": ([1, 2, 3, 4], [1, 2, 3, 4])})).iloc[0]
    assert high["split_half"] == pytest.approx(1.0) and high["r1"] == pytest.approx(1.0)
    # (1, 2, 3, 4) against (2, 4, 1, 3): Pearson 0, so a mean of 2 replicates has no reliability
    low = replicate_reliability(_replicates({"t1": ([1, 2, 3, 4], [2, 4, 1, 3])})).iloc[0]
    assert low["split_half"] == pytest.approx(0.0) and low["r1"] == pytest.approx(0.0)
    both = replicate_reliability(_replicates({"t1": ([1, 2, 3, 4], [1, 2, 3, 4]),
                                              "t2": ([1, 2, 3, 4], [2, 4, 1, 3])})).iloc[0]
    # the mean half-correlation 0.5 stepped up: 2 * 0.5 / 1.5
    assert both["split_half"] == pytest.approx(2 / 3) and both["targets"] == 2
    assert (both["split_half_min"], both["split_half_max"]) == pytest.approx((0.0, 1.0))
    assert both["r1"] == pytest.approx(0.5) and both["reliability_of_mean"] == pytest.approx(2 / 3)


def test_replicate_reliability_skips_what_cannot_be_measured():
    from helpers.benchmarks.evidence import replicate_reliability

    one = _replicates({"t1": ([1, 2, 3, 4],)})
    assert replicate_reliability(one).empty                      # one replicate: nothing to measure
    holes = _replicates({"t1": ([1, 2, 3, 4], [1, 2, 3, np.nan])}).dropna()
    assert replicate_reliability(holes).iloc[0]["split_half"] == pytest.approx(1.0)  # d, missing once, left out
    with pytest.raises(B.BenchmarkError, match="missing column"):
        replicate_reliability(one.drop(columns="replicate"))


def test_book_benchmark_leaves_out_the_targets_own_source_and_unavailable_sources():
    from helpers.benchmarks.evidence import book_benchmark

    src = ["t1", "t2", "a", "b", "c", "gone"]
    truth = pd.DataFrame({"t1": [0.9, 0.6, 0.7, 0.5, 0.8, np.nan], "t2": [0.4, 0.9, 0.6, 0.7, 0.5, np.nan]},
                         index=pd.Index(src, name="source"))
    score = pd.DataFrame({"t1": [9, 1, 2, 3, 4, 5.0], "t2": [1, 9, 2, 3, 4, 5.0]}, index=src)
    seeds = pd.DataFrame([{"target": t, "source": s, "seed": k, "test_auc": truth.at[s, t] + 0.01 * k}
                          for t in truth.columns for s in src[:5] for k in (0, 1)])
    table, reps = book_benchmark(truth, {"logme": score}, seeds, benchmark="book_quick")
    assert set(table["benchmark"]) == {"book_quick"} and table["medical"].all()
    assert sorted(table.loc[table.target == "t1", "candidate"]) == ["a", "b", "c", "t2"]   # no t1, no 'gone'
    assert set(zip(reps["target"], reps["candidate"])) == set(zip(table["target"], table["candidate"]))
    assert reps["replicate"].nunique() == 2 and len(reps) == 16
    assert book_benchmark(truth, {"logme": score})[1] is None
    with pytest.raises(B.BenchmarkError, match="lacks the column"):
        book_benchmark(truth, {"logme": score}, seeds.drop(columns="test_auc"))
    with pytest.raises(B.BenchmarkError, match="candidate"):   # 2 candidates left on each target
        book_benchmark(truth.iloc[[0, 1, 2]], {"logme": score})
    with pytest.raises(B.BenchmarkError, match="score table"):
        book_benchmark(truth, {})


def test_read_book_names_the_missing_files_and_chapters(tmp_path):
    from helpers.benchmarks.evidence import read_book

    pd.DataFrame({"source": ["a"], "t": [0.5]}).to_csv(tmp_path / "ground_truth.csv", index=False)
    with pytest.raises(FileNotFoundError, match=r"scores\.csv \(the Scoring"):
        read_book(tmp_path)
