"""Ground truth from a sweep of fine-tuning runs: selection rules, and how much the ranking of the sources
moves when the sweep is resampled or the rule changes (the noise ceiling of any metric's agreement).

Works on a tidy table of runs (one row per run: source, target, validation and test values) and returns the
wide tables of :mod:`helpers.evaluation` (sources x targets), names matched by
:func:`helpers.names.canonical_name`. [D]'s sweep files are read by :mod:`helpers.reference`.

Noise ceiling (:func:`ground_truth_noise`)
------------------------------------------
The ground truth of a (source, target) pair is the test value of the run a selection rule picks from a
sweep (:func:`select_ground_truth`, rules in :func:`parse_rule`). Resampling the runs of every pair with
replacement (paired across rules) and selecting again gives replicates of the ground truth; the weighted
tau between a replicate and the reference ground truth (all runs, the reference rule) says how far the
ranking moves. Its expectation is the **ceiling**: the weighted tau that a metric which reproduced the
reference ranking exactly could expect against a ground truth measured again in the same way. A second,
more pessimistic number is the weighted tau between two independent replicates.

:func:`ground_truth_replicates` gives the replicates themselves, and :func:`noise_in_differences` how much they
move the paired difference between two metrics.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .evaluation_core import _check_table, _keys, _weighted_tau_fast
from .names import canonical_name

__all__ = ["parse_rule", "select_ground_truth", "ground_truth_noise", "ground_truth_replicates",
           "noise_in_differences"]

_RULE = re.compile(r"^(?:(min|max)|top(\d+))_(val_loss|val_auc|val_acc)$")


def parse_rule(rule: str) -> tuple[list[tuple[str, bool]], int]:
    """A selection rule as (sort keys, k): the k best runs by the keys, their test values averaged.

    ``min_val_loss``: lowest validation loss ([D]); ``max_val_auc`` / ``max_val_acc``: highest validation
    AUC / accuracy, ties broken by the lower validation loss; ``top<k>_val_loss`` / ``top<k>_val_auc`` /
    ``top<k>_val_acc``: the mean of the k best runs by that criterion. Keys are ``(column, ascending)``.
    Remaining ties keep the runs' order in the table (a stable sort).
    """
    m = _RULE.match(str(rule))
    if not m:
        raise ValueError(f"unknown selection rule {rule!r}; expected min_val_loss, max_val_auc, max_val_acc "
                         "or top<k>_<val_loss|val_auc|val_acc>")
    minmax, k, col = m.groups()
    if minmax == "max" and col == "val_loss" or minmax == "min" and col != "val_loss":
        raise ValueError(f"{rule!r}: validation loss is minimised, validation AUC and accuracy maximised")
    k = int(k) if k else 1
    if k < 1:
        raise ValueError(f"{rule!r}: k must be >= 1")
    keys = [(col, col == "val_loss")]
    if col != "val_loss":
        keys.append(("val_loss", True))
    return keys, k


def _order_ranks(cell: pd.DataFrame, keys) -> np.ndarray:
    """0 = the best run of a cell under the sort keys (stable: ties keep the table order)."""
    cols = [cell[c].to_numpy(float) if asc else -cell[c].to_numpy(float) for c, asc in keys]
    order = np.lexsort(cols[::-1])  # lexsort's last key is the primary one
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order))
    return ranks


def _select(ranks: np.ndarray, values: np.ndarray, draws: np.ndarray, k: int) -> np.ndarray:
    """Per row of ``draws`` (indices into the runs), the mean value of the k best drawn runs."""
    r = ranks[draws]
    if k == 1:
        pick = draws[np.arange(draws.shape[0]), np.argmin(r, axis=1)]
        return values[pick]
    kk = min(k, draws.shape[1])
    best = np.argsort(r, axis=1, kind="stable")[:, :kk]
    return values[np.take_along_axis(draws, best, axis=1)].mean(axis=1)


def _check_runs(runs: pd.DataFrame, needed: Sequence[str]) -> pd.DataFrame:
    if not isinstance(runs, pd.DataFrame):
        raise ValueError(f"runs must be a pandas DataFrame, got {type(runs).__name__}")
    missing = [c for c in needed if c not in runs.columns]
    if missing:
        raise ValueError(f"runs lack the columns {missing} (have {list(runs.columns)[:12]})")
    if runs.empty:
        raise ValueError("no runs")
    return runs


def _cells(runs: pd.DataFrame, rules: Sequence[str], value: str, strata: Sequence[str], source: str, target: str):
    """Runs grouped by (source, target, *strata), restricted to runs finite in every column the rules use."""
    parsed = {r: parse_rule(r) for r in rules}
    used = sorted({c for keys, _ in parsed.values() for c, _ in keys} | {value})
    runs = _check_runs(runs, [source, target, *strata, *used])
    finite = np.isfinite(runs[used].apply(pd.to_numeric, errors="coerce").astype(float)).all(axis=1)
    runs = runs[finite]
    if runs.empty:
        raise ValueError(f"no run has finite values in {used}")
    groups = runs.groupby([source, target, *strata], sort=False)
    return parsed, list(groups)


def select_ground_truth(runs: pd.DataFrame, rule: str = "min_val_loss", value: str = "test_auc",
                        strata: Sequence[str] = (), source: str = "source", target: str = "target") -> pd.DataFrame:
    """Ground truth (sources x targets) from a tidy table of runs, one row per run.

    Per (source, target, *strata) the rule (:func:`parse_rule`) picks the run(s) and their ``value`` is
    taken; strata (e.g. ``("fold",)`` or ``("seed",)``) are then averaged. Runs with a non-finite value in a
    column the rule uses (FAILED runs) are not candidates. Sources and targets keep their order of first
    appearance.
    """
    parsed, cells = _cells(runs, [rule], value, strata, source, target)
    keys, k = parsed[rule]
    rows = []
    for name, cell in cells:
        ranks = _order_ranks(cell, keys)
        v = _select(ranks, cell[value].to_numpy(float), np.arange(len(cell))[None, :], k)[0]
        rows.append((name[0], name[1], v))
    long = pd.DataFrame(rows, columns=["source", "target", "value"])
    out = long.groupby(["source", "target"], sort=False)["value"].mean().unstack("target")
    out = out.loc[list(dict.fromkeys(long["source"])), list(dict.fromkeys(long["target"]))]
    out.index.name, out.columns.name = "source", "target"
    return out


def ground_truth_noise(runs: pd.DataFrame, rules: Sequence[str] = ("min_val_loss",),
                       reference_rule: str = "min_val_loss", n_boot: int = 200, seed: int = 0, level: float = 0.95,
                       strata: Sequence[str] = (), value: str = "test_auc", exclude_self: bool = True,
                       source: str = "source", target: str = "target",
                       key: Callable = canonical_name) -> dict[str, pd.DataFrame]:
    """How much the ground-truth ranking moves when the sweep is resampled or the selection rule changes.

    The reference is :func:`select_ground_truth` of all runs under ``reference_rule``. Each replicate draws,
    for every (source, target, *strata) cell, as many runs as the cell has, with replacement (the same draws
    for every rule), and selects under each rule of ``rules``. Per target, over the candidate sources
    (finite reference, the source equal to the target excluded when ``exclude_self``), the weighted tau
    (``scipy.stats.weightedtau`` defaults) is computed between the replicate and the reference.

    Returns three tidy tables:

    ``per_target`` (one row per rule and target): ``n_sources``, ``runs_per_source`` (mean), ``tau_full``
    (the rule on all runs against the reference; 1 for the reference rule itself), ``boot_mean``,
    ``boot_sd``, ``ci_low``, ``ci_high`` (percentile interval of the replicates' tau), ``p_best_kept``
    (share of replicates whose best source is, or ties with, the reference's best) and ``tau_between``
    (mean weighted tau between independent replicates, paired two by two: the more pessimistic figure);

    ``summary`` (one row per rule): the same, averaged over targets, with ``ceiling`` = the mean over
    replicates of the replicate's mean tau over targets and its interval (``ceiling_low``,
    ``ceiling_high``) - directly comparable with a metric's mean weighted tau over targets;

    ``replicates``: ``rule, replicate, target, weighted_tau``.

    A noiseless sweep (every run of a cell with the same values) gives a ceiling of exactly 1.
    """
    if n_boot < 2:
        raise ValueError("n_boot must be >= 2")
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    rules = list(dict.fromkeys(rules))
    if not rules:
        raise ValueError("no selection rule given")
    all_rules = list(dict.fromkeys([reference_rule, *rules]))
    parsed, cells = _cells(runs, all_rules, value, strata, source, target)
    by = [source, target, *strata]
    if len(runs) and runs.groupby(by).size().max() < 2:
        raise ValueError(f"every ({', '.join(by)}) cell holds one run: there is no sweep to resample (a ceiling "
                         "of exactly 1 would say nothing); the noise between replicates is measured by "
                         "helpers.reliability")
    reference = select_ground_truth(runs, reference_rule, value, strata, source, target)
    _keys(reference.index, "source", "runs", key)
    _keys(reference.columns, "target", "runs", key)
    rng = np.random.default_rng(seed)

    # replicate values per rule and (source, target), averaged over strata
    reps = {r: {} for r in rules}
    full = {r: {} for r in rules}
    sizes: dict = {}
    for name, cell in cells:
        s, t = name[0], name[1]
        n = len(cell)
        draws = rng.integers(0, n, size=(n_boot, n))
        vals = cell[value].to_numpy(float)
        sizes.setdefault((s, t), []).append(n)
        for r in rules:
            keys, k = parsed[r]
            ranks = _order_ranks(cell, keys)
            reps[r].setdefault((s, t), []).append(_select(ranks, vals, draws, k))
            full[r].setdefault((s, t), []).append(_select(ranks, vals, np.arange(n)[None, :], k)[0])

    alpha = (1 - level) / 2
    rows, rep_rows = [], []
    per_rule_target_taus = {r: {} for r in rules}
    for t in reference.columns:
        col = reference[t]
        cand = [s for s in reference.index if np.isfinite(col[s]) and not (exclude_self and key(s) == key(t))]
        if len(cand) < 2:
            continue
        ref = col[cand].to_numpy(float)
        best = int(np.argmax(ref))
        for r in rules:
            R_ = np.column_stack([np.mean(reps[r][(s, t)], axis=0) if (s, t) in reps[r] else np.full(n_boot, np.nan)
                                  for s in cand])
            F_ = np.array([np.mean(full[r][(s, t)]) if (s, t) in full[r] else np.nan for s in cand])
            ok = np.isfinite(F_) & np.all(np.isfinite(R_), axis=0)
            taus = np.array([_weighted_tau_fast(R_[b, ok], ref[ok]) for b in range(n_boot)])
            pairs = np.array([_weighted_tau_fast(R_[b, ok], R_[b + 1, ok]) for b in range(0, n_boot - 1, 2)])
            kept = (R_[:, best] >= R_[:, ok].max(axis=1)) if ok[best] else np.zeros(n_boot, bool)
            per_rule_target_taus[r][t] = taus
            with np.errstate(all="ignore"):
                rows.append({"rule": r, "target": t, "n_sources": int(ok.sum()),
                             "runs_per_source": float(np.mean([np.sum(sizes[(s, t)]) for s in cand])),
                             "tau_full": _weighted_tau_fast(F_[ok], ref[ok]),
                             "boot_mean": float(np.nanmean(taus)), "boot_sd": float(np.nanstd(taus, ddof=1)),
                             "ci_low": float(np.nanquantile(taus, alpha)),
                             "ci_high": float(np.nanquantile(taus, 1 - alpha)),
                             "p_best_kept": float(kept.mean()), "tau_between": float(np.nanmean(pairs))})
            rep_rows.append(pd.DataFrame({"rule": r, "replicate": np.arange(n_boot), "target": t,
                                          "weighted_tau": taus}))
    if not rows:
        raise ValueError("no target has two candidate sources with a ground truth")
    per_target = pd.DataFrame(rows)
    summary = []
    for r in rules:
        mat = np.column_stack(list(per_rule_target_taus[r].values()))
        with np.errstate(all="ignore"):
            means = np.nanmean(mat, axis=1)
        g = per_target[per_target["rule"] == r]
        summary.append({"rule": r, "n_targets": len(g), "tau_full": g["tau_full"].mean(),
                        "ceiling": float(np.nanmean(means)), "ceiling_low": float(np.nanquantile(means, alpha)),
                        "ceiling_high": float(np.nanquantile(means, 1 - alpha)),
                        "p_best_kept": g["p_best_kept"].mean(), "tau_between": g["tau_between"].mean()})
    out = {"per_target": per_target, "summary": pd.DataFrame(summary).set_index("rule"),
           "replicates": pd.concat(rep_rows, ignore_index=True)}
    for df in out.values():
        df.attrs.update(n_boot=n_boot, seed=seed, level=level, reference_rule=reference_rule)
    return out


def ground_truth_replicates(runs: pd.DataFrame, rule: str = "min_val_loss", n_boot: int = 200, seed: int = 0,
                            value: str = "test_auc", strata: Sequence[str] = (), source: str = "source",
                            target: str = "target") -> list[pd.DataFrame]:
    """``n_boot`` ground truths (sources x targets, labels of :func:`select_ground_truth`) re-selected under
    ``rule`` from resampled sweeps: every (source, target, *strata) cell draws as many runs as it has, with
    replacement, the rule picks among the drawn runs, and strata are averaged (the replicates of
    :func:`ground_truth_noise`)."""
    if n_boot < 2:
        raise ValueError("n_boot must be >= 2")
    parsed, cells = _cells(runs, [rule], value, strata, source, target)
    keys, k = parsed[rule]
    reference = select_ground_truth(runs, rule, value, strata, source, target)
    rng = np.random.default_rng(seed)
    acc: dict = {}
    for name, cell in cells:
        n = len(cell)
        draws = rng.integers(0, n, size=(n_boot, n))
        acc.setdefault((name[0], name[1]), []).append(_select(_order_ranks(cell, keys), cell[value].to_numpy(float),
                                                              draws, k))
    out = []
    for b in range(n_boot):
        g = pd.DataFrame(np.nan, index=reference.index, columns=reference.columns)
        for (s, t), parts in acc.items():
            g.at[s, t] = float(np.mean([p[b] for p in parts]))
        out.append(g)
    return out


def noise_in_differences(scores: Mapping[str, pd.DataFrame], runs: pd.DataFrame, reference: str,
                         rule: str = "min_val_loss", n_boot: int = 200, seed: int = 0, exclude_self: bool = True,
                         key: Callable = canonical_name, **replicate_kwargs) -> pd.DataFrame:
    """How much the ground truth's own noise moves the *paired* difference between two metrics.

    Every metric of ``scores`` (sources x targets) is correlated (weighted tau, scipy defaults) with each of
    the :func:`ground_truth_replicates` of ``runs`` and averaged over targets (candidate sources: finite truth
    and score, the self source left out when ``exclude_self``). Per metric: ``difference`` (mean over
    replicates of its mean minus the ``reference`` metric's), ``sd_difference`` (SD of that difference over the
    replicates: the spread the ground-truth noise adds to a paired comparison) and ``sd_alone`` (SD of the
    metric's own mean: the spread it adds to one metric's agreement, which the noise ceiling bounds). Two
    metrics that rank the sources alike move together with the ground truth, so ``sd_difference`` is then far
    below ``sd_alone``."""
    if reference not in scores:
        raise ValueError(f"reference {reference!r} is not among the scores ({list(scores)[:8]} ...)")
    reps = ground_truth_replicates(runs, rule, n_boot, seed, **replicate_kwargs)
    first = reps[0]
    t_src = _keys(first.index, "source", "runs", key)
    t_tgt = _keys(first.columns, "target", "runs", key)
    metrics = list(scores)
    means = np.full((n_boot, len(metrics)), np.nan)
    per = np.full((n_boot, len(metrics), len(t_tgt)), np.nan)
    stack = np.stack([r.to_numpy(float) for r in reps])  # (n_boot, sources, targets)
    src_pos = {k: first.index.get_loc(lab) for k, lab in t_src.items()}
    for i, m in enumerate(metrics):
        S = _check_table(scores[m], f"scores[{m!r}]")
        s_src = _keys(S.index, "source", m, key)
        s_tgt = _keys(S.columns, "target", m, key)
        for j, (tk, tlab) in enumerate(t_tgt.items()):
            if tk not in s_tgt:
                continue
            jj = first.columns.get_loc(tlab)
            cand = [k for k in t_src if k in s_src and not (exclude_self and k == tk)
                    and np.isfinite(S.at[s_src[k], s_tgt[tk]])]
            if len(cand) < 2:
                continue
            x = np.array([S.at[s_src[k], s_tgt[tk]] for k in cand], float)
            rows = [src_pos[k] for k in cand]
            for b in range(n_boot):
                y = stack[b, rows, jj]
                ok = np.isfinite(y)
                if ok.sum() >= 2:
                    per[b, i, j] = _weighted_tau_fast(x[ok], y[ok])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(per, axis=2)
    r = metrics.index(reference)
    diff = means - means[:, [r]]
    out = pd.DataFrame({"difference": np.nanmean(diff, axis=0), "sd_difference": np.nanstd(diff, axis=0, ddof=1),
                        "sd_alone": np.nanstd(means, axis=0, ddof=1)}, index=pd.Index(metrics, name="metric"))
    out.attrs.update(n_boot=n_boot, seed=seed, rule=rule, reference=reference)
    return out
