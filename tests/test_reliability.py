"""helpers.reliability: split-half reliability with Spearman-Brown, the one-replicate reliability (ICC(3,1))
with its bootstrap interval, the replicates needed for a level; crafted cases with known answers, input errors,
and the numbers of the ground-truth-reliability study recomputed from its committed per-seed tables."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import evaluation
from helpers import reliability as R

STUDY = Path(__file__).resolve().parent.parent / "results" / "reference" / "ground_truth_reliability"


def crafted(n_targets=2, n_sources=8, n_reps=6, signal=1.0, noise=0.0, seed=0, rep_shift=0.0):
    """value = source effect (sd ``signal``) + replicate shift + independent noise (sd ``noise``)."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(n_targets):
        effect = rng.normal(0, signal, n_sources)
        shift = rng.normal(0, rep_shift, n_reps)
        for s in range(n_sources):
            for r in range(n_reps):
                rows.append({"target": f"t{t}", "source": f"s{s}", "replicate": r,
                             "value": effect[s] + shift[r] + rng.normal(0, noise)})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------------
# formulas


def test_spearman_brown_formula_and_its_inverse():
    assert R.spearman_brown(0.5, 2) == pytest.approx(2 / 3)
    assert R.spearman_brown(0.2, 5) == pytest.approx(5 * 0.2 / (1 + 4 * 0.2))
    r6 = R.spearman_brown(0.15, 6)
    assert R.spearman_brown(r6, 1 / 6) == pytest.approx(0.15)
    assert R.spearman_brown(1.0, 3) == pytest.approx(1.0)
    assert R.spearman_brown(0.0, 10) == 0.0
    with pytest.raises(ValueError, match="positive"):
        R.spearman_brown(0.5, 0)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        R.spearman_brown(1.5, 2)


def test_replicates_needed_solves_the_prophecy():
    assert R.replicates_needed(0.25, 0.8) == 12          # 0.8 * 0.75 / (0.25 * 0.2) = 12 exactly
    assert R.replicates_needed(0.38, 0.8) == 7           # 6.53 -> 7
    assert R.replicates_needed(0.8, 0.8) == 1
    assert R.replicates_needed(0.95, 0.8) == 1
    assert R.replicates_needed(0.0, 0.8) == math.inf
    assert R.replicates_needed(-0.1, 0.8) == math.inf
    for r1 in (0.05, 0.1, 0.3, 0.6):                     # the answer reaches the level, one fewer does not
        n = R.replicates_needed(r1, 0.8)
        assert R.spearman_brown(r1, n) >= 0.8 - 1e-12
        if n > 1:
            assert R.spearman_brown(r1, n - 1) < 0.8
    for bad in (0.0, 1.0, 1.2):
        with pytest.raises(ValueError, match="level"):
            R.replicates_needed(0.3, bad)
    with pytest.raises(ValueError, match="finite"):
        R.replicates_needed(float("nan"))


def test_balanced_splits_are_disjoint_and_complete():
    assert len(R.balanced_splits(6)) == 10               # C(6,3) / 2
    assert len(R.balanced_splits(6, 2)) == 45            # C(6,2) C(4,2) / 2
    assert len(R.balanced_splits(4)) == 3
    assert len(R.balanced_splits(3)) == 3                # 1 vs 1, the third replicate unused
    for a, b in R.balanced_splits(6, 2):
        assert len(a) == len(b) == 2 and not set(a) & set(b)
    sampled = R.balanced_splits(20, max_splits=50, seed=3)
    assert len(sampled) == 50 and len({frozenset(p) for p in sampled}) == 50
    assert sampled == R.balanced_splits(20, max_splits=50, seed=3)
    with pytest.raises(ValueError, match="half"):
        R.balanced_splits(4, 3)


def test_icc_consistency_ignores_a_shift_of_a_replicate():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(10, 4))
    shifted = x + np.array([0.0, 5.0, -3.0, 1.0])
    assert R.icc_consistency(shifted) == pytest.approx(R.icc_consistency(x))
    assert R.icc_consistency(np.repeat(np.arange(5.0)[:, None], 3, axis=1)) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------------
# reliability on crafted cases with known answers


def test_identical_replicates_are_perfectly_reliable():
    t = crafted(noise=0.0)
    sh = R.split_half_reliability(t)
    assert sh.overall == pytest.approx(1.0)
    assert np.allclose(sh.per_target["reliability"], 1.0)
    one = R.one_seed_reliability(t, n_boot=50)
    assert one.overall == pytest.approx(1.0) and one.low == pytest.approx(1.0)
    assert R.replicates_needed(one.overall) == 1


def test_a_shift_shared_by_all_sources_costs_nothing():
    t = crafted(noise=0.0, rep_shift=3.0)
    assert R.split_half_reliability(t).overall == pytest.approx(1.0)
    assert R.one_seed_reliability(t, n_boot=20).overall == pytest.approx(1.0)


def test_independent_noise_is_unreliable():
    t = crafted(n_targets=3, n_sources=300, n_reps=6, signal=0.0, noise=1.0, seed=2)
    sh = R.split_half_reliability(t)
    one = R.one_seed_reliability(t, n_boot=200, seed=0)
    assert abs(sh.overall) < 0.1
    assert abs(one.overall) < 0.05
    assert one.low < 0 < one.high


def test_known_signal_to_noise_gives_the_prophesied_reliability():
    # equal source and noise variance: one replicate 0.5, a mean of 4 replicates 0.8
    t = crafted(n_targets=3, n_sources=400, n_reps=4, signal=1.0, noise=1.0, seed=5)
    one = R.one_seed_reliability(t, n_boot=200)
    assert one.overall == pytest.approx(0.5, abs=0.05)
    assert one.low < one.overall < one.high
    sh = R.split_half_reliability(t)
    assert sh.n == 4
    assert sh.overall == pytest.approx(0.8, abs=0.04)
    assert sh.per_target["r1"].mean() == pytest.approx(0.5, abs=0.05)
    assert R.split_half_reliability(t, method="spearman").overall == pytest.approx(0.8, abs=0.05)


def test_same_inputs_same_answer_and_the_seed_moves_only_the_interval():
    t = crafted(signal=1.0, noise=1.0, seed=9, n_sources=12)
    a, b = R.one_seed_reliability(t, n_boot=300, seed=4), R.one_seed_reliability(t, n_boot=300, seed=4)
    assert (a.overall, a.low, a.high) == (b.overall, b.low, b.high)
    pd.testing.assert_frame_equal(a.per_target, b.per_target)
    c = R.one_seed_reliability(t, n_boot=300, seed=5)
    assert c.overall == a.overall and (c.low, c.high) != (a.low, a.high)
    shuffled = t.sample(frac=1.0, random_state=0)
    assert R.split_half_reliability(shuffled).overall == pytest.approx(R.split_half_reliability(t).overall)


def test_the_targets_own_source_is_left_out():
    t = crafted(noise=0.3, n_targets=1, seed=3).replace({"target": {"t0": "breastmnist"}})
    wild = pd.DataFrame({"target": "breastmnist", "source": "BreastMNIST", "replicate": range(6),
                         "value": [100.0, -100.0, 50.0, -50.0, 7.0, -7.0]})
    both = pd.concat([t, wild])
    assert R.split_half_reliability(both).overall == pytest.approx(R.split_half_reliability(t).overall)
    assert R.split_half_reliability(both, exclude_self=False).overall != pytest.approx(
        R.split_half_reliability(t).overall)


def test_custom_column_names_and_the_wide_form():
    wide = pd.DataFrame({"target": ["a"] * 4, "source": list("wxyz"), "0": [1, 2, 3, 4], "1": [1, 2, 3, 5]})
    tidy = R.tidy_replicates(wide)
    assert list(tidy.columns) == list(R.COLUMNS) and len(tidy) == 8
    renamed = tidy.rename(columns={"replicate": "seed", "value": "test_auc"})
    sh = R.split_half_reliability(renamed, replicate="seed", value="test_auc")
    assert sh.overall == pytest.approx(R.split_half_reliability(tidy).overall)


# ------------------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t.assign(value=t["value"].where(t.index != 3, np.nan)), "NaN or infinite"),
    (lambda t: t.drop(index=5), "lack replicates"),
    (lambda t: t[t["replicate"] == 0], "at least 2 are needed"),
    (lambda t: t[t["source"].isin(["s0", "s1"])], "at least 3 are needed"),
    (lambda t: pd.concat([t, t.head(1)]), "repeated"),
    (lambda t: t.drop(columns="replicate"), "lacks the column"),
    (lambda t: t.assign(value="high"), "numeric"),
    (lambda t: t.iloc[0:0], "empty"),
])
def test_bad_input_is_a_clear_error(mutate, message):
    t = crafted(noise=0.5)
    with pytest.raises(ValueError, match=message):
        R.split_half_reliability(mutate(t))
    with pytest.raises(ValueError, match=message):
        R.one_seed_reliability(mutate(t), n_boot=5)


def test_other_bad_arguments():
    t = crafted(noise=0.5)
    with pytest.raises(ValueError, match="method"):
        R.split_half_reliability(t, method="kendall")
    with pytest.raises(ValueError, match="half"):
        R.split_half_reliability(t, half=4)
    with pytest.raises(ValueError, match="ci"):
        R.one_seed_reliability(t, ci=1.5)
    with pytest.raises(ValueError, match="DataFrame"):
        R.split_half_reliability(t.to_numpy())


def test_reexported_from_evaluation():
    for name in ("split_half_reliability", "one_seed_reliability", "replicates_needed", "spearman_brown"):
        assert getattr(evaluation, name) is getattr(R, name)


# ------------------------------------------------------------------------------------------------------
# the study's table, recomputed from its per-seed tables


def _study_rows():
    table = R.read_markdown_table(STUDY / "reliability.md")
    return [row for _, row in table.iterrows()]


def _num(text):
    return float("inf") if text == "inf" else float(text)


@pytest.mark.parametrize("row", _study_rows(), ids=lambda r: r["protocol"])
def test_the_studys_numbers_are_reproduced(row):
    tidy = R.tidy_replicates(pd.read_csv(STUDY / f"per_seed_{row['protocol']}.csv"))
    k = tidy["replicate"].nunique()
    assert k == int(row["seeds"])

    # split-half over all seeds, Spearman-Brown: "0.54 (6 seeds)"
    value, n = re.fullmatch(r"([-\d.]+) \((\d+) seeds\)", row["split-half (all seeds, SB)"]).groups()
    sh = R.split_half_reliability(tidy)
    assert sh.n == int(n)
    assert sh.overall == pytest.approx(float(value), abs=0.005 + 1e-9)
    # 2 seeds against 2
    two = row["split-half (2 vs 2, SB)"]
    if two == "nan":
        with pytest.raises(ValueError):
            R.split_half_reliability(tidy, half=2)
    else:
        assert R.split_half_reliability(tidy, half=2).overall == pytest.approx(float(two), abs=0.005 + 1e-9)

    # one-seed reliability (ICC) with its 90 % interval over sources: "0.15 (0.05 to 0.25)"
    r1, lo, hi = map(float, re.fullmatch(r"([-\d.]+) \(([-\d.]+) to ([-\d.]+)\)", row["r1 (ICC, 90% CI)"]).groups())
    one = R.one_seed_reliability(tidy, n_boot=2000, ci=0.9, seed=0)
    assert one.overall == pytest.approx(r1, abs=0.005 + 1e-9)
    assert one.low == pytest.approx(lo, abs=0.03) and one.high == pytest.approx(hi, abs=0.03)

    # seeds for 0.8: from the split-half stepped down to one seed, and from the ICC: "21 / 24 (12-76)"
    sb_n, icc_n, ci_lo, ci_hi = re.fullmatch(r"(\d+) / (\d+) \((\d+)-(\d+|inf)\)",
                                             row["seeds for 0.8 (SB / ICC, CI)"]).groups()
    assert R.replicates_needed(R.spearman_brown(sh.overall, 1 / sh.n), 0.8) == int(sb_n)
    assert R.replicates_needed(one.overall, 0.8) == int(icc_n)
    # the interval's seeds: ceil(0.8 (1 - r) / (0.2 r)) = n  <=>  4 / (n + 4) <= r < 4 / (n + 3); compared on
    # the r scale, since n explodes as r nears 0 (the study's bounds are one draw of the bootstrap, ours another)
    for bound, n_text in ((one.high, ci_lo), (one.low, ci_hi)):
        n_study = _num(n_text)
        if n_study == math.inf:
            assert bound <= 0.03
        else:
            assert 4 / (n_study + 4) - 0.03 <= bound <= 4 / (n_study + 3) + 0.03

    # seed SD against the gap between neighbouring sources: "0.067 vs 0.009 (7.4x)"
    sd, gap = map(float, re.match(r"([\d.]+) vs ([\d.]+)", row["seed SD vs gap"]).groups())
    spread = R.seed_spread(tidy).set_index("target").loc["all"]
    assert spread["seed_sd"] == pytest.approx(sd, abs=0.0005 + 1e-9)
    assert spread["gap"] == pytest.approx(gap, abs=0.0005 + 1e-9)


# ------------------------------------------------------------------------------------------------------
# replicates from a sweep that ran each configuration once


def test_subsweep_replicates_select_by_the_lowest_val_loss_within_each_subsweep():
    rows = []
    for s, base in (("a", 0.6), ("b", 0.7), ("c", 0.8)):
        for wd in (0.0, 1e-4):
            for lr, loss in ((0.1, 0.5), (0.01, 0.3)):   # lr 0.01 has the lower val loss: it is selected
                rows.append({"target": "breast", "source": s, "wd": wd, "lr": lr, "val_loss": loss + wd,
                             "test_auc": base + (0.05 if lr == 0.01 else 0.0) + wd * 100})
    runs = pd.DataFrame(rows)
    rep = R.subsweep_replicates(runs, "wd")
    assert list(rep.columns) == list(R.COLUMNS)
    assert sorted(rep["replicate"].unique()) == [0.0, 1e-4]
    got = rep.set_index(["source", "replicate"])["value"]
    assert got[("a", 0.0)] == pytest.approx(0.65) and got[("c", 1e-4)] == pytest.approx(0.86)
    # the replicates differ by a shift shared by every source: perfectly reliable
    assert R.split_half_reliability(rep).overall == pytest.approx(1.0)
    # a source missing from one sub-sweep is dropped, not half-counted
    partial = runs[~((runs["source"] == "a") & (runs["wd"] == 1e-4))]
    assert set(R.subsweep_replicates(partial, "wd")["source"]) == {"b", "c"}
    with pytest.raises(ValueError, match="at least 2"):
        R.subsweep_replicates(runs[runs["wd"] == 0.0], "wd")
    with pytest.raises(ValueError, match="lack the column"):
        R.subsweep_replicates(runs, "momentum")


def test_variance_components_recover_the_simulated_spreads():
    t = crafted(n_targets=2, n_sources=2000, n_reps=5, signal=0.03, noise=0.06, seed=11, rep_shift=0.05)
    vc = R.variance_components(t)
    assert np.allclose(vc["source_sd"], 0.03, atol=0.003)
    assert np.allclose(vc["noise_sd"], 0.06, atol=0.003)
    one = R.one_seed_reliability(t, n_boot=5)
    assert np.allclose(vc["r1"], one.per_target["r1"])          # the ICC(3,1) decomposed
    assert vc["r1"].mean() == pytest.approx(0.2, abs=0.05)      # 0.03^2 / (0.03^2 + 0.06^2)


def test_reliability_summary_collects_the_three_measurements():
    t = crafted(n_targets=3, n_sources=40, n_reps=4, signal=1.0, noise=1.0, seed=8)
    s = R.reliability_summary(t, level=0.8, n_boot=100, seed=0)
    assert list(s["target"]) == ["t0", "t1", "t2", "all targets"]
    sh, one = R.split_half_reliability(t), R.one_seed_reliability(t, n_boot=100, seed=0)
    assert s["split_half"].iloc[-1] == pytest.approx(sh.overall)
    assert s["r1"].iloc[-1] == pytest.approx(one.overall)
    assert list(s["needed"]) == [R.replicates_needed(r, 0.8) for r in s["r1"]]
    assert s["reliability_now"].iloc[0] == pytest.approx(R.spearman_brown(s["r1"].iloc[0], 4))
    assert (s["n_split"] == 4).all()


def test_split_half_by_size_measures_every_even_size():
    t = crafted(n_targets=2, n_sources=300, n_reps=6, signal=1.0, noise=2.0, seed=4)   # r1 = 0.2
    by = R.split_half_by_size(t)
    assert sorted(by["n"].unique()) == [2, 4, 6]
    overall = by[by["target"] == "all targets"].set_index("n")["reliability"]
    assert overall[6] == pytest.approx(R.split_half_reliability(t).overall)
    assert overall[2] < overall[4] < overall[6]
    for n in (2, 4, 6):
        assert overall[n] == pytest.approx(R.spearman_brown(0.2, n), abs=0.06)


# ----------------------------------------------------------------------------------------------------------
# verdicts in words


def test_replicates_text_says_when_no_number_suffices():
    assert R.replicates_text(7.0) == "7"
    assert R.replicates_text(R.replicates_needed(0.0, 0.8)) == "no finite number of"
    assert R.replicates_text(float("inf")) == "no finite number of"


def test_rule_verdict_needs_the_mean_and_every_target():
    assert R.rule_verdict([0.9, 0.8, 0.7], 0.8, 0.6)
    assert not R.rule_verdict([0.95, 0.95, 0.5], 0.8, 0.6)   # mean 0.8 but one target below 0.6
    assert not R.rule_verdict([0.7, 0.7, 0.7], 0.8, 0.6)     # every target fine, the mean not
    assert R.rule_verdict([0.9, float("nan"), 0.8], 0.8, 0.6)  # NaN skipped, as pandas does
    assert not R.rule_verdict([float("nan")], 0.8, 0.6)
    assert not R.rule_verdict([], 0.8, 0.6)


def test_replication_verdict_places_the_fresh_value_against_the_interval():
    assert R.replication_verdict(0.16, 0.24, 0.50).startswith("below the study's interval")
    assert "optimistic" in R.replication_verdict(0.16, 0.24, 0.50)
    assert R.replication_verdict(0.30, 0.24, 0.50).startswith("within")
    assert R.replication_verdict(0.24, 0.24, 0.50).startswith("within")  # the bounds belong to the interval
    assert R.replication_verdict(0.60, 0.24, 0.50).startswith("above")


# the Segmentation chapter's use: which targets can be measured, and what a reliability lets a correlation say

def test_chance_correlation_and_verdicts():
    # the two-sided 5 % critical values of Pearson's r (tables: n = 5 -> .878, n = 6 -> .811, n = 10 -> .632)
    assert R.chance_correlation(5) == pytest.approx(0.878, abs=1e-3)
    assert R.chance_correlation(6) == pytest.approx(0.811, abs=1e-3)
    assert R.chance_correlation(10) == pytest.approx(0.632, abs=1e-3)
    assert math.isnan(R.chance_correlation(2))
    assert R.correlation_verdict(0.95, 0.5, 6).startswith("carries the caveat")
    assert R.correlation_verdict(0.9, 0.95, 6).startswith("told apart from chance (positive")
    assert R.correlation_verdict(-0.9, 0.95, 6).startswith("told apart from chance (negative")
    assert R.correlation_verdict(0.3, 0.95, 6).startswith("within chance")
    assert R.correlation_verdict(0.3, float("nan"), 6).startswith("not measured")
    assert R.correlation_verdict(float("nan"), 0.9, 6).startswith("no correlation")


def test_measurable_summary_skips_incomplete_sources_and_small_targets():
    rng = np.random.default_rng(0)
    rows = []
    for target, sources in (("a", ["s1", "s2", "s3", "s4"]), ("b", ["s1", "s2", "s3", "s4"]), ("c", ["s1", "s2"])):
        for i, s in enumerate(sources):
            for rep in (0, 1):
                if (target, s, rep) == ("b", "s4", 1):
                    continue  # a failed run: s4 is no candidate of b, b keeps three
                rows.append({"target": target, "source": s, "replicate": rep, "value": i + rng.normal(0, 0.1)})
    table = pd.DataFrame(rows)
    summary, candidates = R.measurable_summary(table, n_boot=50)
    assert candidates.to_dict() == {"a": 4, "b": 3, "c": 2}
    assert summary["target"].tolist() == ["a", "b", "all targets"]
    assert summary.set_index("target").loc["b", "sources"] == 3
    one = table[table["replicate"] == 0]
    assert R.measurable_summary(one, n_boot=50)[0] is None

    from helpers import viz
    fig = viz.reliability_plot(summary, 2, 0.8)
    assert len(fig.axes) == 2
    viz.pyplot().close(fig)


def test_ceilings_of_a_reliability_have_known_values():
    assert R.correlation_ceiling(0.81) == pytest.approx(0.9)
    assert R.correlation_ceiling(1.0) == 1.0
    assert R.correlation_ceiling(-0.3) == 0.0          # no self-agreement leaves nothing to predict
    assert R.tau_ceiling(0.5) == pytest.approx(0.5)    # (2 / pi) arcsin(sqrt(1/2)) = (2 / pi)(pi / 4)
    assert R.tau_ceiling(1.0) == pytest.approx(1.0)
    assert R.tau_ceiling(0.8) < R.correlation_ceiling(0.8)
    for bad in (float("nan"), 1.5, -2.0, None):
        with pytest.raises(ValueError, match="reliability"):
            R.correlation_ceiling(bad)


def test_step_reliability_moves_a_split_half_to_all_replicates():
    assert R.step_reliability(0.5, 2, 2) == pytest.approx(0.5)
    assert R.step_reliability(0.5, 2, 4) == pytest.approx(2 / 3)      # twice as many: 2 r / (1 + r)
    assert R.step_reliability(2 / 3, 4, 2) == pytest.approx(0.5)      # and back
    assert math.isnan(R.step_reliability(float("nan"), 2, 3))
    assert math.isnan(R.step_reliability(-1.5, 2, 3))                # below -1: nothing to step
    with pytest.raises(ValueError, match="at least 1"):
        R.step_reliability(0.5, 0, 3)
    with pytest.raises(ValueError, match="at most 1"):
        R.step_reliability(1.5, 2, 3)
