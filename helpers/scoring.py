"""Transferability scores: the scoring kernel (every applicable metric on one model's features on one target),
the feature cache, the set-level combination across sources, and the tidy and wide score tables. One kernel
serves the scoring stage (:mod:`helpers.stages.scoring`), :mod:`helpers.rank` and segmentation scoring
(:mod:`helpers.segmentation.scoring`): the three give the same rows for the same inputs because they run the
same code.

:func:`score_model` is modelled on scikit-learn's ``_MultimetricScorer``: the expensive part (features and
logits, :class:`FeatureCache`) is computed once by the caller, then every metric is scored from the registry's
own facts (:data:`helpers.metrics.REGISTRY`: inputs, direction, multi-label support, parts), each timed and
run under :func:`helpers.threads.fair_threads`, and a metric that fails or does not apply becomes a row with
its status and reason instead of an exception.

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
the target's own source out before normalising, and
:func:`helpers.stages.scoring.set_level_comparison` gives the form that includes it beside them.
"""
from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from .compat import forward
from .metrics import REGISTRY
from .names import is_self
from .paths import require_result
from .threads import fair_threads

COLUMNS = ["source", "target", "fold", "metric", "score", "seconds", "status", "reason", "options"]

#: metrics whose reference arithmetic ([D]'s) is scored beside the corrected default, to show the difference
REFERENCE_FORMS = {"sfda": "sfda_reference"}

#: set-level classification metrics and their per-source inputs, from the registry (ncti, etran, lp_fu)
SET_LEVEL: dict[str, tuple[str, ...]] = {m: i.inputs for m, i in REGISTRY.items()
                                         if i.set_level and i.task == "classification"}
#: set-level metrics whose one input is a parts metric computed per source (ncti -> ncti_parts)
PARTS = {m: ins[0] for m, ins in SET_LEVEL.items() if len(ins) == 1 and REGISTRY[ins[0]].returns_parts}

#: reasons shared by every caller of the kernel (they appear in the result tables)
NO_LOGITS = "the source has no classification head of its own (a segmentation encoder): no source logits"
MULTILABEL = "multi-label target; the metric needs one class label per image"
NON_FINITE = "the metric returned a non-finite value"


def with_lp_fu(names: list[str]) -> list[str]:
    """``names`` with ``lp_fu`` appended when both ``lp`` and ``fu`` are listed ([D]'s proposed score comes with
    its two parts)."""
    names = list(dict.fromkeys(names))
    if "lp" in names and "fu" in names and "lp_fu" not in names:
        names.append("lp_fu")
    return names


def profile_metrics(profile: dict) -> list[str]:
    """The profile's ``metrics`` list (default: every registered classification metric, pairwise and set-level;
    the segmentation ones have their own stage), with ``lp_fu`` added when both ``lp`` and ``fu`` are listed."""
    names = profile.get("metrics")
    if not names:
        names = [m for m in REGISTRY if not REGISTRY[m].returns_parts and REGISTRY[m].task == "classification"]
    names = with_lp_fu(names)
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
    """What one model's unit computes: the pairwise metrics and the per-source inputs of the set-level ones
    (``ncti_parts`` for ncti, ``lp`` and ``fu`` for lp_fu). Unknown names stay: the kernel records them as
    skipped."""
    plan = []
    for m in metrics:
        plan += list(SET_LEVEL[m]) if m in SET_LEVEL else [m]
    return list(dict.fromkeys(plan))


# ----------------------------------------------------------------------------------------------------------
# the feature cache


class FeatureCache:
    """One model's arrays on one target as ``<name>.npy`` files in ``folder`` (read back with
    ``allow_pickle=False``), with an optional ``meta.json``: what the scoring stage, segmentation scoring and
    :mod:`helpers.rank` keep so that a re-run computes only the metrics.

    Each file is written to a temporary name and renamed into place, ``meta.json`` last; an entry counts as
    there when every array is (and ``meta.json`` too with ``meta=True``). A damaged entry reads as missing and is
    recomputed. ``folder=None``: no cache (nothing is read or written)."""

    def __init__(self, folder, names=("features", "logits", "labels"), meta: bool = False):
        self.folder = None if folder is None else Path(folder)
        self.names = tuple(names)
        self.meta = meta

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.npy"

    def read(self) -> tuple[dict, dict] | None:
        """``(arrays, meta)`` of a complete entry, else None."""
        if self.folder is None or (self.meta and not (self.folder / "meta.json").is_file()):
            return None
        if not all(self._path(n).is_file() for n in self.names):
            return None
        try:
            arrays = {n: np.load(self._path(n), allow_pickle=False) for n in self.names}
            meta = json.loads((self.folder / "meta.json").read_text()) if self.meta else {}
        except (OSError, ValueError):  # a damaged entry is recomputed
            return None
        return arrays, meta

    def _replace(self, path: Path, write) -> None:
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
        write(tmp)
        tmp.replace(path)

    def write(self, arrays: Mapping, meta: dict | None = None) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        for n in self.names:
            self._replace(self._path(n), lambda tmp, a=arrays[n]: np.save(tmp, a, allow_pickle=False))
        if self.meta:
            self.write_meta(meta or {})

    def write_meta(self, meta: dict) -> None:
        """Replace ``meta.json`` of an entry that is there (e.g. FU's result added after the features)."""
        if self.folder is None or not self.folder.is_dir():
            return
        text = json.dumps(meta, default=str)
        self._replace(self.folder / "meta.json", lambda tmp: tmp.write_text(text))

    def get(self, compute: Callable[[], Mapping]) -> tuple[dict, bool]:
        """``(arrays, cached)``: the stored arrays, or ``compute()`` (a mapping name -> array) stored."""
        hit = self.read()
        if hit is not None:
            return hit[0], True
        arrays = dict(compute())
        self.write(arrays)
        return arrays, False


# ----------------------------------------------------------------------------------------------------------
# the kernel


class Inapplicable(Exception):
    """Raised by a metric's call when the metric cannot be had for this model (its row gets ``status``, e.g.
    ``skipped`` or ``unavailable``, the reason, and no time)."""

    def __init__(self, reason: str, status: str = "skipped"):
        super().__init__(reason)
        self.reason, self.status = reason, status


@dataclass
class Outcome:
    """One metric on one model: ``score`` (NaN for parts metrics and failures), ``seconds`` (None until
    measured), ``status`` (``ok``, ``nan``, ``skipped``, ``unavailable``, ``error``) and ``reason``; ``parts``
    (field -> float) of a parts metric, ``terms`` (per-image terms with ``per_sample``) and ``notes`` (what a
    caller adds, e.g. FU's layers)."""

    score: float = float("nan")
    seconds: float | None = None
    status: str = "ok"
    reason: str = ""
    parts: dict | None = None
    terms: np.ndarray | None = None
    notes: dict = field(default_factory=dict)

    def fields(self) -> dict:
        """The row fields: score, seconds, status, reason."""
        return {"score": float(self.score), "seconds": float(self.seconds or 0.0), "status": self.status,
                "reason": self.reason}


def not_applicable(name: str, *, multilabel: bool = False, source_head: bool = True) -> str | None:
    """Why the registered metric ``name`` does not apply to a model and target, or None when it does."""
    info = REGISTRY.get(name)
    if info is None or info.set_level:
        return f"{name!r} is not a registered pairwise metric"
    if "logits" in info.inputs and not source_head:
        return NO_LOGITS
    if multilabel and not info.multilabel:
        return MULTILABEL
    return None


def call_metric(name: str, inputs: Mapping, labels, **options):
    """The registered pairwise metric ``name`` on ``inputs`` (``features``, ``logits``: whichever it needs) and
    ``labels``, with keyword ``options``, under the thread policy (:func:`helpers.threads.fair_threads`)."""
    info = REGISTRY[name]
    kwargs = {k: inputs[k] for k in info.inputs}
    with fair_threads():
        return info.fn(labels=labels, **kwargs, **options)


def measure(fn: Callable[[], object]) -> Outcome:
    """``fn()`` timed and under the thread policy, as an :class:`Outcome`: a NamedTuple gives ``parts`` (no
    score), an Outcome is taken as it is, anything else is the score; a score that is not finite gives status
    ``nan``; :class:`Inapplicable` and any other exception become a row with the reason."""
    t0 = time.perf_counter()
    try:
        with fair_threads():
            value = fn()
        secs = time.perf_counter() - t0
        check = not hasattr(value, "_fields")  # parts have no score of their own
        if isinstance(value, Outcome):
            out = value
        elif not check:
            out = Outcome(parts={f: float(getattr(value, f)) for f in value._fields})
        else:
            out = Outcome(score=float(value))
        if out.seconds is None:
            out.seconds = secs
        if check and out.status == "ok" and not np.isfinite(out.score):
            out.status, out.reason = "nan", NON_FINITE
        return out
    except Inapplicable as exc:
        return Outcome(seconds=0.0, status=exc.status, reason=exc.reason)
    except Exception as exc:  # one metric failing on one model is recorded, the others go on
        out = Outcome(seconds=time.perf_counter() - t0, status="error",
                      reason=f"{type(exc).__name__}: {str(exc)[:300]}")
        traceback.clear_frames(exc.__traceback__)
        return out


def score_model(metrics, inputs: Mapping, labels, *, multilabel: bool = False, source_head: bool = True,
                options: Mapping | None = None, per_sample=(), calls: Mapping | None = None) -> dict[str, Outcome]:
    """Every metric of ``metrics`` on one model's ``inputs`` (``features``, ``logits``) on one target's
    ``labels``: ``{name: Outcome}`` in the order given.

    A registered metric is checked first (:func:`not_applicable`: set-level or unknown names, logits of a model
    without a source head, multi-label targets) and then computed from its registered inputs with
    ``options[name]``; a metric in ``per_sample`` is computed with ``per_sample=True`` and its score is the
    mean of its per-image terms (kept in ``terms``). ``calls`` gives a metric computed otherwise (FU needs the
    model; segmentation's CC-FV variants): ``calls[name]()`` returns its value, parts or an :class:`Outcome`.
    Direction: ``REGISTRY[name].higher_is_better``; every classification score is higher = better."""
    options, calls = options or {}, calls or {}
    out = {}
    for name in metrics:
        reason = None if name in calls and name not in REGISTRY else \
            not_applicable(name, multilabel=multilabel, source_head=source_head)
        if reason is not None:
            out[name] = Outcome(seconds=0.0, status="skipped", reason=reason)
        elif name in calls:
            out[name] = measure(calls[name])
        elif name in per_sample:
            out[name] = measure(lambda name=name: _mean_of_terms(name, inputs, labels, options))
        else:
            out[name] = measure(lambda name=name: call_metric(name, inputs, labels, **options.get(name, {})))
    return out


def _mean_of_terms(name, inputs, labels, options) -> Outcome:
    terms = call_metric(name, inputs, labels, per_sample=True, **options.get(name, {})).double().cpu().numpy()
    return Outcome(score=float(np.nanmean(terms)), terms=terms)


# ----------------------------------------------------------------------------------------------------------
# set-level combination


def combine(metric: str, by_source: Mapping[str, Mapping], *, target=None) -> dict[str, float]:
    """``{source: score}`` of the set-level ``metric`` (:data:`SET_LEVEL`) across the sources of one target,
    higher is better. ``by_source``: source -> its per-source inputs by name (``{"ncti_parts": parts}``,
    ``{"lp": .., "fu": ..}``). With ``target`` the target's own source is left out before normalising and
    scored NaN (:mod:`helpers.metrics.setlevel`)."""
    if metric not in SET_LEVEL:
        raise ValueError(f"{metric!r} is not a set-level metric; known: {', '.join(SET_LEVEL)}")
    per_input = [{s: v[i] for s, v in by_source.items()} for i in SET_LEVEL[metric]]
    return REGISTRY[metric].fn(*per_input, target=target)


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
                    by_source = {r.source: {PARTS[m]: json.loads(r.parts)} for r in p.itertuples()}
                    spent = dict(zip(p["source"], p["seconds"]))
                else:
                    got = [g[(g["metric"] == i) & (g["status"] == "ok")].set_index("source") for i in SET_LEVEL[m]]
                    both = [s for s in got[0].index if all(s in x.index for x in got[1:])]
                    by_source = {s: {i: x.loc[s, "score"] for i, x in zip(SET_LEVEL[m], got)} for s in both}
                    spent = {s: sum(x.loc[s, "seconds"] for x in got) for s in both}
                missing = sorted(set(g["source"]) - set(by_source))
                values = combine(m, by_source, target=own) if by_source else {}
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


# ----------------------------------------------------------------------------------------------------------
# tables


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


def extraction_table(units: pd.DataFrame) -> pd.DataFrame:
    """Seconds spent extracting (or loading cached) features per (source, target) unit: the ``_extract`` rows of
    a scoring stage's unit rows."""
    if units.empty:
        return pd.DataFrame(columns=["source", "target", "images", "seconds", "note"])
    e = units[units["metric"] == "_extract"]
    return e.rename(columns={"score": "images", "reason": "note"})[["source", "target", "images", "seconds", "note"]]


def read_scores(results_dir) -> pd.DataFrame:
    """``<results_dir>/scores.csv`` with empty reasons and options as ""."""
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


# the stage's names that used to be importable from here (helpers.compat.MOVED), with a DeprecationWarning
__getattr__ = forward(__name__)
