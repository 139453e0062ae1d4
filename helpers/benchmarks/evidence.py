"""Across benchmarks: static baselines added to any tidy table, the noise ceiling from replicates, one name
per scorer, pooling by independent group, and the practitioner's decision table.

Pooling rule (:func:`combine`): a (benchmark, scenario) is one *unit*; its value for a scorer is the mean
weighted tau over its targets. Targets of one unit share candidates and fine-tuning protocol, so they are not
independent draws, and benchmarks differ more than tenfold in size (3 to 43 targets): weighting by targets would
let one benchmark decide. Units are therefore averaged within their research group first (groups that publish
several benchmarks reuse protocols and data), then groups are averaged with equal weight. The evidence count
of a cell is (groups, units, targets).

Copied ground truth (:func:`find_duplicate_targets`): papers reuse each other's fine-tuning tables (SFDA's
supervised CNN table reappears in EMMS, ETran and PED). A target of one benchmark whose truth equals, candidate
for candidate, a target already loaded from another benchmark is a copy and is counted once
(:func:`drop_duplicate_targets`).

Reliability (:func:`replicate_reliability`): where a benchmark has replicates, the split-half reliability of its
mean-over-replicates truth, as the Fine-tuning chapter measures the book's own. The book's own benchmark enters
the same long format through :func:`book_benchmark` / :func:`read_book` (``results/<profile>/``).
"""
from __future__ import annotations

import itertools
import re

import numpy as np
import pandas as pd

from .. import reliability as REL
from ..names import is_self
from .conventions import weighted_tau
from .format import BenchmarkError, from_tables, validate, validate_replicates

#: one display name per scorer across the benchmarks' spellings (keys: lower case, letters and digits only)
SCORER_NAMES = {
    "logme": "LogME", "logmescore": "LogME", "leep": "LEEP", "leepscore": "LEEP", "nleep": "NLEEP",
    "nleepscore": "NLEEP", "nce": "NCE", "ncescore": "NCE", "hscore": "H-score", "hscorescore": "H-score",
    "reghscorescore": "reg. H-score", "gbc": "GBC", "gbcscore": "GBC", "pactran": "PACTran",
    "pactrandirichlet": "PACTran", "pactranscore": "PACTran", "sfda": "SFDA", "sfdascore": "SFDA",
    "parc": "PARC", "parcscore": "PARC", "ncti": "NCTI", "nctiscore": "NCTI", "etranenergyscore": "ETran",
    "tmiscore": "TMI", "otce": "OTCE", "lfc": "LFC", "lp": "LP", "fu": "FU", "ccfv": "CC-FV",
    "transrate": "TransRate", "preftdice": "pre-fine-tuning Dice", "imagenet": "ImageNet top-1",
    "imagenettop1": "ImageNet top-1", "numparams": "parameter count", "sourcesize": "source size",
    "lotoprior": "LOTO prior",
    # model-selection-nlp's method names (one variant per family, see loaders.NLP_METHODS)
    "hscorer": "reg. H-score", "parccorr": "PARC", "lfccos": "LFC", "msccos": "MSC", "knn5corr": "k-NN",
    "logistic": "LP", "pactran110": "PACTran", "dsel2": "DSE", "pa": "PA", "rsacos": "RSA", "ddscos": "DDS",
    "earlystop50": "early stop (50 steps)", "earlystop100": "early stop (100 steps)",
    "earlystop500": "early stop (500 steps)",
}
#: scorers that use no feature of the target (static baselines, declared here before any result)
BASELINES = ("ImageNet top-1", "parameter count", "source size", "LOTO prior")


def scorer_name(metric: str) -> str:
    """The display name of a benchmark's metric (:data:`SCORER_NAMES`), the metric itself when unknown."""
    return SCORER_NAMES.get(re.sub(r"[^a-z0-9]", "", str(metric).lower()), str(metric))


def with_loto_prior(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` plus the leave-one-target-out prior as metric ``loto_prior`` in every (benchmark, scenario)
    with at least 2 targets: for target t a candidate scores 1 minus its mean normalised truth rank (0 = best)
    over the other targets (:func:`helpers.evaluation_trust.loto_prior`'s rule; candidates are matched by exact
    name, none excluded). Candidates ranked on no other target get NaN. ``loto_prior`` rows already in the
    table (the ground-truth-only loaders carry one, so that their tables have a score) are recomputed from the
    targets present now, so a prior never leans on targets dropped since (:func:`drop_duplicate_targets`)."""
    parts = [table[table["metric"] != "loto_prior"]]
    for (b, s), g in table.groupby(["benchmark", "scenario"], sort=False):
        truth = g.drop_duplicates(["target", "candidate"]).pivot(index="candidate", columns="target",
                                                                 values="truth")
        if truth.shape[1] < 2:
            continue
        ranks = (truth.rank(ascending=False, method="average") - 1) / (truth.notna().sum() - 1)
        total, count = ranks.sum(axis=1), ranks.notna().sum(axis=1)
        # mean over the other targets: (sum - own) / (count - own present)
        own = ranks.fillna(0.0)
        prior = 1.0 - (own.rsub(total, axis=0)).div(ranks.notna().astype(int).rsub(count, axis=0), axis=0)
        prior = prior.where(truth.notna())
        extra = (truth.stack().rename("truth").to_frame()
                 .join(prior.stack().rename("score")).reset_index())
        extra = extra.rename(columns={"level_0": "candidate", "level_1": "target"})
        extra = extra[extra["truth"].notna()]
        extra = extra.assign(benchmark=b, scenario=s, metric="loto_prior", higher_is_better=True)
        if "medical" in g.columns:
            extra["medical"] = extra["target"].map(g.drop_duplicates("target").set_index("target")["medical"])
        parts.append(extra)
    return validate(pd.concat(parts, ignore_index=True))


def loto_prior_table(truth: pd.DataFrame, benchmark: str, scenario: str) -> pd.DataFrame:
    """A ground-truth-only table (``target, candidate, truth`` plus any extra columns) as a tidy table whose one
    metric is the leave-one-target-out prior (:func:`with_loto_prior`), so that static baselines and priors
    can be tested on benchmarks that published no score."""
    base = truth.assign(benchmark=benchmark, scenario=scenario, metric="loto_prior", score=np.nan,
                        higher_is_better=True)
    return with_loto_prior(validate(base))


def _canon(name) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _percent(values: pd.Series) -> pd.Series:
    """Truth on a 0-100 scale (a paper's 0.8464 and another's 84.64 are the same number)."""
    return values * 100.0 if values.abs().max() <= 1.0 else values


def find_duplicate_targets(table: pd.DataFrame, tol: float = 0.005, min_common: int = 3) -> pd.DataFrame:
    """Targets whose ground truth is a copy of a target of an earlier benchmark (in the table's order of
    benchmarks). Target ``t`` of benchmark B copies target ``u`` of an earlier benchmark A when they share at
    least ``min_common`` candidates (names compared in lower case, letters and digits only) and every shared
    candidate's truth agrees within ``tol`` on a 0-100 scale; target names are not compared (papers spell them
    differently). Targets of one benchmark are never compared with each other. One row per copied target:
    ``benchmark, scenario, target`` (the copy), ``copy_of`` (``benchmark/scenario/target`` of the original),
    ``n_common`` (shared candidates), ``max_abs_diff``."""
    truth = table.drop_duplicates(["benchmark", "scenario", "target", "candidate"])
    order = list(dict.fromkeys(table["benchmark"]))
    vectors = {}
    for (b, s, t), g in truth.groupby(["benchmark", "scenario", "target"], sort=False):
        v = pd.Series(g["truth"].to_numpy(float), index=g["candidate"].map(_canon))
        vectors[(b, s, t)] = _percent(v[~v.index.duplicated()])
    names = {k: set(v.index) for k, v in vectors.items()}
    rows = []
    for key, v in vectors.items():
        earlier = [k for k in vectors if order.index(k[0]) < order.index(key[0])]
        for other in earlier:
            if len(names[key] & names[other]) < min_common:  # cheap test first: most pairs share no zoo
                continue
            w = vectors[other]
            common = v.index.intersection(w.index)
            diff = float(np.max(np.abs(v[common].to_numpy() - w[common].to_numpy())))
            if diff <= tol:
                rows.append({"benchmark": key[0], "scenario": key[1], "target": key[2],
                             "copy_of": "/".join(other), "n_common": len(common), "max_abs_diff": diff})
                break
    return pd.DataFrame(rows, columns=["benchmark", "scenario", "target", "copy_of", "n_common", "max_abs_diff"])


def drop_duplicate_targets(table: pd.DataFrame, duplicates: pd.DataFrame | None = None) -> pd.DataFrame:
    """``table`` without the copied targets of :func:`find_duplicate_targets` (computed when not given)."""
    dups = find_duplicate_targets(table) if duplicates is None else duplicates
    if dups.empty:
        return table
    key = ["benchmark", "scenario", "target"]
    drop = pd.MultiIndex.from_frame(dups[key].astype(str))
    keep = ~pd.MultiIndex.from_frame(table[key].astype(str)).isin(drop)
    return table[keep].reset_index(drop=True)


def with_static(table: pd.DataFrame, values: pd.DataFrame, benchmark: str, scenario: str | None = None) -> pd.DataFrame:
    """``table`` plus static baselines for one benchmark: ``values`` is indexed by candidate with one column
    per baseline (higher = predicted better), given the same score on every target."""
    parts = [table]
    g = table[(table["benchmark"] == benchmark) & ((table["scenario"] == scenario) if scenario else True)]
    pairs = g.drop_duplicates(["scenario", "target", "candidate"])
    for col in values.columns:
        extra = pairs.assign(metric=col, score=pairs["candidate"].map(values[col]).astype(float),
                             higher_is_better=True)
        parts.append(extra)
    return validate(pd.concat(parts, ignore_index=True))


def noise_ceiling(replicates: pd.DataFrame) -> pd.DataFrame:
    """How far the ground truth moves between repeated runs, per (benchmark, scenario, target): ``seed_pairs``
    = mean weighted tau between the rankings of two runs (over all pairs of replicate ids), and ``one_vs_rest``
    = mean weighted tau between one run and the mean of the others (how well a perfect predictor of the mean
    truth could agree with a single new run). Candidates missing from a run are left out of that pair."""
    rows = []
    for (b, s, t), g in replicates.groupby(["benchmark", "scenario", "target"], sort=False):
        w = g.pivot(index="candidate", columns="replicate", values="truth")
        reps = list(w.columns)
        if len(reps) < 2:
            continue
        pair_vals = []
        for a, c in itertools.combinations(reps, 2):
            ok = w[a].notna() & w[c].notna()
            pair_vals.append(weighted_tau(w.loc[ok, a].to_numpy(), w.loc[ok, c].to_numpy()))
        rest_vals = []
        for a in reps:
            rest = w.drop(columns=[a]).mean(axis=1)
            ok = w[a].notna() & rest.notna()
            rest_vals.append(weighted_tau(rest[ok].to_numpy(), w.loc[ok, a].to_numpy()))
        rows.append({"benchmark": b, "scenario": s, "target": t, "n_replicates": len(reps),
                     "n_candidates": int(w.notna().all(axis=1).sum()),
                     "seed_pairs": float(np.nanmean(pair_vals)), "one_vs_rest": float(np.nanmean(rest_vals))})
    return pd.DataFrame(rows)


def unit_means(per_target: pd.DataFrame, groups: dict[str, str]) -> pd.DataFrame:
    """Per (benchmark, scenario, scorer): the mean weighted tau over targets and the number of targets, with
    the research ``group`` of each benchmark (``groups``: benchmark -> group) and the display ``scorer``."""
    df = per_target.assign(scorer=per_target["metric"].map(scorer_name))
    out = (df.groupby(["benchmark", "scenario", "scorer"], sort=False)["weighted_tau"]
             .agg(mean="mean", n_targets="count").reset_index())
    missing = sorted(set(out["benchmark"]) - set(groups))
    if missing:
        raise ValueError(f"no research group given for benchmark(s) {missing}")
    out["group"] = out["benchmark"].map(groups)
    return out[out["n_targets"] > 0]


def combine(units: pd.DataFrame) -> pd.DataFrame:
    """Per scorer, the pooled mean weighted tau of the module docstring (units averaged within a group, then
    groups with equal weight) with ``min_unit`` / ``max_unit`` (the range over units), the evidence counts
    ``n_groups``, ``n_units``, ``n_targets`` and ``baseline`` (True for the static baselines)."""
    by_group = units.groupby(["scorer", "group"])["mean"].mean().reset_index()
    out = by_group.groupby("scorer")["mean"].mean().rename("pooled").to_frame()
    out["min_unit"] = units.groupby("scorer")["mean"].min()
    out["max_unit"] = units.groupby("scorer")["mean"].max()
    out["n_groups"] = units.groupby("scorer")["group"].nunique()
    out["n_units"] = units.groupby("scorer").size()
    out["n_targets"] = units.groupby("scorer")["n_targets"].sum()
    out["baseline"] = out.index.isin(BASELINES)
    return out.sort_values("pooled", ascending=False)


def decision_row(units: pd.DataFrame, min_share: float = 0.5) -> dict:
    """The decision-table entry for one use case from its units. Only scorers evaluated on at least
    ``min_share`` of the use case's units compete (a scorer seen on one benchmark of four is not evidence for
    the use case): the best score and the best baseline by pooled mean (:func:`combine`), in how many units
    the score beat the baseline where both were evaluated, and the recommendation (the score if it won most
    of those units, else the baseline). ``top_single`` names the highest unit mean of any score, with its unit,
    so a strong result on one benchmark stays visible."""
    empty = {"recommend": "no public evidence loaded", "score": None, "score_tau": np.nan, "baseline": None,
             "baseline_tau": np.nan, "wins": "", "top_single": "", "groups": 0, "units": 0, "targets": 0}
    if units.empty:
        return empty
    n_units = units[["benchmark", "scenario"]].drop_duplicates().shape[0]
    comb = combine(units)
    eligible = comb[comb["n_units"] >= max(1, int(np.ceil(min_share * n_units)))]
    scores, bases = eligible[~eligible["baseline"]], eligible[eligible["baseline"]]
    best = scores.index[0] if len(scores) else None
    base = bases.index[0] if len(bases) else None
    wins = ""
    recommend = best or base
    if best and base:
        wide = units.pivot_table(index=["benchmark", "scenario"], columns="scorer", values="mean")
        both = wide[[best, base]].dropna()
        k = int((both[best] > both[base]).sum())
        wins = f"{k} of {len(both)}"
        recommend = best if k * 2 > len(both) else base
    single = units[~units["scorer"].isin(BASELINES)].sort_values("mean", ascending=False)
    top = (f"{single.iloc[0]['scorer']} {single.iloc[0]['mean']:.3f} ({single.iloc[0]['benchmark']})"
           if len(single) else "")
    return {"recommend": recommend, "score": best,
            "score_tau": comb.at[best, "pooled"] if best else np.nan,
            "baseline": base, "baseline_tau": comb.at[base, "pooled"] if base else np.nan,
            "wins": wins, "top_single": top, "groups": int(units["group"].nunique()), "units": int(n_units),
            "targets": int(units.groupby(["benchmark", "scenario"])["n_targets"].max().sum())}


def replicate_reliability(replicates: pd.DataFrame, exclude_self: bool = True) -> pd.DataFrame:
    """How reliable each unit's mean-over-replicates truth is, per (benchmark, scenario) of a replicate table
    (:data:`~helpers.benchmarks.format.REPLICATE_COLUMNS`): the split-half reliability over replicates of
    :func:`helpers.reliability.split_half_reliability` (Pearson, the candidate equal to the target left out
    when ``exclude_self``), on the candidates that every replicate of a target holds, over the targets that
    keep at least 3 of them. Columns ``replicates`` (the most of any target), ``targets`` (measured),
    ``n_split`` (the split-half's mean is of this many replicates; -1 when targets differ), ``split_half``
    (Spearman-Brown of the mean half-correlation over targets, as the Fine-tuning chapter reports it),
    ``split_half_min`` / ``split_half_max`` (over targets), ``r1`` (one replicate: the split-half stepped
    down) and ``reliability_of_mean`` (the split-half stepped to all ``replicates``,
    :func:`helpers.reliability.step_reliability`: the truth as published, their mean). Units with fewer than 2 replicates or no measurable target are left out."""
    reps = validate_replicates(replicates)
    rows = []
    for (b, s), g in reps.groupby(["benchmark", "scenario"], sort=False):
        keep = []
        for t, gt in g.groupby("target", sort=False):
            w = gt.pivot(index="candidate", columns="replicate", values="truth").dropna()
            if exclude_self:
                w = w[[not is_self(c, t) for c in w.index]]
            if w.shape[1] >= 2 and w.shape[0] >= 3:
                keep.append(w.stack().rename("value").reset_index().assign(target=t))
        if not keep:
            continue
        tidy = pd.concat(keep, ignore_index=True).rename(columns={"candidate": "source"})
        sh = REL.split_half_reliability(tidy, exclude_self=False)
        k = int(sh.per_target["replicates"].max())
        # Spearman-Brown composes: the split-half (a mean of n_split) stepped down by 1 / n_split is one replicate
        ok = sh.n > 0 and np.isfinite(sh.overall) and -1 <= sh.overall <= 1
        r1 = REL.spearman_brown(sh.overall, 1.0 / sh.n) if ok else np.nan
        rows.append({"benchmark": b, "scenario": s, "replicates": k, "targets": len(sh.per_target),
                     "n_split": sh.n, "split_half": sh.overall,
                     "split_half_min": sh.min_over_targets,
                     "split_half_max": float(sh.per_target["reliability"].max()),
                     "r1": r1, "reliability_of_mean": REL.step_reliability(sh.overall, sh.n, k) if sh.n > 0
                     else np.nan})
    return pd.DataFrame(rows, columns=["benchmark", "scenario", "replicates", "targets", "n_split", "split_half",
                                       "split_half_min", "split_half_max", "r1", "reliability_of_mean"])


#: the book's result files the evidence chapter reads, and the chapters that write them
BOOK_FILES = {"ground_truth.csv": "Fine-tuning (03_finetuning)", "scores.csv": "Scoring (04_scoring)"}


def book_benchmark(truth: pd.DataFrame, scores: dict, seeds: pd.DataFrame | None = None,
                   benchmark: str = "book", scenario: str = "dataset") -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The book's own benchmark in the long format: ``truth`` (sources x targets, the Fine-tuning chapter's
    ``ground_truth.csv``), ``scores`` (``{metric: sources x targets}``, :func:`helpers.scoring.score_tables`)
    and optionally ``seeds`` (``target, source, seed, test_auc``: ``ground_truth_seeds.csv``) as replicates.
    As everywhere in the book, the source equal to the target is no candidate (:func:`helpers.names.is_self`);
    a source without a finite truth (a source that was unavailable) is left out, and so is a score without a
    truth. Returns ``(table, replicates)`` (``replicates`` None without ``seeds``). Raises
    :class:`~helpers.benchmarks.format.BenchmarkError` when a target keeps fewer than 3 candidates."""
    if not isinstance(truth, pd.DataFrame) or truth.empty:
        raise BenchmarkError("the book's ground truth must be a non-empty table (sources x targets)")
    if not scores:
        raise BenchmarkError("the book's benchmark needs at least one score table")
    long_truth = (truth.rename_axis(index="candidate", columns="target").stack().rename("truth").reset_index())
    long_truth = long_truth[np.isfinite(long_truth["truth"].astype(float))
                            & np.array([not is_self(c, t) for c, t in zip(long_truth["candidate"], long_truth["target"])])]
    parts = []
    for m, w in scores.items():
        lw = w.rename_axis(index="candidate", columns="target").stack().rename("score").reset_index()
        parts.append(lw.assign(metric=m))
    long_scores = pd.concat(parts, ignore_index=True)
    long_scores = long_scores.merge(long_truth[["target", "candidate"]], on=["target", "candidate"])
    table = from_tables(long_scores, long_truth, benchmark=benchmark, scenario=scenario)
    table["higher_is_better"] = True
    table["medical"] = True  # MedMNIST targets
    reps = None
    if seeds is not None:
        need = ["target", "source", "seed", "test_auc"]
        missing = [c for c in need if c not in seeds.columns]
        if missing:
            raise BenchmarkError(f"the seed table lacks the column(s) {missing}; it has {list(seeds.columns)}")
        keep = seeds.merge(long_truth[["target", "candidate"]], left_on=["target", "source"],
                           right_on=["target", "candidate"])
        reps = pd.DataFrame({"benchmark": benchmark, "scenario": scenario, "target": keep["target"],
                             "candidate": keep["candidate"], "replicate": keep["seed"], "truth": keep["test_auc"]})
    return table, reps


def read_book(results_dir, metrics=None, benchmark: str = "book",
              scenario: str = "dataset") -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """:func:`book_benchmark` from a results folder (``results/<profile>/``): ``ground_truth.csv``,
    ``scores.csv`` (read by :func:`helpers.scoring.read_scores`, the ``metrics`` kept in that order) and, if
    present, ``ground_truth_seeds.csv``. A missing file raises ``FileNotFoundError`` naming it and the chapter
    that writes it (:data:`BOOK_FILES`)."""
    from pathlib import Path

    from .. import scoring as S  # here, not at the top: it imports torch, which the benchmarks never need

    d = Path(results_dir)
    missing = [f"{n} (the {ch} chapter)" for n, ch in BOOK_FILES.items() if not (d / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{d} lacks {', '.join(missing)}: run those chapters first")
    truth = pd.read_csv(d / "ground_truth.csv", index_col="source")
    scores = S.score_tables(S.read_scores(d), metrics)
    seeds_path = d / "ground_truth_seeds.csv"
    seeds = pd.read_csv(seeds_path) if seeds_path.is_file() else None
    return book_benchmark(truth, scores, seeds, benchmark, scenario)
