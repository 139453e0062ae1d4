"""Stage ``scoring``: every transferability metric of a profile for every (source, target) pair (PROTOCOL.md
section 2; what the rows mean is documented in :mod:`helpers.scoring`).

One unit and one task (CPUs and a slice of a GPU) per (source, target) on the target's fold-1 train subset; the
task waits for the pretraining task that makes its source. A config names its source by ``source_key`` (the
pretraining unit's key, see :func:`helpers.stages.pretraining.source_plan`); the checkpoint path (``spec``) is
resolved when the task runs and is not part of the config. Scoring does not read the ground truth, so it does
not wait for fine-tuning: the two stages run side by side and meet in the Correlation chapter.

:func:`finalize` combines the set-level scores across the sources of each target (on the driver) and writes
``<results>/scores.csv``.
"""
from __future__ import annotations

import json
import time

import pandas as pd
import torch

from .. import models as M
from ..data import TensorImageDataset, medmnist_info, paper_fold_indices
from ..metrics import REGISTRY
from ..names import is_self
from ..profiles import profile_image_size, profile_targets
from ..runner import Stage, atomic_write_csv, config_key
from ..scoring import (COLUMNS, SET_LEVEL, FeatureCache, extraction_table, metric_options, pairwise_plan,
                       profile_metrics, score_model, set_level_rows, tidy_scores)
from ..trainer import load_flag
from . import inputs, pretraining, throughput
from .base import Env, Task, make_env, problem_reason, read_problems
from .launch import run_stage

NAME = "scoring"
STAGE = "scoring"
RESOURCES = {"num_cpus": 2, "num_gpus": 0.25}


def scoring_configs(profile: dict, sources, targets, results_dir=None, fold: int = 1, data_root=None):
    """``(configs, unavailable)``: one unit config per (source, target) that something here can make, and the
    rows of the pairs nothing can (with the reason). Decided without reading any output: a config names its
    source by ``source_key``; ``results_dir`` is not used (kept for callers of the earlier signature)."""
    data, ft = profile["data"], profile.get("finetuning", {})
    sc = profile.get("scoring", {}) or {}
    arch = profile.get("pretraining", {}).get("architecture", "resnet18")
    plan = pairwise_plan(profile_metrics(profile))
    options = {m: metric_options(profile, m) for m in plan if m in REGISTRY and m != "fu"}
    if "fu" in plan:  # recorded with the rows: the batching changed from [D]'s consecutive batches
        options["fu"] = {"batching": "stratified",
                         **(((profile.get("scoring") or {}).get("metric_options") or {}).get("fu") or {})}
    options = {m: o for m, o in options.items() if o}
    env = Env(results_dir or ".", profile, data_root)
    flags, _ = pretraining.plan_flags(profile, env)
    made = pretraining.pretraining_configs(profile, flags, list(targets))
    configs, unavailable = [], []
    for t in targets:
        for s in sources:
            key, reason = pretraining.source_plan(profile, s, t, made)
            if reason is not None:
                unavailable.append({"source": s, "target": t, "fold": fold, "reason": reason})
                continue
            configs.append({
                "stage": "scoring", "source": s, "target": t, "fold": int(fold), "arch": arch, "source_key": key,
                "file_size": data["file_size"],
                "image_size": int(profile_image_size(profile, "scoring")),
                "fold_seed": int(data.get("fold_seed", 24)),
                "max_images": sc.get("max_images", ft.get("max_train_images")),
                "batch_size": int(sc.get("batch_size", 256)), "metrics": plan, "options": options, "seed": 0})
    return configs, unavailable


# ----------------------------------------------------------------------------------------------------------
# one unit


def target_dataset(config: dict, root=None, device=None, cache=None) -> tuple:
    """The loaded flag and the scoring dataset (fold subset, normalised for the source) of a unit config."""
    cache = {} if cache is None else cache
    d = load_flag(config["target"], config["file_size"], root, cache)
    folds = paper_fold_indices(len(d.labels["train"]), len(d.labels["val"]), d.n_classes, config["fold"],
                               config["fold_seed"])
    tr = folds[config["fold"] - 1][0]
    if config.get("max_images"):
        tr = tr[: int(config["max_images"])]
    mean, std = M.normalization_for(config["spec"])
    ds = TensorImageDataset.from_medmnist(d, "train", config["image_size"], indices=tr, mean=mean, std=std,
                                          device=device or "cpu")
    return d, ds


def _row(config, metric, score=float("nan"), seconds=0.0, status="ok", reason="", parts=None):
    opts = (config.get("options") or {}).get(metric)
    return {"source": config["source"], "target": config["target"], "fold": config["fold"], "metric": metric,
            "score": float(score) if score is not None else float("nan"), "seconds": float(seconds),
            "status": status, "reason": reason, "parts": json.dumps(parts) if parts is not None else "",
            "options": json.dumps(opts, sort_keys=True) if opts else ""}


def score_unit(config: dict, workdir, root=None, device=None, cache=None) -> list[dict]:
    """Extract once (cached in ``workdir``) and run the scoring kernel (:func:`helpers.scoring.score_model`) on
    the unit's metrics; one row per metric (parts rows for the set-level ones), plus the ``_extract`` row."""
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
        return dict(zip(("features", "logits", "labels"), M.to_numpy(f, lg, y)))

    start = time.perf_counter()
    arrays, cached = FeatureCache(workdir).get(compute)
    extract_s = time.perf_counter() - start
    features, logits, labels = arrays["features"], arrays["logits"], arrays["labels"]
    rows = [_row(config, "_extract", float(len(labels)), extract_s, "ok",
                 "features loaded from cache" if cached else f"features {features.shape}")]
    inputs = {"features": torch.from_numpy(features).to(device), "logits": torch.from_numpy(logits).to(device)}
    y = torch.from_numpy(labels).to(device)
    options = config.get("options") or {}

    def fu():
        net = M.penultimate_model(get_model())
        first, second = M.fu_layers(net, config["arch"])
        # FU's batches: class-stratified and seeded (fu's default; "given" is [D]'s consecutive batches),
        # images prepared per micro-batch
        return REGISTRY["fu"].fn(net, first, second, lambda index: ds.batch(index)[0], y, seed=config["seed"],
                                 **options.get("fu", {}))

    scored = score_model(config["metrics"], inputs, y, multilabel=labels.ndim == 2,
                         source_head=M.has_source_head(config["spec"]), options=options, calls={"fu": fu})
    rows += [_row(config, name, o.score, o.seconds, o.status, o.reason, o.parts) for name, o in scored.items()]
    return rows


# ----------------------------------------------------------------------------------------------------------
# the stage contract


def _selection(profile: dict, env: Env):
    sources = list(env.options.get("sources") or profile["sources"]["dataset"])
    targets = list(env.options.get("targets") or profile_targets(profile, env.data_root))
    return sources, targets, int(env.options.get("fold", 1))


def plan(profile: dict, env: Env) -> tuple[list[Task], list[dict]]:
    sources, targets, fold = _selection(profile, env)
    configs, unavailable = scoring_configs(profile, sources, targets, env.results_dir, fold, env.data_root)
    flags, _ = pretraining.plan_flags(profile, env)
    made = {c["name"] for c in pretraining.pretraining_configs(profile, flags, targets)}
    out = []
    for c in configs:
        dep = pretraining.source_dependency(profile, c["source"], c["target"], made)
        deps = (dep,) if dep else ()
        n = len(medmnist_info(c["target"])["label"]) * 100
        if c.get("max_images"):
            n = min(n, int(c["max_images"]))
        est = throughput.forward_seconds(n, c["image_size"])
        out.append(Task(STAGE, f"{NAME}:{c['source']}->{c['target']}:fold{c['fold']}", (c,), deps,
                        dict(RESOURCES), est))
    return out, unavailable


def tasks(profile: dict, env: Env) -> list[Task]:
    return plan(profile, env)[0]


def run_task(task: Task, env: Env) -> list:
    out = []
    for c in task.configs:
        spec = pretraining.resolve_source(env.profile, c["source"], c["target"], env.results_dir)
        out.append(score_unit({**c, "spec": spec}, env.workdir(task.stage, c), env.data_root,
                              env.resolved_device(), env.cache))
    return out


def current_units(profile: dict, env: Env) -> pd.DataFrame:
    """The stored unit rows of this profile's planned scoring units only (units of other configurations that
    the results folder may still hold, e.g. from an earlier profile, are left out)."""
    planned, _ = plan(profile, env)
    stage = env.storage(STAGE)
    keys = [config_key(t.configs[0]) for t in planned if stage.is_done(t.configs[0])]
    return stage.collect(keys) if keys else pd.DataFrame(columns=COLUMNS + ["parts"])


def results(profile: dict, env: Env) -> pd.DataFrame:
    """The tidy scores table from the stored units (reads only): pairwise rows, set-level rows combined across
    the sources of each target, and ``unavailable`` rows for the pairs without a result, with the reason."""
    planned, unavailable = plan(profile, env)
    stage = env.storage(STAGE)
    problems = read_problems(env, STAGE)
    keys = []
    for task in planned:
        c = task.configs[0]
        if stage.is_done(c):
            keys.append(config_key(c))
        elif task.id in problems:
            unavailable.append({"source": c["source"], "target": c["target"], "fold": c["fold"],
                                "reason": problem_reason(problems[task.id])})
    units = stage.collect(keys) if keys else pd.DataFrame(columns=COLUMNS + ["parts"])
    return tidy_scores(units, unavailable, profile_metrics(profile))


def finalize(profile: dict, env: Env) -> dict:
    table = results(profile, env)
    path = env.results_dir / "scores.csv"
    atomic_write_csv(table, path)
    return {"scores": path}


def missing_inputs(profile: dict, env: Env) -> list[dict]:
    sources, targets, _ = _selection(profile, env)
    rows = inputs.medmnist_files(targets, profile["data"]["file_size"], env.data_root)
    if "imagenet" in sources:
        rows += inputs.imagenet_weights(profile["pretraining"].get("architecture", "resnet18"))
    if "radimagenet" in sources:
        rows += inputs.radimagenet_checkpoint(profile)
    return rows


def run_scoring(profile: dict, sources=None, targets=None, results_dir=None, root=None, device=None,
                progress: bool = True, write: bool = True, fold: int = 1, engine: str = "local",
                **engine_options) -> pd.DataFrame:
    """Run (or resume) the scoring units through an engine and return the tidy scores table
    (:data:`helpers.scoring.COLUMNS`), written to ``<results_dir>/scores.csv``. Rows of the helper kinds
    (``_extract``, parts) are dropped from the table; the extraction time is in
    :func:`extraction_times`. With every unit stored this only reads."""
    options = {"fold": fold}
    if sources is not None:
        options["sources"] = list(sources)
    if targets is not None:
        options["targets"] = list(targets)
    env = run_stage(NAME, profile, results_dir, root, device, progress, engine, options=options,
                    finalize=write, **engine_options)
    return results(env.profile, env)


# ----------------------------------------------------------------------------------------------------------
# reading the stored units


def _planned_units(results_dir, stage: str, profile) -> pd.DataFrame:
    """Stored unit rows of ``stage``: with ``profile`` (a name, path or loaded profile) only those of its planned
    scoring units, else every unit the folder holds (possibly of earlier configurations)."""
    if profile is None:
        return Stage(stage, results_dir).collect()
    env = make_env(profile, results_dir, progress=False)
    return current_units(env.profile, env)


def extraction_times(results_dir, stage: str = "scoring", profile=None) -> pd.DataFrame:
    """Seconds spent extracting (or loading cached) features per (source, target) unit of a scoring ``stage``
    (its ``_extract`` rows); with ``profile``, of that profile's planned classification units only."""
    return extraction_table(_planned_units(results_dir, stage, profile if stage == "scoring" else None))


def set_level_comparison(results_dir, metrics=tuple(SET_LEVEL), profile=None) -> pd.DataFrame:
    """The set-level scores of a finished scoring stage with the target's own source left out (the default, as
    [D]) and included (the earlier form) side by side: columns source, target, fold, metric, ``excluded``,
    ``included``, and each form's rank among the other candidates (1 = best, higher score is better).
    ``profile``: read only the units of that profile's plan (recommended: a results folder can hold units of
    earlier configurations)."""
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
