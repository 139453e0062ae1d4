"""Stage ``segmentation``: the leave-one-out U-Net bank of [S] (PROTOCOL.md section 7) in three parts, stored as
three runner stages.

``segmentation_pretraining``
    one unit and task (half a GPU) per source to pre-train (each set, one union per target); its checkpoint is
    ``<results>/segmentation_sources/<name>.safetensors`` and the unit counts as done only while it exists.
``segmentation_finetuning``
    one unit and task per (source, target, fine-tuning seed): fine-tuned test Dice, averaged over the seeds
    (``segmentation.finetuning.seeds``), is the ground truth; waits for the pretraining task of its source.
    The unit of the section's own ``seed`` keeps the config and key (and task id) it had before seeds.
``segmentation_scoring``
    one unit and task per (source, target): CC-FV, its ablations and the baselines
    (:mod:`helpers.segmentation.scoring`); waits for the pretraining task of its source (not for fine-tuning:
    it never reads the ground truth).

Configs name a pre-trained source by ``source_key`` (its pretraining unit's key), never by the checkpoint's
content, so the graph is planned without reading outputs. The unit functions (training, fine-tuning and
scoring one pair) stay in :mod:`helpers.segmentation`; this module declares the units and runs them.
``options["parts"]`` restricts a run to some of the three parts (what the chapter's three calls do).
"""
from __future__ import annotations

import pandas as pd

from ..runner import atomic_write_csv, config_key
from ..scoring import COLUMNS
from ..segmentation import scoring as SS
from ..segmentation import training as ST
from ..sources import SEGMENTATION, source_kind
from . import inputs, throughput
from .base import Env, Task, problem_reason, read_problems
from .launch import run_stage, side_by_side_engine

NAME = "segmentation"
PARTS = ("pretraining", "finetuning", "scoring")
RESOURCES = {"pretraining": {"num_cpus": 2, "num_gpus": 0.5}, "finetuning": {"num_cpus": 2, "num_gpus": 0.25},
             "scoring": {"num_cpus": 2, "num_gpus": 0.125}}  # num_cpus = torch threads; 2 made the book's tables
UNAVAILABLE_COLUMNS = ["source", "target", "fold", "reason"]


def stage_name(part: str) -> str:
    return f"segmentation_{part}"


def _pretraining_id(name: str) -> str:
    return f"{NAME}:pretraining:{name}"


#: the id of the bank's pretraining task of a source (the classification stages wait for it for ``seg_*``)
pretraining_task_id = _pretraining_id


def static_reason(profile: dict, source: str, target: str) -> str | None:
    """Why nothing here can make ``source`` for ``target`` (decided from the profile alone), else ``None``."""
    return source_kind(source, SEGMENTATION).static_reason(ST.segmentation_section(profile), source, target)


def _finetuning_id(config: dict) -> str:
    """``segmentation:finetuning:<source>-><target>``, with ``@seed<n>`` for a fine-tuning seed other than the
    section's (whose task keeps the id it had before seeds)."""
    tail = f"@seed{config['finetuning_seed']}" if "finetuning_seed" in config else ""
    return f"{NAME}:finetuning:{config['source']}->{config['target']}{tail}"


def _source_dep(profile: dict, source: str, target: str) -> tuple:
    unit = ST.source_unit(profile, source, target)
    return (_pretraining_id(unit["name"]),) if unit is not None else ()


def scoring_configs(profile: dict, results_dir=None) -> tuple[list[dict], list[dict]]:
    """``(configs, unavailable)``: one unit config per (source, target) that something here can make, and the
    pairs nothing can (with the reason). A config names its source by ``source_key``, the key of the
    pretraining unit that makes it, so a re-trained source gives new units; ``results_dir`` is not used."""
    sec = ST.segmentation_section(profile)
    sc = SS.scoring_section(profile)
    configs, unavailable = [], []
    for t in sec["targets"]:
        for s in ST.segmentation_sources(profile, t):
            reason = static_reason(profile, s, t)
            if reason is not None:
                unavailable.append({"source": s, "target": t, "fold": 1, "reason": reason})
                continue
            unit = ST.source_unit(profile, s, t)
            configs.append({
                "stage": "segmentation_scoring", "source": s, "target": t, "fold": 1,
                "source_key": config_key(unit) if unit is not None else s,
                "image_size": int(sec["image_size"]), "model": sec["model"], "seed": int(sec["seed"]),
                "subset": {"max_train_images": sec["finetuning"].get("max_train_images")},
                "max_images": sc["max_images"], "per_case": int(sc["per_case"]),
                "global_per_case": int(sc["global_per_case"]), "min_per_class": int(sc["min_per_class"]),
                "layers": sc["layers"], "sample_seed": int(sc["seed"]), "batch_size": int(sc["batch_size"]),
                "scores": list(sc.get("scores", SS.SCORES))})
    return configs, unavailable


def _parts(env: Env) -> tuple:
    return tuple(env.options.get("parts") or PARTS)


def plan(profile: dict, env: Env) -> tuple[list[Task], dict]:
    """``(tasks, unavailable)`` with ``unavailable[part]`` the rows of the pairs no task can make."""
    if not profile.get("segmentation"):
        return [], {p: [] for p in PARTS}
    parts = _parts(env)
    sizes = throughput.segmentation_sizes(env.data_root)
    out, unavailable = [], {p: [] for p in PARTS}
    if "pretraining" in parts:
        for c in ST.segmentation_pretraining_configs(profile):
            out.append(Task(stage_name("pretraining"), _pretraining_id(c["name"]), (c,), (),
                            dict(RESOURCES["pretraining"]), throughput.segmentation_seconds(c, sizes)))
    if "finetuning" in parts:
        for c in ST.segmentation_finetuning_configs(profile):
            reason = static_reason(profile, c["source"], c["target"])
            if reason is not None:
                row = {"source": c["source"], "target": c["target"], "fold": 1, "reason": reason}
                if row not in unavailable["finetuning"]:  # one row per pair, not per seed
                    unavailable["finetuning"].append(row)
                continue
            out.append(Task(stage_name("finetuning"), _finetuning_id(c), (c,),
                            _source_dep(profile, c["source"], c["target"]), dict(RESOURCES["finetuning"]),
                            throughput.segmentation_seconds(c, sizes)))
    if "scoring" in parts:
        configs, unavailable["scoring"] = scoring_configs(profile)
        for c in configs:
            out.append(Task(stage_name("scoring"), f"{NAME}:scoring:{c['source']}->{c['target']}", (c,),
                            _source_dep(profile, c["source"], c["target"]), dict(RESOURCES["scoring"]),
                            throughput.segmentation_seconds(c, sizes)))
    return out, unavailable


def tasks(profile: dict, env: Env) -> list[Task]:
    return plan(profile, env)[0]


def pending(task: Task, env: Env) -> list[dict]:
    stage = env.storage(task.stage)
    if task.stage != stage_name("pretraining"):
        return stage.pending(task.configs)
    return [c for c in task.configs
            if not stage.is_done(c) or not (ST.sources_dir(env.results_dir) / f"{c['name']}.safetensors").is_file()]


def run_task(task: Task, env: Env) -> list:
    device = env.resolved_device()
    out = []
    for c in task.configs:
        workdir = env.workdir(task.stage, c)
        if task.stage == stage_name("pretraining"):
            out.append(ST.pretrain_segmentation_unit(c, workdir, env.results_dir, env.data_root, device, env.cache))
        elif task.stage == stage_name("finetuning"):
            ST.resolve_segmentation_source(env.profile, c["source"], c["target"], env.results_dir)
            out.append(ST.finetune_segmentation_unit(c, env.profile, workdir, env.results_dir, env.data_root, device,
                                                     env.cache))
        else:
            ST.resolve_segmentation_source(env.profile, c["source"], c["target"], env.results_dir)
            out.append(SS.score_unit(c, workdir, env.profile, env.results_dir, env.data_root, device, env.cache))
    return out


# ----------------------------------------------------------------------------------------------------------
# tables (read only)


def _stored(profile: dict, env: Env, part: str):
    """``(units, unavailable rows)`` of one part: the stored units of its planned tasks, and the pairs without
    a result with the reason (static, or the last attempt's)."""
    planned, unavailable = plan(profile, env)
    stage = env.storage(stage_name(part))
    problems = read_problems(env, stage.name)
    rows, keys = list(unavailable[part]), []
    for task in planned:
        if task.stage != stage.name:
            continue
        c = task.configs[0]
        if stage.is_done(c):
            keys.append(config_key(c))
        elif task.id in problems and part != "pretraining":
            rows.append({"source": c["source"], "target": c["target"], "fold": c.get("fold", 1),
                         "reason": problem_reason(problems[task.id])})
    return stage.collect(keys), rows


def pretraining_results(profile: dict, env: Env) -> pd.DataFrame:
    return _stored(profile, env, "pretraining")[0]


def _seed_column(runs: pd.DataFrame) -> pd.DataFrame:
    """``seed`` (the fine-tuning seed) on every row, after ``fold``: units stored before the seeds were added
    have no ``seed`` in their row, and their config's ``seed`` is the one they ran with."""
    if runs.empty:
        return runs
    seed = runs["config.seed"]
    if "config.finetuning_seed" in runs.columns:
        seed = runs["config.finetuning_seed"].fillna(seed)
    if "seed" in runs.columns:
        seed = runs["seed"].fillna(seed)
    runs = runs.drop(columns=["seed"], errors="ignore")
    runs.insert(runs.columns.get_loc("fold") + 1, "seed", seed.astype(int))
    return runs


def finetuning_results(profile: dict, env: Env) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs, rows = _stored(profile, env, "finetuning")
    unavailable = pd.DataFrame(rows, columns=UNAVAILABLE_COLUMNS).drop_duplicates(ignore_index=True)
    return _seed_column(runs), unavailable


def scoring_results(profile: dict, env: Env) -> pd.DataFrame:
    units, unavailable = _stored(profile, env, "scoring")
    if units.empty:
        units = pd.DataFrame(columns=COLUMNS + ["parts"])
    keep = [c for c in COLUMNS + ["parts"] if c in units.columns]
    table = units[units["metric"] != "_extract"][keep] if not units.empty else units
    scores = list(SS.scoring_section(profile).get("scores", SS.SCORES))
    unav = pd.DataFrame([{**u, "metric": m, "score": float("nan"), "seconds": 0.0, "status": "unavailable",
                          "options": SS._options(m), "parts": ""} for u in unavailable for m in scores],
                        columns=COLUMNS + ["parts"])
    table = pd.concat([t for t in (table, unav) if not t.empty], ignore_index=True) if len(unav) else table
    order = {m: i for i, m in enumerate(scores)}
    table = (table.assign(_o=table["metric"].map(order)).sort_values(["target", "_o", "source"], kind="stable")
             .drop(columns="_o").reset_index(drop=True))
    table["parts"] = table["parts"].fillna("")
    return table


def finalize(profile: dict, env: Env) -> dict:
    if not profile.get("segmentation"):
        return {}
    parts, out = _parts(env), {}
    if "pretraining" in parts:
        pre = pretraining_results(profile, env)
        if not pre.empty:
            out["segmentation_pretraining"] = env.storage(stage_name("pretraining")).write_table(
                pre.drop(columns=["history"], errors="ignore"))
    if "finetuning" in parts:
        runs, unavailable = finetuning_results(profile, env)
        path = env.results_dir / "segmentation_finetuning_unavailable.csv"
        atomic_write_csv(unavailable, path)
        out[path.stem] = path
        if not runs.empty:
            out["segmentation_finetuning"] = env.storage(stage_name("finetuning")).write_table(
                runs.drop(columns=["history"], errors="ignore"))
            out["segmentation_ground_truth"] = ST.write_segmentation_ground_truth(runs, env.results_dir)
    if "scoring" in parts:
        path = env.results_dir / "segmentation_scores.csv"
        atomic_write_csv(scoring_results(profile, env), path)
        out["segmentation_scores"] = path
    return out


def missing_inputs(profile: dict, env: Env) -> list[dict]:
    if not profile.get("segmentation"):
        return []
    sec = ST.segmentation_section(profile)
    rows = inputs.segmentation_sets(sec["sets"], env.data_root)
    if "imagenet" in sec["sources"]:
        rows += inputs.imagenet_weights("resnet18")
    return rows


# ----------------------------------------------------------------------------------------------------------
# what the chapter calls (each runs one part through an engine; with its units stored it only reads)


def _run_part(part, profile, results_dir, root, device, progress, engine, **engine_options) -> Env:
    if engine is None:  # the profile's: segmentation.side_by_side tasks at once (the same tables, sooner)
        engine, defaults = side_by_side_engine(profile, NAME, RESOURCES[part]["num_cpus"])
        engine_options = {**defaults, **engine_options}
    return run_stage(NAME, profile, results_dir, root, device, progress, engine, options={"parts": (part,)},
                     **engine_options)


def run_segmentation_pretraining(profile: dict, results_dir=None, root=None, device=None, progress: bool = True,
                                 engine: str = "local", **engine_options) -> pd.DataFrame:
    """Run (or resume) every pretraining unit of the bank, on ``device`` (default: the profile's ``device``), on
    ``engine`` (``None``: the profile's, ``segmentation.side_by_side`` tasks at once).

    Returns the tidy table (one row per source: ``source, kind, sets, n_classes, classes, train_images,
    val_images, epochs_run, best_epoch, val_loss, val_dice, train_seconds, checkpoint, history`` plus the
    stage's ``key``, ``unit_seconds`` and ``config.*`` columns) and writes it, without ``history``, to
    ``<results>/segmentation_pretraining.csv``. A finished unit whose checkpoint file has gone is run again.
    """
    env = _run_part("pretraining", profile, results_dir, root, device, progress, engine, **engine_options)
    return pretraining_results(env.profile, env)


def run_segmentation_finetuning(profile: dict, results_dir=None, root=None, device=None, progress: bool = True,
                                engine: str = "local", **engine_options):
    """Fine-tune every available (source, target) pair of the bank (or resume), on ``engine`` (``None``: the
    profile's, ``segmentation.side_by_side`` tasks at once).

    Returns ``(runs, unavailable)``: ``runs`` has one row per (source, target, fold=1, seed) with
    :data:`helpers.segmentation.FINETUNING_COLUMNS`, one ``dice_<class>`` column per foreground class of the
    targets (NaN for the other targets' classes), ``history`` and the stage's ``key``/``unit_seconds``/
    ``config.*`` columns; ``unavailable`` has ``source, target, fold, reason``. Writes
    ``<results>/segmentation_finetuning.csv`` (``runs`` without ``history``),
    ``<results>/segmentation_ground_truth.csv`` (:func:`helpers.segmentation.segmentation_ground_truth`: the
    mean over the seeds) and ``<results>/segmentation_ground_truth_seeds.csv``
    (:func:`helpers.segmentation.segmentation_ground_truth_seeds`: one row per (source, target, seed)).
    """
    env = _run_part("finetuning", profile, results_dir, root, device, progress, engine, **engine_options)
    return finetuning_results(env.profile, env)


def run_segmentation_scoring(profile: dict, results_dir=None, root=None, device=None, progress: bool = True,
                             write: bool = True, engine: str = "local", **engine_options) -> pd.DataFrame:
    """Run (or resume) every scoring unit; returns the tidy scores table (:data:`helpers.scoring.COLUMNS` +
    ``parts``) and stores it as ``<results_dir>/segmentation_scores.csv`` (atomically). Unavailable sources give
    ``status == "unavailable"`` rows with the reason."""
    env = _run_part("scoring", profile, results_dir, root, device, progress, engine, finalize=write,
                    **engine_options)
    return scoring_results(env.profile, env)

