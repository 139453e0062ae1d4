"""Correlation conventions of the published benchmarks, as named options.

Per (target, metric), over the candidates with a finite score (a ``higher_is_better=False`` score negated):

``scipy`` (default)
    ``scipy.stats.weightedtau(score, truth)`` with its defaults: hyperbolic additive weigher, the weights of
    a pair averaged over the decreasing lexicographic ranks by (score, truth) and by (truth, score). [D],
    SFDA and Chaves et al. per data set use it. Summary over targets: the mean.
``truth_weighted``
    ``scipy.stats.weightedtau(truth, score, rank=None)``: the weights follow the fine-tuned ranking only
    (Model Spider's README table). Summary: the mean.
``pooled``
    Chaves et al. (TMLR 2024)'s overall grouped weighted tau: per target, every pair of candidates is
    concordant or discordant with weight ``h(r_s(i)) + h(r_s(j)) + h(r_t(i)) + h(r_t(j))``, ``h(r) = 1/(1+r)``,
    ``r_s`` / ``r_t`` the 0-based decreasing lexicographic ranks within that target by (score, truth) and
    (truth, score); concordant, discordant, tied and total weights are summed over all targets and the
    summary is ``(C - D) / sqrt((W - T_score) (W - T_truth))``. Without ties it equals the mean of the
    per-target values (every target with n candidates has the same total weight); with tied scores it does
    not. Per-target values are the ``scipy`` ones, as in Chaves' per-data-set figures.

Kendall's tau-b is reported beside the weighted tau in every convention (``pooled``: the same grouped
formula with unit weights).

A constant score column has no ranking: ``constant="nan"`` (ours) reports NaN and leaves the target out of
means, ``constant="zero"`` (Chaves' code) reports 0 and keeps it.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

CONVENTIONS = ("scipy", "truth_weighted", "pooled")
CONSTANT = ("nan", "zero")


def check_convention(convention: str, constant: str = "nan") -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    if constant not in CONSTANT:
        raise ValueError(f"constant must be 'nan' or 'zero', got {constant!r}")


def _constant(v: np.ndarray) -> bool:
    return v.size == 0 or bool(np.all(v == v[0]))


_KERNEL = None


def _kernel():
    """scipy's kernel behind ``weightedtau`` (called without the public wrapper, ~10x faster), checked against
    the public function for both conventions on tied and untied data before first use; the public function
    otherwise."""
    global _KERNEL
    if _KERNEL is None:
        def public(x, y, truth_weighted):
            return float(stats.weightedtau(y, x, rank=None).statistic if truth_weighted
                         else stats.weightedtau(x, y).statistic)
        try:
            from scipy.stats import _stats as k

            def fast(x, y, truth_weighted):
                if truth_weighted:
                    return float(k._weightedrankedtau(y, x, None, None, True))
                return float((k._weightedrankedtau(x, y, None, None, True)
                              + k._weightedrankedtau(y, x, None, None, True)) / 2)

            rng = np.random.default_rng(0)
            probes = [(rng.random(12), rng.random(12)),
                      (np.repeat(rng.random(6), 2), rng.random(12)),
                      (rng.integers(0, 4, 12).astype(float), rng.integers(0, 3, 12).astype(float))]
            ok = all(abs(fast(a, b, tw) - public(a, b, tw)) < 1e-12 for a, b in probes for tw in (False, True))
            _KERNEL = fast if ok else public
        except Exception:  # pragma: no cover - depends on scipy internals
            _KERNEL = public
    return _KERNEL


def weighted_tau(score, truth, convention: str = "scipy", constant: str = "nan") -> float:
    """The weighted tau alone (no tau-b) of one target under ``convention``; see :func:`pair_taus`."""
    x, y = np.ascontiguousarray(score, dtype=np.float64), np.ascontiguousarray(truth, dtype=np.float64)
    if x.size < 2 or _constant(y):
        return float("nan")
    if _constant(x):
        return 0.0 if constant == "zero" else float("nan")
    return _kernel()(x, y, convention == "truth_weighted")


def pair_taus(score, truth, convention: str = "scipy", constant: str = "nan") -> tuple[float, float]:
    """(weighted tau, Kendall tau-b) of one target under ``convention`` (``pooled`` uses the ``scipy``
    per-target value). NaN when fewer than 2 candidates or a constant truth; a constant score gives NaN or 0
    according to ``constant``."""
    check_convention(convention, constant)
    x, y = np.asarray(score, float), np.asarray(truth, float)
    if x.size < 2 or _constant(y):
        return float("nan"), float("nan")
    if _constant(x):
        v = 0.0 if constant == "zero" else float("nan")
        return v, v
    wt = weighted_tau(x, y, convention, constant)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kt = stats.kendalltau(x, y).statistic
    return float(wt), float(kt)


def _lex_rank_desc(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """0-based position of each element when sorted decreasingly by (primary, secondary)."""
    order = np.lexsort((secondary, primary))[::-1]
    rank = np.empty(order.size, dtype=float)
    rank[order] = np.arange(order.size)
    return rank


def pooled_components(score, truth, weighted: bool = True) -> np.ndarray:
    """(concordant, discordant, score-tied, truth-tied, total) weights of one target's pairs under the
    grouped convention (see the module docstring)."""
    x, y = np.asarray(score, float), np.asarray(truth, float)
    n = x.size
    if n < 2:
        return np.zeros(5)
    i, j = np.triu_indices(n, 1)
    if weighted:
        hx = 1.0 / (1.0 + _lex_rank_desc(x, y))
        hy = 1.0 / (1.0 + _lex_rank_desc(y, x))
        w = hx[i] + hx[j] + hy[i] + hy[j]
    else:
        w = np.ones(i.size)
    sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    prod = sx * sy
    return np.array([w[prod > 0].sum(), w[prod < 0].sum(), w[(prod == 0) & (sx == 0)].sum(),
                     w[(prod == 0) & (sy == 0)].sum(), w.sum()])


def pooled_tau(groups, weighted: bool = True, constant: str = "nan") -> float:
    """The grouped (pooled) tau over ``groups``: an iterable of (score, truth) arrays, one per target.
    All-constant scores over every group give NaN or 0 according to ``constant`` (Chaves' code: 0)."""
    check_convention("pooled", constant)
    groups = [(np.asarray(s, float), np.asarray(t, float)) for s, t in groups]
    if not groups:
        return float("nan")
    all_x = np.concatenate([g[0] for g in groups])
    if _constant(all_x):
        return 0.0 if constant == "zero" else float("nan")
    c, d, tx, ty, w = np.sum([pooled_components(s, t, weighted) for s, t in groups], axis=0)
    den = np.sqrt((w - tx) * (w - ty))
    return float((c - d) / den) if den > 0 else float("nan")
