"""Derive :mod:`helpers.rank`'s default recommendation (the metrics whose mean rank recommends a candidate) from
the public benchmarks under ``data/reference/``, medical classification benchmarks first.

    from helpers.rank.default import derive_rank_default
    d = derive_rank_default()
    d.table        # one row per metric helpers.rank can compute: evidence, interval, chosen or not and why
    d.chosen       # the combination, e.g. ("lp_fu", ...)
    d.stamp        # benchmarks, their source commits, a hash of the tables used, rule, date

    python -m helpers.rank.default    # the table, and the constants to record in helpers/rank/evidence.py

The evidence of a metric is the mean weighted tau of *the score helpers.rank computes* against fine-tuned
ground truth, so every benchmark scorer is mapped to a registry name explicitly (:data:`SCORER_MAP`) and only
where it is the same score with the same sign:

* [D]'s published tables are read unflipped. [D]'s architecture notebook negates six scores before
  correlating (:data:`helpers.reference.ARCHITECTURE_FLIPS`); helpers.rank does not, so the evidence for
  what it computes is the unflipped correlation. [D]'s LP x FU is recombined over the candidates only
  (``combine_over="candidates"``), as helpers.rank normalises across its candidates. [D]'s NCTI carries
  the published sign bug (:mod:`helpers.metrics.setlevel`), so it is not evidence for ``ncti``.
* A scorer that is a different score (Chaves et al.'s ETran energy term alone, PACTran, TMI, OTCE, LFC), a
  segmentation score (DirectTransEst) or a task distance (Godau et al.) is listed in
  :attr:`RankDefault.unmapped` with why.

The rule (:data:`RULE`), applied by :func:`choose`:

1. Tier: a metric's evidence is its pooled value over the *medical* classification units (targets of
   medical images); only where no metric qualifies there, over the natural ones.
2. Pooling (as :func:`helpers.benchmarks.evidence.combine`): per (benchmark, scenario) unit the mean
   weighted tau over targets under that benchmark's own convention (:data:`CONVENTIONS`); units averaged
   within their research group, groups with equal weight. The 95 % interval: targets resampled with
   replacement within every unit (:func:`helpers.benchmarks.bootstrap_replicates`), pooled the same way.
3. Eligible: metrics that score the candidate's features on the target (not the target-agnostic baselines
   ``imagenet_top1`` / ``num_params``: they exist only for torchvision ImageNet weights and give every
   candidate of one architecture the same rank, so they are the bar shown beside the recommendation, not part
   of it), evaluated on medical targets by at least two independent research groups (the units of one group
   share data and protocol: Chaves et al.'s two benchmarks share their three medical data sets).
4. Chosen: the eligible metric with the best pooled value, and every eligible metric with a positive value
   inside that metric's 95 % interval (the evidence cannot tell it from the best). An interval *overlap*
   is not enough: a metric seen on few targets has a wide interval that overlaps almost anything.
5. A metric without any public evidence (k-NN accuracy, the linear probe: no public benchmark scored them) is
   not chosen: averaging its rank in would give a metric nobody has checked against fine-tuning the same
   weight as the checked ones. helpers.rank still computes and shows it, and ``recommend=`` adds it.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import reference as ref
from ..benchmarks.evaluate import bootstrap_replicates, summarize
from ..benchmarks.format import validate
from ..benchmarks.loaders import BENCHMARKS, REFERENCE, load
from ..evaluation_trust import torchvision_imagenet_meta
from ..names import canonical_name
from .ranking import AGNOSTIC, default_metrics

#: the rule in one line, recorded in the stamp (changing the rule changes the stamp)
RULE = ("medical classification evidence first (natural only where no metric qualifies); units averaged within "
        "research group, groups equally; eligible: target-dependent metrics evaluated on medical targets by at "
        "least 2 research groups; chosen: the best eligible metric and every eligible metric with a positive "
        "value inside its 95% interval; metrics without public evidence are not chosen")
#: at least this many independent research groups must have evaluated a metric (rule step 3)
MIN_GROUPS = 2

#: benchmark -> (data/reference folder, correlation convention, constant-score handling) of each paper:
#: [D], Chaves 2023 and the per-target values of Chaves 2024 use scipy's weightedtau; Chaves 2024's overall
#: figure is the pooled (grouped) tau with constant scores as 0; Model Spider weights by the truth only
CONVENTIONS = {"dovile2024": ("dovile2024", "scipy", "nan"), "chaves2023": ("chaves2023_dart", "scipy", "nan"),
               "chaves2024": ("chaves2024_tmlr", "pooled", "zero"),
               "modelspider": ("modelspider", "truth_weighted", "nan"),
               "stable_transfer": ("stable_transfer", "scipy", "nan")}

#: benchmark -> {benchmark scorer: helpers.metrics / helpers.rank name}; only the same score in the same sign.
#: The published SFDA is the reference arithmetic (it saturates at 1.0: Chaves et al.'s ties on flowers102), which
#: is ``sfda_reference``; the registry's ``sfda`` is the non-saturating form and has no public evidence
SCORER_MAP = {
    "dovile2024": {"logme": "logme", "sfda": "sfda_reference", "leep": "leep", "parc": "parc", "nleep": "nleep",
                   "lp": "lp", "fu": "fu", "lp_x_fu": ref.code_name("lp_x_fu"),
                   # static baselines of its architectures (torchvision metadata, added by _dovile_unflipped)
                   "imagenet_top1": "imagenet_top1", "num_params": "num_params"},
    "chaves2023": {"hscore_score": "h_score", "nce_score": "nce", "leep_score": "leep",
                   "nleep_score": "nleep", "logme_score": "logme", "reg_hscore_score": "regularized_h_score",
                   "gbc_score": "gbc"},
    "chaves2024": {"imagenet": "imagenet_top1", "hscore_score": "h_score", "nce_score": "nce",
                   "leep_score": "leep", "nleep_score": "nleep", "parc_score": "parc",
                   "reg_hscore_score": "regularized_h_score", "sfda_score": "sfda_reference", "logme_score": "logme",
                   "gbc_score": "gbc", "ncti_score": "ncti"},
    "modelspider": {"H-Score": "h_score", "NCE": "nce", "LEEP": "leep", "NLEEP": "nleep", "LogME": "logme",
                    "GBC": "gbc"},
    "stable_transfer": {"gbc": "gbc", "leep": "leep", "nleep": "nleep", "logme": "logme", "hscore": "h_score"},
}

#: benchmark -> {scorer: why it is not evidence for any metric helpers.rank computes}
UNMAPPED = {
    "dovile2024": {"ncti": "published with [D]'s sign bug (the normalised within-class variance added, not "
                           "subtracted); helpers' ncti subtracts it"},
    "chaves2024": {"etran_energy_score": "ETran's energy term alone; helpers' etran combines energy and LDA terms",
                   "pactran_score": "PACTran is not in helpers.metrics", "tmi_score": "TMI is not in helpers.metrics"},
    "modelspider": {"PACTranDirichlet": "PACTran is not in helpers.metrics", "OTCE": "OTCE is not in helpers.metrics",
                    "LFC": "LFC is not in helpers.metrics"},
    "schlimme2023": {"pre_ft_dice": "a segmentation score (Dice of the source model); helpers.rank ranks "
                                    "classification targets",
                     "ccfv": "segmentation (3-D MRI); helpers.rank ranks classification targets",
                     "transrate": "computed on segmentation features (3-D MRI); helpers.rank ranks classification "
                                  "targets"},
    "godau2024": {"*": "task distances between data sets and the source size, not scores of a model's features; "
                       "none is in helpers.metrics"},
    "juodelyte2023": {"source_size": "pre-training set size, not computed by helpers.rank (ground truth only)"},
    "stable_transfer_seg": {"*": "semantic segmentation targets and source data sets; helpers.rank ranks "
                                 "classification targets"},
    "sfda": {"*": "ground truth only (no per-model scores published; its printed weighted tau is in the "
                  "Evidence chapter)"},
    "emms": {"*": "ground truth only (no per-model scores published)"},
    "transferability_graph": {"*": "ground truth only (no scores published; the parameter count is a static "
                                   "baseline, shown in the Evidence chapter)"},
    "parc": {"*": "ground truth only (the scores need probe sets that are not published)"},
    "model_selection_nlp": {"*": "text: language models on GLUE targets, not evidence for image models"},
}
#: why a scorer of a benchmark that this module has not reviewed yet is not evidence
NOT_REVIEWED = ("benchmark not reviewed for helpers.rank's default: map its scorers in SCORER_MAP (with its "
                "convention in CONVENTIONS) or list them in UNMAPPED")
#: the target-agnostic baselines helpers.rank computes, added to [D]'s 9 architectures from torchvision's weight
#: metadata (helpers.reference.ARCHITECTURE_NAMES; no download)
ARCH_BASELINES = ("imagenet_top1", "num_params")
#: research group of every benchmark (helpers.benchmarks.BENCHMARKS)
GROUPS = {name: group for name, (_, _, group, _) in BENCHMARKS.items()}
N_BOOT = 1000
SEED = 0
LEVEL = 0.95


@dataclass
class RankDefault:
    """What :func:`derive_rank_default` returns: ``table`` (one row per metric helpers.rank can compute),
    ``chosen`` (the combination), ``stamp`` (what it rests on), ``units`` (per unit and metric: mean weighted
    tau and targets) and ``unmapped`` (benchmark scorers that are no evidence for a rank metric, with why)."""

    table: pd.DataFrame
    chosen: tuple
    stamp: dict
    units: pd.DataFrame = field(default_factory=pd.DataFrame)
    unmapped: pd.DataFrame = field(default_factory=pd.DataFrame)


def rank_metrics() -> list[str]:
    """The metrics helpers.rank computes on a classification target (its default metric list)."""
    return default_metrics()


# ----------------------------------------------------------------------------------------------------------
# the evidence table


def _dovile_unflipped() -> pd.DataFrame:
    """[D]'s published scores without the architecture flips, LP x FU recombined over the candidates only; the
    ImageNet top-1 and parameter count of its 9 torchvision architectures as static baselines."""
    parts = []
    for scen in ("dataset", "architecture"):
        truth = ref.load_ground_truth(scen)
        scores = ref.load_all_scores(scen, flips=(), combined=True, combine_over="candidates")
        if scen == "architecture":
            meta = torchvision_imagenet_meta(ref.ARCHITECTURE_NAMES)
            for m in ARCH_BASELINES:
                scores[m] = pd.DataFrame({t: meta[m].astype(float) for t in truth.columns})
        for m, sc in scores.items():
            sc = sc.reindex(index=truth.index, columns=truth.columns)
            for t in truth.columns:
                for src in truth.index:
                    if canonical_name(src) == canonical_name(t) or not np.isfinite(truth.at[src, t]):
                        continue
                    parts.append((scen, t, src, truth.at[src, t], m, sc.at[src, t]))
    df = pd.DataFrame(parts, columns=["scenario", "target", "candidate", "truth", "metric", "score"])
    return df.assign(benchmark="dovile2024", higher_is_better=True, medical=True)


def _loaded(name: str) -> pd.DataFrame:
    return _dovile_unflipped() if name == "dovile2024" else load(name)


def evidence_table() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(evidence, unmapped): the long table of every mapped scorer on the classification benchmarks, with
    ``metric`` the helpers.rank name, ``scorer`` the benchmark's own, ``unit`` (benchmark/scenario, medical or
    natural: a mixed benchmark is split by its targets' domain) and ``group``; and one row per benchmark
    scorer that is no evidence for a rank metric, with why."""
    frames, unmapped = [], []
    for name in dict.fromkeys(list(CONVENTIONS) + list(BENCHMARKS)):
        df = _loaded(name)
        mapping = SCORER_MAP.get(name, {})
        # a benchmark added to helpers.benchmarks later is listed, not silently ignored
        why = UNMAPPED.get(name, {} if name in CONVENTIONS else {"*": NOT_REVIEWED})
        for s in dict.fromkeys(df["metric"]):
            if s not in mapping:
                unmapped.append({"benchmark": name, "scorer": s,
                                 "why": why.get(s, why.get("*", "not a score helpers.rank computes"))})
        if name not in CONVENTIONS:
            continue
        df = df[df["metric"].isin(list(mapping))].copy()
        if name == "chaves2024":  # Chaves 2024's ImageNet accuracy is also the static baseline of Chaves 2023
            in1k = df[df["metric"] == "imagenet"].drop_duplicates("candidate").set_index("candidate")["score"]
        df["scorer"] = df["metric"]
        df["metric"] = df["metric"].map(mapping)
        frames.append(df)
    table = pd.concat(frames, ignore_index=True)
    c23 = table[(table["benchmark"] == "chaves2023")].drop_duplicates(["scenario", "target", "candidate"])
    table = pd.concat([table, c23.assign(metric="imagenet_top1", scorer="imagenet (Chaves 2024)",
                                         score=c23["candidate"].map(in1k).astype(float))], ignore_index=True)
    table["medical"] = table["medical"].astype(bool)
    table["domain"] = np.where(table["medical"], "medical", "natural")
    table["unit"] = table["benchmark"] + "/" + table["scenario"] + "/" + table["domain"]
    table["group"] = table["benchmark"].map(GROUPS)
    cols = ["benchmark", "scenario", "domain", "unit", "group", "target", "candidate", "truth", "metric", "scorer",
            "score", "higher_is_better"]
    table = table[cols].sort_values(["unit", "metric", "target", "candidate"], kind="stable").reset_index(drop=True)
    return table, pd.DataFrame(unmapped, columns=["benchmark", "scorer", "why"])


def content_hash(table: pd.DataFrame) -> str:
    """sha256 (first 16 hex digits) of the evidence table as sorted CSV with scores to 12 significant digits:
    the same numbers give the same hash whatever the row order they were loaded in."""
    t = table.sort_values(["unit", "metric", "target", "candidate"], kind="stable")
    text = t.to_csv(index=False, float_format="%.12g", lineterminator="\n")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def source_commits(benchmarks) -> dict[str, str]:
    """benchmark -> the source commit named in ``data/reference/<folder>/README.md`` (40 hex digits)."""
    folders = {**{b: f for b, (f, _, _) in CONVENTIONS.items()}, "schlimme2023": "schlimme2023",
               "godau2024": "godau2024", "juodelyte2023": "juodelyte2023"}
    out = {}
    for b in benchmarks:
        text = (REFERENCE / folders.get(b, b) / "README.md").read_text()
        m = re.search(r"commit\s+([0-9a-f]{40})", text)
        out[b] = m.group(1) if m else "unknown"
    return out


# ----------------------------------------------------------------------------------------------------------
# pooling and the rule


def unit_values(table: pd.DataFrame, n_boot: int = N_BOOT, seed: int = SEED):
    """Per (unit, metric): the mean weighted tau under the benchmark's convention and the number of targets;
    and per unit the bootstrap replicates (``n_boot`` x metrics, targets resampled within the unit)."""
    rows, reps = [], {}
    for unit, g in table.groupby("unit", sort=True):
        b = g["benchmark"].iloc[0]
        _, conv, const = CONVENTIONS[b]
        # one scenario per unit: evaluate's functions group by (benchmark, scenario)
        g = validate(g.assign(scenario=unit)[["benchmark", "scenario", "target", "candidate", "truth", "metric",
                                              "score", "higher_is_better"]])
        s = summarize(g, conv, const)
        r = bootstrap_replicates(g, conv, const, n_boot=n_boot, seed=seed)[(b, unit)]
        reps[unit] = r
        for x in s.itertuples():
            rows.append({"unit": unit, "benchmark": b, "group": GROUPS[b],
                         "domain": unit.rsplit("/", 1)[1], "convention": conv, "metric": x.metric,
                         "mean": x.weighted_tau, "n_targets": x.n_targets})
    units = pd.DataFrame(rows)
    return units[units["n_targets"] > 0].reset_index(drop=True), reps


def _pool(values: pd.DataFrame) -> float:
    """Units averaged within group, then groups with equal weight (``values``: unit, group, mean)."""
    return float(values.groupby("group")["mean"].mean().mean())


def pooled(units: pd.DataFrame, reps: dict, domain: str, level: float = LEVEL) -> pd.DataFrame:
    """Per metric over the units of ``domain``: pooled value, interval (the same pooling on every bootstrap
    replicate), benchmarks, groups, units and targets."""
    u = units[units["domain"] == domain]
    a = (1 - level) / 2
    rows = []
    for m, g in u.groupby("metric", sort=True):
        boot = pd.DataFrame({unit: reps[unit][m].to_numpy() for unit in g["unit"]})
        grp = g.set_index("unit")["group"]
        by_group = boot.T.groupby(grp).mean().T  # replicate x group
        vals = by_group.mean(axis=1).to_numpy()
        vals = vals[np.isfinite(vals)]
        rows.append({"metric": m, "tier": domain, "tau": _pool(g),
                     "ci_low": float(np.quantile(vals, a)), "ci_high": float(np.quantile(vals, 1 - a)),
                     "benchmarks": ", ".join(sorted(g["benchmark"].unique())),
                     "n_benchmarks": int(g["benchmark"].nunique()), "n_groups": int(g["group"].nunique()),
                     "n_units": int(len(g)), "n_targets": int(g["n_targets"].sum())})
    return pd.DataFrame(rows)


def choose(table: pd.DataFrame, agnostic=("imagenet_top1", "num_params")) -> tuple[tuple, pd.DataFrame]:
    """Apply steps 3 to 5 of the rule (module docstring) to the per-metric table (columns metric, tier, tau,
    ci_low, ci_high, n_groups); returns (chosen metrics best first, the table with ``chosen`` and ``why``)."""
    t = table.copy()

    def eligible(tier):
        return (t["tier"] == tier) & ~t["metric"].isin(agnostic) & (t["n_groups"] >= MIN_GROUPS)

    tier = "medical" if eligible("medical").any() else "natural"
    pool = t[eligible(tier)]
    best = pool.sort_values(["tau", "metric"], ascending=[False, True]).iloc[0] if len(pool) else None
    chosen, why = [], []
    for r in t.itertuples():
        if r.tier == "none":
            ok, w = False, "no public benchmark scored it (rule 5)"
        elif r.metric in agnostic:
            ok, w = False, "target-agnostic baseline: the bar beside the recommendation (rule 3)"
        elif r.tier != tier:
            ok, w = False, f"{r.tier} evidence only (rule 1)"
        elif r.n_groups < MIN_GROUPS:
            ok, w = False, f"evaluated by {r.n_groups} research group(s), fewer than {MIN_GROUPS} (rule 3)"
        elif r.metric == best["metric"]:
            ok, w = True, f"best {tier} evidence (rule 4)"
        elif r.tau <= 0:
            ok, w = False, "value not above zero (rule 4)"
        elif best["ci_low"] <= r.tau <= best["ci_high"]:
            ok, w = True, f"inside {best['metric']}'s interval (rule 4)"
        else:
            ok, w = False, f"below {best['metric']}'s interval (rule 4)"
        chosen.append(ok)
        why.append(w)
    t["chosen"], t["why"] = chosen, why
    picked = t[t["chosen"]].sort_values(["tau", "metric"], ascending=[False, True])["metric"]
    return tuple(picked), t


def derive_rank_default(n_boot: int = N_BOOT, seed: int = SEED, level: float = LEVEL,
                        today: str | None = None) -> RankDefault:
    """The evidence table, the chosen combination and the stamp (see the module docstring). Deterministic
    for fixed ``n_boot``, ``seed`` and data; ``today`` (ISO date) only sets the stamp's ``derived_on``."""
    table, unmapped = evidence_table()
    units, reps = unit_values(table, n_boot, seed)
    med, nat = pooled(units, reps, "medical", level), pooled(units, reps, "natural", level)
    names = rank_metrics()
    rows = []
    for m in names:
        if m in set(med["metric"]):
            rows.append(med[med["metric"] == m].iloc[0].to_dict())
        elif m in set(nat["metric"]):
            rows.append(nat[nat["metric"] == m].iloc[0].to_dict())
        else:
            rows.append({"metric": m, "tier": "none", "tau": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                         "benchmarks": "", "n_benchmarks": 0, "n_groups": 0, "n_units": 0, "n_targets": 0})
    per = pd.DataFrame(rows)
    # the natural value beside the medical one, for the reader (not used by the rule where medical exists)
    per["natural_tau"] = per["metric"].map(nat.set_index("metric")["tau"]) if len(nat) else np.nan
    chosen, per = choose(per, tuple(AGNOSTIC))
    per = per.sort_values(["chosen", "tier", "tau"], ascending=[False, True, False], key=lambda s: (
        s.map({"medical": 0, "natural": 1, "none": 2}) if s.name == "tier" else s)).reset_index(drop=True)
    used = sorted(table["benchmark"].unique())
    ix = per.set_index("metric")
    # each chosen metric's evidence, to three decimals as the papers quote weighted tau
    support = {m: {"tau": round(float(ix.at[m, "tau"]), 3), "ci_low": round(float(ix.at[m, "ci_low"]), 3),
                   "ci_high": round(float(ix.at[m, "ci_high"]), 3), "tier": str(ix.at[m, "tier"]),
                   "benchmarks": str(ix.at[m, "benchmarks"]), "groups": int(ix.at[m, "n_groups"]),
                   "targets": int(ix.at[m, "n_targets"])} for m in chosen}
    stamp = {"evidence": "public benchmarks under data/reference (helpers.rank.default.derive_rank_default)",
             "benchmarks": used, "commits": source_commits(used), "content_sha256": content_hash(table),
             "support": support, "rule": RULE, "n_boot": int(n_boot), "seed": int(seed), "level": float(level),
             "derived_on": today or _dt.date.today().isoformat()}
    return RankDefault(per, chosen, stamp, units, unmapped)


def recorded_source(d: RankDefault) -> str:
    """The two constants of :mod:`helpers.rank.evidence` (``DEFAULT_RECOMMEND``, ``EVIDENCE``) for ``d``, as
    Python source to paste there after the data or the rule changed."""
    import pprint

    return (f"DEFAULT_RECOMMEND = {d.chosen!r}\n\nEVIDENCE = "
            + pprint.pformat(d.stamp, width=112, sort_dicts=False) + "\n")


def main() -> None:
    """``python -m helpers.rank.default``: the evidence table, the unmapped scorers and the constants."""
    d = derive_rank_default()
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60):
        print(d.table.drop(columns=["benchmarks"]).round(3).to_string(index=False))
        print("\nnot evidence for a helpers.rank metric:")
        print(d.unmapped.to_string(index=False))
    print("\n# helpers/rank/evidence.py\n" + recorded_source(d))


if __name__ == "__main__":
    main()


__all__ = ["derive_rank_default", "recorded_source", "RankDefault", "evidence_table", "choose", "content_hash", "RULE",
           "SCORER_MAP", "UNMAPPED", "CONVENTIONS", "MIN_GROUPS",
           "NOT_REVIEWED"]
