"""Evaluate a tidy benchmark table: per-target correlations, summaries under a convention, bootstrap
intervals (full-sample value or the mean of the replicates) and paired differences.

Everything takes the validated long table of :mod:`helpers.benchmarks.format`. ``higher_is_better=False``
scores are negated first, so every correlation reads "higher = the metric ranks candidates like the truth".
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .conventions import check_convention, pair_taus, pooled_components, weighted_tau
from .format import BenchmarkError, read_long, read_wide, validate

GROUP = ["benchmark", "scenario"]


def _signed(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    if "higher_is_better" in df.columns:
        df["score"] = np.where(df["higher_is_better"].astype(bool), df["score"], -df["score"])
    return df


def _cells(df: pd.DataFrame):
    """Per (benchmark, scenario): metrics and, per target, (target, truth vector, candidates x metrics)."""
    df = _signed(df)
    out = {}
    for (b, s), g in df.groupby(GROUP, sort=False):
        metrics = list(dict.fromkeys(g["metric"]))
        targets = []
        for t, gt in g.groupby("target", sort=False):
            w = gt.pivot(index="candidate", columns="metric", values="score").reindex(columns=metrics)
            truth = gt.groupby("candidate")["truth"].first().reindex(w.index)
            targets.append((t, truth.to_numpy(float), w.to_numpy(float)))
        out[(b, s)] = (metrics, targets)
    return out


def correlations(table: pd.DataFrame, convention: str = "scipy", constant: str = "nan") -> pd.DataFrame:
    """One row per (benchmark, scenario, target, metric): ``weighted_tau``, ``kendall_tau`` (tau-b) and
    ``n_candidates`` (finite scores) under ``convention`` (see :mod:`helpers.benchmarks.conventions`)."""
    check_convention(convention, constant)
    rows = []
    for (b, s), (metrics, targets) in _cells(table).items():
        for t, y, X in targets:
            for k, m in enumerate(metrics):
                ok = np.isfinite(X[:, k])
                wt, kt = pair_taus(X[ok, k], y[ok], convention, constant)
                rows.append({"benchmark": b, "scenario": s, "target": t, "metric": m, "weighted_tau": wt,
                             "kendall_tau": kt, "n_candidates": int(ok.sum())})
    return pd.DataFrame(rows)


def _summary_values(targets, k: int, convention: str, constant: str, draws=None,
                    kendall: bool = True) -> tuple[float, float]:
    """(weighted, tau-b) summary over targets of metric column k; ``draws``: per target candidate indices;
    ``kendall=False`` skips tau-b (NaN), for the bootstrap."""
    if convention == "pooled":
        comp_w, comp_u = np.zeros(5), np.zeros(5)
        xs = []
        for i, (_, y, X) in enumerate(targets):
            idx = draws[i] if draws is not None else slice(None)
            x, yy = X[idx, k], y[idx]
            ok = np.isfinite(x)
            xs.append(x[ok])
            comp_w += pooled_components(x[ok], yy[ok], True)
            if kendall:
                comp_u += pooled_components(x[ok], yy[ok], False)
        allx = np.concatenate(xs) if xs else np.array([])
        if allx.size == 0 or np.all(allx == allx[0]):
            v = 0.0 if constant == "zero" else float("nan")
            return v, v
        out = []
        for c, d, tx, ty, w in (comp_w, comp_u):
            den = np.sqrt((w - tx) * (w - ty))
            out.append(float((c - d) / den) if den > 0 else float("nan"))
        return out[0], out[1]
    wts, kts = [], []
    for i, (_, y, X) in enumerate(targets):
        idx = draws[i] if draws is not None else slice(None)
        x, yy = X[idx, k], y[idx]
        ok = np.isfinite(x)
        if kendall:
            wt, kt = pair_taus(x[ok], yy[ok], convention, constant)
        else:
            wt, kt = weighted_tau(x[ok], yy[ok], convention, constant), float("nan")
        wts.append(wt)
        kts.append(kt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(wts)) if np.isfinite(wts).any() else float("nan"), \
            float(np.nanmean(kts)) if np.isfinite(kts).any() else float("nan")


def summarize(table: pd.DataFrame, convention: str = "scipy", constant: str = "nan") -> pd.DataFrame:
    """One row per (benchmark, scenario, metric): ``weighted_tau`` and ``kendall_tau`` summarised over
    targets under ``convention`` (mean of the per-target values, NaN skipped; ``pooled``: the grouped tau),
    ``n_targets`` (targets with a finite per-target value) and ``n_candidates`` (their total)."""
    check_convention(convention, constant)
    per = correlations(table, convention, constant)
    rows = []
    groups = dict(tuple(per.groupby(["benchmark", "scenario", "metric"], sort=False)))
    for (b, s), (metrics, targets) in _cells(table).items():
        for k, m in enumerate(metrics):
            p = groups[(b, s, m)]
            fin = p[np.isfinite(p["weighted_tau"])]
            if convention == "pooled":
                wt, kt = _summary_values(targets, k, convention, constant)
            else:
                wt = float(fin["weighted_tau"].mean()) if len(fin) else float("nan")
                kt = float(p["kendall_tau"].mean()) if p["kendall_tau"].notna().any() else float("nan")
            rows.append({"benchmark": b, "scenario": s, "metric": m, "weighted_tau": wt, "kendall_tau": kt,
                         "n_targets": int(len(fin)), "n_candidates": int(fin["n_candidates"].sum())})
    return pd.DataFrame(rows)


def _target_values(targets, k: int, convention: str, constant: str):
    """Per target: the weighted tau (mean conventions) or the 5 grouped components (``pooled``), metric k."""
    if convention == "pooled":
        comps, xs = [], []
        for _, y, X in targets:
            ok = np.isfinite(X[:, k])
            comps.append(pooled_components(X[ok, k], y[ok], True))
            xs.append(X[ok, k])
        return np.array(comps), xs
    return np.array([weighted_tau(X[np.isfinite(X[:, k]), k], y[np.isfinite(X[:, k])], convention, constant)
                     for _, y, X in targets]), None


def _pooled_from(comps: np.ndarray, xs, constant: str) -> float:
    allx = np.concatenate(xs) if xs else np.array([])
    if allx.size == 0 or np.all(allx == allx[0]):
        return 0.0 if constant == "zero" else float("nan")
    c, d, tx, ty, w = comps.sum(axis=0)
    den = np.sqrt((w - tx) * (w - ty))
    return float((c - d) / den) if den > 0 else float("nan")


def bootstrap_replicates(table: pd.DataFrame, convention: str = "scipy", constant: str = "nan",
                         n_boot: int = 200, seed: int = 0, resample: str = "targets") -> dict:
    """Per (benchmark, scenario): a DataFrame ``n_boot x metrics`` of the weighted-tau summary recomputed on
    bootstrap samples, the same draw for every metric (so differences between metrics stay paired).

    ``resample="targets"`` draws the targets with replacement: the interval says what summary to expect on
    another set of targets like these (the practitioner's question; fast, the per-target values are computed
    once). ``resample="candidates"`` draws, within every target, its candidates with replacement (as
    :func:`helpers.evaluation.bootstrap_means`): the uncertainty from the finite zoo, targets fixed."""
    check_convention(convention, constant)
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    if resample not in ("targets", "candidates"):
        raise ValueError("resample must be 'targets' or 'candidates'")
    rng = np.random.default_rng(seed)
    out = {}
    for key, (metrics, targets) in _cells(table).items():
        reps = np.full((n_boot, len(metrics)), np.nan)
        if resample == "targets":
            draws = rng.integers(0, len(targets), size=(n_boot, len(targets)))
            for k in range(len(metrics)):
                vals, xs = _target_values(targets, k, convention, constant)
                for r in range(n_boot):
                    if convention == "pooled":
                        reps[r, k] = _pooled_from(vals[draws[r]], [xs[i] for i in draws[r]], constant)
                    else:
                        v = vals[draws[r]]
                        reps[r, k] = v[np.isfinite(v)].mean() if np.isfinite(v).any() else np.nan
        else:
            for r in range(n_boot):
                draws = [rng.integers(0, len(y), len(y)) for _, y, _ in targets]
                for k in range(len(metrics)):
                    reps[r, k] = _summary_values(targets, k, convention, constant, draws, kendall=False)[0]
        out[key] = pd.DataFrame(reps, columns=metrics)
    return out


def bootstrap_summary(table: pd.DataFrame, convention: str = "scipy", constant: str = "nan",
                      n_boot: int = 200, seed: int = 0, level: float = 0.95, statistic: str = "point",
                      resample: str = "targets", replicates: dict | None = None) -> pd.DataFrame:
    """:func:`summarize` with a percentile bootstrap interval per metric. ``statistic="point"`` reports the
    full-sample value as ``value``, ``"mean"`` the mean of the replicates (what Chaves et al.'s figures
    print); both are in the table (``point``, ``boot_mean``) either way."""
    if statistic not in ("point", "mean"):
        raise ValueError("statistic must be 'point' or 'mean'")
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    summ = summarize(table, convention, constant)
    reps = replicates if replicates is not None else bootstrap_replicates(table, convention, constant, n_boot, seed,
                                                                          resample)
    a = (1 - level) / 2
    lo, hi, mean = [], [], []
    for _, r in summ.iterrows():
        v = reps[(r["benchmark"], r["scenario"])][r["metric"]].to_numpy()
        v = v[np.isfinite(v)]
        lo.append(np.quantile(v, a) if v.size else np.nan)
        hi.append(np.quantile(v, 1 - a) if v.size else np.nan)
        mean.append(v.mean() if v.size else np.nan)
    summ = summ.rename(columns={"weighted_tau": "point"})
    summ["boot_mean"], summ["ci_low"], summ["ci_high"] = mean, lo, hi
    summ.insert(3, "value", summ["point"] if statistic == "point" else summ["boot_mean"])
    summ.attrs.update(n_boot=n_boot, seed=seed, level=level, convention=convention, statistic=statistic,
                      resample=resample)
    return summ


def paired_differences(replicates: pd.DataFrame, point: pd.Series, reference: str,
                       level: float = 0.95) -> pd.DataFrame:
    """Each metric's summary minus ``reference``'s, from the replicates of one (benchmark, scenario) of
    :func:`bootstrap_replicates` and the full-sample values ``point`` (indexed by metric): ``difference``,
    ``ci_low``, ``ci_high`` and ``p_above`` (share of replicates above the reference)."""
    if reference not in replicates.columns:
        raise ValueError(f"reference {reference!r} is not among {list(replicates.columns)}")
    d = replicates.sub(replicates[reference], axis=0)
    a = (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return pd.DataFrame({"difference": point - point[reference],
                             "ci_low": d.quantile(a), "ci_high": d.quantile(1 - a),
                             "p_above": (d > 0).mean()}).rename_axis("metric")


# ----------------------------------------------------------------------------------------------------
# the one-call API behind ``python -m helpers.benchmarks evaluate``


def evaluate(table, target: str = "target", candidate: str = "candidate", truth: str = "truth",
             metric: str | None = None, score: str | None = None, scores: Sequence[str] | str | None = None,
             lower_is_better: Sequence[str] | str = (), convention: str = "scipy", constant: str = "nan",
             scenario: str | None = None, out: str | os.PathLike | None = None) -> pd.DataFrame:
    """Evaluate a benchmark table (CSV path or DataFrame), long (``metric`` and ``score`` columns) or wide
    (``scores``: one column per metric). Returns (and writes to ``out`` when given) one row per
    (target, metric) with ``target, metric, weighted_tau, kendall_tau, n_candidates`` under ``convention``,
    then one row per metric with ``target = "ALL"``: the summary over targets (mean, or the grouped tau for
    ``pooled``), ``n_candidates`` = the candidates of the targets it summarises. With ``scenario`` a
    ``scenario`` column is kept. Raises :class:`BenchmarkError` naming the problem."""
    check_convention(convention, constant)
    if isinstance(scores, str):
        scores = [s.strip() for s in scores.split(",")]
    if isinstance(lower_is_better, str):
        lower_is_better = [s.strip() for s in lower_is_better.split(",")]
    if scores and (metric or score):
        raise BenchmarkError("give either --metric and --score (long table) or --scores (wide table), not both")
    if scores:
        df = read_wide(table, scores, target, candidate, truth, scenario, lower_is_better=lower_is_better)
    elif metric and score:
        df = read_long(table, target, candidate, truth, metric, score, scenario, lower_is_better=lower_is_better)
    else:
        raise BenchmarkError("say where the scores are: --metric COL --score COL (long) or --scores COL,... (wide)")
    per = correlations(df, convention, constant)
    summ = summarize(df, convention, constant).assign(target="ALL")
    cols = (["scenario"] if scenario else []) + ["target", "metric", "weighted_tau", "kendall_tau", "n_candidates"]
    result = pd.concat([per[cols], summ[cols]], ignore_index=True)
    result.attrs.update(convention=convention, constant=constant)
    if out is not None:
        try:
            result.to_csv(out, index=False)
        except OSError as exc:
            raise BenchmarkError(f"cannot write {str(out)!r}: {exc.strerror or exc}") from None
    return result


def format_summary(result: pd.DataFrame) -> str:
    """A readable text summary of :func:`evaluate`'s result: the ALL rows, best first."""
    allrows = result[result["target"] == "ALL"].sort_values("weighted_tau", ascending=False)
    per = result[result["target"] != "ALL"]
    lines = [f"{per['target'].nunique()} target(s), {allrows['metric'].nunique()} metric(s); convention "
             f"{result.attrs.get('convention', 'scipy')}",
             f"{'metric':<24} {'weighted tau':>12} {'tau-b':>8} {'targets':>8}"]
    for _, r in allrows.iterrows():
        n_t = int(np.isfinite(per.loc[per["metric"] == r["metric"], "weighted_tau"]).sum())
        lines.append(f"{str(r['metric'])[:24]:<24} {r['weighted_tau']:>12.4f} {r['kendall_tau']:>8.4f} {n_t:>8d}")
    return "\n".join(lines)


__all__ = ["correlations", "summarize", "bootstrap_replicates", "bootstrap_summary", "paired_differences",
           "evaluate", "format_summary", "validate"]
