"""Which metric to trust: baselines that use no target features, the paired bootstrap of differences,
rank-averaged ensembles with leave-one-target-out selection, and cost against quality.

Everything works on the wide tables of :mod:`helpers.evaluation`: score and ground-truth tables indexed by
source with one column per target, names matched by :func:`helpers.names.canonical_name`; the shared kernel
(alignment, weighted tau, :func:`~helpers.evaluation_core.correlate`, the bootstrap) comes from
:mod:`helpers.evaluation_core`. Nothing here is specific to [D]'s published tables; the [D] specifics (which
sweep files, which source names) live in :mod:`helpers.reference`.

Baselines (higher score = predicted better source; the direction is declared here, before any result)
---------------------------------------------------------------------------------------------------------
* :func:`training_set_sizes`: the number of images the source was pre-trained on (more = better). MedMNIST
  flags use the official train split size of ``medmnist.INFO[flag]["n_samples"]["train"]``; ImageNet the
  1,281,167 images of the ILSVRC-2012 train split; RadImageNet its 1.35 million images (the whole set, as
  published by Mei et al., Radiology: AI 2022); a leave-target-out MedMNIST union the sum of the train splits
  of the 2D flags other than the target; random initialisation 0.
* :func:`torchvision_imagenet_meta` / :func:`architecture_baselines`: parameter count (more = better) and
  ImageNet-1k top-1 accuracy (higher = better) from torchvision's weight metadata
  (``get_model_weights(arch).IMAGENET1K_V1.meta``: ``num_params`` and ``_metrics``; read offline).
* :func:`loto_prior`: the leave-one-target-out prior. For target t, a source's score is one minus its mean
  normalised ground-truth rank on the *other* targets (rank 1 = best, normalised to 0 .. 1 over that
  target's candidates, the source equal to that target excluded). It uses ground truth, but never t's.

The ground truth's selection rules and its noise ceiling (:func:`~helpers.ground_truth.select_ground_truth`,
:func:`~helpers.ground_truth.ground_truth_noise`, ...) live in :mod:`helpers.ground_truth`, and are re-exported
here under their earlier path ``helpers.evaluation_trust.<name>``.

Ensembles and selection
-----------------------
:func:`rank_average` averages, per target, the percentile ranks of several metrics over the candidate
sources; :func:`ensembles` builds all combinations of given sizes; :func:`loto_selection` picks the best
candidate on all targets but one and scores it on the held-out one.

Cost against quality
--------------------
:func:`read_metric_benchmark` parses ``benchmarks/results/metrics_*.txt``; :func:`nearest_size` picks the
benchmark size closest (in log scale) to the N of a study; :func:`cost_quality` and :func:`pareto_front`
find the metrics no other metric beats at lower cost, and :func:`cost_quality_figure` draws them.
"""
from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .evaluation_core import _bootstrap_replicates, _check_table, _keys, _weighted_tau_fast, correlate
from .ground_truth import (  # noqa: F401  (re-exported: their path before helpers.ground_truth)
    ground_truth_noise,
    ground_truth_replicates,
    noise_in_differences,
    parse_rule,
    select_ground_truth,
)
from .names import canonical_name
from .reliability import correlation_ceiling, replicates_text, tau_ceiling

# ----------------------------------------------------------------------------------------------------
# baselines that use no target features

#: ILSVRC-2012 (ImageNet-1k) training images (Russakovsky et al., IJCV 2015)
IMAGENET_TRAIN_IMAGES = 1_281_167
#: RadImageNet: 1.35 million CT, MRI and ultrasound images (Mei et al., Radiology: AI 2022), whole set
RADIMAGENET_IMAGES = 1_350_000
#: the 12 MedMNIST 2D flags (PROTOCOL section 1); a leave-target-out union is pre-trained on all but the target
MEDMNIST_2D_FLAGS = ("pathmnist", "chestmnist", "dermamnist", "octmnist", "pneumoniamnist", "retinamnist",
                     "breastmnist", "bloodmnist", "tissuemnist", "organamnist", "organcmnist", "organsmnist")
#: source names that denote the leave-target-out MedMNIST union ([D]: ``medmnist``; this book: ``medmnist_union``)
UNION_SOURCES = ("medmnist", "medmnist_union")


def medmnist_train_sizes(flags: Sequence[str] = MEDMNIST_2D_FLAGS) -> dict[str, int]:
    """Official train split size per MedMNIST flag, from ``medmnist.INFO[flag]["n_samples"]["train"]``."""
    from medmnist import INFO

    unknown = [f for f in flags if f not in INFO]
    if unknown:
        raise ValueError(f"not MedMNIST flags: {unknown}")
    return {f: int(INFO[f]["n_samples"]["train"]) for f in flags}


def training_set_sizes(sources: Sequence[str], targets: Sequence[str], extra: Mapping | None = None,
                       union_sources: Sequence[str] = UNION_SOURCES,
                       union_flags: Sequence[str] = MEDMNIST_2D_FLAGS, key: Callable = canonical_name) -> pd.DataFrame:
    """Baseline score table (sources x targets): the size of each source's pre-training set.

    Known names (by ``key``): MedMNIST flags (official train split), ``imagenet``
    (:data:`IMAGENET_TRAIN_IMAGES`), ``radimagenet`` (:data:`RADIMAGENET_IMAGES`), ``random`` (0) and the
    union names of ``union_sources`` (per target: the sum of the train splits of ``union_flags`` other than the
    target). ``extra`` maps a source to its own number (a scalar, or a ``{target: number}`` dict for sources
    whose pre-training set depends on the target); it overrides the defaults. Any other source is NaN (not
    ranked). Higher = predicted better.
    """
    if not len(sources) or not len(targets):
        raise ValueError("need at least one source and one target")
    flag_sizes = {key(f): n for f, n in medmnist_train_sizes(union_flags).items()}
    fixed = {**flag_sizes, key("imagenet"): IMAGENET_TRAIN_IMAGES, key("radimagenet"): RADIMAGENET_IMAGES,
             key("random"): 0}
    unions = {key(u) for u in union_sources}
    extra = {key(k): v for k, v in (extra or {}).items()}
    out = pd.DataFrame(np.nan, index=pd.Index(list(sources), name="source"),
                       columns=pd.Index(list(targets), name="target"))
    for s in out.index:
        k = key(s)
        for t in out.columns:
            if k in extra:
                v = extra[k]
                out.at[s, t] = v.get(t, v.get(key(t), np.nan)) if isinstance(v, Mapping) else v
            elif k in unions:
                out.at[s, t] = sum(n for f, n in flag_sizes.items() if f != key(t))
            elif k in fixed:
                out.at[s, t] = fixed[k]
    return out


def static_baseline(values: Mapping | pd.Series, targets: Sequence[str]) -> pd.DataFrame:
    """A score table that gives every target the same per-source ``values`` (``{source: value}``)."""
    s = pd.Series(values, dtype=float)
    if s.empty or not len(targets):
        raise ValueError("need at least one source value and one target")
    out = pd.DataFrame({t: s for t in targets})
    out.index.name, out.columns.name = "source", "target"
    return out


def torchvision_imagenet_meta(archs: Mapping[str, str] | Sequence[str], weights: str = "IMAGENET1K_V1") -> pd.DataFrame:
    """Parameter count and ImageNet-1k accuracy of torchvision architectures, from the weights' metadata.

    ``archs``: torchvision builder names, or ``{label: builder name}`` to index the result by other labels
    (e.g. [D]'s ``densenet`` -> ``densenet121``). Columns ``arch``, ``weights``, ``num_params``,
    ``imagenet_top1``, ``imagenet_top5``. Reads only metadata: no download, works offline.
    """
    import torchvision

    mapping = dict(archs) if isinstance(archs, Mapping) else {a: a for a in archs}
    if not mapping:
        raise ValueError("no architectures given")
    rows = {}
    for label, arch in mapping.items():
        try:
            enum = torchvision.models.get_model_weights(arch)
        except ValueError as exc:
            raise ValueError(f"{label!r}: torchvision has no architecture {arch!r}") from exc
        if not hasattr(enum, weights):
            raise ValueError(f"{label!r}: torchvision's {arch} has no {weights} weights "
                             f"(has {[w.name for w in enum]})")
        meta = getattr(enum, weights).meta
        acc = meta["_metrics"]["ImageNet-1K"]
        rows[label] = {"arch": arch, "weights": weights, "num_params": int(meta["num_params"]),
                       "imagenet_top1": float(acc["acc@1"]), "imagenet_top5": float(acc["acc@5"])}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "source"
    return out


def architecture_baselines(archs: Mapping[str, str] | Sequence[str], targets: Sequence[str],
                           weights: str = "IMAGENET1K_V1") -> dict[str, pd.DataFrame]:
    """``{"num_params": table, "imagenet_top1": table}``: the two static architecture baselines as score
    tables (sources x targets), from :func:`torchvision_imagenet_meta`. Higher = predicted better."""
    meta = torchvision_imagenet_meta(archs, weights)
    return {c: static_baseline(meta[c].astype(float), targets) for c in ("num_params", "imagenet_top1")}


def _normalised_ranks(truth: pd.DataFrame, exclude_self: bool, key: Callable) -> pd.DataFrame:
    """Per target, (rank - 1) / (n - 1) of each candidate source by truth (0 = best, ties averaged)."""
    ranks = pd.DataFrame(np.nan, index=truth.index, columns=truth.columns)
    for t in truth.columns:
        col = truth[t].copy()
        if exclude_self:
            col[[key(s) == key(t) for s in truth.index]] = np.nan
        col = col[np.isfinite(col)]
        if len(col) >= 2:
            ranks.loc[col.index, t] = (col.rank(ascending=False, method="average") - 1) / (len(col) - 1)
    return ranks


def loto_prior(truth: pd.DataFrame, exclude_self: bool = True, key: Callable = canonical_name) -> pd.DataFrame:
    """Leave-one-target-out prior (sources x targets): for target t, ``1 - mean`` over the other targets of
    the source's normalised ground-truth rank (0 = best; the source equal to a target excluded from that
    target's ranking when ``exclude_self``). NaN for a source ranked on no other target.

    The prior uses no feature of the target and none of its ground truth: it is what one would guess for a
    new target from the sources' record elsewhere.
    """
    truth = _check_table(truth, "truth")
    _keys(truth.columns, "target", "truth", key)
    if truth.shape[1] < 2:
        raise ValueError("the leave-one-target-out prior needs at least 2 targets")
    ranks = _normalised_ranks(truth, exclude_self, key)
    out = pd.DataFrame(np.nan, index=truth.index, columns=truth.columns)
    for t in truth.columns:
        others = ranks.drop(columns=[t])
        out[t] = 1.0 - others.mean(axis=1, skipna=True)
    out.index.name, out.columns.name = "source", "target"
    return out


def truth_concordance(truth: pd.DataFrame, exclude_self: bool = True, key: Callable = canonical_name) -> pd.DataFrame:
    """How static the hierarchy of the sources is: the weighted tau between the ground truth of every pair of
    targets (targets x targets, NaN on the diagonal), over the sources both rank (finite in both columns, the
    sources equal to either target excluded when ``exclude_self``). A mean near 1 means the same sources win
    everywhere, which any target-agnostic prior exploits (the critique of static leaderboards by Singh,
    Hess and Vanschoren, arXiv:2510.06448)."""
    truth = _check_table(truth, "truth")
    cols = list(truth.columns)
    out = pd.DataFrame(np.nan, index=pd.Index(cols, name="target"), columns=pd.Index(cols, name="target"))
    for a, b in itertools.permutations(cols, 2):
        ok = np.isfinite(truth[a]) & np.isfinite(truth[b])
        if exclude_self:
            ok &= np.array([key(s) not in (key(a), key(b)) for s in truth.index])
        if ok.sum() >= 2:
            out.at[a, b] = _weighted_tau_fast(truth.loc[ok, a].to_numpy(float), truth.loc[ok, b].to_numpy(float))
    return out


def bootstrap_differences(scores: Mapping[str, pd.DataFrame], truth: pd.DataFrame, reference: str,
                          n_boot: int = 1000, seed: int = 0, level: float = 0.95, exclude_self: bool = True,
                          key: Callable = canonical_name) -> pd.DataFrame:
    """Paired bootstrap of every method's mean weighted tau minus the ``reference`` method's.

    The replicates are those of :func:`helpers.evaluation.bootstrap_means` (same ``seed``, same draws of
    sources for every method), so the difference keeps the pairing that marginal intervals lose. Per method:
    ``difference`` (full sample), ``ci_low``, ``ci_high`` (percentile interval), ``p_above`` (share of
    replicates in which the method's mean is above the reference's) and ``sd`` (SD of the replicates'
    difference). The reference's own row is 0.
    """
    if reference not in scores:
        raise ValueError(f"reference {reference!r} is not among the scores ({list(scores)[:8]} ...)")
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    metrics, point, boots = _bootstrap_replicates(scores, truth, n_boot, seed, exclude_self, key)
    r = metrics.index(reference)
    diff = boots - boots[:, [r]]
    alpha = (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = pd.DataFrame({"difference": point - point[r], "ci_low": np.nanquantile(diff, alpha, axis=0),
                            "ci_high": np.nanquantile(diff, 1 - alpha, axis=0),
                            "p_above": np.mean(diff > 0, axis=0), "sd": np.nanstd(diff, axis=0, ddof=1)},
                           index=pd.Index(metrics, name="metric"))
    out.attrs.update(n_boot=n_boot, seed=seed, level=level, reference=reference)
    return out


# ----------------------------------------------------------------------------------------------------
# ensembles and leave-one-target-out selection


def rank_average(tables: Mapping[str, pd.DataFrame], exclude_self: bool = True,
                 key: Callable = canonical_name) -> pd.DataFrame:
    """Rank-averaged ensemble (sources x targets) of several score tables.

    Per target, each table's scores are turned into percentile ranks (``rank(pct=True)``, ties averaged,
    higher score = higher rank) over its candidate sources (finite score; the source equal to the target left
    out when ``exclude_self``), and the ranks are averaged over the tables (NaN skipped). Sources and targets
    are those common to all tables (matched by ``key``, labels of the first table); the self cell is NaN.
    The averages are rounded to 12 decimals, so that exact ties stay ties.
    An ensemble of one table, or of copies of one table, ranks the sources exactly as that table does.
    """
    if not isinstance(tables, Mapping) or not tables:
        raise ValueError("tables must be a non-empty dict {metric: DataFrame}")
    checked = {m: _check_table(df, f"scores[{m!r}]") for m, df in tables.items()}
    first = next(iter(checked.values()))
    src = _keys(first.index, "source", "scores", key)
    tgt = _keys(first.columns, "target", "scores", key)
    maps = {m: (_keys(df.index, "source", m, key), _keys(df.columns, "target", m, key)) for m, df in checked.items()}
    s_common = [k for k in src if all(k in sm for sm, _ in maps.values())]
    t_common = [k for k in tgt if all(k in tm for _, tm in maps.values())]
    if not s_common or not t_common:
        raise ValueError("the score tables share no source or no target")
    stack = []
    for m, df in checked.items():
        sm, tm = maps[m]
        block = pd.DataFrame(df.loc[[sm[k] for k in s_common], [tm[k] for k in t_common]].to_numpy(),
                             index=s_common, columns=t_common)
        if exclude_self:
            for t in t_common:
                if t in block.index:
                    block.at[t, t] = np.nan
        stack.append(block.rank(pct=True, na_option="keep").to_numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells (the self cell) stay NaN
        avg = np.nanmean(np.stack(stack), axis=0)
    avg = np.round(avg, 12)  # float residue of the fractions must not break exact ties (x and -x cancel)
    out = pd.DataFrame(avg, index=pd.Index([src[k] for k in s_common], name="source"),
                       columns=pd.Index([tgt[k] for k in t_common], name="target"))
    return out


def ensembles(tables: Mapping[str, pd.DataFrame], sizes: Sequence[int] = (2, 3), include_all: bool = True,
              sep: str = " + ", **kwargs) -> dict[str, pd.DataFrame]:
    """Every rank-averaged combination (:func:`rank_average`) of ``sizes`` members of ``tables``, named
    ``"a + b"`` in the tables' order, plus the combination of all of them (``include_all``, named
    ``"all <n>"``) when it is not already among them."""
    names = list(tables)
    if len(names) < 2:
        raise ValueError("need at least two score tables to combine")
    out = {}
    for k in sizes:
        if not 2 <= k <= len(names):
            continue
        for combo in itertools.combinations(names, k):
            out[sep.join(combo)] = rank_average({m: tables[m] for m in combo}, **kwargs)
    if include_all and len(names) > max([k for k in sizes if k <= len(names)], default=1):
        out[f"all {len(names)}"] = rank_average(tables, **kwargs)
    return out


def loto_selection(wide_values: pd.DataFrame, focus: str | None = None,
                   train_values: Callable[[str], pd.DataFrame] | None = None) -> dict:
    """Choose the best candidate by leave-one-target-out and score the choice on the held-out target.

    ``wide_values``: targets x candidates (e.g. :func:`helpers.evaluation.wide` of weighted tau), higher =
    better. For each target, the candidate with the highest mean over the *other* targets (NaN skipped; ties:
    the first column) is chosen and its value on the held-out target recorded. ``train_values(target)``, if
    given, returns the table to choose on for that held-out target instead of ``wide_values`` without it (for
    candidates that themselves learn from the other targets, see :func:`nested_prior_values`); its row for
    the held-out target, if any, is dropped. Returns a dict:

    ``folds``: one row per held-out target: ``chosen``, ``train_mean`` (its mean on the other targets),
    ``held_out`` (its value on the target; NaN if undefined there), ``best_on_target`` (the best candidate's
    value there) and, with ``focus``, ``focus_train_rank`` (1 = it would have been chosen);
    ``summary``: ``loto_mean`` (mean held-out value of the chosen candidates: an honest estimate of "pick the
    best metric, then use it"), ``in_sample_best`` and ``in_sample_mean`` (the candidate best on all targets
    and its mean, optimistic because it was picked on the same targets), ``optimism``
    (= in_sample_mean - loto_mean), ``n_distinct_chosen``, and with ``focus`` ``focus_chosen`` (folds in which
    it was chosen), ``focus_in_sample_rank`` and ``focus_mean``;
    ``chosen_counts``: how often each candidate was chosen.
    """
    w = _check_table(wide_values, "wide_values")
    if w.shape[0] < 2:
        raise ValueError("leave-one-target-out needs at least 2 targets (rows)")
    if focus is not None and focus not in w.columns:
        raise ValueError(f"focus {focus!r} is not a candidate (columns: {list(w.columns)[:8]} ...)")
    rows = []
    for t in w.index:
        if train_values is None:
            train = w.drop(index=t)
        else:
            train = _check_table(train_values(t), f"train_values({t!r})")
            train = train.drop(index=[i for i in train.index if i == t])
            train = train.reindex(columns=w.columns)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means = train.mean(axis=0, skipna=True)
        if means.notna().sum() == 0:
            raise ValueError(f"no candidate has a value on the targets other than {t!r}")
        chosen = means.idxmax()  # first maximum in column order
        row = {"target": t, "chosen": chosen, "train_mean": float(means[chosen]),
               "held_out": float(w.at[t, chosen]), "best_on_target": float(w.loc[t].max())}
        if focus is not None:
            row["focus_train_rank"] = float(means.rank(ascending=False, method="min")[focus])
        rows.append(row)
    folds = pd.DataFrame(rows).set_index("target")
    overall = w.mean(axis=0, skipna=True)
    best = overall.idxmax()
    summary = {"loto_mean": float(folds["held_out"].mean()), "in_sample_best": best,
               "in_sample_mean": float(overall[best]), "n_targets": len(folds),
               "n_candidates": w.shape[1], "n_distinct_chosen": int(folds["chosen"].nunique())}
    summary["optimism"] = summary["in_sample_mean"] - summary["loto_mean"]
    if focus is not None:
        summary.update(focus=focus, focus_chosen=int((folds["chosen"] == focus).sum()),
                       focus_in_sample_rank=int(overall.rank(ascending=False, method="min")[focus]),
                       focus_mean=float(overall[focus]))
    return {"folds": folds, "summary": pd.Series(summary), "chosen_counts": folds["chosen"].value_counts()}


def nested_prior_values(wide_values: pd.DataFrame, truth: pd.DataFrame, column: str = "loto_prior",
                        exclude_self: bool = True, key: Callable = canonical_name) -> Callable[[str], pd.DataFrame]:
    """``train_values`` for :func:`loto_selection` when one candidate is the :func:`loto_prior`.

    The prior's weighted tau on a training target t' uses the ground truth of every other target, the
    held-out one included. For held-out target h this returns ``wide_values`` without h, with ``column``
    replaced by the weighted tau of the prior rebuilt from the ground truth without h, so that choosing a
    candidate for h uses nothing of h's ground truth. (Its held-out value never used h's ground truth.)
    """
    truth = _check_table(truth, "truth")
    if column not in wide_values.columns:
        raise ValueError(f"{column!r} is not a column of wide_values")
    t_keys = _keys(truth.columns, "target", "truth", key)

    def train(held_out: str) -> pd.DataFrame:
        kh = key(held_out)
        if kh not in t_keys:
            raise ValueError(f"held-out target {held_out!r} is not a column of truth")
        rest = truth.drop(columns=[t_keys[kh]])
        taus = correlate(loto_prior(rest, exclude_self, key), rest, exclude_self, key)["weighted_tau"]
        taus.index = [key(i) for i in taus.index]
        w = wide_values.drop(index=[i for i in wide_values.index if key(i) == kh]).copy()
        w[column] = [taus.get(key(i), np.nan) for i in w.index]
        return w

    return train


# ----------------------------------------------------------------------------------------------------
# cost against quality


def read_metric_benchmark(path) -> pd.DataFrame:
    """The tables of ``benchmarks/metrics.py``'s output (e.g. ``benchmarks/results/metrics_cpu.txt``) as one
    long table: ``n, metric, device, seconds, baseline_seconds, abs_diff`` (one row per metric, size and
    device; ``-`` and ``ERR`` cells are NaN; the ``TOTAL`` rows are left out)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no benchmark table at {path}")
    rows, n, devices = [], None, None
    for line in path.read_text().splitlines():
        head = re.match(r"^## N = (\d+)\s*$", line)
        if head:
            n, devices = int(head.group(1)), None
            continue
        text = line.strip()
        if n is None or text.startswith("#"):
            continue
        if not text:  # a blank line after the rows ends the table
            n = None if devices is not None else n
            continue
        tokens = text.split()
        if tokens[0] == "metric":
            devices = [d for d in re.findall(r"(\S+) s(?=\s|$)", text) if d != "baseline"]
            continue
        if devices is None:
            continue
        if tokens[0] == "TOTAL":
            n = None
            continue

        def num(tok):
            try:
                return float(tok)
            except ValueError:
                return np.nan

        vals = [num(x) for x in tokens[1:]]
        vals += [np.nan] * (len(devices) + 2 - len(vals))
        for i, dev in enumerate(devices):
            rows.append({"n": n, "metric": tokens[0], "device": dev, "seconds": vals[i],
                         "baseline_seconds": vals[len(devices)], "abs_diff": vals[len(devices) + 1]})
    if not rows:
        raise ValueError(f"{path}: no '## N = ...' benchmark table found")
    return pd.DataFrame(rows)


def nearest_size(n: float, sizes: Sequence[float]) -> float:
    """The benchmark size closest to ``n`` in log scale (so 200 and 3000 both map to 1000 among 1k/10k/100k)."""
    sizes = np.asarray(sorted(set(float(s) for s in sizes)))
    if sizes.size == 0 or n <= 0 or np.any(sizes <= 0):
        raise ValueError("need a positive n and positive benchmark sizes")
    return float(sizes[np.argmin(np.abs(np.log(sizes) - np.log(n)))])


def pareto_front(cost: pd.Series, quality: pd.Series) -> pd.Series:
    """True for the points no other point dominates (cost <= and quality >=, one of them strictly).
    Points with a NaN cost or quality are never on the front."""
    c, q = cost.astype(float), quality.reindex(cost.index).astype(float)
    ok = np.isfinite(c) & np.isfinite(q)
    out = pd.Series(False, index=cost.index)
    cv, qv = c[ok].to_numpy(), q[ok].to_numpy()
    for i, name in enumerate(c[ok].index):
        dominated = np.any((cv <= cv[i]) & (qv >= qv[i]) & ((cv < cv[i]) | (qv > qv[i])))
        out[name] = not dominated
    return out


def cost_quality(quality: pd.Series, cost: pd.Series, lower_bound: Sequence[str] = (),
                 interval: pd.DataFrame | None = None, front_of: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per candidate: ``quality`` (e.g. mean weighted tau), ``seconds`` (NaN = not measured),
    ``cost_is_lower_bound`` (its true cost is at least ``seconds``) and ``pareto`` (:func:`pareto_front`,
    computed with the given seconds, among the candidates of ``front_of`` if given, e.g. the metrics without
    the free baselines). ``interval``: optional ``ci_low`` / ``ci_high`` columns to carry along. Sorted by
    seconds, then quality."""
    idx = list(dict.fromkeys(list(quality.index)))
    out = pd.DataFrame({"quality": quality.reindex(idx).astype(float),
                        "seconds": cost.reindex(idx).astype(float)})
    out["cost_is_lower_bound"] = [m in set(lower_bound) for m in idx]
    if interval is not None:
        out = out.join(interval[["ci_low", "ci_high"]].reindex(idx))
    among = out.index if front_of is None else [m for m in out.index if m in set(front_of)]
    out["pareto"] = pareto_front(out.loc[among, "seconds"], out.loc[among, "quality"]).reindex(out.index,
                                                                                                fill_value=False)
    out.index.name = "metric"
    return out.sort_values(["seconds", "quality"], ascending=[True, False], na_position="last")


def cost_quality_figure(table: pd.DataFrame, labels: Mapping | None = None, title: str | None = None, ax=None,
                        zero_label: str = "no target\nfeatures", xlabel: str = "compute time (s, log scale)",
                        ylabel: str = "mean weighted τ"):
    """Quality against cost (log x axis) from :func:`cost_quality`: Pareto points filled red and joined by the
    front, others open; zero-cost candidates (baselines) as green squares at a marked position left of the
    axis' data; lower-bound costs with a right arrow; unmeasured candidates listed in a corner. Returns the
    Figure."""
    import matplotlib.pyplot as plt

    labels = labels or {}
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4.2))
    else:
        fig = ax.figure
    t = table.copy()
    measured = t[np.isfinite(t["seconds"])]
    positive = measured["seconds"][measured["seconds"] > 0]
    floor = positive.min() / 10 if len(positive) else 1e-3
    x = measured["seconds"].where(measured["seconds"] > 0, floor)
    for m in measured.index:
        row = measured.loc[m]
        on = bool(row["pareto"])
        if "ci_low" in measured.columns and np.isfinite(row.get("ci_low", np.nan)):
            ax.plot([x[m], x[m]], [row["ci_low"], row["ci_high"]], color="tab:gray", lw=0.8, zorder=1)
        free = row["seconds"] <= 0
        ax.scatter(x[m], row["quality"], s=36, zorder=3, marker="s" if free else "o",
                   color="tab:red" if on else ("tab:green" if free else "white"),
                   edgecolors="tab:red" if on else ("tab:green" if free else "tab:blue"))
        if row["cost_is_lower_bound"]:
            ax.annotate("", xy=(x[m] * 3, row["quality"]), xytext=(x[m] * 1.15, row["quality"]),
                        arrowprops=dict(arrowstyle="->", color="tab:gray", lw=0.8))
        ax.annotate(labels.get(m, m), (x[m], row["quality"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    front = measured[measured["pareto"]].assign(x=x).sort_values("x")
    if len(front):
        xs, ys = front["x"].to_numpy(), front["quality"].to_numpy()
        ax.step(np.r_[xs, xs[-1] * 3], np.r_[ys, ys[-1]], where="post", color="tab:red", lw=1, alpha=0.6, zorder=2)
    ax.set_xscale("log")
    if (measured["seconds"] <= 0).any():
        # the zero-cost points sit at `floor`, a position labelled 0 left of a dotted break
        lo, hi = ax.get_xlim()
        ticks = [v for v in ax.get_xticks() if floor * 5 <= v <= hi]
        ax.set_xticks([floor, *ticks], ["0", *[f"$10^{{{int(round(np.log10(v)))}}}$" for v in ticks]])
        ax.minorticks_off()
        ax.set_xlim(lo, hi)
        ax.axvline(floor * 2.2, color="k", lw=0.5, ls=":")
        ax.text(floor, ax.get_ylim()[0], zero_label, fontsize=7, ha="center", va="bottom")
    missing = t.index[~np.isfinite(t["seconds"])]
    if len(missing):
        ax.text(0.99, 0.01, "not timed: " + ", ".join(str(labels.get(m, m)) for m in missing), transform=ax.transAxes,
                fontsize=7, ha="right", va="bottom", color="tab:gray")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


#: the public names (the ground-truth ones re-exported from helpers.ground_truth)
__all__ = ["IMAGENET_TRAIN_IMAGES", "RADIMAGENET_IMAGES", "MEDMNIST_2D_FLAGS", "UNION_SOURCES",
           "medmnist_train_sizes", "training_set_sizes", "static_baseline", "torchvision_imagenet_meta",
           "architecture_baselines", "loto_prior", "truth_concordance", "bootstrap_differences", "parse_rule",
           "select_ground_truth", "ground_truth_noise", "ground_truth_replicates", "noise_in_differences",
           "rank_average", "ensembles", "loto_selection", "nested_prior_values", "read_metric_benchmark",
           "nearest_size", "pareto_front", "cost_quality", "cost_quality_figure"]


# ----------------------------------------------------------------------------------------------------------
# verdicts in words, for the Trust chapter's prose (glued into its Markdown). Not in __all__: that list is
# the table of names helpers.evaluation forwards (helpers.evaluation.MOVED), and these never lived there.

def metric_against_baseline(metric_mean: float, baseline_mean: float) -> str:
    """How the best metric's mean weighted τ stands against the best baseline's: ``"is ahead of"`` when it is
    strictly higher, else ``"does not beat"`` (a baseline that ties the metric ranks the sources as well, for
    free). NaN on either side counts as not ahead."""
    return "is ahead of" if metric_mean > baseline_mean else "does not beat"


def interval_verdict(ci_low: float, ci_high: float) -> str:
    """A paired bootstrap interval of a difference in words: whether it excludes zero (the data separate the
    two methods) or includes it (they cannot)."""
    if ci_low > 0 or ci_high < 0:
        return "the paired interval of the difference excludes zero"
    return "the paired interval of the difference includes zero, so the data cannot separate them"


def cancellation_verdict(kept: float) -> str:
    """How much of the ground truth's noise cancels in a paired difference, from ``kept``: the SD of the
    difference over the SD of one metric's agreement, both over the same re-selected ground truths. Below 0.5
    the noise largely cancels, below 0.9 in part; from 0.9 up it does not (the metrics rank the sources too
    differently to move together)."""
    if kept < 0.5:
        return "the noise largely cancels between metrics"
    if kept < 0.9:
        return "it cancels only in part"
    return "it does not cancel here, because the metrics rank the sources too differently to move together"


def full_coverage(long: pd.DataFrame, metrics=None, metric: str = "metric", n_sources: str = "n_sources") -> list:
    """The metrics (of ``metrics``, default all, in their order) that rank as many candidate sources as the
    best-covered metric on every target of ``long`` (tidy correlations: one row per metric and target with
    ``n_sources``). A metric that needs something only some sources have (LEEP and NCE: a source
    classification head) ranks fewer, and a mean weighted τ over fewer sources is not comparable."""
    if long.empty:
        raise ValueError("no correlations: the table is empty")
    cover = long.groupby(metric)[n_sources].min()
    metrics = list(cover.index) if metrics is None else [m for m in metrics if m in cover.index]
    return [m for m in metrics if cover[m] == cover.max()]


def reliability_verdict(reliability: float | None, replicates: int, best_metric: str, best_mean: float,
                        best_low: float, best_high: float, baseline: str | None = None,
                        diff_low: float = float("nan"), diff_high: float = float("nan"), n_other: int = 0,
                        n_worse: int = 0, needed: float | None = None, level: float = 0.8,
                        low: float = 0.5) -> str:
    """What the metrics can and cannot be shown to do against a ground truth of a given reliability, in words
    (a paragraph for a chapter's prose).

    ``reliability``: the split-half reliability of the ground truth (the mean of ``replicates`` seeds;
    None or NaN when it could not be measured, and never measured with fewer than 2 replicates);
    ``best_metric`` with its mean weighted τ and bootstrap interval (``best_mean``, ``best_low``,
    ``best_high``); ``baseline``: the best static baseline (None: none), with the paired interval of the best
    metric *minus* that baseline (``diff_low``, ``diff_high``); ``n_other`` other metrics, of which
    ``n_worse`` have a paired interval against the best metric entirely below zero; ``needed``: the replicates
    that would reach reliability ``level`` (:func:`helpers.reliability.replicates_needed`). Below ``low`` the
    ground truth is called mostly noise; from ``level`` up, noise is no longer the main limit.

    The ceiling on the τ scale is :func:`helpers.reliability.tau_ceiling`; the part of the best metric's gap to
    1 that it accounts for is ``(1 - ceiling) / (1 - best_mean)``, capped at all of it."""
    if not isinstance(replicates, (int, np.integer)) or replicates < 1:
        raise ValueError(f"replicates must be a positive integer, got {replicates!r}")
    measured = reliability is not None and np.isfinite(reliability)
    if measured and replicates < 2:
        raise ValueError(f"a reliability ({reliability}) cannot have been measured on {replicates} replicate")
    if measured and not -1 <= reliability <= 1:
        raise ValueError(f"a reliability lies in [-1, 1], got {reliability}")
    if not (np.isfinite(best_mean) and np.isfinite(best_low) and np.isfinite(best_high)) or best_low > best_high:
        raise ValueError(f"the best metric needs a finite mean and an interval low <= high, got {best_mean}, "
                         f"({best_low}, {best_high})")
    if baseline is not None and (not (np.isfinite(diff_low) and np.isfinite(diff_high)) or diff_low > diff_high):
        raise ValueError(f"the difference from the baseline {baseline!r} needs a finite interval low <= high, "
                         f"got ({diff_low}, {diff_high})")
    if not 0 <= n_worse <= n_other:
        raise ValueError(f"n_worse ({n_worse}) must lie between 0 and n_other ({n_other})")
    if not 0 < low < level < 1:
        raise ValueError(f"need 0 < low < level < 1, got low={low}, level={level}")
    seeds = f"{replicates} seed{'s' if replicates != 1 else ''}"
    need = (f"; {replicates_text(needed)} seeds would be needed for a reliability of {level:g}"
            if needed is not None and not (isinstance(needed, float) and np.isnan(needed)) else "")
    out = []
    if not measured:
        why = "one seed" if replicates < 2 else seeds
        out.append(f"With {why} the reliability of the ground truth cannot be measured, so how much of the best "
                   f"metric's gap to 1 is the ground truth's own noise is unknown.")
    elif reliability <= 0:
        out.append(f"The ground truth (the mean of {seeds}) has a split-half reliability of {reliability:.2f}: it "
                   "does not agree with itself, so no score can be shown to predict it and all of the best "
                   "metric's gap to 1 may be noise.")
    else:
        c, tc = correlation_ceiling(reliability), tau_ceiling(reliability)
        out.append(f"The ground truth (the mean of {seeds}) has a split-half reliability of {reliability:.2f}, "
                   f"which caps any score's correlation with it at about {c:.2f} (about {tc:.2f} on the scale "
                   "of a τ).")
        gap = 1 - best_mean
        if best_mean >= tc:
            out.append(f"The best metric, {best_metric} ({best_mean:.3f}), reaches that ceiling: all of its gap "
                       "to 1 may be the ground truth's unreliability.")
        else:
            share = (1 - tc) / gap
            out.append(f"Of the best metric's gap to 1 ({best_metric} at {best_mean:.3f}, a gap of {gap:.2f}), "
                       f"{1 - tc:.2f} ({share:.0%}) is the ground truth's unreliability and {gap - (1 - tc):.2f} "
                       "is the metric's own.")
    where = (f"The interval of {best_metric}'s mean weighted τ ({best_low:.3f} to {best_high:.3f})")
    if best_low > 0:
        vs_zero = f"{where} lies above zero, so it is shown to rank the sources better than chance"
    elif best_high < 0:
        vs_zero = f"{where} lies below zero, so it ranks the sources worse than chance"
    else:
        vs_zero = f"{where} includes zero, so it is not shown to rank the sources better than chance"
    parts = [vs_zero]
    if baseline is not None:
        span = f"paired difference {diff_low:.3f} to {diff_high:.3f}"
        if diff_low > 0:
            parts.append(f"it is shown to beat the best static baseline, {baseline} ({span})")
        elif diff_high < 0:
            parts.append(f"it is shown to be worse than the best static baseline, {baseline} ({span})")
        else:
            parts.append(f"it cannot be told apart from the best static baseline, {baseline} ({span}, which "
                         "includes zero)")
    if n_other:
        if n_worse == 0:
            parts.append(f"none of the other {n_other} metrics is shown to be worse than it, so the metrics "
                         "cannot be told apart from each other")
        elif n_worse == n_other:
            parts.append(f"all {n_other} other metrics are shown to be worse than it")
        else:
            verb = "is" if n_worse == 1 else "are"
            parts.append(f"{n_worse} of the other {n_other} metrics {verb} shown to be worse than it and "
                         f"{n_other - n_worse} cannot be told apart from it")
    out.append("; ".join(parts[:-1]) + ("; and " if len(parts) > 1 else "") + parts[-1] + ".")
    shown_all = best_low > 0 and (baseline is None or diff_low > 0) and n_worse == n_other
    if not measured:
        out.append("Whether more seeds would separate what is not separated here cannot be said.")
    elif reliability < low:
        out.append("At this reliability the ground truth is mostly seed noise, so what is not shown here may be "
                   f"hidden by the noise rather than absent{need}.")
    elif reliability < level:
        out.append(f"At this reliability the ground truth's noise still hides part of any difference{need}.")
    elif shown_all:
        out.append("At this reliability the seeds are no longer the main limit, and what is shown here is not an "
                   "artefact of seed noise.")
    else:
        out.append("At this reliability the seeds are no longer the main limit: what is not shown here is held "
                   "back by the few targets and candidate sources the intervals resample, not by the ground "
                   "truth's noise.")
    return " ".join(out)
