"""How reliable is a ground truth? Split-half reliability over replicates, the one-replicate reliability and
the replicates needed for a chosen level.

A ground truth (fine-tuned test AUC, or Dice, per (source, target)) is one measurement of each source's
transfer to a target; repeating it (another seed, another fold of the training data, another configuration of a
sweep) gives *replicates*. The ground truth that a transferability score is judged against is the mean over
the replicates that were run, and how far that mean would move under a fresh set of replicates is what this
module measures, per target, over the target's candidate sources.

Input: a tidy table
-------------------
One row per (target, source, replicate), columns (names configurable by keyword):

* ``target``: the target data set;
* ``source``: the candidate source;
* ``replicate``: the label of the replicate (a seed, a fold, a sweep configuration): the same labels must be
  present for every source of a target, since a replicate is one run of the whole target's comparison;
* ``value``: the measurement (test AUC, Dice), finite.

:func:`tidy_replicates` turns a wide table (one column per replicate, as in the study's ``per_seed_*.csv``
and :func:`helpers.stages.finetuning.ground_truth_seeds` pivoted) into this form. The source equal to the
target (:func:`helpers.names.is_self`) is left out by default: it is no candidate. Errors (``ValueError``)
name the problem: a missing column, a NaN or infinite value, a duplicated (target, source, replicate), a
source missing a replicate that the target's other sources have, fewer than 2 replicates, fewer than 3
sources.

Statistics
----------
* :func:`split_half_reliability`: per target, the replicates are split into two disjoint halves of ``h``
  replicates each (default ``h = k // 2``; every unordered pair of such halves when there are at most
  ``max_splits`` of them, else ``max_splits`` drawn with a seeded generator); the per-source mean of each half
  is correlated between the halves (Pearson by default: the Spearman-Brown prophecy is derived for the Pearson
  correlation of parallel measurements; ``method="spearman"`` for the ranks), the correlation averaged over the
  splits (``r_half``) and stepped up to a ground truth of ``2 h`` replicates with Spearman-Brown,
  ``2 r / (1 + r)``. The overall value steps up the mean of ``r_half`` over targets (and splits), the
  convention of the ground-truth-reliability study whose table the tests reproduce.
* :func:`one_seed_reliability`: the reliability of a single replicate, ICC(3,1) (two-way mixed, consistency:
  a replicate that shifts every source alike costs nothing, since only the ordering of sources matters) per
  target and its mean over targets, with a percentile interval from resampling sources within every target
  (seeded bootstrap).
* :func:`replicates_needed`: the Spearman-Brown prophecy solved for the number of replicates whose mean reaches
  ``level`` given the one-replicate reliability ``r1``: ``ceil(level (1 - r1) / (r1 (1 - level)))``;
  infinite when ``r1 <= 0``.
* :func:`spearman_brown`: the prophecy ``m r / (1 + (m - 1) r)`` for ``m`` times as many replicates (``m < 1``
  steps down: the one-replicate reliability of a mean of ``k`` is ``spearman_brown(r_k, 1 / k)``).
* :func:`seed_spread`: the median SD of a source's value over replicates against the median gap between
  neighbouring sources (sorted by their mean): the noise against the signal it has to resolve.
* :func:`variance_components`: the spread between sources and the noise of one replicate behind ICC(3,1).
* :func:`correlation_ceiling` and :func:`tau_ceiling`: what a reliability ``R`` leaves to any score: a Pearson
  correlation of at most about ``sqrt(R)`` with the ground truth (attenuation, the score itself taken as exact),
  on the scale of Kendall's tau ``(2 / pi) arcsin(sqrt(R))`` (Greiner's relation for normal scores).
* :func:`step_reliability`: a reliability measured for a mean of ``n`` replicates stepped to a mean of ``m``
  (the split-half of a mean of ``2 h`` to the mean of all ``k`` when ``k`` is odd).
* :func:`reliability_summary` (all of the above per target, one table) and :func:`split_half_by_size` (the
  measured split-half reliability of a mean of 2, 4, ... replicates); :func:`measurable_summary`, the summary
  of the targets it can be measured on (what the chapters show).
* :func:`subsweep_replicates`: replicates from a sweep that ran each configuration once ([D]'s).
* :func:`chance_correlation` (the Pearson correlation that ``n`` sources must exceed to be told apart from
  none) and :func:`correlation_verdict`: a score's correlation with a ground truth of reliability ``R``, whose
  ceiling is about ``sqrt(R)``, against that threshold, in words.

The ground-truth-reliability study's table (``results/reference/ground_truth_reliability/reliability.md``) is
reproduced from its per-seed tables by these functions with their defaults (``tests/test_reliability.py``):
its "split-half" is the Pearson version (its prose says Spearman), its one-seed reliability ICC(3,1).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from math import comb

import numpy as np
import pandas as pd

from .names import is_self

__all__ = ["COLUMNS", "tidy_replicates", "check_replicates", "balanced_splits", "spearman_brown",
           "replicates_needed", "icc_consistency", "split_half_reliability", "one_seed_reliability",
           "seed_spread", "read_markdown_table", "subsweep_replicates", "variance_components", "reliability_summary", "split_half_by_size", "SplitHalf", "OneSeed",
           "replicates_text", "rule_verdict", "replication_verdict", "chance_correlation", "correlation_verdict",
           "measurable_summary", "correlation_ceiling", "tau_ceiling", "step_reliability"]

COLUMNS = ("target", "source", "replicate", "value")


# ----------------------------------------------------------------------------------------------------------
# input


def tidy_replicates(wide: pd.DataFrame, id_cols=("target", "source"), replicate: str = "replicate",
                    value: str = "value") -> pd.DataFrame:
    """Wide (one column per replicate, ``id_cols`` naming the rows) to the tidy table of this module."""
    missing = [c for c in id_cols if c not in wide.columns]
    if missing:
        raise ValueError(f"wide table lacks the column(s) {missing}; it has {list(wide.columns)}")
    out = wide.melt(id_vars=list(id_cols), var_name=replicate, value_name=value)
    return out.sort_values([*id_cols, replicate], kind="stable").reset_index(drop=True)


def check_replicates(table: pd.DataFrame, target: str = "target", source: str = "source",
                     replicate: str = "replicate", value: str = "value", exclude_self: bool = True,
                     min_replicates: int = 2, min_sources: int = 3) -> dict[str, pd.DataFrame]:
    """Validate the tidy table; return ``{target: matrix}``, each a (source x replicate) DataFrame of floats
    (the target's own source left out when ``exclude_self``). Raises ``ValueError`` on bad input."""
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"expected a tidy pandas DataFrame with columns {[target, source, replicate, value]}, "
                         f"got {type(table).__name__}")
    cols = [target, source, replicate, value]
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise ValueError(f"replicate table lacks the column(s) {missing}; it has {list(table.columns)} "
                         f"(expected one row per (target, source, replicate) with a numeric value)")
    if table.empty:
        raise ValueError("replicate table is empty")
    t = table[cols].copy()
    try:
        t[value] = pd.to_numeric(t[value]).astype(float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"column {value!r} must be numeric: {exc}") from None
    bad = t[~np.isfinite(t[value].to_numpy())]
    if len(bad):
        rows = bad[[target, source, replicate]].head(5).to_dict("records")
        raise ValueError(f"{len(bad)} value(s) are NaN or infinite, e.g. {rows}; a failed run is no replicate: "
                         "drop it (and the replicate) or rerun it")
    dup = t.duplicated([target, source, replicate], keep=False)
    if dup.any():
        rows = t.loc[dup, [target, source, replicate]].drop_duplicates().head(5).to_dict("records")
        raise ValueError(f"(target, source, replicate) repeated, e.g. {rows}; one value per replicate")
    if exclude_self:
        t = t[[not is_self(s, g) for s, g in zip(t[source], t[target])]]
    out = {}
    for tg, g in t.groupby(target, sort=True):
        m = g.pivot(index=source, columns=replicate, values=value)
        holes = m.isna()
        if holes.to_numpy().any():
            where = [(s, r) for s, r in zip(*np.nonzero(holes.to_numpy()))][:5]
            raise ValueError(f"target {tg!r}: sources lack replicates that others have, e.g. "
                             f"{[(m.index[i], m.columns[j]) for i, j in where]}; every source of a target needs "
                             "every replicate (drop the incomplete replicates first)")
        if m.shape[1] < min_replicates:
            raise ValueError(f"target {tg!r} has {m.shape[1]} replicate(s) ({list(m.columns)}); at least "
                             f"{min_replicates} are needed to measure reliability")
        if m.shape[0] < min_sources:
            raise ValueError(f"target {tg!r} has {m.shape[0]} candidate source(s) ({list(m.index)}); at least "
                             f"{min_sources} are needed to correlate rankings")
        out[tg] = m.astype(float)
    if not out:
        raise ValueError("no target left (every row was the target's own source?)")
    return out


# ----------------------------------------------------------------------------------------------------------
# formulas


def spearman_brown(r, factor):
    """Spearman-Brown prophecy: reliability of a mean of ``factor`` times as many replicates."""
    r = np.asarray(r, dtype=float)
    factor = np.asarray(factor, dtype=float)
    if np.any(factor <= 0):
        raise ValueError(f"factor must be positive, got {factor}")
    if np.any(np.abs(r[np.isfinite(r)]) > 1):
        raise ValueError(f"a reliability lies in [-1, 1], got {r}")
    out = factor * r / (1 + (factor - 1) * r)
    return float(out) if out.ndim == 0 else out


def step_reliability(reliability: float, n_from: int, n_to: int) -> float:
    """A reliability measured for a mean of ``n_from`` replicates, stepped (Spearman-Brown) to a mean of ``n_to``:
    how the split-half of a mean of ``n_split`` replicates becomes the reliability of the mean over all ``k``
    that ran (the same value when ``k`` is even). NaN for a NaN reliability, or for one below -1 (a split-half
    stepped up from a strongly negative half-correlation: no reliability to step)."""
    if n_from < 1 or n_to < 1:
        raise ValueError(f"replicate counts must be at least 1, got {n_from} and {n_to}")
    if reliability is None or not np.isfinite(reliability) or reliability < -1:
        return float("nan")
    if reliability > 1:
        raise ValueError(f"a reliability is at most 1, got {reliability}")
    factor = n_to / n_from
    if 1 + (factor - 1) * reliability <= 0:
        return float("nan")
    return spearman_brown(reliability, factor)


def correlation_ceiling(reliability: float) -> float:
    """The highest correlation any exact score can reach with a ground truth of reliability ``reliability``:
    ``sqrt(R)`` (Spearman's attenuation with the score's own reliability 1); 0 when ``R <= 0`` (a ground truth
    that does not agree with itself leaves nothing to predict)."""
    if reliability is None or not np.isfinite(reliability):
        raise ValueError(f"a reliability must be finite, got {reliability}")
    if reliability > 1 or reliability < -1:
        raise ValueError(f"a reliability lies in [-1, 1], got {reliability}")
    return float(math.sqrt(max(reliability, 0.0)))


def tau_ceiling(reliability: float) -> float:
    """:func:`correlation_ceiling` on the scale of Kendall's tau, ``(2 / pi) arcsin(sqrt(R))`` (the relation of
    tau to Pearson's r for normal variables): the ceiling to compare a (weighted) tau with. It is lower than
    ``sqrt(R)``: 0.70 at R = 0.8, 0.33 at R = 0.25."""
    return float(2 / math.pi * math.asin(correlation_ceiling(reliability)))


def replicates_needed(r1: float, level: float = 0.8) -> float:
    """Smallest number of replicates whose mean reaches reliability ``level``, given the one-replicate
    reliability ``r1`` (Spearman-Brown prophecy); ``math.inf`` when ``r1 <= 0`` (no number suffices)."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if r1 is None or not np.isfinite(r1):
        raise ValueError(f"one-replicate reliability must be finite, got {r1}")
    if r1 > 1:
        raise ValueError(f"one-replicate reliability must be at most 1, got {r1}")
    if r1 <= 0:
        return math.inf
    n = level * (1 - r1) / (r1 * (1 - level))
    return max(1, int(math.ceil(n - 1e-9)))


def icc_consistency(matrix) -> float:
    """ICC(3,1) of a (source x replicate) matrix: two-way mixed effects, consistency, single measurement,
    ``(MS_rows - MS_error) / (MS_rows + (k - 1) MS_error)``. NaN when the matrix has no variation."""
    x = np.asarray(matrix, dtype=float)
    n, k = x.shape
    if n < 2 or k < 2:
        raise ValueError(f"ICC needs at least 2 sources and 2 replicates, got {n} x {k}")
    gm = x.mean()
    ms_rows = k * ((x.mean(1) - gm) ** 2).sum() / (n - 1)
    resid = x - x.mean(1, keepdims=True) - x.mean(0, keepdims=True) + gm
    ms_err = (resid ** 2).sum() / ((n - 1) * (k - 1))
    den = ms_rows + (k - 1) * ms_err
    return float((ms_rows - ms_err) / den) if den > 0 else float("nan")


def balanced_splits(k: int, half: int | None = None, max_splits: int = 200, seed: int = 0) -> list[tuple]:
    """Unordered pairs of disjoint ``half``-subsets of ``range(k)`` (default ``half = k // 2``): all of them
    when there are at most ``max_splits``, else ``max_splits`` distinct pairs drawn with ``seed``."""
    half = k // 2 if half is None else int(half)
    if half < 1 or 2 * half > k:
        raise ValueError(f"a half of {half} replicate(s) needs 2 <= 2 * half <= k = {k}")
    total = comb(k, half) * comb(k - half, half) // 2
    if total <= max_splits:
        seen, out = set(), []
        for a in itertools.combinations(range(k), half):
            rest = [i for i in range(k) if i not in a]
            for b in itertools.combinations(rest, half):
                key = frozenset((a, b))
                if key not in seen:
                    seen.add(key)
                    out.append((a, b))
        return out
    rng = np.random.default_rng(seed)
    seen, out = set(), []
    while len(out) < max_splits:
        perm = rng.permutation(k)
        a, b = tuple(sorted(perm[:half].tolist())), tuple(sorted(perm[half:2 * half].tolist()))
        key = frozenset((a, b))
        if key not in seen:
            seen.add(key)
            out.append((a, b))
    return out


def _corr(x: np.ndarray, y: np.ndarray, method: str) -> float:
    if method == "spearman":
        x, y = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


# ----------------------------------------------------------------------------------------------------------
# reliability


@dataclass
class SplitHalf:
    """Result of :func:`split_half_reliability`.

    ``per_target``: one row per target: ``sources``, ``replicates`` (k), ``half`` (h), ``splits``, ``r_half``
    (mean correlation between the halves), ``reliability`` (Spearman-Brown: a mean of ``2 h`` replicates;
    below -1 when ``r_half < -1/3``, i.e. no reliability at all) and ``r1`` (``r_half`` stepped down to one
    replicate). ``overall``: Spearman-Brown of the mean ``r_half`` over targets;
    ``mean_over_targets``: the mean of the per-target reliabilities; ``min_over_targets``; ``n`` = 2 h."""
    per_target: pd.DataFrame
    overall: float
    mean_over_targets: float
    min_over_targets: float
    n: int
    method: str


@dataclass
class OneSeed:
    """Result of :func:`one_seed_reliability`: ``per_target`` (``sources``, ``replicates``, ``r1`` = ICC(3,1),
    ``low``, ``high``), ``overall`` (mean r1 over targets) and its interval ``low``, ``high`` at ``ci``."""
    per_target: pd.DataFrame
    overall: float
    low: float
    high: float
    ci: float
    n_boot: int


def split_half_reliability(table: pd.DataFrame, half: int | None = None, method: str = "pearson",
                           exclude_self: bool = True, max_splits: int = 200, seed: int = 0,
                           **columns) -> SplitHalf:
    """Split-half reliability of the mean-over-replicates ground truth, per target and overall (see the
    module docstring). ``columns``: ``target=``, ``source=``, ``replicate=``, ``value=`` to rename."""
    if method not in ("pearson", "spearman"):
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    mats = check_replicates(table, exclude_self=exclude_self, **columns)
    rows, all_r = [], []
    for tg, m in mats.items():
        x = m.to_numpy()
        k = x.shape[1]
        h = k // 2 if half is None else int(half)
        splits = balanced_splits(k, h, max_splits, seed)
        rs = np.array([_corr(x[:, list(a)].mean(1), x[:, list(b)].mean(1), method) for a, b in splits])
        r = float(np.nanmean(rs)) if np.isfinite(rs).any() else float("nan")
        all_r.append(rs)
        rel = spearman_brown(r, 2.0) if np.isfinite(r) else float("nan")
        rows.append({"target": tg, "sources": x.shape[0], "replicates": k, "half": h, "splits": len(splits),
                     "r_half": r, "reliability": rel,
                     "r1": spearman_brown(r, 1.0 / h) if np.isfinite(r) else float("nan")})
    per = pd.DataFrame(rows)
    pooled = np.concatenate(all_r)
    r_all = float(np.nanmean(pooled)) if np.isfinite(pooled).any() else float("nan")
    halves = set(per["half"])
    n = 2 * halves.pop() if len(halves) == 1 else -1
    return SplitHalf(per, spearman_brown(r_all, 2.0) if np.isfinite(r_all) else float("nan"),
                     float(per["reliability"].mean()), float(per["reliability"].min()), n, method)


def one_seed_reliability(table: pd.DataFrame, n_boot: int = 2000, ci: float = 0.9, seed: int = 0,
                         exclude_self: bool = True, **columns) -> OneSeed:
    """Reliability of one replicate (ICC(3,1)) per target and its mean over targets, with percentile intervals
    from ``n_boot`` resamplings of the sources within every target (generator seeded by ``seed``)."""
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie in (0, 1), got {ci}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    mats = check_replicates(table, exclude_self=exclude_self, **columns)
    rng = np.random.default_rng(seed)
    lo_q, hi_q = (1 - ci) / 2, 1 - (1 - ci) / 2
    point = {tg: icc_consistency(m.to_numpy()) for tg, m in mats.items()}
    boots = np.empty((n_boot, len(mats)))
    for b in range(n_boot):
        for j, m in enumerate(mats.values()):
            x = m.to_numpy()
            boots[b, j] = icc_consistency(x[rng.integers(0, len(x), len(x))])
    rows = []
    for j, (tg, m) in enumerate(mats.items()):
        col = boots[:, j]
        rows.append({"target": tg, "sources": m.shape[0], "replicates": m.shape[1], "r1": point[tg],
                     "low": float(np.nanquantile(col, lo_q)), "high": float(np.nanquantile(col, hi_q))})
    mean_boot = np.nanmean(boots, axis=1)
    return OneSeed(pd.DataFrame(rows), float(np.nanmean(list(point.values()))),
                   float(np.nanquantile(mean_boot, lo_q)), float(np.nanquantile(mean_boot, hi_q)), ci, n_boot)


def seed_spread(table: pd.DataFrame, exclude_self: bool = True, **columns) -> pd.DataFrame:
    """Per target: the range of the sources' means (max - min), the median SD of a source over replicates
    (ddof 1), the median gap between neighbouring sources' means, and their ratio; plus a row ``"all"`` (median
    SD over every (target, source), median over targets of the median gap, median range)."""
    mats = check_replicates(table, exclude_self=exclude_self, **columns)
    rows, sds = [], []
    for tg, m in mats.items():
        x = m.to_numpy()
        mean = np.sort(x.mean(1))
        sd = x.std(axis=1, ddof=1)
        sds.append(sd)
        rows.append({"target": tg, "sources": x.shape[0], "replicates": x.shape[1],
                     "source_range": float(mean[-1] - mean[0]), "seed_sd": float(np.median(sd)),
                     "gap": float(np.median(np.diff(mean)))})
    per = pd.DataFrame(rows)
    per.loc[len(per)] = {"target": "all", "sources": int(per["sources"].sum()),
                         "replicates": int(per["replicates"].max()),
                         "source_range": float(per["source_range"].median()),
                         "seed_sd": float(np.median(np.concatenate(sds))), "gap": float(per["gap"].median())}
    per["sd_over_gap"] = per["seed_sd"] / per["gap"]
    return per


def read_markdown_table(path) -> pd.DataFrame:
    """A pipe table of a Markdown file (the first one) as a DataFrame of strings: how the copied study's
    ``reliability.md`` (its measured CPU minutes) is read."""
    from pathlib import Path

    lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip().startswith("|")]
    if len(lines) < 3:
        raise ValueError(f"{path}: no Markdown pipe table found")
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    header, body = cells[0], [c for c in cells[2:] if len(c) == len(cells[0])]
    return pd.DataFrame(body, columns=header)


def subsweep_replicates(runs: pd.DataFrame, by: str, value: str = "test_auc", select_by: str = "val_loss",
                        target: str = "target", source: str = "source") -> pd.DataFrame:
    """Replicates from a sweep that ran each configuration once ([D]'s): the runs are split by the values of
    the hyperparameter ``by`` into sub-sweeps (each one a whole grid of the other hyperparameters), the run
    with the lowest ``select_by`` selected per (target, source) in each sub-sweep ([D]'s rule), and its
    ``value`` returned as one replicate: a tidy table of :data:`COLUMNS`. Only the (target, source) present
    in every sub-sweep of their target are kept. What varies between these replicates is the sub-sweep's
    ``by`` value and the training noise of each run, not a seed alone: read the result as "how much [D]'s
    selected AUC moves between equivalent-looking sub-sweeps"."""
    need = [target, source, by, value, select_by]
    missing = [c for c in need if c not in runs.columns]
    if missing:
        raise ValueError(f"runs lack the column(s) {missing}; they have {list(runs.columns)}")
    r = runs[need].dropna(subset=[value, select_by])
    if r[by].nunique() < 2:
        raise ValueError(f"the runs have {r[by].nunique()} value(s) of {by!r}; sub-sweeps need at least 2")
    best = r.sort_values(select_by, kind="stable").groupby([target, source, by], sort=True).head(1)
    out = best.rename(columns={by: "replicate", value: "value", target: "target", source: "source"})
    full = out.groupby(["target", "source"])["replicate"].transform("nunique")
    per_target = out.groupby("target")["replicate"].transform("nunique")
    out = out[full == per_target]
    return out[list(COLUMNS)].sort_values(list(COLUMNS[:3])).reset_index(drop=True)


def variance_components(table: pd.DataFrame, exclude_self: bool = True, **columns) -> pd.DataFrame:
    """Per target, the two-way decomposition behind ICC(3,1): ``source_sd`` (SD of the sources' true
    values, ``sqrt((MS_rows - MS_error) / k)``, 0 when negative), ``noise_sd`` (SD of one replicate around its
    source's value after the replicate's shared shift, ``sqrt(MS_error)``), ``r1 = source_sd^2 / (source_sd^2 +
    noise_sd^2)`` (equal to :func:`icc_consistency` when ``MS_rows >= MS_error``): the spread between sources
    against the noise of one run, in the units of the value."""
    mats = check_replicates(table, exclude_self=exclude_self, **columns)
    rows = []
    for tg, m in mats.items():
        x = m.to_numpy()
        n, k = x.shape
        gm = x.mean()
        ms_rows = k * ((x.mean(1) - gm) ** 2).sum() / (n - 1)
        resid = x - x.mean(1, keepdims=True) - x.mean(0, keepdims=True) + gm
        ms_err = (resid ** 2).sum() / ((n - 1) * (k - 1))
        var_s = max((ms_rows - ms_err) / k, 0.0)
        rows.append({"target": tg, "sources": n, "replicates": k, "source_sd": float(np.sqrt(var_s)),
                     "noise_sd": float(np.sqrt(ms_err)),
                     "r1": float(var_s / (var_s + ms_err)) if var_s + ms_err > 0 else float("nan")})
    return pd.DataFrame(rows)


def reliability_summary(table: pd.DataFrame, level: float = 0.8, n_boot: int = 2000, ci: float = 0.9,
                        seed: int = 0, method: str = "pearson", exclude_self: bool = True,
                        **columns) -> pd.DataFrame:
    """One row per target and a last row ``"all targets"``: ``sources``, ``replicates``, ``split_half`` (of
    the mean of ``n_split`` replicates, :func:`split_half_reliability`; the last row steps up the mean
    correlation over targets), ``r1`` with ``r1_low`` / ``r1_high`` (:func:`one_seed_reliability`; the last row
    the mean over targets and its interval), ``needed`` (replicates for ``level`` from ``r1``,
    :func:`replicates_needed`) and ``reliability_now`` (``r1`` stepped up to the replicates that ran)."""
    sh = split_half_reliability(table, method=method, exclude_self=exclude_self, seed=seed, **columns)
    one = one_seed_reliability(table, n_boot=n_boot, ci=ci, seed=seed, exclude_self=exclude_self, **columns)
    per = sh.per_target[["target", "sources", "replicates", "reliability"]].rename(
        columns={"reliability": "split_half"})
    per["n_split"] = 2 * sh.per_target["half"]
    per = per.merge(one.per_target[["target", "r1", "low", "high"]].rename(
        columns={"low": "r1_low", "high": "r1_high"}), on="target")
    per.loc[len(per)] = {"target": "all targets", "sources": int(per["sources"].sum()),
                         "replicates": int(per["replicates"].max()), "split_half": sh.overall,
                         "n_split": sh.n, "r1": one.overall, "r1_low": one.low, "r1_high": one.high}
    per["needed"] = [replicates_needed(r, level) if np.isfinite(r) else float("nan") for r in per["r1"]]
    per["reliability_now"] = [spearman_brown(max(r, 0.0), k) if np.isfinite(r) else float("nan")
                              for r, k in zip(per["r1"], per["replicates"])]
    cols = ["target", "sources", "replicates", "n_split", "split_half", "r1", "r1_low", "r1_high",
            "reliability_now", "needed"]
    return per[cols]


def split_half_by_size(table: pd.DataFrame, method: str = "pearson", exclude_self: bool = True,
                       max_splits: int = 200, seed: int = 0, **columns) -> pd.DataFrame:
    """The split-half reliability of a mean of ``n = 2 h`` replicates for every ``h`` from 1 to ``k // 2``
    (measured, not prophesied): one row per (n, target) plus ``"all targets"`` rows (the Spearman-Brown of the
    mean correlation, as :attr:`SplitHalf.overall`), columns ``n``, ``target``, ``reliability``."""
    mats = check_replicates(table, exclude_self=exclude_self, **columns)
    k = min(m.shape[1] for m in mats.values())
    rows = []
    for h in range(1, k // 2 + 1):
        sh = split_half_reliability(table, half=h, method=method, exclude_self=exclude_self,
                                    max_splits=max_splits, seed=seed, **columns)
        rows += [{"n": 2 * h, "target": t, "reliability": r} for t, r in zip(sh.per_target["target"],
                                                                          sh.per_target["reliability"])]
        rows.append({"n": 2 * h, "target": "all targets", "reliability": sh.overall})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------
# verdicts in words, for the chapters' prose (glued into their Markdown)

def replicates_text(n: float) -> str:
    """The replicates needed (:func:`replicates_needed`) as a word for prose: the integer, or ``"no finite
    number of"`` when the one-replicate reliability is not above 0 (infinitely many needed)."""
    return f"{int(n)}" if np.isfinite(n) else "no finite number of"


def rule_verdict(reliabilities, required_mean: float, required_each: float) -> bool:
    """Whether per-target reliabilities meet a rule for a ground truth: at least ``required_mean`` on average
    over the targets and at least ``required_each`` on every target. Targets without a value (NaN) are
    skipped, as pandas' mean and min skip them; no value at all fails."""
    r = pd.Series(reliabilities, dtype=float)
    return bool(r.notna().any() and r.mean() >= required_mean and r.min() >= required_each)


def replication_verdict(value: float, low: float, high: float) -> str:
    """A reliability measured again on fresh replicates against the interval of an earlier estimate, in words:
    below it (the earlier value, chosen after seeing it, was an optimistic draw), within it (it holds up), or
    above it."""
    if value < low:
        return ("below the study's interval: the study's value for this protocol, whose learning rate was picked "
                "after seeing it, was an optimistic draw")
    if value > high:
        return "above the study's interval: the study's value was, if anything, pessimistic"
    return "within the study's interval: the study's value holds up on fresh seeds"


def chance_correlation(n: int, alpha: float = 0.05) -> float:
    """The |Pearson r| that ``n`` points must exceed to be told apart from no correlation at two-sided level
    ``alpha`` (the t test with ``n - 2`` degrees of freedom); NaN for fewer than 3 points."""
    from scipy import stats

    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if n is None or not np.isfinite(n) or n < 3:
        return float("nan")
    df = int(n) - 2
    t = float(stats.t.ppf(1 - alpha / 2, df))
    return t / math.sqrt(df + t * t)


def correlation_verdict(r: float, reliability: float, n: int, alpha: float = 0.05) -> str:
    """What a score's correlation ``r`` with a ground truth of ``reliability`` over ``n`` sources can say, in
    words. The reliability caps any score's correlation at about ``sqrt(reliability)`` (attenuation); when that
    ceiling is not above :func:`chance_correlation` even a perfect score could not be told apart from chance
    here, so ``r`` carries the ground truth's caveat whatever its value; otherwise ``r`` is told apart from
    chance when ``|r|`` exceeds the threshold, and is within chance when it does not (the score's doing, not
    the ground truth's)."""
    if reliability is None or not np.isfinite(reliability):
        return "not measured (no reliability for this target)"
    if r is None or not np.isfinite(r):
        return "no correlation (the score is constant or missing)"
    crit = chance_correlation(n, alpha)
    if not np.isfinite(crit):
        return f"too few sources ({n}) for any correlation to be told apart from chance"
    cap = math.sqrt(max(float(reliability), 0.0))
    if cap <= crit:
        return (f"carries the caveat: at this reliability even a perfect score would reach about {cap:.2f}, "
                f"not beyond the {crit:.2f} that chance reaches over {n} sources")
    if abs(r) > crit:
        sign = "positive" if r > 0 else "negative"
        return f"told apart from chance ({sign}: |r| = {abs(r):.2f} beyond {crit:.2f}; ceiling about {cap:.2f})"
    return (f"within chance (|r| = {abs(r):.2f}, not beyond {crit:.2f}) although the ground truth would allow "
            f"up to about {cap:.2f}: the score's weakness, not the ground truth's")


def measurable_summary(table: pd.DataFrame, level: float = 0.8, n_boot: int = 2000, seed: int = 0,
                       min_sources: int = 3, exclude_self: bool = True) -> tuple[pd.DataFrame | None, pd.Series]:
    """:func:`reliability_summary` of the targets where it can be measured: a (target, source) counts when it
    has every replicate of its target (a failed run is no replicate), and a target when at least
    ``min_sources`` such candidate sources remain (the target's own source left out when ``exclude_self``).
    Returns ``(summary, candidates)``: ``summary`` is ``None`` with fewer than 2 replicates or no such target;
    ``candidates`` counts the complete candidate sources per target (the targets below ``min_sources`` are
    those left out)."""
    t = table[list(COLUMNS)]
    if exclude_self:
        t = t[[not is_self(s, g) for s, g in zip(t["source"], t["target"])]]
    per_target = t.groupby("target")["replicate"].transform("nunique")
    t = t[t.groupby(["target", "source"])["replicate"].transform("nunique") == per_target]
    candidates = t.groupby("target")["source"].nunique()
    measurable = candidates[candidates >= min_sources].index
    if t["replicate"].nunique() < 2 or not len(measurable):
        return None, candidates
    return reliability_summary(t[t["target"].isin(measurable)], level=level, n_boot=n_boot, seed=seed,
                               exclude_self=exclude_self), candidates
