"""Correlation of transferability scores with fine-tuned ground truth, and the statistics across targets.

Inputs everywhere are *wide* tables: a DataFrame indexed by source with one column per target, one for the
scores of a metric and one for the ground truth (fine-tuned test AUC). Several metrics are passed as a dict
``{metric: scores}``.

Name matching rule
------------------
Sources and targets are matched by :func:`canonical_name`: lower case, every character other than a letter
or digit removed, then a trailing ``mnist`` removed. So ``bloodmnist``, ``BloodMNIST`` and ``blood`` (the
name in [D]'s sweep file names) are one dataset, and a source whose canonical name equals the target's is
"the source equal to the target", excluded by ``exclude_self``. Architecture names (``resnet``) never equal
a target, so nothing is excluded there. Two labels of one table that map to the same key are an error.

Per-target statistics (:func:`correlate`)
-----------------------------------------
Over the sources present in both tables with finite values (source == target excluded):

* ``weighted_tau``: ``scipy.stats.weightedtau(score, truth)`` with its defaults (hyperbolic additive
  weigher, average of the two lexicographic rankings), as in [D];
* ``kendall_tau`` (tau-b), ``spearman``, ``pearson``;
* ``top1_relative``: fine-tuned value of the top-scored source divided by the best fine-tuned value,
  ``regret``: best minus that value (AUC lost by trusting the metric). If several sources share the top
  score, the value is the mean over them: the expected outcome of breaking the tie at random;
* ``n_sources``, ``constant_scores``, ``constant_truth``: a constant score (or truth) column has no ranking,
  so the correlations are NaN and the flag is True; NaN is reported, never hidden or replaced by 0.

Across targets: :func:`summarize` (mean and median, NaN skipped and counted), :func:`bootstrap_means`
(percentile intervals, sources resampled), :func:`rank_table`, :func:`friedman`, :func:`nemenyi` with
:func:`nemenyi_cd` and :func:`cd_diagram`, and :func:`scatter_grid`.

Which metric to trust
---------------------
Baselines without target features (:func:`~helpers.evaluation_trust.training_set_sizes`,
:func:`~helpers.evaluation_trust.architecture_baselines`, :func:`~helpers.evaluation_trust.loto_prior`),
rank-averaged ensembles and leave-one-target-out selection (:func:`~helpers.evaluation_trust.rank_average`,
:func:`~helpers.evaluation_trust.ensembles`, :func:`~helpers.evaluation_trust.loto_selection`) and cost against
quality (:func:`~helpers.evaluation_trust.cost_quality`, :func:`~helpers.evaluation_trust.cost_quality_figure`)
live in :mod:`helpers.evaluation_trust`; the ground truth's selection rules and noise ceiling
(:func:`~helpers.ground_truth.select_ground_truth`, :func:`~helpers.ground_truth.ground_truth_noise`) in
:mod:`helpers.ground_truth`. Both build on :mod:`helpers.evaluation_core` (the alignment, the weighted tau,
:func:`correlate` and the bootstrap), as this module does. Their old names ``helpers.evaluation.<name>`` still
work, with a ``DeprecationWarning`` (:data:`helpers.compat.MOVED`).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

from .evaluation_core import (  # noqa: F401  (STAT_COLUMNS, correlate, top1, weighted_tau: public here too)
    STAT_COLUMNS,
    _align,
    _bootstrap_replicates,
    _candidates,
    _check_table,
    _is_constant,
    correlate,
    top1,
    weighted_tau,
)
from .compat import forward
from .names import canonical_name
from .reliability import one_seed_reliability, replicates_needed, spearman_brown, split_half_reliability  # noqa: F401


# ----------------------------------------------------------------------------------------------------
# many metrics, long and wide tables


def correlate_many(scores: Mapping[str, pd.DataFrame], truth: pd.DataFrame, **kwargs) -> dict[str, pd.DataFrame]:
    """:func:`correlate` for every metric of a dict ``{metric: scores}``."""
    if not isinstance(scores, Mapping) or not scores:
        raise ValueError("scores must be a non-empty dict {metric: DataFrame}")
    return {m: correlate(s, truth, **kwargs) for m, s in scores.items()}


def tidy(results: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Long table ``metric, target, <statistics>`` from ``{metric: correlate(...)}``."""
    parts = [r.reset_index().assign(metric=m) for m, r in results.items()]
    long = pd.concat(parts, ignore_index=True)
    return long[["metric", "target"] + [c for c in long.columns if c not in ("metric", "target")]]


def wide(long: pd.DataFrame, value: str = "weighted_tau") -> pd.DataFrame:
    """Targets x metrics table of one statistic from a long table (metric order kept)."""
    metrics = list(dict.fromkeys(long["metric"]))
    targets = list(dict.fromkeys(long["target"]))
    return long.pivot(index="target", columns="metric", values=value).loc[targets, metrics]


def summarize(long: pd.DataFrame, values=("weighted_tau",)) -> pd.DataFrame:
    """Mean and median over targets per metric (NaN skipped) and how many targets were NaN."""
    if isinstance(values, str):
        values = (values,)
    out = {}
    for v in values:
        w = wide(long, v)
        out[(v, "mean")] = w.mean()
        out[(v, "median")] = w.median()
        out[(v, "n_nan")] = w.isna().sum()
    df = pd.DataFrame(out)
    if len(values) == 1:
        df.columns = [c[1] for c in df.columns]
    return df


def minmax_product(a: pd.DataFrame, b: pd.DataFrame, exclude_self: bool = False,
                   key: Callable = canonical_name) -> pd.DataFrame:
    """Per target (column), min-max normalise ``a`` and ``b`` across the sources and multiply.

    [D]'s LP x FU. ``exclude_self=False`` normalises over every finite value in the column, including the
    source == target cell when a table has one (what [D] did); ``True`` masks that cell first. A constant
    column normalises to NaN.
    """
    a, b = _check_table(a, "a"), _check_table(b, "b")
    idx = a.index.intersection(b.index)
    cols = a.columns.intersection(b.columns)
    if len(idx) == 0 or len(cols) == 0:
        raise ValueError("the two tables share no source or no target")
    a, b = a.loc[idx, cols].copy(), b.loc[idx, cols].copy()
    if exclude_self:
        for t in cols:
            self_rows = [s for s in idx if key(s) == key(t)]
            a.loc[self_rows, t] = np.nan
            b.loc[self_rows, t] = np.nan

    def mm(df):
        lo, hi = df.min(), df.max()
        span = (hi - lo).where(hi > lo)
        return (df - lo) / span

    return mm(a) * mm(b)



def bootstrap_means(scores: Mapping[str, pd.DataFrame], truth: pd.DataFrame, n_boot: int = 1000,
                    seed: int = 0, level: float = 0.95, exclude_self: bool = True,
                    key: Callable = canonical_name) -> pd.DataFrame:
    """Percentile bootstrap of the mean weighted tau over targets, resampling sources.

    In each replicate and for each target, the candidate sources (finite truth, self excluded) are drawn
    with replacement, the same draw for every metric (paired), and the weighted tau is recomputed; the
    replicate's statistic per metric is the mean over targets (NaN skipped). Returns, per metric,
    ``mean`` (the full-sample value), ``ci_low``, ``ci_high``, ``boot_sd``, ``mean_rank`` (the metric's
    average rank among the metrics over replicates, 1 = best) and ``p_best`` (share of replicates in which
    it has the highest mean). :func:`bootstrap_differences` gives paired differences from the same draws.
    """
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    metrics, point, boots = _bootstrap_replicates(scores, truth, n_boot, seed, exclude_self, key)
    alpha = (1 - level) / 2
    ranks = pd.DataFrame(boots).rank(axis=1, ascending=False, na_option="bottom").to_numpy()
    best = np.nanargmax(np.where(np.isnan(boots), -np.inf, boots), axis=1)
    with warnings.catch_warnings():
        # a metric NaN in every replicate (constant scores on every target) has NaN bounds, by definition; numpy's
        # "All-NaN slice" / "Degrees of freedom" warnings about exactly that are not news to the reader
        warnings.filterwarnings("ignore", "All-NaN slice encountered", RuntimeWarning)
        warnings.filterwarnings("ignore", "Degrees of freedom <= 0", RuntimeWarning)
        low, high = np.nanquantile(boots, alpha, axis=0), np.nanquantile(boots, 1 - alpha, axis=0)
        sd = np.nanstd(boots, axis=0, ddof=1) if n_boot > 1 else np.nan
    out = pd.DataFrame({
        "mean": point,
        "ci_low": low,
        "ci_high": high,
        "boot_sd": sd,
        "mean_rank": ranks.mean(axis=0),
        "p_best": np.bincount(best, minlength=len(metrics)) / n_boot,
    }, index=pd.Index(metrics, name="metric"))
    out.attrs.update(n_boot=n_boot, seed=seed, level=level)
    return out


# ----------------------------------------------------------------------------------------------------
# ranks, Friedman, Nemenyi


def rank_table(wide_values: pd.DataFrame, na: str = "bottom", method: str = "average") -> pd.DataFrame:
    """Rank the metrics (columns) within each target (row), 1 = highest value, ties averaged (``method``
    as in ``DataFrame.rank``; ``"min"`` gives the integer ranks of [D]'s tables).

    ``na="bottom"``: a NaN value takes the worst rank (what [D]'s rank tables do for SFDA); ``"drop"``:
    targets with any NaN are dropped.
    """
    if na not in ("bottom", "drop"):
        raise ValueError("na must be 'bottom' or 'drop'")
    w = wide_values.astype(float)
    if na == "drop":
        w = w.dropna(axis=0, how="any")
        if w.empty:
            raise ValueError("every target has a NaN value; nothing left to rank with na='drop'")
    return w.rank(axis=1, ascending=False, method=method, na_option="bottom")


def friedman(wide_values: pd.DataFrame, na: str = "bottom") -> dict:
    """Friedman test over targets (blocks) and metrics (treatments): ``scipy.stats.friedmanchisquare``.

    Returns statistic, p-value, number of targets n, of metrics k, and the average ranks.
    """
    r = rank_table(wide_values, na)
    if r.shape[1] < 3:
        raise ValueError("the Friedman test needs at least 3 metrics")
    if r.shape[0] < 2:
        raise ValueError("the Friedman test needs at least 2 targets")
    w = wide_values.loc[r.index].astype(float)
    if na == "bottom":  # rank-equivalent values: NaN -> below everything in its row
        w = -r
    res = stats.friedmanchisquare(*[w[c].to_numpy() for c in w.columns])
    return {"statistic": float(res.statistic), "pvalue": float(res.pvalue), "n": r.shape[0],
            "k": r.shape[1], "avg_ranks": r.mean().sort_values()}


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Demšar's q_alpha: the studentized range quantile (k groups, infinite df) divided by sqrt(2)."""
    if k < 2:
        raise ValueError("need at least 2 methods")
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2))


def nemenyi_cd(k: int, n: int, alpha: float = 0.05) -> float:
    """Critical difference of average ranks, CD = q_alpha * sqrt(k (k + 1) / (6 n)) (Demšar 2006)."""
    if n < 1:
        raise ValueError("need at least 1 target")
    return nemenyi_q(k, alpha) * float(np.sqrt(k * (k + 1) / (6.0 * n)))


def nemenyi(wide_values: pd.DataFrame, alpha: float = 0.05, na: str = "bottom") -> dict:
    """Nemenyi post-hoc: average ranks, CD, pairwise p-values and significance (|R_i - R_j| > CD).

    p-value of a pair: ``studentized_range.sf(|R_i - R_j| / sqrt(k (k + 1) / (12 n)), k, inf)``.
    """
    r = rank_table(wide_values, na)
    n, k = r.shape
    avg = r.mean().sort_values()
    cd = nemenyi_cd(k, n, alpha)
    se = np.sqrt(k * (k + 1) / (12.0 * n))
    diff = np.abs(avg.to_numpy()[:, None] - avg.to_numpy()[None, :])
    p = stats.studentized_range.sf(diff / se, k, np.inf)
    np.fill_diagonal(p, 1.0)
    p = pd.DataFrame(np.clip(p, 0, 1), index=avg.index, columns=avg.index)
    return {"avg_ranks": avg, "cd": cd, "n": n, "k": k, "alpha": alpha, "pvalues": p,
            "significant": pd.DataFrame(diff > cd, index=avg.index, columns=avg.index)}


def cliques(avg_ranks: pd.Series, cd: float) -> list[list[str]]:
    """Maximal runs of consecutive (by average rank) methods whose rank spread is below the CD."""
    avg = avg_ranks.sort_values()
    names, vals = list(avg.index), avg.to_numpy()
    groups = []
    for i in range(len(vals)):
        j = i
        while j + 1 < len(vals) and vals[j + 1] - vals[i] < cd:
            j += 1
        if j > i and not any(g[0] <= i and j <= g[1] for g in groups):
            groups.append((i, j))
    return [names[a:b + 1] for a, b in groups]


def cd_diagram(avg_ranks: pd.Series, cd: float, labels: Mapping | None = None, title: str | None = None,
               width: float = 7.0):
    """Critical-difference diagram (Demšar 2006): methods on a rank axis (1 = best, left), the CD as a
    bar above, and thick lines joining methods whose average ranks differ by less than the CD.
    Returns a matplotlib Figure."""
    import matplotlib.pyplot as plt

    avg = avg_ranks.sort_values()
    k = len(avg)
    labels = labels or {}
    names = [labels.get(m, m) for m in avg.index]
    groups = cliques(avg, cd)
    half = (k + 1) // 2
    height = 1.3 + 0.3 * max(half, k - half) + 0.15 * len(groups)
    fig, ax = plt.subplots(figsize=(width, height))
    lo, hi = 1, max(k, 2)
    ax.set_xlim(lo - 1.6, hi + 1.6)
    ax.set_ylim(-(0.5 + 0.3 * max(half, k - half) + 0.15 * len(groups)), 1.2)
    ax.axis("off")
    ax.hlines(0, lo, hi, color="k", lw=1)
    for t in range(lo, hi + 1):
        ax.vlines(t, 0, 0.1, color="k", lw=1)
        ax.text(t, 0.18, str(t), ha="center", va="bottom", fontsize=9)
    # CD bar
    ax.hlines(0.85, lo, lo + cd, color="k", lw=1.5)
    for xx in (lo, lo + cd):
        ax.vlines(xx, 0.78, 0.92, color="k", lw=1.5)
    ax.text(lo + cd / 2, 0.95, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9)
    # group bars under the axis
    for g_i, g in enumerate(groups):
        y = -0.12 - 0.12 * g_i
        ax.hlines(y, avg[g[0]] - 0.03, avg[g[-1]] + 0.03, color="k", lw=3)
    base = -0.25 - 0.12 * len(groups)
    for i, (m, name) in enumerate(zip(avg.index, names)):
        r = avg[m]
        if i < half:
            y = base - 0.3 * i
            ax.plot([r, r, lo - 0.3], [0, y, y], color="k", lw=0.8)
            ax.text(lo - 0.35, y, f"{name} ({r:.2f})", ha="right", va="center", fontsize=9)
        else:
            y = base - 0.3 * (k - 1 - i)
            ax.plot([r, r, hi + 0.3], [0, y, y], color="k", lw=0.8)
            ax.text(hi + 0.35, y, f"({r:.2f}) {name}", ha="left", va="center", fontsize=9)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------------
# figures


def _scatter_panel(ax, S, T, tk, exclude_self, key, size) -> float:
    """One target's scores (x) against its ground truth (y) with a least-squares line; its weighted tau."""
    ok = _candidates(S, T, tk, exclude_self, key)
    x, y = S[tk].to_numpy()[ok], T[tk].to_numpy()[ok]
    ax.scatter(x, y, s=size, color="tab:blue")
    if x.size >= 2 and not _is_constant(x):
        slope, icpt = np.polyfit(x, y, 1)
        xx = np.linspace(x.min(), x.max(), 2)
        ax.plot(xx, slope * xx + icpt, color="tab:red", lw=1)
    return weighted_tau(x, y)


def scatter_target(scores: Mapping[str, pd.DataFrame], truth: pd.DataFrame, target: str, metrics=None,
                   exclude_self: bool = True, labels: Mapping | None = None, ncols: int = 6, panel: float = 1.9,
                   key: Callable = canonical_name, truth_label: str = "fine-tuned test AUC"):
    """The scatter panels of one target, legible at page width: one panel per metric, ``ncols`` to a row, each
    titled with the metric and its weighted tau, score (x) against the ground truth (y) over the sources with a
    least-squares line. A large (targets x metrics) grid becomes one such figure per target. Returns a Figure."""
    import matplotlib.pyplot as plt

    metrics = list(metrics or scores)
    labels = labels or {}
    ncols = max(1, min(ncols, len(metrics)))
    nrows = -(-len(metrics) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel * ncols, panel * 0.95 * nrows), squeeze=False)
    tk = key(target)
    for i, m in enumerate(metrics):
        ax = axes[i // ncols, i % ncols]
        S, T, _, _ = _align(scores[m], truth, key)
        name = labels.get(m, m)
        if tk not in S.columns:
            ax.set_title(f"{name}\nno scores", fontsize=8, pad=2)
        else:
            wt = _scatter_panel(ax, S, T, tk, exclude_self, key, 12)
            ax.set_title(f"{name}\nτw = {wt:.2f}" if np.isfinite(wt) else f"{name}\nτw = NaN (constant)",
                         fontsize=8, pad=2)
        ax.tick_params(labelsize=7, length=2, pad=1)
        ax.xaxis.get_offset_text().set_fontsize(7)
        ax.locator_params(axis="x", nbins=3)
        ax.locator_params(axis="y", nbins=4)
        if i % ncols:
            ax.tick_params(labelleft=False)
    for j in range(len(metrics), nrows * ncols):
        axes[j // ncols, j % ncols].axis("off")
    for row in axes:  # every panel of a row shares the y range, so the labels at the left hold for the row
        lo = min(a.get_ylim()[0] for a in row if a.axison)
        hi = max(a.get_ylim()[1] for a in row if a.axison)
        for a in row:
            if a.axison:
                a.set_ylim(lo, hi)
    fig.suptitle(f"target {target}", fontsize=10)
    fig.supxlabel("transferability score", fontsize=9)
    fig.supylabel(truth_label, fontsize=9)
    fig.tight_layout(h_pad=0.8, w_pad=0.4)
    return fig


def scatter_grid(scores: Mapping[str, pd.DataFrame], truth: pd.DataFrame, metrics=None, targets=None,
                 exclude_self: bool = True, labels: Mapping | None = None, panel: float = 1.7,
                 key: Callable = canonical_name, truth_label: str = "fine-tuned test AUC"):
    """One panel per (target row, metric column): score (x) against the fine-tuned ground truth (y, named by
    ``truth_label``) over the sources, with a least-squares line and the weighted tau in the panel title, as in
    [D]. Returns a Figure."""
    import matplotlib.pyplot as plt

    metrics = list(metrics or scores)
    labels = labels or {}
    aligned = {m: _align(scores[m], truth, key) for m in metrics}
    if targets is None:
        targets = list(dict.fromkeys(aligned[metrics[0]][3][t] for t in aligned[metrics[0]][0].columns))
    fig, axes = plt.subplots(len(targets), len(metrics), figsize=(panel * len(metrics), panel * 0.9 * len(targets)),
                             squeeze=False)
    for r, target in enumerate(targets):
        tk = key(target)
        for c, m in enumerate(metrics):
            ax = axes[r, c]
            S, T, _, _ = aligned[m]
            if tk in S.columns:
                wt = _scatter_panel(ax, S, T, tk, exclude_self, key, 8)
                ax.set_title(f"τw={wt:.2f}" if np.isfinite(wt) else "τw=NaN (constant)", fontsize=7, pad=2)
            ax.tick_params(labelsize=5, length=2, pad=1)
            ax.xaxis.get_offset_text().set_fontsize(5)
            if r == 0:
                ax.annotate(labels.get(m, m), (0.5, 1.35), xycoords="axes fraction", ha="center",
                            fontsize=9, fontweight="bold")
            if c == 0:
                ax.set_ylabel(str(target).replace("mnist", ""), fontsize=8)
    fig.supxlabel("transferability score", fontsize=9)
    fig.supylabel(truth_label, fontsize=9)
    fig.tight_layout(h_pad=0.6, w_pad=0.3)
    return fig


def interval_plot(boot: pd.DataFrame, labels: Mapping | None = None, title: str | None = None, ax=None):
    """Horizontal point-and-interval plot of :func:`bootstrap_means` output. Returns the Figure."""
    import matplotlib.pyplot as plt

    labels = labels or {}
    b = boot.sort_values("mean")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 0.35 * len(b) + 1.2))
    else:
        fig = ax.figure
    y = np.arange(len(b))
    ax.errorbar(b["mean"], y, xerr=[b["mean"] - b["ci_low"], b["ci_high"] - b["mean"]], fmt="o",
                color="tab:blue", ecolor="tab:gray", capsize=3)
    ax.set_yticks(y, [labels.get(m, m) for m in b.index])
    ax.axvline(0, color="k", lw=0.6, ls=":")
    ax.set_xlabel("mean weighted τ over targets")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def practical_summary(long: pd.DataFrame) -> pd.DataFrame:
    """Per metric, what trusting its top-scored source costs: mean top-1 relative value, mean, median
    and worst regret over targets, and ``top1_is_best``: the expected number of targets in which the
    top-scored source is the best one (a tie of n top sources that includes the best counts 1/n, the
    chance that a random tie-break picks it)."""
    rows = {}
    for m, g in long.groupby("metric", sort=False):
        hit = 0.0
        for b, t in zip(g["best_source"], g["top_source"]):
            tied = str(t).split("|") if isinstance(t, str) and t else []
            if b in tied:
                hit += 1.0 / len(tied)
        rows[m] = {"top1_relative_mean": g["top1_relative"].mean(), "regret_mean": g["regret"].mean(),
                   "regret_median": g["regret"].median(), "regret_max": g["regret"].max(),
                   "top1_is_best": hit, "n_targets": len(g)}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "metric"
    return out


# old names (helpers.evaluation.<trust name>): helpers.compat.MOVED
__getattr__ = forward(__name__)
