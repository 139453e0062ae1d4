"""Stage ``finetuning``: [D]'s sweep and the ground truth (PROTOCOL.md section 4).

One unit per (source, target, fold, hyperparameters); one task per (source, target, fold), whose configs
advance together on one device (:func:`helpers.trainer.train_runs`) and which waits for the pretraining task
that makes its source. A config names its source by ``source_key``, the key of that pretraining unit (the
configured path for RadImageNet, ``None`` for random/ImageNet); the checkpoint's path is resolved when the task
runs. Sources that nothing here can make (RadImageNet without a checkpoint, a flag the data root lacks) get no
task and are listed as unavailable with the reason, as are those that fail to load at run time (ImageNet
weights offline).

Tables (:func:`finalize`): ``finetuning.csv`` (every run), ``finetuning_unavailable.csv``, and the ground truth
``ground_truth.csv`` (fold 1, [D]'s), ``ground_truth_mean.csv``, ``ground_truth_folds.csv``,
``ground_truth_runs.csv`` (:func:`write_ground_truth`).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import models as M
from ..names import is_self
from ..data import TensorImageDataset, medmnist_info, paper_fold_indices
from ..profiles import finetune_grid, profile_image_size, profile_targets
from ..trainer import Run, RunConfig, load_flag, subsample, test_run, train_runs
from ..runner import atomic_write_csv, config_key
from . import inputs, pretraining, throughput
from .base import Env, Task, problem_reason, read_problems
from .launch import run_stage, side_by_side_engine

NAME = "finetuning"
RESOURCES = {"num_cpus": 2, "num_gpus": 0.5}  # num_cpus = the task's torch threads; 2 made the book's tables

RUN_COLUMNS = ["source", "target", "fold", "seed", "lr", "batch_size", "momentum", "weight_decay", "epochs_run",
               "best_epoch", "val_auc", "val_acc", "val_loss", "val_auc_classes", "val_auc_classes_total", "test_auc",
               "test_acc", "test_loss", "seconds"]
UNAVAILABLE_COLUMNS = ["source", "target", "fold", "reason"]


def stage_name(scenario: str = "dataset") -> str:
    return "finetuning" if scenario == "dataset" else "finetuning_architectures"


def finetuning_configs(profile: dict, sources, targets, scenario: str = "dataset", source_keys=None) -> list[dict]:
    """Every unit config of the sweep. ``source_keys`` maps ``(source, target)`` to the ``source_key`` of the
    config (default: :func:`source_keys` of the profile)."""
    ft, data = profile["finetuning"], profile["data"]
    epochs = ft["epochs"] if scenario == "dataset" else ft.get("epochs_architectures", ft["epochs"])
    if source_keys is None:
        source_keys = {} if scenario == "architecture" else _source_keys(profile, sources, targets)[0]
    seeds = [int(x) for x in ft.get("seeds", [0])]
    out = []
    for t in targets:
        grid = finetune_grid(profile, t)
        for s in sources:
            if scenario == "dataset" and not ft.get("self_source", True) and is_self(s, t):
                continue  # the target's own flag: never a candidate, so not fine-tuned when the profile says so
            common = {"stage": "finetuning", "scenario": scenario, "source": s, "target": t,
                      "source_key": source_keys.get((s, t))}
            for fold in range(1, int(data.get("folds", 5)) + 1):
                for hp, seed in ((hp, seed) for seed in seeds for hp in grid):
                    out.append({**common, "fold": fold,
                                **hp, "epochs": int(epochs), "patience": ft.get("patience"),
                                "arch": s if scenario == "architecture" else profile["pretraining"].get("architecture", "resnet18"),
                                "head": "linear" if scenario == "architecture" else "dropout_linear",
                                "file_size": data["file_size"], "image_size": profile_image_size(profile, "finetuning"),
                                "fold_seed": data.get("fold_seed", 24), "max_train_images": ft.get("max_train_images"),
                                "max_test_images": ft.get("max_test_images"), "seed": seed})
    return out


def _source_keys(profile: dict, sources, targets, env: Env | None = None):
    """``({(source, target): source_key}, {(source, target): reason})`` without reading any output."""
    if env is not None:
        flags, _ = pretraining.plan_flags(profile, env)
        pre_targets = targets
    else:
        flags, pre_targets = list(profile["data"]["flags"]), list(targets)
    made = pretraining.pretraining_configs(profile, flags, pre_targets)
    keys, reasons = {}, {}
    for t in targets:
        for s in sources:
            key, reason = pretraining.source_plan(profile, s, t, made)
            if reason is None:
                keys[(s, t)] = key
            else:
                reasons[(s, t)] = reason
    return keys, reasons


def target_datasets(config: dict, root=None, device=None, cache=None):
    """Train (fold subset), val (fold subset) and test (whole) datasets of a fine-tuning config."""
    cache = {} if cache is None else cache
    d = load_flag(config["target"], config["file_size"], root, cache)
    folds = paper_fold_indices(len(d.labels["train"]), len(d.labels["val"]), d.n_classes,
                               max(config["fold"], 1), config["fold_seed"])
    tr, va = folds[config["fold"] - 1]
    if config.get("max_train_images"):
        tr = tr[: int(config["max_train_images"])]
    te = np.arange(len(d.labels["test"]))
    if config.get("max_test_images"):
        te = subsample(len(te), int(config["max_test_images"]), seed=config["fold"])
    mean, std = M.normalization_for(config["source"] if config["scenario"] == "dataset" else "imagenet")
    kw = dict(image_size=config["image_size"], mean=mean, std=std, device=device)
    return (d, TensorImageDataset.from_medmnist(d, "train", indices=tr, **kw),
            TensorImageDataset.from_medmnist(d, "val", indices=va, **kw),
            TensorImageDataset.from_medmnist(d, "test", indices=te, **kw))


def finetune_group(configs: list[dict], spec: str, workdirs: list, root=None, device=None, cache=None,
                   callback=None, save_every_s: float = 60.0, eval_batch_size: int = 256) -> list[dict]:
    """Fine-tune several configs of one (source, target, fold) together; one result row per config."""
    import torch

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    c0 = configs[0]
    d, train, val, test = target_datasets(c0, root, device, cache)
    runs = []
    for c, wd in zip(configs, workdirs):
        torch.manual_seed(c["seed"])  # same head init for every config of a source and seed
        model = M.build_model(c["arch"], d.n_classes, spec, head=c["head"])
        cfg = RunConfig(epochs=c["epochs"], batch_size=c["batch_size"], optimizer="sgd", lr=c["lr"],
                        momentum=c["momentum"], weight_decay=c["weight_decay"], scheduler="cosine",
                        monitor="val_auc", patience=c["patience"], seed=c["seed"], compile=c.get("compile", False))
        runs.append(Run(model, cfg, d.task, device, workdir=wd, save_every_s=save_every_s))
    start = time.perf_counter()
    train_runs(runs, train, val, callback=callback, eval_batch_size=eval_batch_size)
    seconds = (time.perf_counter() - start) / len(runs)
    rows = []
    for c, r in zip(configs, runs):
        test_res = test_run(r, test, eval_batch_size)
        rows.append({"source": c["source"], "target": c["target"], "fold": c["fold"], "seed": c["seed"], "lr": c["lr"],
                     "batch_size": c["batch_size"], "momentum": c["momentum"], "weight_decay": c["weight_decay"],
                     "epochs_run": r.epoch, "best_epoch": r.best["epoch"], "val_auc": r.best["val_auc"],
                     "val_acc": r.best["val_acc"], "val_loss": r.best["val_loss"],
                     "val_auc_classes": r.best.get("val_auc_classes"),
                     "val_auc_classes_total": r.best.get("val_auc_classes_total"), **test_res,
                     "seconds": seconds, "history": r.history})
        r.clear_workdir()
    return rows


# ----------------------------------------------------------------------------------------------------------
# the stage contract


def _selection(profile: dict, env: Env):
    """``(sources, targets, scenario)`` of a run: the profile's, or the subsets a chapter asked for."""
    scenario = env.options.get("scenario", "dataset")
    default_sources = profile["sources"]["dataset" if scenario == "dataset" else "architectures"]
    sources = list(env.options.get("sources") or default_sources)
    targets = list(env.options.get("targets") or profile_targets(profile, env.data_root))
    return sources, targets, scenario


def _sizes(config: dict) -> tuple[int, int, int]:
    """Train, val and test images of a config, from MedMNIST's metadata (no file read)."""
    info = medmnist_info(config["target"])
    n = info["n_samples"]
    classes = len(info["label"])
    train = classes * 100
    if config.get("max_train_images"):
        train = min(train, int(config["max_train_images"]))
    val = classes * 25 if n["val"] > classes * 25 else n["val"]
    test = n["test"] if not config.get("max_test_images") else min(n["test"], int(config["max_test_images"]))
    return train, val, test


def plan(profile: dict, env: Env) -> tuple[list[Task], list[dict]]:
    """``(tasks, unavailable)``: one task per (source, target, fold) that can run here, and the rows of the
    pairs no task can make (with the reason), decided without reading any output."""
    sources, targets, scenario = _selection(profile, env)
    if scenario == "architecture":
        keys, reasons = {}, {}
    else:
        keys, reasons = _source_keys(profile, sources, targets, env)
    configs = finetuning_configs(profile, sources, targets, scenario, keys)
    groups: dict = {}
    for c in configs:
        groups.setdefault((c["source"], c["target"], c["fold"]), []).append(c)
    flags, _ = pretraining.plan_flags(profile, env) if scenario == "dataset" else ([], [])
    made = {c["name"] for c in pretraining.pretraining_configs(profile, flags, targets)} if flags else set()
    out, unavailable = [], []
    for (s, t, fold), group in groups.items():
        if (s, t) in reasons:
            unavailable.append({"source": s, "target": t, "fold": fold, "reason": reasons[(s, t)],
                                "units": len(group)})
            continue
        dep = pretraining.source_dependency(profile, s, t, made) if scenario == "dataset" else None
        deps = (dep,) if dep else ()
        train, val, test = _sizes(group[0])
        est = throughput.training_seconds(train, group[0]["epochs"], int(group[0]["image_size"]), val, test,
                                          grouped=True, runs=len(group))
        tid = f"{NAME}:{s}->{t}:fold{fold}" + ("" if scenario == "dataset" else ":architecture")
        out.append(Task(stage_name(scenario), tid, tuple(group), deps, dict(RESOURCES), est))
    return out, unavailable


def tasks(profile: dict, env: Env) -> list[Task]:
    return plan(profile, env)[0]


def run_task(task: Task, env: Env) -> list:
    """Fine-tune the task's configs together (in chunks of ``options["group_size"]`` when set)."""
    c0 = task.configs[0]
    if c0["scenario"] == "architecture":
        pretraining.check_imagenet(c0["source"])
        spec = "imagenet"
    else:
        spec = pretraining.resolve_source(env.profile, c0["source"], c0["target"], env.results_dir)
    todo = list(task.configs)
    step = int(env.options.get("group_size") or len(todo) or 1)
    rows = []
    for i in range(0, len(todo), step):
        chunk = todo[i:i + step]
        rows += finetune_group(chunk, spec, [env.workdir(task.stage, c) for c in chunk], env.data_root,
                               env.resolved_device(), env.cache)
    return rows


def results(profile: dict, env: Env) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(runs, unavailable)`` from the stored units (reads only): every stored run of the planned tasks, and
    the (source, target, fold) without results with the reason (static, or the last attempt's)."""
    planned, unavailable = plan(profile, env)
    stage = env.storage(stage_name(env.options.get("scenario", "dataset")))
    problems = read_problems(env, stage.name)
    keys = []
    for task in planned:
        done = [c for c in task.configs if stage.is_done(c)]
        keys += [config_key(c) for c in done]
        if len(done) < len(task.configs) and task.id in problems:
            c0 = task.configs[0]
            unavailable.append({"source": c0["source"], "target": c0["target"], "fold": c0["fold"],
                                "reason": problem_reason(problems[task.id])})
    runs = stage.collect(keys)
    return runs, pd.DataFrame([{k: r[k] for k in UNAVAILABLE_COLUMNS} for r in unavailable],
                              columns=UNAVAILABLE_COLUMNS)


def finalize(profile: dict, env: Env) -> dict:
    runs, unavailable = results(profile, env)
    out = {}
    stage = env.storage(stage_name(env.options.get("scenario", "dataset")))
    path = env.results_dir / f"{stage.name}_unavailable.csv"
    atomic_write_csv(unavailable, path)
    out[path.stem] = path
    if not runs.empty:
        out[stage.name] = stage.write_table(runs.drop(columns=["history"], errors="ignore"))
        if stage.name == "finetuning":
            out["ground_truth"] = write_ground_truth(runs, env.results_dir)
    return out


def missing_inputs(profile: dict, env: Env) -> list[dict]:
    sources, targets, scenario = _selection(profile, env)
    rows = inputs.medmnist_files(targets, profile["data"]["file_size"], env.data_root)
    if "imagenet" in sources or scenario == "architecture":
        archs = sources if scenario == "architecture" else [profile["pretraining"].get("architecture", "resnet18")]
        for arch in archs:
            rows += inputs.imagenet_weights(arch)
    if "radimagenet" in sources:
        rows += inputs.radimagenet_checkpoint(profile)
    return rows


# ----------------------------------------------------------------------------------------------------------
# ground truth


def _cell(runs: pd.DataFrame) -> list[str]:
    """The columns of one selection cell: (source, target, fold), and the seed when the runs were repeated."""
    return ["source", "target", "fold"] + (["seed"] if "seed" in runs.columns else [])


def select_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (source, target, fold[, seed]), the run with the lowest val loss ([D]'s rule; ties: first in the
    table)."""
    order = runs.sort_values("val_loss", kind="stable")
    return order.groupby(_cell(runs), sort=True).head(1).reset_index(drop=True)


def ground_truth_table(runs: pd.DataFrame, fold: int | str = 1) -> pd.DataFrame:
    """Ground truth (source x target): test AUC of the lowest-val-loss run.

    ``fold=1`` (default) is [D]'s ground truth: its ``fine-tuning.py`` reads the fold-1 subsets only.
    ``fold="mean"`` averages the selected runs' test AUC over the folds that ran (this project's extension,
    a mean over [D]'s 5 folds; see :func:`ground_truth_folds` for the spread). When the sweep was repeated
    over seeds (``finetuning.seeds``, this project's extension; [D] ran each configuration once), the
    selection is made per seed and the selected runs' test AUC averaged over the seeds
    (:func:`ground_truth_seeds` has each seed's)."""
    sel = select_runs(runs)
    if fold != "mean":
        sel = sel[sel["fold"] == int(fold)]
    table = sel.pivot_table(index="source", columns="target", values="test_auc", aggfunc="mean")
    table.index.name, table.columns.name = "source", "target"
    return table


def ground_truth_folds(runs: pd.DataFrame) -> pd.DataFrame:
    """Tidy per (source, target): the fold-1 ground truth ([D]'s; mean over seeds when repeated), the mean and
    SD over the folds that ran and their number (this project's extension)."""
    sel = select_runs(runs)
    per_fold = sel.groupby(["source", "target", "fold"])["test_auc"].mean().reset_index()
    g = per_fold.groupby(["source", "target"])["test_auc"]
    out = pd.DataFrame({"fold1": per_fold[per_fold["fold"] == 1].set_index(["source", "target"])["test_auc"],
                        "mean": g.mean(), "sd": g.std(ddof=1), "n_folds": g.size()})
    return out.reset_index()


def ground_truth_seeds(runs: pd.DataFrame, fold: int = 1) -> pd.DataFrame:
    """Tidy per (source, target, seed) of ``fold``: the selected run's test AUC under each seed of the repeated
    sweep, with the seed's rank of the source among the target's sources (1 = best; the target's own source
    included) - how much the ground truth moves from seed to seed."""
    sel = select_runs(runs)
    sel = sel[sel["fold"] == int(fold)]
    if "seed" not in sel.columns:
        sel = sel.assign(seed=0)
    out = sel[["source", "target", "seed", "test_auc"]].copy()
    out["rank"] = out.groupby(["target", "seed"])["test_auc"].rank(ascending=False, method="average")
    return out.sort_values(["target", "seed", "rank"]).reset_index(drop=True)


def write_ground_truth(runs: pd.DataFrame, results_dir) -> Path:
    """``<results>/ground_truth.csv`` (wide, fold 1: [D]'s ground truth), ``ground_truth_mean.csv`` (wide, mean
    over folds), ``ground_truth_folds.csv`` (tidy: fold 1, mean, SD, folds), ``ground_truth_seeds.csv`` (tidy:
    fold 1 per seed) and ``ground_truth_runs.csv`` (the selected run of every (source, target, fold, seed))."""
    results_dir = Path(results_dir)
    path = results_dir / "ground_truth.csv"
    atomic_write_csv(ground_truth_table(runs, 1).reset_index(), path)
    atomic_write_csv(ground_truth_table(runs, "mean").reset_index(), results_dir / "ground_truth_mean.csv")
    atomic_write_csv(ground_truth_folds(runs), results_dir / "ground_truth_folds.csv")
    atomic_write_csv(ground_truth_seeds(runs), results_dir / "ground_truth_seeds.csv")
    sel = select_runs(runs)
    atomic_write_csv(sel[[c for c in RUN_COLUMNS if c in sel.columns]], results_dir / "ground_truth_runs.csv")
    return path


# ----------------------------------------------------------------------------------------------------------
# what the chapter calls


def run_finetuning(profile: dict, sources=None, targets=None, results_dir=None, root=None, device=None,
                   scenario: str = "dataset", progress: bool = True, group_size: int | None = None,
                   engine: str | None = "local", **engine_options):
    """Run (or resume) the fine-tuning sweep through an engine. Configs of one (source, target, fold) are
    advanced together in groups of ``group_size`` (default: all of them). ``engine=None`` takes the profile's
    (``finetuning.side_by_side`` tasks at once, :func:`helpers.stages.launch.side_by_side_engine`). Returns ``(runs, unavailable)``: the tidy table of runs and a table of the
    (source, target, fold) whose source is unavailable here, with the reason; writes the tables of
    :func:`finalize`. With every unit stored this only reads."""
    if engine is None:
        engine, defaults = side_by_side_engine(profile, NAME, RESOURCES["num_cpus"])
        engine_options = {**defaults, **engine_options}
    options = {"scenario": scenario, "group_size": group_size}
    if sources is not None:
        options["sources"] = list(sources)
    if targets is not None:
        options["targets"] = list(targets)
    env = run_stage(NAME, profile, results_dir, root, device, progress, engine, options=options, **engine_options)
    return results(env.profile, env)
