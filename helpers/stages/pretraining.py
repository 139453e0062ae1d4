"""Stage ``pretraining``: the source models of the dataset-transferability experiment (PROTOCOL.md section 3).

One unit (and one task, a whole GPU) per source to train: each single-dataset source of the profile whose flag
the run uses, and one leave-target-out union per target when ``medmnist_union`` is a source. A unit writes its
checkpoint to ``<results>/sources/<name>.safetensors`` (+ JSON sidecar); a unit counts as done only while that
file exists. Also here, for the fine-tuning and scoring stages: what every source name resolves to
(:func:`resolve_source`, at run time) and the unit that makes a source (:func:`producer`, :func:`source_plan`),
which they name in their configs (``source_key``) instead of the checkpoint's content; the kinds of source
names behind both are the registry of :mod:`helpers.sources`.

Tables: ``<results>/pretraining.csv`` (one row per source) and ``<results>/sources.csv`` (per (source, target):
available, what it resolves to, why not).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import models as M
from .. import sources as SRC
from ..data import TensorImageDataset, medmnist_info
from ..profiles import profile_flags, profile_image_size, profile_targets
from ..segmentation.training import segmentation_pretraining_configs
# what every source name resolves to, importable from here as before
from ..sources import (SEG_PREFIX, SEG_UNION, SEG_UNION_UNIT, check_imagenet, is_segmentation_source,  # noqa: F401
                       radimagenet_path, resolve_source, segmentation_unit_name, source_kind, sources_dir,
                       trained_name, union_name)
from ..trainer import (MULTILABEL, UNION_ORDER, Run, UnionLabelSpace, balanced_weights, data_hash, load_flag,
                      recipe_section, run_config, subsample, train_runs)
from ..runner import atomic_write_csv, config_key
from . import inputs, throughput
from .base import Env, Task
from .launch import run_stage
from .segmentation import pretraining_task_id

NAME = "pretraining"
STAGE = "pretraining"
RESOURCES = {"num_cpus": 2, "num_gpus": 1}


def segmentation_encoder_sources(profile: dict) -> list[str]:
    """The ``seg_*`` sources of a profile's dataset scenario."""
    return [s for s in profile.get("sources", {}).get("dataset", []) if is_segmentation_source(s)]


def source_dependency(profile: dict, source: str, target: str, made_names) -> str | None:
    """The id of the task that makes ``source`` for ``target``: a pretraining task (``made_names``: the names of
    the pretraining units planned) or, for a ``seg_*`` source, the segmentation bank's pretraining task."""
    kind = source_kind(source)
    name = kind.unit_name(source, target)
    if kind.made_by == "segmentation":
        return pretraining_task_id(name)
    return task_id(name) if name in made_names else None


def pretraining_configs(profile: dict, flags: list[str], targets: list[str]) -> list[dict]:
    """One unit per source to train: each single-dataset source of the profile present in ``flags``, and
    one leave-target-out union per target when ``medmnist_union`` is a source."""
    sources = profile["sources"]["dataset"]
    data = profile["data"]
    out = []
    single = recipe_section(profile, "single_dataset")
    for s in sources:
        if s in flags:
            out.append({"stage": "pretraining", "kind": "single_dataset", "name": s, "flags": [s],
                        "file_size": data["file_size"],
                        "image_size": profile_image_size(profile, "pretraining.single_dataset"),
                        "recipe": single, "seed": 0})
    if "medmnist_union" in sources:
        union = {**recipe_section(profile, "union"), "balanced": True}
        for t in targets:
            pool = [f for f in UNION_ORDER if f in flags and f != t]
            if pool:
                out.append({"stage": "pretraining", "kind": "union", "name": union_name(t), "flags": pool,
                            "file_size": data["file_size"],
                            "image_size": profile_image_size(profile, "pretraining.union"), "recipe": union, "seed": 0})
    return out


def pretrain_unit(config: dict, workdir: Path, results_dir: Path, root=None, device=None, cache=None,
                  callback=None, save_every_s: float = 60.0) -> dict:
    """Train one source model (single dataset or union) and write it to ``<results>/sources/<name>``."""
    import torch

    cache = {} if cache is None else cache
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    recipe = config["recipe"]
    cfg = run_config(recipe, config["seed"])
    parts = {s: [] for s in ("train", "val")}
    hashes = {}
    if config["kind"] == "union":
        space = UnionLabelSpace.build(config["flags"])
        task, n_out, classes = MULTILABEL, space.n_outputs, space.unit_names()
    else:
        d0 = load_flag(config["flags"][0], config["file_size"], root, cache)
        space, task, n_out, classes = None, d0.task, d0.n_classes, d0.class_names
    limits = {"train": recipe.get("max_train_images"), "val": recipe.get("max_val_images")}
    keys = []
    for i, flag in enumerate(config["flags"]):
        d = load_flag(flag, config["file_size"], root, cache)
        hashes[flag] = d.md5
        for split in ("train", "val"):
            x, y = d.split(split)
            lim = limits[split]
            per_flag = None if lim is None else max(2, int(lim) // len(config["flags"]))
            idx = subsample(len(x), per_flag, seed=1000 * i + (split == "val"))
            x, y = x[idx], y[idx]
            if x.ndim == 3:
                x = np.repeat(x[..., None], 3, -1)
            if space is not None:
                if split == "train":
                    keys.append(space.sampling_keys(flag, y))
                y = space.encode(flag, y).astype(np.int64)
            parts[split].append((x, y))
    train = TensorImageDataset(np.concatenate([p[0] for p in parts["train"]]),
                               np.concatenate([p[1] for p in parts["train"]]), config["image_size"], device=device)
    val = TensorImageDataset(np.concatenate([p[0] for p in parts["val"]]),
                             np.concatenate([p[1] for p in parts["val"]]), config["image_size"], device=device)
    weights = None
    if cfg.balanced:
        if space is None:
            keys = [train.targets.cpu().numpy() if train.labels.shape[1] == 1 else train.labels.argmax(1).cpu().numpy()]
        weights = balanced_weights(np.concatenate(keys))
    arch = recipe.get("architecture", "resnet18")
    torch.manual_seed(cfg.seed)
    model = M.build_model(arch, n_out, "random", head="linear")
    run = Run(model, cfg, task, device, workdir=workdir, save_every_s=save_every_s, name=config["name"])
    start = time.perf_counter()
    train_runs([run], train, val, sample_weights=weights, callback=callback)
    run.load_best()
    path = M.save_checkpoint(run.model, sources_dir(results_dir) / config["name"], {
        "source": config["name"], "kind": config["kind"], "classes": classes, "task": task,
        "flags": config["flags"], "training": recipe, "image_size": config["image_size"],
        "data_md5": hashes, "train_hash": data_hash(train.images.cpu().numpy()), "best": run.best,
        "epochs_run": run.epoch})
    run.clear_workdir()
    hist = pd.DataFrame(run.history)
    atomic_write_csv(hist, Path(workdir) / "history.csv")
    return {"source": config["name"], "kind": config["kind"], "flags": ",".join(config["flags"]),
            "train_images": len(train), "val_images": len(val), "n_outputs": n_out, "epochs_run": run.epoch,
            "best_epoch": run.best["epoch"], "val_loss": run.best["val_loss"], "val_auc": run.best["val_auc"],
            "val_acc": run.best["val_acc"], "train_seconds": time.perf_counter() - start,
            "checkpoint": str(path), "history": run.history}


# ----------------------------------------------------------------------------------------------------------
# sources: what each name resolves to, and the unit that produces it

def source_table(profile: dict, targets, results_dir) -> pd.DataFrame:
    """One row per (source, target): available or not, what it resolves to, and why not."""
    rows = []
    for s in profile["sources"]["dataset"]:
        for t in targets:
            try:
                spec = resolve_source(profile, s, t, results_dir)
                rows.append({"source": s, "target": t, "available": True, "resolves_to": spec, "reason": ""})
            except M.SourceUnavailable as exc:
                rows.append({"source": s, "target": t, "available": False, "resolves_to": "", "reason": exc.reason})
    return pd.DataFrame(rows)


def plan_flags(profile: dict, env: Env) -> tuple[list[str], list[str]]:
    """``(flags, targets)`` of a run: the profile's, restricted to the data root's files with ``only_available``."""
    flags = env.options.get("flags") or (profile_flags(profile, env.data_root) if "flags" in profile["data"] else [])
    targets = env.options.get("targets") or (profile_targets(profile, env.data_root) if "targets" in profile else [])
    return list(flags), list(targets)


def producer(profile: dict, source: str, target: str, configs: list[dict]) -> dict | None:
    """The pretraining config (among ``configs``) that makes ``source`` for ``target``, or ``None``."""
    name = trained_name(source, target)
    return next((c for c in configs if c["name"] == name), None)


def source_plan(profile: dict, source: str, target: str, configs: list[dict]) -> tuple[str | None, str | None]:
    """``(source_key, reason)``, decided without touching any output: the key of the unit that makes the
    source (``None`` for random/imagenet, the configured path for radimagenet, the path of a checkpoint named
    directly; a ``seg_*`` source: the segmentation bank's unit), or ``reason`` when nothing can make it here
    (:meth:`helpers.sources.SourceKind.planned`)."""
    return SRC.source_plan(profile, source, target, configs, lambda: segmentation_pretraining_configs(profile))


def task_id(name: str) -> str:
    return f"{NAME}:{name}"


# ----------------------------------------------------------------------------------------------------------
# the stage contract


def tasks(profile: dict, env: Env) -> list[Task]:
    flags, targets = plan_flags(profile, env)
    out = []
    for c in pretraining_configs(profile, flags, targets):
        train, val = 0, 0
        for f in c["flags"]:
            n = medmnist_info(f)["n_samples"]
            per = len(c["flags"])
            lt, lv = c["recipe"].get("max_train_images"), c["recipe"].get("max_val_images")
            train += n["train"] if lt is None else min(n["train"], max(2, int(lt) // per))
            val += n["val"] if lv is None else min(n["val"], max(2, int(lv) // per))
        est = throughput.training_seconds(train, int(c["recipe"]["epochs"]), int(c["image_size"]), val)
        out.append(Task(STAGE, task_id(c["name"]), (c,), (), dict(RESOURCES), est))
    return out


def pending(task: Task, env: Env) -> list[dict]:
    """Configs without a stored unit, or whose checkpoint has gone (then the unit is trained again)."""
    stage = env.storage(task.stage)
    return [c for c in task.configs
            if not stage.is_done(c) or not (sources_dir(env.results_dir) / f"{c['name']}.safetensors").is_file()]


def run_task(task: Task, env: Env) -> list:
    return [pretrain_unit(c, env.workdir(task.stage, c), env.results_dir, env.data_root, env.resolved_device(),
                          env.cache) for c in task.configs]


def collect(env: Env, configs=None) -> pd.DataFrame:
    stage = env.storage(STAGE)
    return stage.collect(None if configs is None else [config_key(c) for c in configs])


def finalize(profile: dict, env: Env) -> dict:
    flags, targets = plan_flags(profile, env)
    configs = pretraining_configs(profile, flags, targets)
    df = collect(env, configs)
    out = {}
    if not df.empty:
        out["pretraining"] = env.storage(STAGE).write_table(df.drop(columns=["history"], errors="ignore"))
    return out


def missing_inputs(profile: dict, env: Env) -> list[dict]:
    flags, _ = plan_flags(profile, env)
    return inputs.medmnist_files(flags, profile["data"]["file_size"], env.data_root)


# ----------------------------------------------------------------------------------------------------------
# what the chapter calls


def run_pretraining(profile: dict, flags=None, targets=None, results_dir=None, root=None, device=None,
                    progress=True, engine: str = "local", **engine_options) -> pd.DataFrame:
    """Run (or resume) every pretraining unit through an engine, then return the tidy table (one row per
    source, with its ``history``) and write ``<results>/pretraining.csv``. With every unit stored this only
    reads. ``flags``/``targets`` restrict the run (default: the profile's)."""
    env_options = {}
    if flags is not None or targets is not None:
        env_options["flags"], env_options["targets"] = flags, targets
    env = run_stage(NAME, profile, results_dir, root, device, progress, engine, options=env_options,
                    **engine_options)
    return collect(env, pretraining_configs(env.profile, *plan_flags(env.profile, env)))
