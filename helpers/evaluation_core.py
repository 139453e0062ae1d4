"""The core every evaluation module shares: the wide tables, the name matching rule, the weighted tau and the
per-target correlation, and the paired bootstrap over sources.

:mod:`helpers.evaluation` (statistics across targets, figures), :mod:`helpers.evaluation_trust` (which metric
to trust) and :mod:`helpers.ground_truth` (selection rules and the noise ceiling) all build on these, so they
live here, below all three: each imports this module and none imports another one for its internals. The
rules themselves (name matching, the columns of :func:`correlate`, NaN handling) are documented in
:mod:`helpers.evaluation`, which re-exports the public names.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

from .names import canonical_name

STAT_COLUMNS = ("weighted_tau", "kendall_tau", "spearman", "pearson", "top1_relative", "regret")


# ----------------------------------------------------------------------------------------------------
# names and input checks


def _keys(labels, what: str, table: str, key: Callable) -> dict:
    out = {}
    for lab in labels:
        k = key(lab)
        if k in out:
            raise ValueError(f"{table}: {what} labels {out[k]!r} and {lab!r} both map to {k!r} "
                             "under the name matching rule; rename one of them")
        out[k] = lab
    return out


def _check_table(df, table: str) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{table} must be a pandas DataFrame indexed by source with one column per "
                         f"target, got {type(df).__name__}")
    if df.empty or df.shape[1] == 0:
        raise ValueError(f"{table} is empty")
    bad = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])]
    if bad:
        raise ValueError(f"{table} has non-numeric columns {bad[:5]}; convert them (pd.to_numeric) first")
    return df.astype(float)


def _align(scores, truth, key=canonical_name):
    """Checked float tables restricted to common targets (by key), with key maps for sources."""
    scores, truth = _check_table(scores, "scores"), _check_table(truth, "truth")
    s_src, t_src = _keys(scores.index, "source", "scores", key), _keys(truth.index, "source", "truth", key)
    s_tgt, t_tgt = _keys(scores.columns, "target", "scores", key), _keys(truth.columns, "target", "truth", key)
    targets = [k for k in s_tgt if k in t_tgt]
    if not targets:
        raise ValueError(f"scores and truth have no target in common (scores: {list(scores.columns)[:5]}, "
                         f"truth: {list(truth.columns)[:5]})")
    sources = [k for k in s_src if k in t_src]
    if not sources:
        raise ValueError(f"scores and truth have no source in common (scores: {list(scores.index)[:5]}, "
                         f"truth: {list(truth.index)[:5]})")
    S = pd.DataFrame(scores.loc[[s_src[k] for k in sources], [s_tgt[k] for k in targets]].to_numpy(),
                     index=sources, columns=targets)
    T = pd.DataFrame(truth.loc[[t_src[k] for k in sources], [t_tgt[k] for k in targets]].to_numpy(),
                     index=sources, columns=targets)
    return S, T, {k: s_src[k] for k in sources}, {k: s_tgt[k] for k in targets}


def _candidates(S: pd.DataFrame, T: pd.DataFrame, target_key: str, exclude_self: bool, key=canonical_name):
    """Source keys usable for one target: finite score and truth, self excluded."""
    x, y = S[target_key].to_numpy(), T[target_key].to_numpy()
    ok = np.isfinite(x) & np.isfinite(y)
    if exclude_self:
        ok &= np.array([key(s) != target_key for s in S.index])
    return ok


# ----------------------------------------------------------------------------------------------------
# per-target statistics


def _is_constant(v: np.ndarray) -> bool:
    return v.size == 0 or bool(np.all(v == v[0]))


def weighted_tau(x, y) -> float:
    """``scipy.stats.weightedtau(x, y)`` with its defaults; NaN when either side is constant or n < 2."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size < 2 or _is_constant(x) or _is_constant(y):
        return float("nan")
    return float(stats.weightedtau(x, y).statistic)


_FAST_WT = None


def _fast_weighted_tau_impl():
    """scipy's own kernel behind ``weightedtau`` (rank=True: the mean of both lexicographic directions),
    called without the public wrapper's overhead (about 10x faster for 14 sources). Used only by the
    bootstrap; checked against ``scipy.stats.weightedtau`` on tied and untied data before first use, and
    replaced by the public function if the private kernel is missing or disagrees."""
    global _FAST_WT
    if _FAST_WT is None:
        def public(x, y):
            return float(stats.weightedtau(x, y).statistic)
        try:
            from scipy.stats import _stats as _kernel

            def fast(x, y):
                return float((_kernel._weightedrankedtau(x, y, None, None, True)
                              + _kernel._weightedrankedtau(y, x, None, None, True)) / 2)

            rng = np.random.default_rng(0)
            probes = [(rng.random(14), rng.random(14)),
                      (np.repeat(rng.random(7), 2), np.repeat(rng.random(7), 2)),
                      (rng.integers(0, 4, 14).astype(float), rng.integers(0, 3, 14).astype(float))]
            ok = all(abs(fast(a, b) - public(a, b)) < 1e-12 for a, b in probes)
            _FAST_WT = fast if ok else public
        except Exception:  # pragma: no cover - depends on scipy internals
            _FAST_WT = public
    return _FAST_WT


def _weighted_tau_fast(x: np.ndarray, y: np.ndarray) -> float:
    """:func:`weighted_tau` for finite float64 arrays, through :func:`_fast_weighted_tau_impl`."""
    if x.size < 2 or _is_constant(x) or _is_constant(y):
        return float("nan")
    return _fast_weighted_tau_impl()(np.ascontiguousarray(x, dtype=np.float64),
                                     np.ascontiguousarray(y, dtype=np.float64))


def top1(x, y) -> tuple[float, float, np.ndarray]:
    """(top1_relative, regret, indices of the top-scored sources) for scores ``x`` and truth ``y``."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size == 0:
        return float("nan"), float("nan"), np.array([], int)
    top = np.flatnonzero(x == x.max())
    picked, best = float(y[top].mean()), float(y.max())
    rel = picked / best if best != 0 else float("nan")
    return rel, best - picked, top


def _pair_stats(x: np.ndarray, y: np.ndarray) -> dict:
    n = x.size
    const_x, const_y = _is_constant(x), _is_constant(y)
    out = dict.fromkeys(STAT_COLUMNS, float("nan"))
    if n >= 2 and not (const_x or const_y):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["weighted_tau"] = float(stats.weightedtau(x, y).statistic)
            out["kendall_tau"] = float(stats.kendalltau(x, y).statistic)
            out["spearman"] = float(stats.spearmanr(x, y).statistic)
            out["pearson"] = float(stats.pearsonr(x, y).statistic) if n >= 2 else float("nan")
    if n >= 1:
        out["top1_relative"], out["regret"], top = top1(x, y)
    else:
        top = np.array([], int)
    out.update(n_sources=n, constant_scores=bool(n >= 1 and const_x), constant_truth=bool(n >= 1 and const_y))
    return out, top


def correlate(scores: pd.DataFrame, truth: pd.DataFrame, exclude_self: bool = True,
              key: Callable = canonical_name) -> pd.DataFrame:
    """One row per target (index = the scores' target label) with the columns of the module docstring,
    plus ``top_source`` (top-scored; ``a|b`` when tied) and ``best_source`` (highest truth).

    Raises ``ValueError`` on non-DataFrame or non-numeric input, on labels that collide under ``key``,
    and when the tables share no source or no target.
    """
    S, T, src_label, tgt_label = _align(scores, truth, key)
    rows = {}
    for tk in S.columns:
        ok = _candidates(S, T, tk, exclude_self, key)
        x, y = S[tk].to_numpy()[ok], T[tk].to_numpy()[ok]
        names = [src_label[s] for s in S.index[ok]]
        row, top = _pair_stats(x, y)
        row["top_source"] = "|".join(str(names[i]) for i in top) if len(top) else None
        row["best_source"] = str(names[int(np.argmax(y))]) if y.size else None
        rows[tgt_label[tk]] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "target"
    out["n_sources"] = out["n_sources"].astype(int)
    return out



# ----------------------------------------------------------------------------------------------------
# bootstrap over sources


def _bootstrap_replicates(scores: Mapping[str, pd.DataFrame], truth: pd.DataFrame, n_boot: int, seed: int,
                          exclude_self: bool, key: Callable):
    """(metrics, full-sample mean per metric, replicate means (n_boot x metrics)) of the paired bootstrap over
    sources described in :func:`bootstrap_means`."""
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    metrics = list(scores)
    aligned = {m: _align(scores[m], truth, key) for m in metrics}
    targets = list(dict.fromkeys(t for m in metrics for t in aligned[m][0].columns))
    rng = np.random.default_rng(seed)
    per_target = np.full((n_boot, len(metrics), len(targets)), np.nan)
    full = np.full((len(metrics), len(targets)), np.nan)
    T_all = _check_table(truth, "truth")
    t_src = _keys(T_all.index, "source", "truth", key)
    t_tgt = _keys(T_all.columns, "target", "truth", key)
    for j, tk in enumerate(targets):
        col = T_all[t_tgt[tk]]
        src = [k for k, lab in t_src.items()
               if np.isfinite(col[lab]) and not (exclude_self and k == tk)]
        if not src:
            continue
        ys = np.array([col[t_src[k]] for k in src])
        xs = {}
        for m in metrics:
            S = aligned[m][0]
            if tk in S.columns:
                xs[m] = np.array([S.at[k, tk] if k in S.index else np.nan for k in src])
        draws = rng.integers(0, len(src), size=(n_boot, len(src)))
        for i, m in enumerate(metrics):
            if m not in xs:
                continue
            x = xs[m]
            ok = np.isfinite(x)
            full[i, j] = weighted_tau(x[ok], ys[ok])
            for b in range(n_boot):
                d = draws[b][ok[draws[b]]]
                per_target[b, i, j] = _weighted_tau_fast(x[d], ys[d])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        boots = np.nanmean(per_target, axis=2)
        point = np.nanmean(full, axis=1)
    return metrics, point, boots
