"""The published tables of [D] (Juodelyte et al., arXiv:2412.20172) and their reproduction.

The tables live in ``data/reference/dovile2024/`` (copied unchanged from the authors' repository, MIT
licence). Their formats, as read here:

``results/AUCs_dataset.csv``
    comma-separated, a leading unnamed integer index, then a ``source`` column and one column per target
    (``bloodmnist`` ... ``tissuemnist``, plus ``chestmnist``, which is not a target). Test AUC as a
    *fraction*; the diagonal (source == target) is empty.
``results/AUCs_model.csv``
    same layout, 9 ImageNet architectures x 11 targets, AUC in *percent*. :func:`load_ground_truth`
    returns fractions for both scenarios (``percent=False``), so regrets read the same in both.
``results/<metric>_dataset.csv`` / ``results/<metric>_model.csv``
    the published scores, same layout, metric in :data:`METRICS`. The LP diagonal is empty, the other
    metrics also hold the (unused) source == target cell.
``results/ktau_<dataset|model>_rank.csv``
    *semicolon*-separated, per-target rank (1 = best weighted tau) of the seven methods, ``our`` = LP x FU.
``finetuned_AUCs/fined_<short>.csv`` (dataset sweep) and ``fined_<short>_imnet.csv`` (architecture sweep)
    one row per fine-tuning run, ``<short>`` = the target without ``mnist`` (``blood``, ``organa`` ...);
    ``source_flag`` names the source (a dataset or an architecture), ``target_flag`` the target; the
    metrics ``val_loss``, ``val_auc``, ``val_acc``, ``test_auc`` are fractions and empty for FAILED / RUNNING
    runs; ``Duration`` is the run's wall time as text (``29.1min``). There are no per-image predictions.

Naming: sources and targets of the dataset scenario use the MedMNIST flag (``bloodmnist``) in every table
and the sweep files use the short name; :func:`helpers.names.canonical_name` maps both to one key.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.evaluation import correlate_many, minmax_product, tidy
from helpers.evaluation_trust import architecture_baselines, loto_prior, training_set_sizes
from helpers.ground_truth import select_ground_truth
from helpers.names import canonical_name
from helpers.paths import PROJECT_ROOT, results_root
from helpers.runner import atomic_write_csv

#: the eight scores [D] published, in the order of their tables
METRICS = ("logme", "sfda", "leep", "parc", "ncti", "nleep", "lp", "fu")
#: display names
METRIC_LABELS = {
    "logme": "LogME", "sfda": "SFDA", "leep": "LEEP", "parc": "PARC", "ncti": "NCTI", "nleep": "NLEEP",
    "lp": "LP", "fu": "FU", "lp_x_fu": "LP x FU",
}
#: [D]'s name -> this code's metric name, where the two differ; the one place that maps them. This module keeps
#: [D]'s ``lp_x_fu`` (the ``our`` column of the rank tables, the reproduction table
#: ``results/reference/dovile2024_weighted_tau.csv``); the metric registry and the book's own tables say ``lp_fu``
CODE_NAMES = {"lp_x_fu": "lp_fu"}
#: our scenario name -> the suffix of [D]'s file names
SCENARIOS = {"dataset": "dataset", "architecture": "model"}
#: the 11 targets of both scenarios
TARGETS = ("bloodmnist", "breastmnist", "dermamnist", "octmnist", "organamnist", "organcmnist",
           "organsmnist", "pathmnist", "pneumoniamnist", "retinamnist", "tissuemnist")

#: Scores whose sign [D]'s architecture notebook flips before correlating (score -> -score). Found by
#: reproduction: negating exactly these six (and neither LogME nor SFDA) gives the published architecture
#: means LEEP .280, PARC .113, NCTI .099, NLEEP .140 and, with LP and FU both negated before the min-max
#: product, LP x FU .261; LogME .036 and SFDA .187 come out unflipped. The dataset notebook flips nothing.
ARCHITECTURE_FLIPS = ("leep", "parc", "ncti", "nleep", "lp", "fu")

#: PROTOCOL.md section 6: the means of [D] to three decimals (SFDA over the 9 targets where it is defined)
PUBLISHED_MEANS = {
    "dataset": {"logme": .335, "sfda": .267, "leep": .351, "parc": .297, "ncti": .183, "nleep": .411,
                "lp": .440, "fu": .410, "lp_x_fu": .523},
    "architecture": {"logme": .036, "sfda": .187, "leep": .280, "parc": .113, "ncti": .099,
                     "nleep": .140, "lp_x_fu": .261},
}

#: ground-truth selection rules of :func:`derive_ground_truth`
SELECTION_RULES = {
    "min_val_loss": "the run with the lowest validation loss ([D])",
    "max_val_auc": "the run with the highest validation AUC (ties: lower validation loss)",
    "top3_val_loss": "mean test AUC of the 3 runs with the lowest validation loss",
    "top3_val_auc": "mean test AUC of the 3 runs with the highest validation AUC",
}


def reference_dir(path: str | os.PathLike | None = None) -> Path:
    """The folder holding ``results/`` and ``finetuned_AUCs/``: ``path``, else the project's copy."""
    root = Path(path).expanduser().resolve() if path is not None else PROJECT_ROOT / "data" / "reference" / "dovile2024"
    if not (root / "results").is_dir():
        raise FileNotFoundError(f"no [D] reference tables under {root} (expected a results/ folder)")
    return root


def _scenario_suffix(scenario: str) -> str:
    if scenario in SCENARIOS:
        return SCENARIOS[scenario]
    if scenario in SCENARIOS.values():  # accept [D]'s own word, "model"
        return scenario
    raise ValueError(f"unknown scenario {scenario!r}; expected one of {sorted(SCENARIOS)}")


def _scenario_name(scenario: str) -> str:
    suffix = _scenario_suffix(scenario)
    return next(k for k, v in SCENARIOS.items() if v == suffix)


def _read_table(path: Path) -> pd.DataFrame:
    """A [D] results table: drop the unnamed integer index, index by ``source``, float values."""
    df = pd.read_csv(path, index_col=0)
    if "source" not in df.columns:
        raise ValueError(f"{path}: expected a 'source' column, found {list(df.columns)[:5]}")
    df = df.set_index("source")
    df.index.name = "source"
    df.columns.name = "target"
    return df.astype(float)


def load_scores(metric: str, scenario: str = "dataset", ref_dir=None, flip: bool = False) -> pd.DataFrame:
    """Published scores of one metric (sources x targets); ``flip=True`` negates them."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    df = _read_table(reference_dir(ref_dir) / "results" / f"{metric}_{_scenario_suffix(scenario)}.csv")
    return -df if flip else df


def load_ground_truth(scenario: str = "dataset", ref_dir=None, percent: bool = False,
                      targets_only: bool = True) -> pd.DataFrame:
    """Published fine-tuned test AUC (sources x targets), as a fraction unless ``percent``.

    ``AUCs_model.csv`` is stored in percent, ``AUCs_dataset.csv`` as fractions; both come back in the same
    unit. ``targets_only`` drops ``chestmnist``, which is a source but never a target.
    """
    suffix = _scenario_suffix(scenario)
    df = _read_table(reference_dir(ref_dir) / "results" / f"AUCs_{suffix}.csv")
    stored_percent = suffix == "model"
    if stored_percent and not percent:
        df = df / 100.0
    elif percent and not stored_percent:
        df = df * 100.0
    if targets_only:
        df = df[[t for t in df.columns if t in TARGETS]]
    return df


def load_rank_table(scenario: str = "dataset", ref_dir=None) -> pd.DataFrame:
    """[D]'s per-target ranks of the seven methods (``;``-separated file), targets x methods."""
    path = reference_dir(ref_dir) / "results" / f"ktau_{_scenario_suffix(scenario)}_rank.csv"
    df = pd.read_csv(path, sep=";", index_col=0).set_index("target")
    return df.rename(columns={"our": "lp_x_fu"})


def load_all_scores(scenario: str = "dataset", ref_dir=None, flips=None, combined: bool = True,
                    combine_over: str = "table") -> dict[str, pd.DataFrame]:
    """Every published score table of a scenario, keyed by metric, plus ``lp_x_fu`` when ``combined``.

    ``flips``: metrics to negate before anything else. ``None`` means [D]'s own choice for the scenario
    (nothing for ``dataset``, :data:`ARCHITECTURE_FLIPS` for ``architecture``); pass ``()`` for none.
    ``lp_x_fu`` is :func:`helpers.evaluation.minmax_product` of the (possibly flipped) LP and FU tables;
    ``combine_over="table"`` min-max normalises over every source in the published column, the
    source == target row included where it has a value (FU has one, LP does not), which is what [D] did
    (.523); ``"candidates"`` leaves that row out first (.522).
    """
    name = _scenario_name(scenario)
    if flips is None:
        flips = ARCHITECTURE_FLIPS if name == "architecture" else ()
    unknown = set(flips) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metrics to flip: {sorted(unknown)}")
    out = {m: load_scores(m, scenario, ref_dir, flip=m in flips) for m in METRICS}
    if combined:
        if combine_over not in ("table", "candidates"):
            raise ValueError("combine_over must be 'table' or 'candidates'")
        out["lp_x_fu"] = minmax_product(out["lp"], out["fu"], exclude_self=combine_over == "candidates")
    return out


def reproduce(scenario: str = "dataset", ref_dir=None, flips=None, truth: pd.DataFrame | None = None,
              combine_over: str = "table") -> pd.DataFrame:
    """Per-target correlations of every published score with the (published) ground truth.

    Returns the tidy table of :func:`helpers.evaluation.tidy` with a ``scenario`` column in front. For the
    architecture scenario, :data:`PUBLISHED_MEANS` omits LP and FU alone; they are still computed.
    """
    name = _scenario_name(scenario)
    scores = load_all_scores(scenario, ref_dir, flips=flips, combine_over=combine_over)
    if truth is None:
        truth = load_ground_truth(scenario, ref_dir)
    long = tidy(correlate_many(scores, truth))
    long.insert(0, "scenario", name)
    return long


def compare_with_published(long: pd.DataFrame, value: str = "weighted_tau") -> pd.DataFrame:
    """Our mean per (scenario, metric) beside PROTOCOL's three-decimal number and the difference."""
    rows = []
    for (scen, metric), grp in long.groupby(["scenario", "metric"], sort=False):
        ours = grp[value].mean()  # NaN targets skipped, as pandas/NumPy nanmean did for [D] (SFDA: 9)
        pub = PUBLISHED_MEANS.get(scen, {}).get(metric, np.nan)
        rows.append({"scenario": scen, "metric": metric, "n_targets": int(grp[value].notna().sum()),
                     "ours": ours, "ours_3dp": round(ours, 3), "published": pub,
                     "abs_diff": abs(ours - pub) if np.isfinite(pub) else np.nan,
                     "matches": bool(np.isfinite(pub) and abs(ours - pub) < 5e-4 + 1e-12) if np.isfinite(pub) else None})
    return pd.DataFrame(rows)


def write_weighted_tau(long: pd.DataFrame, path: str | os.PathLike | None = None) -> Path:
    """Write ``scenario, target, metric, weighted_tau`` atomically (temp file, then ``os.replace``).

    Default path: ``results/reference/dovile2024_weighted_tau.csv`` (under ``$RESULTS_ROOT`` if set).
    Values are written at full precision (``repr`` of the float), NaN as an empty cell.
    """
    path = Path(path) if path is not None else results_root() / "reference" / "dovile2024_weighted_tau.csv"
    cols = ["scenario", "target", "metric", "weighted_tau"]
    missing = set(cols) - set(long.columns)
    if missing:
        raise ValueError(f"table lacks columns {sorted(missing)}")
    atomic_write_csv(long[cols].reset_index(drop=True), path, index=False)
    return path


# ----------------------------------------------------------------------------------------------------
# the raw fine-tuning sweeps


def sweep_path(target: str, scenario: str = "dataset", ref_dir=None) -> Path:
    short = canonical_name(target)
    tail = "_imnet" if _scenario_name(scenario) == "architecture" else ""
    return reference_dir(ref_dir) / "finetuned_AUCs" / f"fined_{short}{tail}.csv"


_DURATION_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def _duration_seconds(text) -> float:
    """The sweep logs' ``Duration`` (``"29.1min"``, ``"1.4h"``, ``"18.4s"``) in seconds; NaN if empty."""
    if not isinstance(text, str) or not text.strip():
        return float("nan")
    m = re.fullmatch(r"\s*([0-9.]+)\s*(s|min|h|d)\s*", text)
    if not m:
        raise ValueError(f"unreadable run duration {text!r}")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


def load_sweep(target: str, scenario: str = "dataset", ref_dir=None, finished_only: bool = True) -> pd.DataFrame:
    """All runs of one target's sweep: ``source, target, status, val_loss, val_auc, val_acc, test_auc``,
    ``duration_s`` (the logged wall time in seconds) and the hyperparameters. ``finished_only`` keeps runs with finite ``val_loss``, ``val_auc`` and ``test_auc`` (FAILED
    and RUNNING runs of the architecture sweep have none)."""
    path = sweep_path(target, scenario, ref_dir)
    if not path.is_file():
        raise FileNotFoundError(f"no sweep log {path}")
    raw = pd.read_csv(path)
    keep = ["source_flag", "target_flag", "Status", "batch_size", "lr", "momentum", "wd", "stopped_at",
            "val_loss", "val_auc", "val_acc", "test_auc"]
    df = raw[[c for c in keep if c in raw.columns]].rename(
        columns={"source_flag": "source", "target_flag": "target", "Status": "status"})
    if "Duration" in raw.columns:
        df = df.assign(duration_s=raw["Duration"].map(_duration_seconds))
    if finished_only:
        df = df[np.isfinite(df[["val_loss", "val_auc", "test_auc"]].astype(float)).all(axis=1)]
    return df.reset_index(drop=True)


def select_runs(runs: pd.DataFrame, rule: str = "min_val_loss") -> pd.Series:
    """Ground-truth test AUC per source from one target's runs, by a rule of :data:`SELECTION_RULES`
    (:func:`helpers.ground_truth.select_ground_truth`)."""
    if rule not in SELECTION_RULES:
        raise ValueError(f"unknown rule {rule!r}; expected one of {sorted(SELECTION_RULES)}")
    if runs.empty:
        raise ValueError("no runs to select from")
    if runs["target"].nunique() != 1:
        raise ValueError("select_runs takes the runs of one target; use derive_ground_truth for several")
    return select_ground_truth(runs, rule).iloc[:, 0].rename("test_auc")


def load_runs(scenario: str = "dataset", ref_dir=None, targets=TARGETS) -> pd.DataFrame:
    """The finished runs of every target's sweep in one table (:func:`load_sweep` columns).

    Architecture scenario: the ``_imnet`` sweeps hold eight architectures; [D]'s ``resnet`` row is the
    ImageNet ResNet18 of the dataset scenario, so its runs are the ``imagenet`` runs of the dataset sweep,
    renamed ``resnet``.
    """
    name = _scenario_name(scenario)
    parts = []
    for t in targets:
        parts.append(load_sweep(t, name, ref_dir))
        if name == "architecture":
            resnet = load_sweep(t, "dataset", ref_dir)
            parts.append(resnet[resnet["source"] == "imagenet"].assign(source="resnet"))
    return pd.concat(parts, ignore_index=True)


def derive_ground_truth(scenario: str = "dataset", rule: str = "min_val_loss", ref_dir=None,
                        targets=TARGETS) -> pd.DataFrame:
    """Re-derive the ground truth (sources x targets, fractions) from the sweep logs (:func:`load_runs`)."""
    if rule not in SELECTION_RULES:
        raise ValueError(f"unknown rule {rule!r}; expected one of {sorted(SELECTION_RULES)}")
    df = select_ground_truth(load_runs(scenario, ref_dir, targets), rule)
    df = df[[t for t in targets if t in df.columns]]
    df.index.name, df.columns.name = "source", "target"
    return df


def compare_tables(ours: pd.DataFrame, published: pd.DataFrame, atol: float = 1e-12) -> pd.DataFrame:
    """Cell-by-cell comparison on the common sources and targets: one row per cell that differs by more
    than ``atol`` (or is present in only one table). Empty means equal."""
    rows, cols = ours.index.intersection(published.index), ours.columns.intersection(published.columns)
    a, b = ours.loc[rows, cols], published.loc[rows, cols]
    diff = (a - b).abs()
    bad = (diff > atol) | (a.isna() != b.isna())
    out = [{"source": s, "target": t, "ours": a.at[s, t], "published": b.at[s, t], "abs_diff": diff.at[s, t]}
           for s in rows for t in cols if bad.at[s, t]]
    only = [{"source": s, "target": None, "ours": np.nan, "published": np.nan, "abs_diff": np.nan}
            for s in ours.index.symmetric_difference(published.index)]
    return pd.DataFrame(out + only, columns=["source", "target", "ours", "published", "abs_diff"])


# ----------------------------------------------------------------------------------------------------
# the two published defects and the sensitivity analyses


def sfda_saturation(scenario: str = "dataset", ref_dir=None) -> pd.DataFrame:
    """Per target: how many candidate sources (self excluded) SFDA scores exactly 1.0, how many distinct
    values it takes, and the resulting weighted tau (NaN when the column is constant)."""
    sfda, truth = load_scores("sfda", scenario, ref_dir), load_ground_truth(scenario, ref_dir)
    corr = correlate_many({"sfda": sfda}, truth)["sfda"]
    rows = []
    for t in sfda.columns:
        col = sfda[t][[canonical_name(s) != canonical_name(t) for s in sfda.index]].dropna()
        rows.append({"target": t, "n_sources": len(col), "n_exactly_1": int((col == 1.0).sum()),
                     "n_distinct": int(col.nunique()), "min": col.min(),
                     "weighted_tau": corr.at[t, "weighted_tau"], "constant_scores": corr.at[t, "constant_scores"]})
    return pd.DataFrame(rows).set_index("target")


def ncti_range(scenario: str = "dataset", ref_dir=None) -> pd.DataFrame:
    """Per target: the smallest and largest published NCTI over the candidate sources. Each of NCTI's three
    parts is min-max normalised to [0, 1] across the sources, so ``ncc + seli - vc`` lies in [-1, 2] and
    ``ncc + seli + vc`` (what [D] computed) in [0, 3]; a value above 2 is only possible with ``+ vc``."""
    ncti = load_scores("ncti", scenario, ref_dir)
    rows = []
    for t in ncti.columns:
        col = ncti[t][[canonical_name(s) != canonical_name(t) for s in ncti.index]].dropna()
        rows.append({"target": t, "min": col.min(), "max": col.max(), "argmax": col.idxmax(),
                     "above_2": int((col > 2 + 1e-9).sum())})
    return pd.DataFrame(rows).set_index("target")


def rule_comparison(scenario: str = "dataset", rules=tuple(SELECTION_RULES), ref_dir=None) -> pd.DataFrame:
    """Per-target correlations of every published score with the ground truth re-derived under each rule.

    Long table with ``scenario``, ``rule`` and the columns of :func:`helpers.evaluation.tidy`.
    """
    parts = []
    for rule in rules:
        truth = derive_ground_truth(scenario, rule, ref_dir)
        long = reproduce(scenario, ref_dir, truth=truth)
        long.insert(1, "rule", rule)
        parts.append(long)
    return pd.concat(parts, ignore_index=True)


def ground_truth_agreement(scenario: str = "dataset", rules=tuple(SELECTION_RULES), ref_dir=None) -> pd.DataFrame:
    """How far each rule's ground truth moves from [D]'s (lowest val loss): per rule, the mean over targets
    of Kendall's tau between the two source rankings, the mean |AUC difference|, and in how many targets
    the best source changes."""
    from scipy import stats

    base = derive_ground_truth(scenario, "min_val_loss", ref_dir)
    rows = []
    for rule in rules:
        other = derive_ground_truth(scenario, rule, ref_dir).reindex_like(base)
        taus, diffs, changed = [], [], 0
        for t in base.columns:
            a, b = base[t].dropna(), other[t].dropna()
            idx = a.index.intersection(b.index)
            taus.append(stats.kendalltau(a[idx], b[idx]).statistic)
            diffs.append((a[idx] - b[idx]).abs().mean())
            changed += int(a[idx].idxmax() != b[idx].idxmax())
        rows.append({"rule": rule, "kendall_tau_vs_D": float(np.mean(taus)),
                     "mean_abs_auc_diff": float(np.mean(diffs)), "targets_best_source_changes": changed})
    return pd.DataFrame(rows).set_index("rule")


# ----------------------------------------------------------------------------------------------------
# which metric to trust: [D]'s side of the baselines and of the cost table

#: [D]'s architecture names -> the torchvision builders of PROTOCOL section 3 (ImageNet weights IMAGENET1K_V1)
ARCHITECTURE_NAMES = {"densenet": "densenet121", "efficientnet": "efficientnet_v2_s", "googlenet": "googlenet",
                      "mnasnet": "mnasnet1_0", "mobilenet": "mobilenet_v3_small", "vgg": "vgg11",
                      "convnext": "convnext_tiny", "shufflenet": "shufflenet_v2_x0_5", "resnet": "resnet18"}

#: display names of the baselines of :func:`baselines`
BASELINE_LABELS = {"train_size": "train-set size", "loto_prior": "LOTO prior", "num_params": "parameter count",
                   "imagenet_top1": "ImageNet top-1"}

#: [D]'s metric -> its row in ``benchmarks/results/metrics_*.txt`` (NCTI: the per-source parts, whose
#: set-level combination costs nothing; FU is not in the metrics benchmark: it needs the model itself)
BENCHMARK_ROWS = {"logme": "logme", "sfda": "sfda", "leep": "leep", "parc": "parc", "ncti": "ncti_parts",
                  "nleep": "nleep", "lp": "lp", "fu": None}


def baselines(scenario: str = "dataset", ref_dir=None, truth: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """The baselines that use no target feature, as score tables over [D]'s sources and targets.

    Dataset scenario: ``train_size`` (:func:`helpers.evaluation_trust.training_set_sizes`: MedMNIST train splits
    from ``medmnist.INFO``, ImageNet 1,281,167, RadImageNet 1.35 M, the leave-target-out union ``medmnist`` =
    the sum of the other eleven 2D flags' train splits) and ``loto_prior``. Architecture scenario:
    ``num_params`` and ``imagenet_top1`` (torchvision's IMAGENET1K_V1 metadata) and ``loto_prior``. The prior
    is computed from ``truth`` (default: the published ground truth). Higher = predicted better, for all.
    """
    name = _scenario_name(scenario)
    truth = load_ground_truth(name, ref_dir) if truth is None else truth
    sources, targets = list(truth.index), list(truth.columns)
    if name == "dataset":
        out = {"train_size": training_set_sizes(sources, targets)}
    else:
        unknown = sorted(set(sources) - set(ARCHITECTURE_NAMES))
        if unknown:
            raise ValueError(f"architectures without a torchvision name: {unknown}")
        out = architecture_baselines({s: ARCHITECTURE_NAMES[s] for s in sources}, targets)
    out["loto_prior"] = loto_prior(truth)
    return out


def study_sizes(targets=TARGETS) -> pd.Series:
    """[D]'s N per target: the fold-1 train subset the scores were computed on, ``num_classes * 100`` images
    (PROTOCOL section 2), with the number of classes from ``medmnist.INFO``."""
    from medmnist import INFO

    return pd.Series({t: 100 * len(INFO[t]["label"]) for t in targets}, name="n_images")


def code_name(name: str) -> str:
    """This code's metric name for one of [D]'s (:data:`CODE_NAMES`; the name itself where they agree)."""
    return CODE_NAMES.get(name, name)


def display_name(name: str) -> str:
    """Display name of a metric, a baseline or a rank-averaged ensemble (``"lp + fu"`` -> ``"LP + FU"``,
    ``"all 8"`` -> ``"all 8 metrics"``)."""
    labels = {**METRIC_LABELS, **BASELINE_LABELS}
    if name in labels:
        return labels[name]
    if name.startswith("all ") and name[4:].isdigit():
        return f"all {name[4:]} metrics"
    return " + ".join(labels.get(p, p) for p in name.split(" + "))
