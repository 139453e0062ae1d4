"""Rank candidate models on a target: features once per candidate (cached), every metric, ranks, and a combined
recommendation with a bootstrap interval over the target images. See :mod:`helpers.rank` for the overview."""
from __future__ import annotations

import difflib
import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import models as M
from ..data import default_device
from ..metrics import REGISTRY
from ..names import is_self
from ..paths import results_root
from ..profiles import profile_image_size
from ..runner import atomic_write_csv, atomic_write_text, config_key
from ..scoring import (SET_LEVEL, FeatureCache, Inapplicable, Outcome, call_metric, combine, measure,
                       not_applicable, pairwise_plan, score_model, with_lp_fu)
from ..stages.pretraining import sources_dir as _sources_dir, union_name
from . import candidates as CA
from . import evidence as _evidence
from .order import canonicalize
from .targets import RankInputError, Target, describe, load_target

#: the combined recommendation's default metrics, derived from the public medical benchmarks by
#: helpers.rank.default (recorded, with the evidence it rests on, in helpers.rank.evidence)
DEFAULT_RECOMMEND = _evidence.DEFAULT_RECOMMEND
#: metrics with per-image terms (``per_sample=True``): the bootstrap averages them over resampled images
PER_SAMPLE = ("knn_accuracy", "linear_probe", "lp")
#: target-agnostic baselines: name -> (higher is better, what it is)
AGNOSTIC = {
    "num_params": (True, "parameters of the backbone (the model without the layer fine-tuning replaces); "
                         "the naive 'bigger transfers better' baseline"),
    "imagenet_top1": (True, "ImageNet-1K top-1 accuracy (%) recorded in torchvision's weights metadata; the "
                            "'better ImageNet models transfer better' baseline (Kornblith et al., 2019)"),
}
RECOMMENDATION = "recommendation"
COLUMNS = ["target", "candidate", "name", "kind", "architecture", "weights", "image_size", "metric", "score",
           "higher_is_better", "rank", "ci_low", "ci_high", "p_first", "rank_low", "rank_high", "seconds", "status",
           "reason", "n_images"]
CANDIDATE_COLUMNS = ["candidate", "name", "kind", "architecture", "weights", "image_size", "mean", "std",
                     "status", "reason", "num_params", "feature_dim", "extract_seconds", "cached", "fu_layers"]
CACHE_FORMAT = 2  # 2: targets in canonical order, FU on class-stratified batches (helpers.rank.order)


class MetricError(RankInputError):
    """An unknown or unusable metric name."""


@dataclass
class RankResult:
    """What :func:`rank_models` returns.

    ``table``: the tidy ranking, one row per (candidate, metric) (:data:`COLUMNS`), the combined
    recommendation as metric ``recommendation`` (score = mean rank, lower is better; ``p_first`` and
    ``rank_low``/``rank_high`` from the bootstrap). ``candidates``: one row per candidate (input convention,
    status, feature extraction time, cache hit). ``recommendation``: the recommendation rows, best first.
    ``replicates``: per bootstrap replicate, candidate and recommendation metric the score and the rank, and the
    overall rank (metric ``recommendation``). ``target``: what was read. ``settings``: the options used, with
    ``recommend_basis``: the evidence stamp of the default recommendation (:mod:`helpers.rank.evidence`), or
    ``{"source": "user's choice"}`` when the caller chose the metrics."""

    table: pd.DataFrame
    candidates: pd.DataFrame
    recommendation: pd.DataFrame
    replicates: pd.DataFrame
    target: dict
    settings: dict = field(default_factory=dict)
    #: metrics of the recommendation that are missing (for every candidate or some), with the cause; a
    #: recommendation without all of its metrics is *reduced* and says so in its rows' reason
    reduced: dict = field(default_factory=dict)
    #: one-line warnings a user should read before trusting the ranking (few candidates, tiny classes)
    warnings: list = field(default_factory=list)

    def verdict(self) -> str:
        """One sentence on the recommendation that agrees with its own bootstrap: the candidate with the best
        mean rank, whether the bootstrap puts another first more often, and which candidates' 95 % rank
        intervals include first place (those the target's images cannot separate)."""
        ok = self.recommendation[self.recommendation["status"] == "ok"]
        if ok.empty:
            return "No candidate could be ranked."
        top = ok.iloc[0]
        text = f"`{top['name']}` has the best mean rank"
        if len(ok) == 1:
            return text + " (the only candidate that could be ranked)."
        pf = ok.set_index("name")["p_first"]
        if pf.notna().any():
            lead = pf.idxmax()
            text += f" and is first in {pf[top['name']]:.0%} of the bootstrap replicates"
            if lead != top["name"] and pf[lead] > pf[top["name"]]:
                text += f", but `{lead}` is first more often ({pf[lead]:.0%})"
            tied = ok[ok["rank_low"] <= 1]["name"].tolist()
            if len(tied) > 1:
                text += (f"; the rank intervals of {', '.join(f'`{n}`' for n in tied)} all include first place, "
                         "so these images cannot separate them")
            else:
                text += f"; it is the only candidate whose rank interval includes first place"
        return text + ("." if not self.reduced else
                       f" (reduced recommendation: {', '.join(self.reduced)} missing).")

    @property
    def best(self) -> str | None:
        """The recommended candidate (first of :attr:`recommendation`), None when none could be ranked."""
        ok = self.recommendation[self.recommendation["status"] == "ok"]
        return None if ok.empty else str(ok.iloc[0]["candidate"])

    def wide(self, column: str = "score") -> pd.DataFrame:
        """Candidates x metrics table of ``column`` (``score`` or ``rank``), candidates in recommendation order."""
        w = self.table.pivot_table(index="name", columns="metric", values=column, aggfunc="first", dropna=False)
        order = [n for n in self.recommendation["name"] if n in w.index]
        cols = [m for m in dict.fromkeys(self.table["metric"]) if m in w.columns]
        return w.reindex(index=order + [n for n in w.index if n not in order], columns=cols)

    def write(self, out) -> Path:
        """``out`` (the tidy table) and beside it ``<stem>_candidates.csv``, ``<stem>_replicates.csv`` and
        ``<stem>_target.json``, each atomically."""
        out = Path(out)
        atomic_write_csv(self.table, out)
        atomic_write_csv(self.candidates, out.with_name(f"{out.stem}_candidates.csv"))
        atomic_write_csv(self.replicates, out.with_name(f"{out.stem}_replicates.csv"))
        target = dict(self.target)
        if isinstance(target.get("classes"), str):  # JSON in the table form; a mapping in the JSON file
            target["classes"] = json.loads(target["classes"])
        atomic_write_text(out.with_name(f"{out.stem}_target.json"),
                          json.dumps({**target, "settings": self.settings, "reduced": self.reduced,
                                      "warnings": self.warnings}, indent=1, default=str))
        return out


# ----------------------------------------------------------------------------------------------------------
# metrics


def default_metrics() -> list[str]:
    """Every registered classification metric (pairwise, set-level) and the target-agnostic baselines."""
    names = [m for m, i in REGISTRY.items() if not i.returns_parts and i.task == "classification"]
    return names + list(AGNOSTIC)


def resolve_metrics(metrics=None, recommend=DEFAULT_RECOMMEND) -> tuple[list[str], list[str]]:
    """``(metrics, recommend)`` checked (``recommend=None``: :data:`DEFAULT_RECOMMEND`): :class:`MetricError`
    for unknown names (with close ones); the recommendation's metrics are added to the list when missing, and
    ``lp_fu`` when ``lp`` and ``fu`` are both listed (as the scoring stage does)."""
    if isinstance(metrics, str):
        metrics = [m for m in metrics.split(",") if m.strip()]
    if isinstance(recommend, str):
        recommend = [m for m in recommend.split(",") if m.strip()]
    if recommend is None:
        recommend = DEFAULT_RECOMMEND
    known = default_metrics()
    names = [m.strip() for m in (metrics or known)]
    recommend = [m.strip() for m in (recommend or ())]
    for m in names + recommend:
        if m not in known:
            close = difflib.get_close_matches(m, known, n=3)
            why = (f" (its set-level score is {m.replace('_parts', '')!r})" if m.endswith("_parts") else
                   " (a segmentation metric: see helpers.segmentation)" if m in REGISTRY else
                   f"; did you mean {', '.join(close)}?" if close else "")
            raise MetricError(f"unknown metric {m!r}{why}; known: {', '.join(known)}")
    return with_lp_fu(names + recommend), list(dict.fromkeys(recommend))


def higher_is_better(metric: str) -> bool:
    if metric in AGNOSTIC:
        return AGNOSTIC[metric][0]
    if metric == RECOMMENDATION:
        return False
    return REGISTRY[metric].higher_is_better


# ----------------------------------------------------------------------------------------------------------
# features: extraction and cache


class _Candidate:
    """One candidate's work on the target: lazily built model, cached features, FU."""

    def __init__(self, c: CA.Candidate, target: Target, pre: dict, seed: int, device, batch_size: int,
                 cache_dir):
        self.c, self.target, self.pre, self.seed = c, target, pre, seed
        self.device, self.batch_size = device, batch_size
        self._model = None
        self._dataset = None
        ident = CA.identity(c, seed)
        self.arch = ident.get("arch")
        self.config = {"format": CACHE_FORMAT, "candidate": ident, "target": target.fingerprint,
                       "image_size": pre["image_size"], "mean": pre["mean"], "std": pre["std"]}
        self.cache = FeatureCache(None if cache_dir is None else Path(cache_dir) / config_key(self.config),
                                  meta=True)
        self.meta: dict = {}

    def model(self):
        if self._model is None:
            self._model = CA.build_model(self.c, self.seed).to(self.device)
        return self._model

    def dataset(self):
        if self._dataset is None:
            self._dataset = self.target.dataset(self.pre["image_size"], self.pre["mean"], self.pre["std"],
                                                self.device)
        return self._dataset

    def arrays(self):
        """(features, logits, labels) as numpy, from the cache when there; sets ``meta`` and ``cached``."""
        hit = self.cache.read()
        if hit is not None and np.array_equal(hit[0]["labels"], self.target.labels):
            (arrays, self.meta), self.cached = hit, True
            return arrays["features"], arrays["logits"], arrays["labels"]
        model = self.model()
        start = time.perf_counter()
        f, lg, y = M.extract(model, self.dataset(), self.batch_size)
        arrays = M.to_numpy(f, lg, y)
        self.meta = {"config": self.config, "extract_seconds": time.perf_counter() - start,
                     "num_params": CA.backbone_parameters(model), "fu": {},
                     "source_head": bool(getattr(model, "has_source_head", True))}
        self.cached = False
        self.cache.write(dict(zip(("features", "logits", "labels"), arrays)), self.meta)
        return arrays

    def fu(self, labels) -> Outcome:
        """FU on the candidate's model (the kernel's ``fu`` call), cached in the entry's meta; the reason names
        the two layers (also in ``notes["layers"]``)."""
        key = f"seed={self.seed},batches=stratified"
        done = self.meta.get("fu", {}).get(key)
        if done is not None:
            return Outcome(done["score"], done["seconds"], done["status"], (done.get("reason") or "") + (
                " (cached)" if done["status"] == "ok" else ""), notes={"layers": done.get("layers", "")})
        out = measure(lambda: self._fu(labels))
        if out.status not in ("unavailable", "skipped"):  # those depend on this machine or the model only
            self.meta.setdefault("fu", {})[key] = {**out.fields(), **out.notes}
            self.cache.write_meta(self.meta)
        return out

    def _fu(self, labels) -> Outcome:
        try:
            model = self.model()
        except M.SourceUnavailable as exc:
            raise Inapplicable(exc.reason, "unavailable") from None
        layers = CA.fu_layer_names(model)
        if layers is None:
            raise Inapplicable("FU needs two convolutions; the model has fewer")
        net = M.penultimate_model(model)
        first, second = (net.get_submodule(n) for n in layers)
        ds = self.dataset()
        # FU's batches from a seeded, class-stratified permutation of the canonical order (a class-sorted
        # target would otherwise give batches of one class, which hold no triplet); images are prepared
        # per micro-batch, so memory does not grow with the target
        value = REGISTRY["fu"].fn(net, first, second, lambda index: ds.batch(index)[0],
                                  torch.as_tensor(np.asarray(labels), device=ds.device), batching="stratified",
                                  seed=self.seed)
        named = f"{layers[0]}, {layers[1]}"
        return Outcome(score=float(value), reason=f"layers {named}", notes={"layers": named})


# ----------------------------------------------------------------------------------------------------------
# the ranking


def rank_models(target, candidates, *, metrics=None, recommend=None, max_images: int | None = 2000,
                seed: int = 0, n_boot: int = 100, device=None, cache_dir=None, image_size: int | None = None,
                profile: str | None = "quick", sources_dir=None, data_root=None, split: str | None = None,
                batch_size: int = 128, progress: bool = True) -> RankResult:
    """Rank ``candidates`` (strings, :mod:`helpers.rank.candidates`) on ``target`` (a folder, ``.npz``,
    ``.csv``, MedMNIST flag or :class:`~helpers.rank.targets.Target`).

    Parameters
    ----------
    metrics : names (list or comma-separated); default every registered classification metric, the
        set-level ones (``ncti``, ``etran``, ``lp_fu``) and the target-agnostic baselines ``num_params`` and
        ``imagenet_top1``. Multi-label targets get ``skipped`` rows for the metrics that need one class per image.
    recommend : the metrics whose mean rank is the combined recommendation (default :data:`DEFAULT_RECOMMEND`,
        derived from the public medical benchmarks; ``settings["recommend_basis"]`` records that evidence, or
        "user's choice" for other metrics).
    max_images : target images used (a seeded class-stratified subset; MedMNIST: the first of the fold);
        None for all.
    seed : subset, random initialisations, FU and the bootstrap.
    n_boot : bootstrap replicates over target images for the recommendation's interval (0: none).
    device : default CUDA when present; everything (resizing, models, metrics) runs there.
    cache_dir : features, logits and FU per (candidate weights, target images, input convention) are kept
        there (``.npy``, config-hashed folders, atomic), so a re-run computes only the metrics. None: no cache.
    image_size : input size for every candidate (default: each candidate's own; ``@SIZE`` per candidate wins).
    profile, sources_dir : where the project's trained sources are (``results/<profile>/sources``).
    data_root, split : MedMNIST targets (data root; split ``fold1`` default, ``train``, ``val``, ``test``).

    Raises :class:`~helpers.rank.targets.TargetError`, :class:`~helpers.rank.candidates.CandidateError` or
    :class:`MetricError` (all ``ValueError``) for bad input, before any model is loaded. A candidate that
    cannot be had gives ``unavailable`` / ``error`` rows with the reason.
    """
    if sources_dir is None and profile:
        sources_dir = _sources_dir(results_root(profile))
    metrics, recommend = resolve_metrics(metrics, recommend)
    cands = CA.parse_candidates(candidates, sources_dir)
    if int(n_boot) < 0:
        raise RankInputError(f"n_boot must be >= 0, got {n_boot}")
    # canonical order: the same images in any order give the same scores (helpers.rank.order)
    tgt = canonicalize(load_target(target, max_images=max_images, seed=seed, data_root=data_root, split=split))
    groups = getattr(tgt, "groups", None)
    device = torch.device(device) if device is not None else default_device()
    labels_t = torch.as_tensor(tgt.labels, device=device)
    plan = pairwise_plan([m for m in metrics if m not in AGNOSTIC])
    # a volume's slices / a patient's images stay in one fold of the linear probe
    options = {"linear_probe": {"groups": groups}} if groups is not None else {}
    names = [c.name for c in cands]
    names = [c.spec if names.count(c.name) > 1 else c.name for c in cands]  # same file name twice: full spec
    base_of, units, failed = {}, {}, {}
    rows, cand_rows = [], []
    per_sample, fixed, parts, feats = {}, {}, {}, {}

    iterator = list(zip(cands, names))
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc=f"ranking on {tgt.name}", unit="candidate")
    for c, name in iterator:
        if progress:
            iterator.set_postfix_str(name)
        base = {"target": tgt.name, "candidate": c.spec, "name": name, "kind": c.kind,
                "architecture": c.arch or "", "weights": c.weights, "n_images": len(tgt)}
        crow = {"candidate": c.spec, "name": name, "kind": c.kind, "architecture": c.arch or "",
                "weights": c.weights, "status": "ok", "reason": ""}
        base_of[c.spec] = base
        status, reason = "ok", ""
        try:
            pre = CA.preprocessing(c, image_size)
            base["image_size"] = pre["image_size"]
            crow.update(image_size=pre["image_size"], mean=json.dumps(pre["mean"]), std=json.dumps(pre["std"]))
            work = _Candidate(c, tgt, pre, seed, device, batch_size, cache_dir)
            base["architecture"] = crow["architecture"] = work.arch or ""
            features, logits, _ = work.arrays()
        except M.SourceUnavailable as exc:
            status, reason = "unavailable", exc.reason
        except Exception as exc:  # a corrupt file, a checkpoint that does not fit, a model that fails: recorded
            status, reason = "error", f"{type(exc).__name__}: {str(exc)[:400]}"
            traceback.clear_frames(exc.__traceback__)
        if status != "ok":
            failed[c.spec] = (status, reason)
            crow.update(status=status, reason=reason)
            cand_rows.append(crow)
            rows += [{**base, "metric": m, "score": float("nan"), "seconds": 0.0, "status": status,
                      "reason": reason} for m in metrics]
            continue
        crow.update(num_params=work.meta.get("num_params"), feature_dim=int(features.shape[1]),
                    extract_seconds=float(work.meta.get("extract_seconds", 0.0)), cached=work.cached)
        inputs = feats[c.spec] = {"features": torch.from_numpy(features).to(device),
                                  "logits": torch.from_numpy(logits).to(device)}
        scored = score_model(plan, inputs, labels_t, multilabel=tgt.multilabel, per_sample=PER_SAMPLE,
                             source_head=work.meta.get("source_head", True), options=options,
                             calls={"fu": lambda: work.fu(tgt.labels)})
        unit = units[c.spec] = {m: o.fields() for m, o in scored.items()}
        for m, o in scored.items():  # what the set-level scores and the bootstrap reuse
            if o.terms is not None:
                per_sample.setdefault(m, {})[c.spec] = o.terms
            if o.parts is not None:
                parts.setdefault(m, {})[c.spec] = o.parts
        head = work.meta.get("source_head", True)
        if "fu" in scored and not_applicable("fu", multilabel=tgt.multilabel, source_head=head) is None:
            crow["fu_layers"] = scored["fu"].notes.get("layers", "")
            if scored["fu"].status == "ok":
                fixed.setdefault("fu", {})[c.spec] = scored["fu"].score
        for m, r in _agnostic(c, work.meta).items():
            unit[m] = r
            if r["status"] == "ok":
                fixed.setdefault(m, {})[c.spec] = r["score"]
        rows += [{**base, "metric": m, **unit[m]} for m in metrics if m not in SET_LEVEL]
        cand_rows.append(crow)
        del work

    rows += _set_level_rows(metrics, base_of, units, parts, per_sample, fixed)
    table = _add_ranks(pd.DataFrame(rows))
    table, rec, reps = _recommend(table, recommend, tgt, per_sample, fixed, parts, feats, labels_t, n_boot, seed,
                                  base_of, failed)
    # the CSV alone says what the recommendation's metrics rest on (the JSON beside it has the whole stamp)
    basis = _evidence.basis(recommend)
    tag = f"; {_evidence.reason_tag(basis)}"
    for t in (table, rec):
        sel = (t["metric"] == RECOMMENDATION) & (t["status"] == "ok")
        t.loc[sel, "reason"] = t.loc[sel, "reason"].astype(str) + tag
    order = {m: i for i, m in enumerate(metrics + [RECOMMENDATION])}
    table = table.assign(_o=table["metric"].map(order), _c=table["candidate"].map(
        {c.spec: i for i, c in enumerate(cands)})).sort_values(["_o", "_c"], kind="stable")
    table = table.drop(columns=["_o", "_c"]).reset_index(drop=True)
    for col in COLUMNS:
        if col not in table:
            table[col] = np.nan
    table["higher_is_better"] = table["metric"].map(higher_is_better)
    table["reason"] = table["reason"].fillna("")
    cand_table = pd.DataFrame(cand_rows).reindex(columns=CANDIDATE_COLUMNS)
    settings = {"metrics": metrics, "recommend": recommend, "recommend_basis": basis,
                "max_images": max_images, "seed": seed,
                "n_boot": int(n_boot), "device": str(device), "image_size": image_size,
                "cache_dir": str(cache_dir) if cache_dir else None, "sources_dir": str(sources_dir)}
    return RankResult(table[COLUMNS], cand_table, rec, reps, describe(tgt), settings, rec.attrs.get("reduced", {}),
                      _warnings(tgt, rec, int(n_boot)))


#: a class with fewer images than this makes the bootstrap interval rest on a handful of images
FEW_IMAGES = 10


def _warnings(tgt: Target, rec: pd.DataFrame, n_boot: int) -> list[str]:
    out = []
    ranked = int((rec["status"] == "ok").sum())
    if ranked < 2:
        out.append(f"only {ranked} candidate could be ranked: there is nothing to choose between, and its "
                   "rank interval and P(first) are 1 by construction")
    small = {c: n for c, n in tgt.class_counts().items() if n < FEW_IMAGES}
    if small:
        out.append("few images in " + ", ".join(f"{c!r} ({n})" for c, n in small.items())
                   + ": every score leans on them"
                   + (f", and the bootstrap only resamples these {sum(small.values())} images within their class, "
                      "so its intervals say how the ranking moves with which of them are scored, not how it would "
                      "move with more data: read them as optimistic" if n_boot else ""))
    return out


def _agnostic(c: CA.Candidate, meta: dict) -> dict:
    top1 = CA.imagenet_top1(c)
    return {
        "num_params": {"score": float(meta.get("num_params", float("nan"))), "seconds": 0.0, "status": "ok",
                       "reason": "backbone parameters"},
        "imagenet_top1": ({"score": top1, "seconds": 0.0, "status": "ok",
                           "reason": f"torchvision {c.arch} {c.weights} metadata"} if top1 is not None else
                          {"score": float("nan"), "seconds": 0.0, "status": "skipped",
                           "reason": "no ImageNet top-1 recorded for these weights"}),
    }


def _set_level(metric: str, parts: dict, per_sample: dict, fixed: dict, lp_override: dict | None = None) -> dict:
    """candidate -> score of a set-level metric (:func:`helpers.scoring.combine`) over the candidates that have
    its inputs; {} with fewer than 2 (a min-max over one candidate says nothing)."""
    if metric != "lp_fu":
        name = SET_LEVEL[metric][0]
        got = {c: {name: p} for c, p in parts.get(name, {}).items()}
    else:
        lp = lp_override if lp_override is not None else {c: float(np.nanmean(t))
                                                          for c, t in per_sample.get("lp", {}).items()}
        fu = fixed.get("fu", {})
        got = {c: {"lp": lp[c], "fu": fu[c]} for c in lp if c in fu}
    return combine(metric, got) if len(got) >= 2 else {}


def _set_level_rows(metrics, base_of, units, parts, per_sample, fixed) -> list[dict]:
    """Rows of the set-level metrics for the candidates whose features were had (the others already have
    their ``unavailable`` / ``error`` rows); seconds include those of their per-candidate inputs."""
    out = []
    for m in [m for m in metrics if m in SET_LEVEL]:
        t0 = time.perf_counter()
        try:
            values, err = _set_level(m, parts, per_sample, fixed), None
        except Exception as exc:
            values, err = {}, f"{type(exc).__name__}: {str(exc)[:300]}"
        comb = (time.perf_counter() - t0) / max(len(values), 1)
        inputs = SET_LEVEL[m]
        for c, unit in units.items():
            row = {**base_of[c], "metric": m}
            spent = sum(float(unit[i]["seconds"]) for i in inputs if i in unit)
            if c in values:
                out.append({**row, "score": float(values[c]), "seconds": spent + comb, "status": "ok",
                            "reason": f"normalised across {len(values)} candidates"})
                continue
            why = err or "; ".join(f"{i}: {unit[i]['reason']}" for i in inputs if unit[i]["status"] != "ok") \
                or "needs at least 2 candidates with its inputs"
            out.append({**row, "score": float("nan"), "seconds": spent, "status": "error" if err else "skipped",
                        "reason": why})
    return out


def _rank(scores: pd.Series, higher: bool) -> pd.Series:
    """1 = best; ties share the average rank."""
    return scores.rank(ascending=not higher, method="average")


def _add_ranks(table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    table["rank"] = np.nan
    ok = (table["status"] == "ok") & np.isfinite(table["score"].astype(float))
    for m, g in table[ok].groupby("metric"):
        table.loc[g.index, "rank"] = _rank(g["score"].astype(float), higher_is_better(m))
    return table


# ----------------------------------------------------------------------------------------------------------
# recommendation and bootstrap


def mean_rank(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean over metrics of each candidate's rank (1 = best, ties averaged) among the candidates that have a
    finite score for that metric; ``scores`` is metric -> candidate -> score."""
    ranks: dict[str, list] = {}
    for m, by_c in scores.items():
        s = pd.Series({c: v for c, v in by_c.items() if np.isfinite(v)}, dtype=float)
        if s.empty:
            continue
        for c, r in _rank(s, higher_is_better(m)).items():
            ranks.setdefault(c, []).append(float(r))
    return {c: float(np.mean(r)) for c, r in ranks.items()}


def _resample(labels: np.ndarray, rng, groups=None) -> np.ndarray:
    """Bootstrap indices: with replacement within each class (every class keeps its count), plain for
    multi-label targets. With ``groups`` (a volume's slices, a patient's images) whole groups are drawn, with
    replacement within each group's most frequent class, as many as the class has: a group is one draw."""
    if groups is not None:
        gid = np.unique(np.asarray(groups), return_inverse=True)[1].reshape(-1)
        key = labels.argmax(1) if labels.ndim == 2 else labels
        members = [np.flatnonzero(gid == j) for j in range(int(gid.max()) + 1)]
        gkey = np.array([np.bincount(key[m]).argmax() for m in members])
        picks = [rng.choice(np.flatnonzero(gkey == k), int((gkey == k).sum()), replace=True)
                 for k in np.unique(gkey)]
        return np.concatenate([members[j] for j in np.concatenate(picks)])
    if labels.ndim == 2:
        return rng.integers(0, len(labels), len(labels))
    return np.concatenate([rng.choice(np.flatnonzero(labels == k), int((labels == k).sum()), replace=True)
                           for k in np.unique(labels)])


def bootstrap_ranks(scores_fn, candidates: list[str], n_boot: int, seed: int, labels: np.ndarray, groups=None):
    """Replicates of the recommendation: ``scores_fn(index)`` -> metric -> candidate -> score on the resampled
    images ``index``; returns a long DataFrame (replicate, candidate, metric, score, rank) where metric
    ``recommendation`` holds the mean rank (score) and the overall rank, ties broken uniformly at random."""
    rng = np.random.default_rng(seed)
    rows = []
    for b in range(int(n_boot)):
        idx = _resample(labels, rng, groups)
        scores = scores_fn(idx)
        for m, by_c in scores.items():
            s = pd.Series(by_c, dtype=float)
            s = s[np.isfinite(s)]
            for c, r in _rank(s, higher_is_better(m)).items():
                rows.append({"replicate": b, "candidate": c, "metric": m, "score": float(s[c]), "rank": float(r)})
        mr = mean_rank(scores)
        ranked = [c for c in candidates if c in mr]
        if not ranked:
            continue
        tie = rng.random(len(ranked))
        order = np.lexsort((tie, [mr[c] for c in ranked]))
        for pos, i in enumerate(order, start=1):
            c = ranked[i]
            rows.append({"replicate": b, "candidate": c, "metric": RECOMMENDATION, "score": mr[c],
                         "rank": float(pos)})
    return pd.DataFrame(rows, columns=["replicate", "candidate", "metric", "score", "rank"])


def _scores_on(idx, recommend, per_sample, fixed, parts_fns, labels_np) -> dict:
    """metric -> candidate -> score on the images ``idx`` (see :func:`_recommend`)."""
    out = {}
    for m in recommend:
        if m in per_sample:
            out[m] = {c: float(np.nanmean(t[idx])) for c, t in per_sample[m].items()}
        elif m == "lp_fu":
            lp = {c: float(np.nanmean(t[idx])) for c, t in per_sample.get("lp", {}).items()}
            try:
                out[m] = _set_level("lp_fu", {}, {}, fixed, lp_override=lp)
            except ValueError:
                out[m] = {}
        elif m in AGNOSTIC or m == "fu":
            out[m] = dict(fixed.get(m, {}))
        else:
            out[m] = parts_fns[m](idx)
    return out


def _recommend(table, recommend, tgt, per_sample, fixed, parts, feats, labels_t, n_boot, seed, base_of, failed):
    """The recommendation rows (mean rank over ``recommend``), their bootstrap, and the score intervals of the
    recommendation's metrics.

    Each replicate resamples target images with replacement (within each class) and recomputes every
    recommendation metric on them, with the same images for every candidate: the per-image terms of k-NN
    accuracy, the linear probe and LP are averaged over the resampled images (their fits, on all images, are
    not redone: refitting k-NN on duplicated images would let each copy vote for itself); LP x FU
    re-normalises the resampled LP with FU fixed (FU needs the model and back-propagation); other pairwise
    metrics are recomputed on the resampled features and logits; ``ncti`` / ``etran`` recompute their parts
    there; the target-agnostic baselines are fixed."""
    labels_np = tgt.labels
    ok_cands = [c for c in base_of if c in feats]

    def recompute(m):
        def fn(idx):
            it = torch.as_tensor(idx, device=labels_t.device)
            yb = labels_t.index_select(0, it)
            on = {c: {k: v.index_select(0, it) for k, v in feats[c].items()} for c in ok_cands}
            if m in SET_LEVEL:
                name, got = SET_LEVEL[m][0], {}
                for c in ok_cands:
                    if c in parts.get(name, {}):
                        try:
                            got[c] = call_metric(name, on[c], yb)
                        except Exception:
                            pass
                try:
                    return _set_level(m, {name: got}, {}, {})
                except ValueError:
                    return {}
            out = {}
            for c in ok_cands:
                try:
                    out[c] = float(call_metric(m, on[c], yb))
                except Exception:
                    out[c] = float("nan")
            return out
        return fn

    ok = table[(table["status"] == "ok") & np.isfinite(table["score"].astype(float))]
    full = {m: dict(zip(g["candidate"], g["score"].astype(float))) for m, g in ok.groupby("metric")
            if m in recommend}
    usable = [m for m in recommend if m in full]
    parts_fns = {m: recompute(m) for m in usable if m not in per_sample and m not in AGNOSTIC
                 and m not in ("lp_fu", "fu")}
    t0 = time.perf_counter()
    reps = bootstrap_ranks(lambda idx: _scores_on(idx, usable, per_sample, fixed, parts_fns, labels_np),
                           ok_cands, n_boot, seed, labels_np, getattr(tgt, "groups", None)) if usable and n_boot else \
        pd.DataFrame(columns=["replicate", "candidate", "metric", "score", "rank"])
    boot_s = time.perf_counter() - t0
    reps["name"] = reps["candidate"].map({c: b["name"] for c, b in base_of.items()})
    # score intervals of the recommendation's metrics
    table = table.copy()
    for col in ("ci_low", "ci_high"):
        table[col] = np.nan
    if not reps.empty:
        q = reps.groupby(["metric", "candidate"])["score"].quantile([0.025, 0.975]).unstack()
        for (m, c), (lo, hi) in q.iterrows():
            sel = (table["metric"] == m) & (table["candidate"] == c) & (table["status"] == "ok")
            table.loc[sel, ["ci_low", "ci_high"]] = [lo, hi]
    mr = mean_rank({m: full[m] for m in usable})
    reduced = _reduced(table, recommend, usable, full, ok_cands, base_of)
    secs = ok[ok["metric"].isin(usable)].groupby("candidate")["seconds"].sum()
    rec_rows = []
    overall = _rank(pd.Series(mr, dtype=float), higher=False) if mr else pd.Series(dtype=float)
    boot = reps[reps["metric"] == RECOMMENDATION]
    for c, b in base_of.items():
        row = {**b, "metric": RECOMMENDATION}
        if c not in mr:
            status, reason = failed.get(c, ("skipped", f"no score among {', '.join(recommend)}"))
            rec_rows.append({**row, "score": np.nan, "status": status, "reason": reason})
            continue
        have = [m for m in usable if c in full[m]]
        g = boot[boot["candidate"] == c]
        rec_rows.append({**row, "score": mr[c], "rank": float(overall[c]), "seconds": float(secs.get(c, 0.0)) +
                         boot_s / max(len(mr), 1), "status": "ok",
                         "reason": ("reduced: " if reduced else "") + f"mean rank over {', '.join(have)}" + (
                             f"; bootstrap of {int(n_boot)} replicates over the {len(tgt)} target images"
                             if len(g) else ""),
                         "p_first": float((g["rank"] == 1).mean()) if len(g) else np.nan,
                         "rank_low": float(np.quantile(g["rank"], 0.025, method="lower")) if len(g) else np.nan,
                         "rank_high": float(np.quantile(g["rank"], 0.975, method="higher")) if len(g) else np.nan,
                         "ci_low": float(np.quantile(g["score"], 0.025)) if len(g) else np.nan,
                         "ci_high": float(np.quantile(g["score"], 0.975)) if len(g) else np.nan})
    rec = pd.DataFrame(rec_rows).reindex(columns=COLUMNS).assign(higher_is_better=False)
    rec["reason"] = rec["reason"].fillna("")
    table = pd.concat([table, rec], ignore_index=True)
    rec = rec.assign(_r=rec["rank"].fillna(np.inf)).sort_values(["_r", "score"], kind="stable").drop(columns="_r")
    rec = rec.reset_index(drop=True)
    rec.attrs["reduced"] = reduced
    return table, rec, reps


def _reduced(table, recommend, usable, full, ok_cands, base_of) -> dict[str, str]:
    """The metrics of the recommendation that are missing, by metric, with a one-line cause: failed for every
    candidate (its reasons), or missing for some of them (named)."""
    out = {}
    for m in recommend:
        rows = table[(table["metric"] == m) & table["candidate"].isin(ok_cands)]
        causes = sorted({str(r).splitlines()[0][:160] for r in rows.loc[rows["status"] != "ok", "reason"] if r})
        if m not in usable:
            out[m] = "failed for every candidate" + (f" ({'; '.join(causes[:2])})" if causes else "")
            continue
        lacking = [base_of[c]["name"] for c in ok_cands if c not in full[m]]
        if lacking:
            out[m] = f"missing for {', '.join(lacking)}" + (f" ({'; '.join(causes[:2])})" if causes else "")
    return out


# ----------------------------------------------------------------------------------------------------------
# comparison with the project's ground truth


def profile_candidates(profile: dict, target: str, image_size: int | None = None) -> dict[str, str]:
    """The profile's dataset sources for a MedMNIST ``target`` as candidates, ``{candidate: source name}``, so
    that a ranking can be set beside ``results/<profile>/ground_truth.csv``: ``random`` and ``imagenet`` as
    ``ARCH:random`` / ``ARCH:imagenet`` of the profile's architecture, ``medmnist_union`` as the target's
    leave-target-out union, the others by name; the target's own source is left out, as [D] does. Every
    candidate gets the fine-tuning input size (``@SIZE``), the size the ground truth was fine-tuned at."""
    arch = profile.get("pretraining", {}).get("architecture", "resnet18")
    size = int(image_size or profile_image_size(profile, "finetuning"))
    out = {}
    for s in profile["sources"]["dataset"]:
        if is_self(s, target) or s == "radimagenet":
            continue
        spec = {"random": f"{arch}:random", "imagenet": f"{arch}:imagenet",
                "medmnist_union": union_name(target)}.get(s, s)
        out[f"{spec}@{size}"] = s
    return out


def ranking_tables(results, source_of=None) -> dict[str, pd.DataFrame]:
    """``{metric: source x target table}`` of the ``ok`` scores of several rankings (``{target: RankResult}``),
    each oriented so that higher means "predicted to transfer better" (the recommendation's mean rank is
    negated), with candidates renamed by ``source_of`` (``{candidate: source}``), ready for
    :func:`helpers.evaluation.correlate_many` against a ground-truth table."""
    frames = []
    for target, res in results.items():
        t = res.table[(res.table["status"] == "ok") & np.isfinite(res.table["score"].astype(float))].copy()
        t["source"] = t["candidate"].map(lambda c: (source_of or {}).get(c, c))
        t["target"] = target
        t["score"] = np.where(t["metric"].map(higher_is_better), t["score"], -t["score"].astype(float))
        frames.append(t)
    long = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["metric"])
    out = {}
    for m in dict.fromkeys(long["metric"]):
        w = long[long["metric"] == m].pivot_table(index="source", columns="target", values="score", aggfunc="first")
        w.index.name, w.columns.name = "source", "target"
        out[m] = w
    return out
