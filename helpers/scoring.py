"""Transferability scores as tables: the metrics of a profile, the set-level combination across sources, and the
tidy and wide score tables. The stage that computes them is :mod:`helpers.stages.scoring` (``run_scoring``,
``scoring_configs``, ``score_unit`` are re-exported here).

The scoring stage computes every transferability metric of a profile for every (source, target) pair.

One runner unit per (source, target) on the target's fold-1 train subset (PROTOCOL.md section 2; the first
``scoring.max_images`` or, by default, ``finetuning.max_train_images`` images of it, i.e. the images the
ground-truth runs were fine-tuned on). A unit loads the source with its own head, extracts penultimate
features and source logits once (cached as ``features.npy`` / ``logits.npy`` / ``labels.npy`` in the unit's
work folder, read back with ``allow_pickle=False``) and computes every pairwise metric of the profile's
``metrics`` list that applies. FU runs on the unit's model (head removed) and normalised images. A metric
that cannot be computed (multi-label target for a single-label metric, FU on multi-label, a numerical failure)
gives a row with ``status`` ``skipped`` or ``error`` and the ``reason``, never a crash.

Set-level scores (``ncti``, ``etran``, and ``lp_fu`` when both ``lp`` and ``fu`` are listed) combine per-source
parts across the available sources of one target; they are appended as rows. Sources that cannot be had here
(``imagenet`` offline, a missing checkpoint) give ``status == "unavailable"`` rows with the reason.

The tidy table ``<results>/scores.csv`` has the columns :data:`COLUMNS`; :func:`score_tables` turns it into
wide ``source x target`` tables per metric for :func:`helpers.evaluation.correlate`. ``options`` records, per
row, the options the metric ran with (its registered defaults updated by ``scoring.metric_options`` of the
profile; for set-level rows whether the target's own source took part in the normalisation).

Corrected forms and [D]'s: SFDA is scored in its non-saturating default form (``sfda``) and, beside it, in the
reference arithmetic (``sfda_reference``, saturating at 1.0 on small binary targets); set-level scores leave
the target's own source out before normalising, and :func:`set_level_comparison` gives the form that includes
it beside them.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .metrics import REGISTRY
from .metrics import setlevel as SL
from .names import is_self
from .runner import Stage

COLUMNS = ["source", "target", "fold", "metric", "score", "seconds", "status", "reason", "options"]

#: metrics whose reference arithmetic ([D]'s) is scored beside the corrected default, to show the difference
REFERENCE_FORMS = {"sfda": "sfda_reference"}

#: metrics whose per-source parts are computed in the unit and combined across sources afterwards
PARTS = {"ncti": "ncti_parts", "etran": "etran_parts"}
SET_LEVEL = ("ncti", "etran", "lp_fu")

_FILE_HASHES: dict = {}


def _file_hash(path) -> str:
    """SHA-256 (16 hex) of a file's content, remembered per (path, size, mtime): how helpers.rank names a
    user's checkpoint. The stages name sources by the key of the unit that makes them instead."""
    import hashlib

    path = Path(path)
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
        _FILE_HASHES[key] = h.hexdigest()[:16]
    return _FILE_HASHES[key]


def profile_metrics(profile: dict) -> list[str]:
    """The profile's ``metrics`` list (default: every registered classification metric, pairwise and set-level;
    the segmentation ones have their own stage), with ``lp_fu`` added when both ``lp`` and ``fu`` are listed."""
    names = profile.get("metrics")
    if not names:
        names = [m for m in REGISTRY if not REGISTRY[m].returns_parts and REGISTRY[m].task == "classification"]
    names = list(dict.fromkeys(names))
    if "lp" in names and "fu" in names and "lp_fu" not in names:
        names.append("lp_fu")  # [D]'s proposed score comes with its two parts
    for corrected, reference in REFERENCE_FORMS.items():
        if corrected in names and reference not in names:
            names.insert(names.index(corrected) + 1, reference)
    return names


#: keyword arguments that change what a metric returns, not how it is computed: never options of a score
_NOT_OPTIONS = {"per_sample"}


def metric_options(profile: dict, name: str) -> dict:
    """The keyword options a metric is computed with: its registered defaults, updated by the profile's
    ``scoring.metric_options.<name>`` (recorded per row in the ``options`` column)."""
    info = REGISTRY.get(name)
    opts = {k: v for k, v in (info.defaults if info is not None else {}).items() if k not in _NOT_OPTIONS}
    opts.update(((profile.get("scoring") or {}).get("metric_options") or {}).get(name) or {})
    return opts


def pairwise_plan(metrics) -> list[str]:
    """What a unit computes: pairwise metrics and the parts of the set-level ones (``lp``/``fu`` for lp_fu)."""
    plan = []
    for m in metrics:
        if m in PARTS:
            plan.append(PARTS[m])
        elif m == "lp_fu":
            plan += ["lp", "fu"]
        elif m in REGISTRY and not REGISTRY[m].set_level:
            plan.append(m)
        else:
            plan.append(m)  # unknown: the unit records it as skipped
    return list(dict.fromkeys(plan))


# ----------------------------------------------------------------------------------------------------------
# set-level and the stage


def set_level_rows(unit_rows: pd.DataFrame, metrics, include_self: bool = False) -> list[dict]:
    """Set-level rows per target from the unit rows (parts, lp, fu) of its available sources.

    The target's own source is left out before every set-level normalisation, as PROTOCOL.md says (it gets a
    ``skipped`` row; for LP x FU this differs from [D]'s notebook, which kept it in FU's min-max:
    :func:`helpers.metrics.setlevel.lp_fu` ``self_in_fu``); ``include_self=True`` normalises over it too (this
    project's earlier form, kept to show the difference: an extreme self source re-weights the parts and
    reorders the others)."""
    out = []
    wanted = [m for m in metrics if m in SET_LEVEL]
    if unit_rows.empty:
        return out
    for (target, fold), g in unit_rows.groupby(["target", "fold"], sort=False):
        own = None if include_self else target
        for m in wanted:
            base = {"target": target, "fold": fold, "metric": m,
                    "options": json.dumps({"own_source": "included" if include_self else "left out"})}
            t0 = time.perf_counter()
            try:
                if m in PARTS:
                    p = g[(g["metric"] == PARTS[m]) & (g["status"] == "ok")]
                    inputs = {r.source: json.loads(r.parts) for r in p.itertuples()}
                    spent = dict(zip(p["source"], p["seconds"]))
                    missing = sorted(set(g["source"]) - set(inputs))
                    values = (SL.ncti if m == "ncti" else SL.etran)(inputs, target=own) if inputs else {}
                else:
                    lp = g[(g["metric"] == "lp") & (g["status"] == "ok")].set_index("source")
                    fu = g[(g["metric"] == "fu") & (g["status"] == "ok")].set_index("source")
                    both = [s for s in lp.index if s in fu.index]
                    spent = {s: lp.loc[s, "seconds"] + fu.loc[s, "seconds"] for s in both}
                    missing = sorted(set(g["source"]) - set(both))
                    values = SL.lp_fu({s: lp.loc[s, "score"] for s in both},
                                      {s: fu.loc[s, "score"] for s in both}, target=own) if both else {}
                selves = [s for s, v in values.items() if is_self(s, own)]
                n_cand = len(values) - len(selves)
                comb = (time.perf_counter() - t0) / max(len(values), 1)
                for s, v in values.items():
                    if s in selves:
                        out.append({"source": s, **base, "score": float("nan"), "seconds": float(spent[s]),
                                    "status": "skipped", "reason": "the target's own source is not a candidate "
                                    "(left out before normalising, PROTOCOL.md)"})
                        continue
                    note = f"normalised across {n_cand} sources" + (" (the target's own included)"
                                                                   if include_self and any(is_self(x, target)
                                                                                           for x in values) else "")
                    out.append({"source": s, **base, "score": float(v), "seconds": float(spent[s]) + comb,
                                "status": "ok", "reason": note})
                for s in missing:
                    out.append({"source": s, **base, "score": float("nan"), "seconds": 0.0, "status": "skipped",
                                "reason": f"the per-source inputs of {m} are missing for this source"})
            except Exception as exc:
                for s in sorted(set(g["source"])):
                    out.append({"source": s, **base, "score": float("nan"), "seconds": 0.0, "status": "error",
                                "reason": f"{type(exc).__name__}: {str(exc)[:300]}"})
    return out


def _planned_units(results_dir, stage: str, profile) -> pd.DataFrame:
    """Stored unit rows of ``stage``: with ``profile`` (a name, path or loaded profile) only those of its planned
    units, else every unit the folder holds (possibly of earlier configurations)."""
    if profile is None:
        return Stage(stage, results_dir).collect()
    from .stages import make_env
    from .stages.scoring import current_units

    env = make_env(profile, results_dir, progress=False)
    return current_units(env.profile, env)


def set_level_comparison(results_dir, metrics=SET_LEVEL, profile=None) -> pd.DataFrame:
    """The set-level scores of a finished scoring stage with the target's own source left out (the default, as
    [D]) and included (the earlier form) side by side: columns source, target, fold, metric, ``excluded``,
    ``included``, and each form's rank among the other candidates (1 = best). ``profile``: read only the units
    of that profile's plan (recommended: a results folder can hold units of earlier configurations)."""
    units = _planned_units(results_dir, "scoring", profile)
    if units.empty:
        return pd.DataFrame(columns=["source", "target", "fold", "metric", "excluded", "included",
                                     "rank_excluded", "rank_included"])
    units["parts"] = units.get("parts", pd.Series("", index=units.index)).fillna("")
    keys = ["source", "target", "fold", "metric"]
    forms = {}
    for name, include in (("excluded", False), ("included", True)):
        rows = pd.DataFrame(set_level_rows(units, list(metrics), include_self=include), columns=COLUMNS)
        forms[name] = rows.set_index(keys)["score"].rename(name)
    table = pd.concat(forms.values(), axis=1).reset_index()
    table = table[[not is_self(s, t) for s, t in zip(table["source"], table["target"])]]
    table = table.dropna(subset=["excluded", "included"], how="all")
    for name in forms:
        table[f"rank_{name}"] = table.groupby(["target", "fold", "metric"])[name].rank(ascending=False)
    return table.reset_index(drop=True)


def tidy_scores(units: pd.DataFrame, unavailable, metrics) -> pd.DataFrame:
    """The scores table from collected unit rows, the unavailable pairs and the metric list."""
    units = units.copy()
    for col in ("parts", "options"):
        if col not in units:
            units[col] = ""
        units[col] = units[col].fillna("")
    setl = pd.DataFrame(set_level_rows(units, metrics), columns=COLUMNS)
    pair = units[~units["metric"].isin(["_extract", *PARTS.values()])
                 & units["metric"].isin([m for m in metrics if m not in SET_LEVEL])]
    unav = [{"source": u["source"], "target": u["target"], "fold": u["fold"], "metric": m, "score": float("nan"),
             "seconds": 0.0, "status": "unavailable", "reason": u["reason"], "options": ""}
            for u in unavailable for m in metrics]
    parts = [df for df in (pair[COLUMNS] if not pair.empty else None, setl if not setl.empty else None,
                           pd.DataFrame(unav, columns=COLUMNS) if unav else None) if df is not None]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
    order = {m: i for i, m in enumerate(metrics)}
    table = table.assign(_o=table["metric"].map(order)).sort_values(["target", "_o", "source"], kind="stable")
    return table.drop(columns="_o").reset_index(drop=True)


def extraction_times(results_dir, stage: str = "scoring", profile=None) -> pd.DataFrame:
    """Seconds spent extracting (or loading cached) features per (source, target) unit of a scoring ``stage``
    (its ``_extract`` rows); with ``profile``, of that profile's planned classification units only."""
    df = _planned_units(results_dir, stage, profile if stage == "scoring" else None)
    if df.empty:
        return pd.DataFrame(columns=["source", "target", "images", "seconds", "note"])
    e = df[df["metric"] == "_extract"]
    return e.rename(columns={"score": "images", "reason": "note"})[["source", "target", "images", "seconds", "note"]]


def read_scores(results_dir) -> pd.DataFrame:
    from .paths import require_result

    table = pd.read_csv(require_result(None, "scores.csv", results_dir), keep_default_na=True)
    if "options" not in table:
        table["options"] = ""
    return table.fillna({"reason": "", "options": ""})


def score_tables(scores: pd.DataFrame, metrics=None, fold: int | None = None) -> dict[str, pd.DataFrame]:
    """``{metric: wide table}`` (index source, columns target; mean over folds) of the rows with a finite
    score, for :func:`helpers.evaluation.correlate`. Metrics with no finite score are left out."""
    ok = scores[(scores["status"] == "ok") & np.isfinite(scores["score"].astype(float))]
    if fold is not None:
        ok = ok[ok["fold"] == fold]
    metrics = list(dict.fromkeys(metrics if metrics is not None else scores["metric"]))
    out = {}
    for m in metrics:
        g = ok[ok["metric"] == m]
        if g.empty:
            continue
        w = g.pivot_table(index="source", columns="target", values="score", aggfunc="mean")
        w.index.name, w.columns.name = "source", "target"
        out[m] = w
    return out


#: the stage's functions, importable from here as before (helpers.stages.scoring imports this module)
_STAGE_NAMES = ("run_scoring", "scoring_configs", "score_unit", "target_dataset", "RESOURCES")


def __getattr__(name):
    if name in _STAGE_NAMES:
        from .stages import scoring as _stage

        return getattr(_stage, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
