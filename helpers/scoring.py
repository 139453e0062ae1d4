"""The scoring stage: every transferability metric of a profile for every (source, target) pair.

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

import hashlib
import json
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import models as M
from .data import TensorImageDataset, paper_fold_indices
from .metrics import REGISTRY
from .metrics import setlevel as SL
from .names import is_self
from .runner import Stage, atomic_write_csv

COLUMNS = ["source", "target", "fold", "metric", "score", "seconds", "status", "reason", "options"]

#: metrics whose reference arithmetic ([D]'s) is scored beside the corrected default, to show the difference
REFERENCE_FORMS = {"sfda": "sfda_reference"}

#: metrics whose per-source parts are computed in the unit and combined across sources afterwards
PARTS = {"ncti": "ncti_parts", "etran": "etran_parts"}
SET_LEVEL = ("ncti", "etran", "lp_fu")

_FILE_HASHES: dict = {}


def _file_hash(path) -> str:
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


def scoring_configs(profile: dict, sources, targets, results_dir, fold: int = 1):
    """``(configs, unavailable)``: one unit config per available (source, target), and the rows of the pairs
    whose source cannot be had here (with the reason)."""
    from .training import resolve_source

    data, ft = profile["data"], profile.get("finetuning", {})
    sc = profile.get("scoring", {}) or {}
    arch = profile.get("pretraining", {}).get("architecture", "resnet18")
    plan = pairwise_plan(profile_metrics(profile))
    options = {m: metric_options(profile, m) for m in plan if m in REGISTRY and m != "fu"}
    options = {m: o for m, o in options.items() if o}
    configs, unavailable = [], []
    for t in targets:
        for s in sources:
            try:
                spec = resolve_source(profile, s, t, results_dir)
            except M.SourceUnavailable as exc:
                unavailable.append({"source": s, "target": t, "fold": fold, "reason": exc.reason})
                continue
            configs.append({
                "stage": "scoring", "source": s, "target": t, "fold": int(fold), "arch": arch, "spec": spec,
                "weights": _file_hash(spec) if Path(spec).is_file() else spec,
                "file_size": data["file_size"],
                "image_size": int(sc.get("image_size", ft.get("image_size", data["image_size"]))),
                "fold_seed": int(data.get("fold_seed", 24)),
                "max_images": sc.get("max_images", ft.get("max_train_images")),
                "batch_size": int(sc.get("batch_size", 256)), "metrics": plan, "options": options, "seed": 0})
    return configs, unavailable


# ----------------------------------------------------------------------------------------------------------
# one unit


def target_dataset(config: dict, root=None, device=None, cache=None) -> tuple:
    """The loaded flag and the scoring dataset (fold subset, normalised for the source) of a unit config."""
    from .training import _load

    cache = {} if cache is None else cache
    d = _load(config["target"], config["file_size"], root, cache)
    folds = paper_fold_indices(len(d.labels["train"]), len(d.labels["val"]), d.n_classes, config["fold"],
                               config["fold_seed"])
    tr = folds[config["fold"] - 1][0]
    if config.get("max_images"):
        tr = tr[: int(config["max_images"])]
    mean, std = M.normalization_for(config["spec"])
    ds = TensorImageDataset.from_medmnist(d, "train", config["image_size"], indices=tr, mean=mean, std=std,
                                          device=device or "cpu")
    return d, ds


def _cached_arrays(workdir: Path, compute):
    names = ("features", "logits", "labels")
    paths = [Path(workdir) / f"{n}.npy" for n in names]
    if all(p.is_file() for p in paths):
        return tuple(np.load(p, allow_pickle=False) for p in paths), True
    arrays = compute()
    for p, a in zip(paths, arrays):
        tmp = p.with_name(f".{p.stem}.tmp.npy")
        np.save(tmp, a, allow_pickle=False)
        tmp.replace(p)
    return arrays, False


def _row(config, metric, score=float("nan"), seconds=0.0, status="ok", reason="", parts=None):
    opts = (config.get("options") or {}).get(metric)
    return {"source": config["source"], "target": config["target"], "fold": config["fold"], "metric": metric,
            "score": float(score) if score is not None else float("nan"), "seconds": float(seconds),
            "status": status, "reason": reason, "parts": json.dumps(parts) if parts is not None else "",
            "options": json.dumps(opts, sort_keys=True) if opts else ""}


def score_unit(config: dict, workdir, root=None, device=None, cache=None) -> list[dict]:
    """Extract once (cached) and compute the unit's metrics; one row per metric (parts rows for set-level)."""
    device = torch.device(device or "cpu")
    d, ds = target_dataset(config, root, device, cache)
    model = None

    def get_model():
        nonlocal model
        if model is None:
            torch.manual_seed(config["seed"])
            model = M.build_model(config["arch"], None, config["spec"]).to(device)
        return model

    def compute():
        f, lg, y = M.extract(get_model(), ds, config["batch_size"])
        return M.to_numpy(f, lg, y)

    start = time.perf_counter()
    (features, logits, labels), cached = _cached_arrays(Path(workdir), compute)
    extract_s = time.perf_counter() - start
    multilabel = labels.ndim == 2
    source_head = M.has_source_head(config["spec"])
    rows = [_row(config, "_extract", float(len(labels)), extract_s, "ok",
                 "features loaded from cache" if cached else f"features {features.shape}")]
    inputs = {"features": torch.from_numpy(features).to(device), "logits": torch.from_numpy(logits).to(device),
              "labels": torch.from_numpy(labels).to(device)}
    for name in config["metrics"]:
        info = REGISTRY.get(name)
        if info is None or info.set_level:
            rows.append(_row(config, name, status="skipped", reason=f"{name!r} is not a registered pairwise metric"))
            continue
        if "logits" in info.inputs and not source_head:
            rows.append(_row(config, name, status="skipped", reason="the source has no classification head of "
                                                                    "its own (a segmentation encoder): no source "
                                                                    "logits"))
            continue
        if multilabel and not info.multilabel:
            rows.append(_row(config, name, status="skipped", reason="multi-label target; the metric needs one "
                                                                    "class label per image"))
            continue
        t0 = time.perf_counter()
        try:
            if name == "fu":
                net = M.penultimate_model(get_model())
                first, second = M.fu_layers(net, config["arch"])
                images, _ = ds.batch(torch.arange(len(ds), device=device))
                torch.manual_seed(config["seed"])
                value = info.fn(net, first, second, images, inputs["labels"])
            else:
                kwargs = {k: inputs[k] for k in info.inputs}
                value = info.fn(labels=inputs["labels"], **kwargs, **(config.get("options") or {}).get(name, {}))
            secs = time.perf_counter() - t0
            if info.returns_parts:
                parts = {f: float(getattr(value, f)) for f in value._fields}
                rows.append(_row(config, name, float("nan"), secs, "ok", "", parts))
            else:
                value = float(value)
                status, reason = ("ok", "") if np.isfinite(value) else ("nan", "the metric returned a non-finite value")
                rows.append(_row(config, name, value, secs, status, reason))
        except Exception as exc:  # a metric failing on one pair is recorded, the others go on
            rows.append(_row(config, name, seconds=time.perf_counter() - t0, status="error",
                             reason=f"{type(exc).__name__}: {str(exc)[:300]}"))
            traceback.clear_frames(exc.__traceback__)
    return rows


# ----------------------------------------------------------------------------------------------------------
# set-level and the stage


def set_level_rows(unit_rows: pd.DataFrame, metrics, include_self: bool = False) -> list[dict]:
    """Set-level rows per target from the unit rows (parts, lp, fu) of its available sources.

    The target's own source is left out before every set-level normalisation, as [D] does (it gets a
    ``skipped`` row); ``include_self=True`` normalises over it too (this project's earlier form, kept to show
    the difference: an extreme self source re-weights the parts and reorders the others)."""
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
                                    "(left out before normalising, as [D])"})
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


def set_level_comparison(results_dir, metrics=SET_LEVEL) -> pd.DataFrame:
    """The set-level scores of a finished scoring stage with the target's own source left out (the default, as
    [D]) and included (the earlier form) side by side: columns source, target, fold, metric, ``excluded``,
    ``included``, and each form's rank among the other candidates (1 = best)."""
    units = Stage("scoring", results_dir).collect()
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
    for name in forms:
        table[f"rank_{name}"] = table.groupby(["target", "fold", "metric"])[name].rank(ascending=False)
    return table.reset_index(drop=True)


def run_scoring(profile: dict, sources, targets, results_dir, root=None, device=None, progress: bool = True,
                write: bool = True, fold: int = 1) -> pd.DataFrame:
    """Run (or resume) the scoring units and return the tidy scores table (:data:`COLUMNS`); with ``write``
    also ``<results_dir>/scores.csv`` (atomically). Rows of the helper kinds (``_extract``, parts) are dropped
    from the table; the extraction time is in :func:`extraction_times`."""
    stage = Stage("scoring", results_dir)
    cache: dict = {}
    configs, unavailable = scoring_configs(profile, sources, targets, results_dir, fold)

    def fn(config, ctx):
        return score_unit(config, ctx.workdir, root, device, cache)

    units = stage.run(configs, fn, progress=progress) if configs else pd.DataFrame(columns=COLUMNS + ["parts"])
    table = tidy_scores(units, unavailable, profile_metrics(profile))
    if write:
        atomic_write_csv(table, Path(results_dir) / "scores.csv")
    return table


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


def extraction_times(results_dir, stage: str = "scoring") -> pd.DataFrame:
    """Seconds spent extracting (or loading cached) features per (source, target) unit of a scoring ``stage``
    (its ``_extract`` rows)."""
    df = Stage(stage, results_dir).collect()
    if df.empty:
        return pd.DataFrame(columns=["source", "target", "images", "seconds", "note"])
    e = df[df["metric"] == "_extract"]
    return e.rename(columns={"score": "images", "reason": "note"})[["source", "target", "images", "seconds", "note"]]


def read_scores(results_dir) -> pd.DataFrame:
    table = pd.read_csv(Path(results_dir) / "scores.csv", keep_default_na=True)
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
