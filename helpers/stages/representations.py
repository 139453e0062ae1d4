"""The representations stage ([R], PROTOCOL.md section 8): its units, tasks and tables.

The computations are :mod:`helpers.representations` (the library); this module declares the units and runs
them as a stage (the contract of :mod:`helpers.stages.base`):

* :func:`representations_configs` declares every unit (pure: reads no output of another stage; sources are
  named by the key of the pretraining unit that makes them): ``finetune`` units
  (:func:`helpers.representations.finetune_unit`), ``activations`` units
  (:func:`helpers.representations.activation_unit`) and the ``similarity`` and ``predictions`` units of each
  pair of networks (:func:`helpers.representations.analysis_unit`);
* :func:`tasks`, :func:`run_task`, :func:`finalize` and :func:`missing_inputs`: the stage contract; the tidy tables
  of :data:`TABLES` go to ``results/<profile>/representations_*.csv`` (:func:`build_tables`);
* :func:`run_representations` runs (or resumes) everything: the entry point of the chapter;
  :func:`tables` and :func:`load_activations` read the results back.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from .. import models as M
from .. import sources as SRC
from ..paths import MissingResultError
from ..representations import (STAGE, activation_unit, analysis_unit, finetune_unit, gain_table, in_r_pairs,
                               input_scale_of, network_name, null_kind, pair_kind, read_activations,
                               relative_gain, representations_settings)
from ..runner import Stage, atomic_write_csv, config_key
from . import inputs
from . import pretraining as P
from .base import Task, make_env, pending_configs, problem_reason, read_problems
from .launch import run_stage
from .throughput import representations_seconds

__all__ = ["NAME", "RESOURCES", "TABLES", "RepresentationsPlan", "representations_configs", "build_tables",
           "tables", "load_activations", "run_representations", "tasks", "run_task", "finalize", "missing_inputs"]

NAME = STAGE
# num_cpus is also each task's torch threads (Task.threads): CPU results depend on the count, and 2 is the count
# the book's tables were made with
RESOURCES = {"finetune": {"num_cpus": 2, "num_gpus": 0.5}, "activations": {"num_cpus": 2, "num_gpus": 0.25},
             "analysis": {"num_cpus": 2, "num_gpus": 0.1}}

#: what each table written by :func:`finalize` holds (``results/<profile>/representations_<name>.csv``)
TABLES = {
    "runs": "one row per fine-tuning run: recipe, epochs and optimizer steps per phase, val/test metrics, the "
            "relative AUC gain over random init on the same fold",
    "weights": "one row per fine-tuning run and stage: relative L2 change and cosine of the conv/linear weights "
               "(this project's extension)",
    "activations": "one row per network and layer: the sampled cell's size (images, points n, channels d, "
                   "few_points where n < 10 d)",
    "similarity": "one row per pair of networks, layer, repeat and measure: value and permutation-null value",
    "predictions": "one row per pair of fine-tuned networks: error agreement, both independent-errors "
                   "baselines and Cohen's kappa on the test fold",
    "gain": "one row per fine-tuned network, layer and measure: similarity to its own pre-trained network "
            "(mean over repeats), the weight change of that stage and the relative AUC gain",
}

# ----------------------------------------------------------------------------------------------------------
# declaring the units


@dataclass
class RepresentationsPlan:
    """Every unit of the stage for a profile: the three lists in the order they run, the sources that cannot be
    had here (``source, target, reason``) and the settings they came from."""

    finetune: list = field(default_factory=list)
    activations: list = field(default_factory=list)
    analysis: list = field(default_factory=list)
    unavailable: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["source", "target", "reason"]))
    settings: dict = field(default_factory=dict)

    def all(self) -> list:
        return self.finetune + self.activations + self.analysis


# [R]'s RadImageNet is a ResNet-50 of its own (the stage's setting, not the profile's sources.radimagenet_checkpoint)
_RADIMAGENET_UNCONFIGURED = ("no checkpoint configured (RadImageNet needs a data-use agreement): set "
                             "representations.radimagenet_checkpoint or $RADIMAGENET_RESNET50_CHECKPOINT")


def _radimagenet_setting(settings: dict) -> str | None:
    return settings.get("radimagenet_checkpoint") or os.environ.get("RADIMAGENET_RESNET50_CHECKPOINT")


def _radimagenet_checkpoint(settings: dict) -> str:
    path = _radimagenet_setting(settings)
    if not path:
        raise M.SourceUnavailable("radimagenet", _RADIMAGENET_UNCONFIGURED)
    if not Path(path).is_file():
        raise M.SourceUnavailable("radimagenet", f"checkpoint {path} does not exist")
    return str(path)


def _resolve(profile: dict, settings: dict, source: str, target: str, results_dir) -> str:
    """``random``, ``imagenet`` or a checkpoint path for a source of this stage; :class:`models.SourceUnavailable`
    with the reason otherwise. ``radimagenet`` is the section's own checkpoint (a ResNet-50 in [R]), else
    ``$RADIMAGENET_RESNET50_CHECKPOINT``; other names are this project's trained sources."""

    arch = settings["architecture"]
    kind = SRC.source_kind(source)
    if kind.name == "radimagenet":
        return _radimagenet_checkpoint(settings)
    if not kind.checkpoint:  # a named weight set (random, imagenet), of this stage's architecture
        if kind.name == "imagenet":
            SRC.check_imagenet(arch)
        return kind.name
    spec = SRC.resolve_source(profile, source, target, results_dir)
    meta = M.read_sidecar(spec) if Path(spec).suffix == ".safetensors" else {}
    if meta.get("architecture") and meta["architecture"] != arch:
        raise M.SourceUnavailable(source, f"checkpoint {spec} is a {meta['architecture']}, the stage compares "
                                  f"{arch} networks")
    return spec


def _source_refs(profile: dict, settings: dict, sources, target: str, results_dir=None) -> tuple[dict, dict]:
    """``({source: ref}, {source: reason})`` decided without reading any output: ``ref`` is ``random`` /
    ``imagenet``, the configured RadImageNet path, or the key of the pretraining unit that makes one of this
    project's sources (:func:`helpers.stages.pretraining.source_plan`), so that a retrained source changes every
    key that depends on it. A source that no unit makes but that sits in ``<results>/sources/`` (a checkpoint a
    user put there) is an input, referred to by its path. Whether ImageNet weights can be had is found out when
    a task runs."""
    flags = profile["data"].get("flags", [])
    made = P.pretraining_configs(profile, flags, [target]) if "pretraining" in profile else []
    refs, reasons = {}, {}
    for s in sources:
        kind = SRC.source_kind(s)
        if not kind.checkpoint:
            refs[s] = s
        elif kind.name == "radimagenet":
            path = _radimagenet_setting(settings)
            if path:
                refs[s] = str(path)
            else:
                reasons[s] = _RADIMAGENET_UNCONFIGURED
        else:
            key, reason = SRC.source_plan(profile, s, target, made)
            given = SRC.sources_dir(results_dir) / f"{s}.safetensors" if results_dir is not None else None
            if reason is None:
                refs[s] = key
            elif given is not None and given.is_file():
                refs[s] = str(given)
            else:
                reasons[s] = reason
    return refs, reasons


def _producer_task(profile: dict, source: str, target: str) -> str | None:
    """The id of the pretraining task that makes ``source`` for ``target`` (``None``: nothing to wait for)."""
    if "pretraining" not in profile:  # named weights (random, imagenet, radimagenet) have no unit of that name
        return None
    unit = P.producer(profile, source, target, P.pretraining_configs(profile, profile["data"].get("flags", []),
                                                                   [target]))
    return P.task_id(unit["name"]) if unit is not None else None


def representations_configs(profile: dict, results_dir=None, root=None, targets=None) -> RepresentationsPlan:
    """Declare every unit of the stage (nothing runs): per target and fold, a ``finetune`` unit per source (random
    init always; the freeze variant for ``freeze_sources``), an ``activations`` unit per network (the untrained
    ones, each source's pre-trained network and each fine-tuned one) and an analysis unit per pair of networks
    (``similarity``: all pairs, or with ``similarity.pairs: r`` only those of [R]'s kinds) and per pair of
    fine-tuned networks of one variant (``predictions``). Downstream configs hold the keys of the units they
    read, and sources are named by the key of the pretraining unit that makes them (never by a file), so a
    changed recipe or source changes every key that depends on it and nothing here reads another stage's
    output (``results_dir`` and ``root`` are kept for the callers' convenience)."""
    st = representations_settings(profile)
    targets = list(targets if targets is not None else st["targets"])
    arch = st["architecture"]
    sim = dict(st["similarity"])
    seeds = [int(s) for s in st["untrained_seeds"]]
    if len(seeds) != 2 or seeds[0] == seeds[1]:
        raise ValueError(f"untrained_seeds must be two different seeds (the floor), got {seeds}")
    data = {k: st[k] for k in ("n_folds", "fold_seed", "val_fraction", "max_train_images", "max_val_images",
                                "max_test_images")}
    common = {"stage": STAGE, "arch": arch, "file_size": int(st["file_size"]), "image_size": int(st["image_size"]),
              "data": data}
    sim_block = {k: sim[k] for k in ("layers", "points", "channels", "repeats", "stimuli", "max_stimulus_images",
                                     "seed", "batch_size")}
    plan = RepresentationsPlan(settings=st)
    unavailable = []
    for t in targets:
        refs, reasons = _source_refs(profile, st, st["sources"], t, results_dir)
        refs["random"] = "random"
        unavailable += [{"source": s, "target": t, "reason": r} for s, r in reasons.items()]
        sources = [s for s in st["sources"] if s in refs]
        augment = dict(st["augment"])
        if t in st["no_flip"]:
            augment["flip_p"] = 0.0
        for fold in st["folds"]:
            nets = []  # (network dict, activation-unit model block)
            for seed in seeds:
                net = {"role": "untrained", "source": "random", "variant": None, "seed": seed}
                nets.append((net, {"kind": "untrained", "seed": seed, "input_scale": input_scale_of(st, "random")}))
            for s in sources:
                net = {"role": "pretrained", "source": s, "variant": None, "seed": None}
                model = {"kind": "pretrained", "source": s, "source_ref": refs[s],
                         "input_scale": input_scale_of(st, s)}
                nets.append((net, model))
                if sim.get("bn_control"):
                    nets.append(({**net, "role": "recalibrated"}, {**model, "kind": "recalibrated"}))
            for s in sources + ["random"]:
                variants = ["none"] + (["freeze"] if s in st["freeze_sources"] and s != "random" else [])
                for v in variants:
                    init_seed = seeds[0] if s == "random" else int(st["seed"])
                    ft = {**common, "unit": "finetune", "target": t, "fold": int(fold), "source": s, "variant": v,
                          "source_ref": refs[s], "init_seed": init_seed,
                          "head": st["random_head"] if s == "random" else st["head"],
                          "input_scale": input_scale_of(st, s), "recipe": dict(st["finetune"]),
                          "freeze_recipe": dict(st["freeze"]) if v == "freeze" else None, "augment": augment}
                    plan.finetune.append(ft)
                    net = {"role": "finetuned", "source": s, "variant": v, "seed": None, "init_seed": init_seed}
                    nets.append((net, {"kind": "finetuned", "finetune_key": config_key(ft),
                                       "input_scale": ft["input_scale"]}))
            act_keys = []
            for net, model in nets:
                act = {**common, "unit": "activations", "target": t, "fold": int(fold), "network": net,
                       "model": model, "input_scale": model["input_scale"], "similarity": sim_block}
                plan.activations.append(act)
                act_keys.append(config_key(act))
            ft_keys = {(n["source"], n["variant"]): m["finetune_key"] for n, m in nets if n["role"] == "finetuned"}
            for (i, (a, _)), (j, (b, _)) in combinations(enumerate(nets), 2):
                kind = pair_kind(a, b)
                if "recalibrated" in (a["role"], b["role"]) and kind == "other":
                    continue  # the control is compared with its own source's networks only
                r_pair = in_r_pairs(a, b, seeds[0])
                base = {"stage": STAGE, "target": t, "fold": int(fold), "a": a, "b": b, "kind": kind, "in_r": r_pair}
                if sim["pairs"] == "all" or r_pair:
                    plan.analysis.append({**base, "unit": "similarity", "a_key": act_keys[i], "b_key": act_keys[j],
                                          "measures": list(sim["measures"]), "null": null_kind(sim["null"]),
                                          "seed": int(sim["seed"])})
                if a["role"] == b["role"] == "finetuned" and a["variant"] == b["variant"]:
                    plan.analysis.append({**base, "unit": "predictions",
                                          "a_key": ft_keys[(a["source"], a["variant"])],
                                          "b_key": ft_keys[(b["source"], b["variant"])]})
    plan.unavailable = pd.DataFrame(unavailable, columns=["source", "target", "reason"])
    return plan


# ----------------------------------------------------------------------------------------------------------
# tables


def _integral(col: pd.Series) -> pd.Series:
    """A float column of whole numbers without gaps as int (rows of several kinds share one frame while they
    are collected, which turns counts into floats)."""
    if col.dtype.kind == "f" and col.notna().all() and (col == col.round()).all():
        return col.astype("int64")
    return col


def build_tables(stage: Stage, plan: RepresentationsPlan, results_dir, write: bool = True) -> dict[str, pd.DataFrame]:
    """Split the units' rows into the tables of :data:`TABLES`, add the relative AUC gain, and (``write``) write
    them as ``<results_dir>/representations_<name>.csv`` atomically, with ``representations_unavailable.csv``.
    Returns the tables by name (``unavailable`` included)."""
    units = stage.collect([config_key(c) for c in plan.all()])
    tables: dict[str, pd.DataFrame] = {}
    for name in ("runs", "weights", "activations", "similarity", "predictions"):
        part = units[units["table"] == name] if "table" in units else units.iloc[:0]
        part = part.dropna(axis=1, how="all").drop(columns=["table"], errors="ignore").reset_index(drop=True)
        tables[name] = part.apply(_integral)
    runs = tables["runs"]
    if not runs.empty:
        runs["relative_gain"] = relative_gain(runs)
        gain = runs.set_index(["source", "target", "fold", "variant"])["relative_gain"]
        w = tables["weights"]
        if not w.empty:
            w["relative_gain"] = [gain.get(k, np.nan) for k in zip(w.source, w.target, w.fold, w.variant)]
    tables["gain"] = gain_table(tables)
    tables["unavailable"] = plan.unavailable
    if write:
        for name, df in tables.items():
            atomic_write_csv(df, Path(results_dir) / f"representations_{name}.csv")
    return tables


def missing_pretraining(profile: dict, env) -> list[str]:
    """Ids of the pretraining tasks this stage's units wait for whose sources are not stored yet (in
    ``env.results_dir``): the units that use those sources are blocked until the pretraining stage has run."""
    wanted = {d for t in tasks(profile, env) for d in t.deps if d.startswith(P.NAME + ":")}
    if not wanted:
        return []
    base = dataclasses.replace(env, progress=False, options={})
    return sorted(t.id for t in P.tasks(profile, base) if t.id in wanted and pending_configs(P, t, env))


def run_representations(profile: dict, results_dir=None, root=None, device=None, progress: bool = True,
                        targets=None, engine: str = "local", require_sources: bool = False,
                        **engine_options) -> dict[str, pd.DataFrame]:
    """Run (or resume) the stage for a profile through an engine (:mod:`helpers.orchestration`) and write its tables;
    returns them (:func:`build_tables`).

    Units run in dependency order (fine-tuning, activations, analysis), each stored once finished and never
    recomputed: a second call only reads. ``device``: default the profile's (``auto``: CUDA when present).
    ``require_sources``: before running anything, raise :class:`helpers.paths.MissingResultError` naming the
    command to run first when a source this stage compares has not been pretrained yet (what a chapter wants);
    by default the units of such a source are blocked and the others run."""
    options = {"targets": list(targets)} if targets is not None else {}
    if require_sources:
        env = make_env(profile, results_dir, root, device, False, options)
        waiting = missing_pretraining(env.profile, env)
        if waiting:
            raise MissingResultError(
                f"the representations stage compares sources that are not pretrained yet in {env.results_dir} "
                f"({len(waiting)} pretraining units: {', '.join(w.split(':', 1)[1] for w in waiting)}); run the "
                f"Pretraining chapter or `python -m helpers.run pretraining --profile {env.profile['name']}` first")
    env = run_stage(NAME, profile, results_dir, root, device, progress, engine, options=options, **engine_options)
    return tables(env.profile, env)


# ----------------------------------------------------------------------------------------------------------
# the stage contract (helpers.stages.base): tasks, run_task, finalize, missing_inputs


def _plan(profile: dict, env) -> RepresentationsPlan:
    return representations_configs(profile, env.results_dir, env.data_root, env.options.get("targets"))


def _net_id(config: dict) -> str:
    return f"{NAME}:activations:{config['target']}:fold{config['fold']}:{network_name(config['network'])}"


def tasks(profile: dict, env) -> list:
    """One task per fine-tuning run (waiting for its source's pretraining task), one per network's activations
    (waiting for the fine-tuning or pretraining that makes the network) and one per analysis unit (waiting for
    the activations, or the fine-tuning runs, it reads). An unavailable source then blocks only what uses it."""
    if not profile.get("representations"):
        return []  # a profile without the section has no such stage
    plan = _plan(profile, env)
    out, ft_ids, act_ids = [], {}, {}
    for c in plan.finetune:
        tid = f"{NAME}:finetune:{c['target']}:fold{c['fold']}:{c['source']}:{c['variant']}"
        ft_ids[config_key(c)] = tid
        dep = _producer_task(profile, c["source"], c["target"])
        out.append(Task(STAGE, tid, (c,), (dep,) if dep else (), dict(RESOURCES["finetune"]),
                        representations_seconds(c, profile)))
    for c in plan.activations:
        model = c["model"]
        if model["kind"] == "finetuned":
            deps = (ft_ids[model["finetune_key"]],)
        elif model["kind"] in ("pretrained", "recalibrated"):
            dep = _producer_task(profile, model["source"], c["target"])
            deps = (dep,) if dep else ()
        else:
            deps = ()
        act_ids[config_key(c)] = _net_id(c)
        out.append(Task(STAGE, _net_id(c), (c,), deps, dict(RESOURCES["activations"]),
                        representations_seconds(c, profile)))
    for c in plan.analysis:
        ids = act_ids if c["unit"] == "similarity" else ft_ids
        deps = tuple(ids[c[k]] for k in ("a_key", "b_key"))
        tid = f"{NAME}:{c['unit']}:{c['target']}:fold{c['fold']}:{network_name(c['a'])}~{network_name(c['b'])}"
        out.append(Task(STAGE, tid, (c,), deps, dict(RESOURCES["analysis"]), representations_seconds(c, profile)))
    return out


def _with_spec(config: dict, env) -> dict:
    """The config with the source's checkpoint resolved (``spec``), at run time; raises
    :class:`helpers.models.SourceUnavailable` when it cannot be had here."""
    st = representations_settings(env.profile)
    if config["unit"] == "finetune":
        return {**config, "spec": _resolve(env.profile, st, config["source"], config["target"], env.results_dir)}
    model = config["model"]
    if model["kind"] in ("pretrained", "recalibrated"):
        spec = _resolve(env.profile, st, model["source"], config["target"], env.results_dir)
        return {**config, "model": {**model, "spec": spec}}
    return config


def run_task(task, env) -> list:
    device = env.resolved_device()
    stage_dir = env.results_dir / STAGE
    out = []
    for c in task.configs:
        workdir = env.workdir(task.stage, c)
        if c["unit"] == "finetune":
            out.append(finetune_unit(_with_spec(c, env), workdir, env.data_root, device, env.cache))
        elif c["unit"] == "activations":
            out.append(activation_unit(_with_spec(c, env), workdir, stage_dir, env.data_root, device, env.cache))
        else:
            out.append(analysis_unit(c, workdir, stage_dir, device))
    return out


def tables(profile: dict, env, write: bool = False) -> dict[str, pd.DataFrame]:
    """The stage's tables from the stored units (nothing computed), with the sources a task found unavailable
    at run time (e.g. ImageNet weights offline) added to ``unavailable``."""
    plan = _plan(profile, env)
    problems = [{"source": r["task"].split(":")[4], "target": r["task"].split(":")[2],
                 "reason": problem_reason(r)} for r in read_problems(env, STAGE).values()
                if r["task"].startswith(f"{NAME}:finetune:") and r.get("kind") == "unavailable"]
    if problems:
        plan.unavailable = (pd.concat([plan.unavailable, pd.DataFrame(problems)], ignore_index=True)
                            .drop_duplicates(["source", "target"]).reset_index(drop=True))
    return build_tables(env.storage(STAGE), plan, env.results_dir, write=write)


def finalize(profile: dict, env) -> dict:
    if not profile.get("representations"):
        return {}
    tables(profile, env, write=True)
    return {f"representations_{name}": env.results_dir / f"representations_{name}.csv"
            for name in [*TABLES, "unavailable"]}


def missing_inputs(profile: dict, env) -> list[dict]:
    """MedMNIST files of the stage's targets and, when listed as a source without a configured checkpoint,
    RadImageNet (ImageNet weights are reported by the pretraining stage's inputs)."""
    if not profile.get("representations"):
        return []
    st = representations_settings(profile)
    rows = inputs.medmnist_files(list(st["targets"]), int(st["file_size"]), env.data_root)
    if "radimagenet" in st["sources"] and not (st.get("radimagenet_checkpoint")
                                                or os.environ.get("RADIMAGENET_RESNET50_CHECKPOINT")):
        rows.append({"what": "RadImageNet ResNet-50 checkpoint", "path": "representations.radimagenet_checkpoint",
                     "how": "RadImageNet needs a data-use agreement (radimagenet.com); put the checkpoint path in "
                            "the profile or $RADIMAGENET_RESNET50_CHECKPOINT"})
    return rows


# ----------------------------------------------------------------------------------------------------------
# reading back


def load_activations(results_dir, plan: RepresentationsPlan, target: str, fold: int, network: str, device="cpu"):
    """The stored activations ``{(layer, repeat): (n, d) tensor}`` of a network (by :func:`network_name`) of a
    (target, fold), from its activation unit's work folder."""
    for c in plan.activations:
        if c["target"] == target and c["fold"] == fold and network_name(c["network"]) == network:
            return read_activations(Path(results_dir) / STAGE, config_key(c), device)[0]
    raise KeyError(f"no activations of {network!r} for {target}, fold {fold}")
