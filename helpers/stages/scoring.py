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
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import models as M
from ..data import TensorImageDataset, medmnist_info, paper_fold_indices
from ..trainer import load_flag
from ..metrics import REGISTRY
from ..runner import atomic_write_csv, config_key
from ..scoring import COLUMNS, metric_options, pairwise_plan, profile_metrics, tidy_scores
from . import inputs, pretraining, throughput
from .base import Env, Task, problem_reason, read_problems

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
                "image_size": int(sc.get("image_size", ft.get("image_size", data["image_size"]))),
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
                # FU's batches: class-stratified and seeded (fu's default; "given" is [D]'s consecutive
                # batches), images prepared per micro-batch
                value = info.fn(net, first, second, lambda index: ds.batch(index)[0], inputs["labels"],
                                seed=config["seed"], **(config.get("options") or {}).get("fu", {}))
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
# the stage contract


def _selection(profile: dict, env: Env):
    from ..profiles import profile_targets

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
    :func:`helpers.scoring.extraction_times`. With every unit stored this only reads."""
    from .launch import run_stage

    options = {"fold": fold}
    if sources is not None:
        options["sources"] = list(sources)
    if targets is not None:
        options["targets"] = list(targets)
    env = run_stage(NAME, profile, results_dir, root, device, progress, engine, options=options,
                    finalize=write, **engine_options)
    return results(env.profile, env)
