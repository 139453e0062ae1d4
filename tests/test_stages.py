"""Stages, engines and the plan: the task graph, resume after SIGKILL, local vs Ray, the paper plan offline."""
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import orchestration as O
from helpers import stages
from helpers.paths import PROJECT_ROOT
from helpers.profiles import load_profile
from helpers.runner import config_key
from helpers.stages import base

TINY = {
    "name": "tiny",
    "data": {"flags": ["breastmnist", "pneumoniamnist"], "only_available": False, "file_size": 28,
             "image_size": 28, "fold_seed": 24, "folds": 2},
    "sources": {"dataset": ["random", "pneumoniamnist", "radimagenet"], "architectures": ["resnet18"]},
    "targets": ["breastmnist"],
    "pretraining": {"architecture": "resnet18",
                    "single_dataset": {"epochs": 1, "batch_size": 32, "optimizer": {"name": "adam", "lr": 0.001},
                                       "max_train_images": 64, "max_val_images": 32}},
    "finetuning": {"epochs": 1, "patience": 1, "max_train_images": 24, "max_test_images": 40,
                   "grid": {"lr": [0.01, 0.1], "batch_size": [12], "momentum": [0.9], "weight_decay": [0.0]}},
    "scoring": {"batch_size": 32, "max_images": 24},
    "metrics": ["logme", "leep", "ncti"],
    "device": "cpu",
}


@pytest.fixture()
def tiny(tmp_path, shared_data_root):
    """A tiny profile file: 1 target, 2 sources that run (random, a pre-trained pneumoniamnist) and one that
    cannot (radimagenet without a checkpoint), 2 folds x 2 configs, 1 epoch on a few images."""
    path = tmp_path / "tiny.yml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def _temp_files(root: Path):
    return [p for p in Path(root).rglob("*") if p.is_file() and (p.name.endswith(".tmp") or ".tmp." in p.name)]


def _units(results: Path, stage: str) -> dict:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (results / stage / "units").glob("*.json")}


# ---------------------------------------------------------------------------------------------- the graph
def test_task_graph_of_the_quick_profile(tmp_path):
    env = O.make_env("quick", tmp_path / "results", progress=False)
    tasks, external = O.gather(O.expand(["all"]), env)
    by_id = {t.id: t for t in tasks}
    assert len(by_id) == len(tasks) and not external  # "all" holds every task it depends on
    assert {t.module for t in tasks} == {"pretraining", "finetuning", "scoring", "segmentation", "representations"}
    for t in tasks:
        assert t.id.startswith(f"{t.module}:") and all(d in by_id for d in t.deps), t.id
        assert len({config_key(c) for c in t.configs}) == len(t.configs)
    for t in tasks:
        if t.module not in ("finetuning", "scoring"):
            continue
        c = t.configs[0]
        source, target = c["source"], c["target"]
        if source in ("random", "imagenet"):
            assert t.deps == () and c["source_key"] is None
            continue
        if source.startswith("seg_"):  # an encoder of the segmentation bank: its U-Net's pretraining task
            unit = "union_all" if source == "seg_union" else source[len("seg_"):]
            producer = f"segmentation:pretraining:{unit}"
        else:
            name = f"medmnist_union__{target}" if source == "medmnist_union" else source
            producer = f"pretraining:{name}"
        assert t.deps == (producer,)
        # the config names its source by the producing unit's key, not by a checkpoint file
        assert c["source_key"] == config_key(by_id[producer].configs[0])
        assert "spec" not in c and "weights" not in c
    ft = [t for t in tasks if t.module == "finetuning"]
    quick_ft = load_profile("quick")["finetuning"]  # one learning rate, the sweep repeated over twelve seeds
    grid, seeds = len(quick_ft["grid"]["lr"]), len(quick_ft["seeds"])
    assert all(len(t.configs) == grid * seeds and t.resources["num_gpus"] < 1 for t in ft)  # a group, a GPU fraction
    assert all(t.resources["num_gpus"] == 1 for t in tasks if t.module == "pretraining")
    seg = {t.id: t for t in tasks if t.module == "segmentation"}
    assert seg["segmentation:finetuning:union->busi"].deps == ("segmentation:pretraining:union__busi",)
    assert seg["segmentation:scoring:ph2->busi"].deps == ("segmentation:pretraining:ph2",)
    assert seg["segmentation:finetuning:random->busi"].deps == ()
    rep = {t.id: t for t in tasks if t.module == "representations"}
    union_ft = rep["representations:finetune:breastmnist:fold1:medmnist_union:none"]
    assert union_ft.deps == ("pretraining:medmnist_union__breastmnist",)
    assert union_ft.configs[0]["source_ref"] == config_key(by_id["pretraining:medmnist_union__breastmnist"].configs[0])
    for t in rep.values():  # activations wait for what makes their network, analyses for what they read
        if ":similarity:" in t.id or ":predictions:" in t.id:
            assert len(t.deps) == 2 and all(d.startswith("representations:") for d in t.deps), t.id
    assert not (tmp_path / "results").exists(), "planning wrote to the results folder"


def test_a_stage_run_alone_sees_its_dependencies_outside(tmp_path):
    env = O.make_env("quick", tmp_path, progress=False)
    tasks, external = O.gather(["finetuning"], env)
    assert all(d in external for t in tasks for d in t.deps)
    assert all(e.startswith(("pretraining:", "segmentation:pretraining:")) for e in external)


def test_paper_plan_offline_counts_every_unit(tmp_path, monkeypatch):
    """15 sources x 11 targets x 120 configs x 5 folds fine-tuning units, planned without any file of the paper
    profile (no 224 px data here, no ImageNet weights, no RadImageNet checkpoint), nothing written."""
    from helpers.profiles import load_profile

    monkeypatch.delenv("RADIMAGENET_CHECKPOINT", raising=False)
    profile = load_profile("paper")
    start = time.perf_counter()
    p = O.plan(["all"], profile, tmp_path / "results")
    seconds = time.perf_counter() - start
    print(f"paper plan in {seconds:.1f} s")
    by = {s["stage"]: s for s in p["stages"]}
    ft = by["finetuning"]
    assert ft["units"] + ft["unavailable_units"] == 15 * 11 * 120 * 5
    assert ft["unavailable_units"] == 11 * 120 * 5  # RadImageNet: no checkpoint configured
    assert ft["tasks"] == 14 * 11 * 5 and ft["done"] == 0 and ft["pending"] == ft["units"]
    assert by["pretraining"]["units"] == 12 + 11  # 12 single-dataset sources, one union per target
    assert by["scoring"]["units"] + by["scoring"]["unavailable_pairs"] == 15 * 11
    assert by["segmentation"]["units"] == 80
    whats = " ".join(m["what"] for s in p["stages"] for m in s["missing_inputs"])
    assert "RadImageNet" in whats and "MedMNIST pathmnist at 224 px" in whats
    assert ft["device_hours"] > 0 and p["wall_hours"]["64"] <= p["wall_hours"]["8"] <= p["wall_hours"]["1"]
    assert p["throughput"]["source"].endswith(("training_gpu.txt", "training_cpu.txt"))
    # segmentation and representations are estimated too (from the measured rates), every task of them
    for name in ("segmentation", "representations"):
        assert by[name]["device_hours"] > 0 and by[name]["tasks_without_estimate"] == 0, by[name]
    # what the downloads weigh: an upper bound per MedMNIST file, torchvision's size for the weights
    dl = {r["what"]: r for r in p["downloads"]["rows"]}
    assert dl["MedMNIST pathmnist at 224 px"]["bytes"] == 107180 * 224 * 224 * 3 + 107180 * 8
    assert not dl["MedMNIST pathmnist at 224 px"]["exact"]
    assert "RadImageNet ResNet-18 checkpoint" in p["downloads"]["unknown"]
    if p["device"] == "CPU":  # the committed table is a CPU one: every figure says so, none says GPU
        text = O.plan_text(p)
        assert "CPU device-hours left" in text and "1 CPU device ~" in text and "1 GPU ~" not in text
        assert "--images-per-s" in text and "at most" in text
    assert not (tmp_path / "results").exists()
    # with a RadImageNet checkpoint configured, its units are planned too (the file itself is a missing input)
    profile["sources"]["radimagenet_checkpoint"] = str(tmp_path / "radimagenet.safetensors")
    p = O.plan(["finetuning"], profile, tmp_path / "results")
    assert p["stages"][0]["units"] == 15 * 11 * 120 * 5
    json.dumps(p)  # --json


def test_plan_cli_json(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "helpers.run", "finetuning", "scoring", "--profile", "quick",
                           "--plan", "--json", "--results-dir", str(tmp_path / "r")],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    p = json.loads(proc.stdout)
    assert [s["stage"] for s in p["stages"]] == ["finetuning", "scoring"]


def test_plan_gpu_what_if_beside_the_measured_figures(tmp_path):
    """--images-per-s adds a GPU what-if column and line; the measured figures stay, labelled by their device."""
    from helpers.stages import throughput

    base = O.plan(["finetuning", "segmentation"], "quick", tmp_path / "r")
    p = O.plan(["finetuning", "segmentation"], "quick", tmp_path / "r", images_per_s=2000)
    assert throughput.measured() is not None and not throughput.measured().source.startswith("assumed")
    assert p["device_hours_pending"] == pytest.approx(base["device_hours_pending"])  # measured ones unchanged
    w = p["what_if"]
    assert w["images_per_s"] == 2000 and set(w["stages"]) == {"finetuning", "segmentation"}
    assert 0 < w["device_hours_pending"] < p["device_hours_pending"]
    text = O.plan_text(p)
    assert "GPU what-if left" in text and "GPU what-if at --images-per-s 2000 (assumed, not measured" in text
    assert "1 GPU ~" in text.split("GPU what-if at")[1]


def test_throughput_table_prefers_the_gpu_one(tmp_path):
    from helpers.stages import throughput

    cpu = (PROJECT_ROOT / "benchmarks" / "results" / "training_cpu.txt").read_text()
    tp = throughput.parse_training_table(cpu, "training_cpu.txt")
    assert tp.device == "cpu" and tp.image_size == 64 and tp.solo > 0 and tp.grouped >= tp.solo
    (tmp_path / "training_cpu.txt").write_text(cpu)
    gpu = cpu.replace("# device cpu,", "# device cuda,").replace("64 px inputs", "224 px inputs")
    (tmp_path / "training_gpu.txt").write_text(gpu)
    got = throughput._measured(str(tmp_path))
    assert got.source.endswith("training_gpu.txt") and got.image_size == 224
    assert got.rate(112, grouped=False) == pytest.approx(4 * got.solo)
    with pytest.raises(ValueError, match="not a benchmarks/training.py table"):
        throughput.parse_training_table("nothing here")


# ---------------------------------------------------------------------------------------------- resume
def test_sigkill_mid_stage_then_restart_recomputes_nothing(tiny, tmp_path):
    """``python -m helpers.run finetuning`` killed with SIGKILL after some units finished: the restart skips
    every finished unit (their files are untouched), finishes the others and leaves no temp file."""
    results = tmp_path / "results"
    O.run(["pretraining"], str(tiny), results, progress=False)
    env = {**os.environ, "RESULTS_ROOT": str(results.parent), "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [sys.executable, "-m", "helpers.run", "finetuning", "--profile", str(tiny), "--results-dir",
           str(results), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    units_dir = results / "finetuning" / "units"
    deadline = time.monotonic() + 240
    while len(list(units_dir.glob("*.json"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _units(results, "finetuning")
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert 2 <= len(before) < 8, f"{len(before)} units finished before the kill"

    again = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    after = _units(results, "finetuning")
    assert len(after) == 8
    for name, (data, mtime) in before.items():
        assert after[name] == (data, mtime), f"finished unit {name} was recomputed"
    line = next(ln for ln in again.stdout.splitlines() if ln.startswith("finetuning"))
    assert line.split()[1:4] == ["8", str(len(before)), str(8 - len(before))]  # units, done, computed
    assert not _temp_files(results)
    assert (results / "ground_truth.csv").is_file()


def test_temp_files_of_a_killed_run_are_removed_under_the_lock(tmp_path):
    root = tmp_path / "r"
    stale = [root / "finetuning" / "units" / ".abc.json.x1y2.tmp", root / "scoring" / "work" / "k" / ".features.tmp.npy",
             root / ".scores.csv.q.tmp"]
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("partial")
    keep = root / "finetuning" / "units" / "abc.json"
    keep.write_text("{}")
    with base.results_lock(root):
        with pytest.raises(base.ResultsBusy, match="another run"):
            with base.results_lock(root):
                pass
        removed = base.clean_temp_files(root, ["finetuning", "scoring"])
    assert sorted(removed) == sorted(stale) and keep.is_file()


def test_chapter_functions_only_read_complete_results(tiny, tmp_path, monkeypatch):
    """With every unit stored, the stage functions the chapters call build no model and compute nothing."""
    from helpers import models as M
    from helpers.stages import finetuning, pretraining, scoring

    results = tmp_path / "results"
    report = O.run(["all"], str(tiny), results, progress=False)
    assert report.counts["finetuning"].computed == 8 and report.counts["scoring"].computed == 2
    tables = {str(p): Path(p).read_text() for p in report.tables.values()}

    def boom(*a, **k):
        raise AssertionError("a model was built on complete results")

    monkeypatch.setattr(M, "build_model", boom)
    monkeypatch.setattr(M, "load_source", boom)
    pre = pretraining.run_pretraining(str(tiny), results_dir=results, progress=False)
    runs, unavailable = finetuning.run_finetuning(str(tiny), results_dir=results, progress=False)
    scores = scoring.run_scoring(str(tiny), results_dir=results, progress=False)
    assert len(pre) == 1 and len(runs) == 8 and set(unavailable["source"]) == {"radimagenet"}
    assert set(scores["source"]) == {"random", "pneumoniamnist", "radimagenet"}
    for path, text in tables.items():  # the same tables, written again from the same units
        if path.endswith(("scores.csv", "finetuning.csv", "pretraining.csv")):
            a, b = pd.read_csv(path), pd.read_csv(io.StringIO(text))
            if path.endswith("scores.csv"):  # set-level rows add the time of their combination, re-measured
                a, b = a.drop(columns="seconds"), b.drop(columns="seconds")
            pd.testing.assert_frame_equal(a, b)


# ---------------------------------------------------------------------------------------------- Ray
def test_a_task_runs_with_its_own_threads_on_either_engine_unless_pinned(tmp_path, monkeypatch):
    """What a Ray worker runs and what the local engine runs (both called here in process): as many torch
    threads as the task's ``num_cpus``, whatever torch's setting (on Ray: the OMP_NUM_THREADS of whichever task
    started the reused worker); ``env.threads`` overrides it; torch's setting is restored afterwards. The count
    comes back with the outcome and is stored with the unit."""
    import torch

    from helpers.engines import common
    from helpers.engines.ray import _remote_body
    from helpers.stages.base import Env, Task

    class Probe:
        @staticmethod
        def run_task(task, env):
            return [{"threads_seen": torch.get_num_threads()} for _ in task.configs]

    monkeypatch.setattr(common, "module_for", lambda task: Probe)
    task = Task("probe", "probe:one", ({"unit": 1},), resources={"num_cpus": 2})
    assert task.threads == 2 and Task("p", "p:x").threads == 1  # nothing declared: one CPU, one thread
    env = Env(tmp_path, {"name": "t"})
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        status, outcome = _remote_body(task, env)
        assert status == "ok" and outcome.threads == 2 and outcome.rows == [{"threads_seen": 2}]
        _, pinned = _remote_body(task, Env(tmp_path, {"name": "t"}, threads=1))
        assert pinned.threads == 1 and pinned.rows == [{"threads_seen": 1}]
        with pytest.raises(ValueError, match="positive"):  # a bad count is an error, not the default
            common.execute(task, Env(tmp_path, {"name": "t"}, threads=0))
        local = common.execute(task, env)
        assert local.threads == 2 and local.rows == [{"threads_seen": 2}]
        assert torch.get_num_threads() == 1  # torch's setting, restored
    finally:
        torch.set_num_threads(before)
    from helpers.runner import Stage

    stage = Stage("probe", tmp_path)
    stage.store({"unit": 1}, outcome.rows[0], 0.1, threads=outcome.threads)
    assert stage.collect()["unit_threads"].tolist() == [2]


def test_ray_reserves_what_a_task_declares_within_the_largest_node():
    from helpers.engines.ray import _options
    from helpers.stages.base import Task

    task = Task("probe", "probe:one", ({"unit": 1},), resources={"num_cpus": 2, "num_gpus": 0.5})
    assert _options(task, True, 3, node_cpus=16) == {"num_cpus": 2.0, "num_gpus": 0.5, "max_retries": 3,
                                                      "retry_exceptions": False, "num_returns": 2}
    small = _options(task, False, 3, node_cpus=1)  # a 1-CPU node can still run it (with the task's 2 threads)
    assert small["num_cpus"] == 1.0 and "num_gpus" not in small


def test_every_task_declares_the_two_threads_the_book_was_made_with(tmp_path):
    """CPU results depend on the thread count and every unit of the book's tables ran with 2 (``unit_threads``):
    each task of the quick and paper profiles declares 2 CPUs, hence runs with 2 threads on either engine."""
    for profile in ("quick", "paper"):
        env = O.make_env(profile, tmp_path / profile, progress=False)
        tasks, _ = O.gather(O.expand(["all"]), env)
        assert {t.threads for t in tasks} == {2}, profile
        assert {env.task_threads(t) for t in tasks} == {2}
        assert {O.make_env(profile, tmp_path, threads=3).task_threads(t) for t in tasks[:5]} == {3}


def test_ray_engine_gives_the_serial_results_and_resumes_across_engines(tiny, tmp_path):
    """Without any thread setting, the local Ray cluster (2 CPUs) gives exactly the tables of the local engine
    (each task runs with the threads it declares on both); a run started on one engine is finished on the other
    without recomputing a unit, either way round."""
    import ray  # noqa: F401  (a dependency: requirements.txt; missing it is a failure, not a skip)

    serial, distributed, back = tmp_path / "serial", tmp_path / "ray", tmp_path / "back"
    local = O.run(["all"], str(tiny), serial, progress=False)
    # pretraining locally, then the rest on Ray: the same keys, nothing recomputed
    O.run(["pretraining"], str(tiny), distributed, progress=False)
    before = _units(distributed, "pretraining")
    remote = O.run(["all"], str(tiny), distributed, engine="ray", progress=False, num_cpus=2)
    assert remote.counts["pretraining"].done_before == 1 and remote.counts["pretraining"].computed == 0
    assert remote.counts["finetuning"].computed == 8 and remote.counts["scoring"].computed == 2
    assert _units(distributed, "pretraining") == before
    assert sorted(_units(distributed, "finetuning")) == sorted(_units(serial, "finetuning"))

    gt_local = pd.read_csv(serial / "ground_truth.csv", index_col=0)
    gt_ray = pd.read_csv(distributed / "ground_truth.csv", index_col=0)
    pd.testing.assert_frame_equal(gt_local, gt_ray)
    runs_local = pd.read_csv(serial / "finetuning.csv").set_index("key").sort_index()
    runs_ray = pd.read_csv(distributed / "finetuning.csv").set_index("key").sort_index()
    assert set(runs_local["unit_threads"]) == set(runs_ray["unit_threads"]) == {2}
    for col in ("best_epoch", "val_auc", "test_auc", "val_loss", "test_loss"):
        np.testing.assert_array_equal(runs_local[col].to_numpy(), runs_ray[col].to_numpy(), err_msg=col)
    pre_local = pd.read_csv(serial / "pretraining.csv").set_index("key")
    pre_ray = pd.read_csv(distributed / "pretraining.csv").set_index("key")
    np.testing.assert_array_equal(pre_local["val_loss"].to_numpy(), pre_ray["val_loss"].to_numpy())
    s_local = pd.read_csv(serial / "scores.csv").drop(columns="seconds")
    s_ray = pd.read_csv(distributed / "scores.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(s_local, s_ray, rtol=1e-6)
    assert local.counts["finetuning"].computed == 8
    # and back: the local engine finds every unit done
    again = O.run(["all"], str(tiny), distributed, progress=False)
    assert sum(c.computed for c in again.counts.values()) == 0
    assert not _temp_files(distributed)
    # the other way round: pretraining on Ray, the rest locally, the same pretraining unit as the local run's
    O.run(["pretraining"], str(tiny), back, engine="ray", progress=False, num_cpus=2)
    rest = O.run(["all"], str(tiny), back, progress=False)
    assert rest.counts["pretraining"].done_before == 1 and rest.counts["finetuning"].computed == 8
    runs_back = pd.read_csv(back / "finetuning.csv").set_index("key").sort_index()
    np.testing.assert_array_equal(runs_local["test_auc"].to_numpy(), runs_back["test_auc"].to_numpy())


def test_side_by_side_fine_tuning_runs_on_ray_with_room_for_that_many_tasks(monkeypatch):
    """``finetuning.side_by_side`` is how many fine-tuning tasks the chapter starts at once: the local engine for
    one; for more, a local Ray cluster told that many times a task's CPUs (each task keeps its own threads, so the
    tables stay those of one at a time: test_ray_engine_gives_the_serial_results...). Without ray: the local
    engine, with a warning that says why."""
    import sys

    from helpers.profiles import load_profile
    from helpers.stages import finetuning as F
    from helpers.stages import launch

    paper, quick = load_profile("paper"), load_profile("quick")
    assert paper["finetuning"]["side_by_side"] == 1
    assert launch.side_by_side_engine("paper", "finetuning", 2) == ("local", {})  # a name is loaded
    assert quick["finetuning"]["side_by_side"] == 2
    engine, options = launch.side_by_side_engine(quick, "finetuning", F.RESOURCES["num_cpus"])
    assert engine == "ray" and options["num_cpus"] == 2 * F.RESOURCES["num_cpus"] == 4
    assert options["init_kwargs"]["log_to_driver"] is False  # no worker chatter in the chapter's output
    # the segmentation bank's tasks: their own key, the same rule
    assert paper["segmentation"].get("side_by_side", 1) == 1 and quick["segmentation"]["side_by_side"] == 2
    assert launch.side_by_side_engine(quick, "segmentation", 3)[1]["num_cpus"] == 6  # 2 tasks x 3 CPUs
    assert launch.side_by_side_engine(paper, "segmentation", 2) == ("local", {})
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the ray extra were not installed
    with pytest.warns(UserWarning, match="finetuning.side_by_side: 2 needs ray"):
        assert launch.side_by_side_engine(quick, "finetuning", 2) == ("local", {})


def test_a_failed_task_blocks_its_dependants_and_the_rest_goes_on(tiny, tmp_path, monkeypatch):
    from helpers.stages import finetuning, pretraining

    results = tmp_path / "results"

    def broken(*a, **k):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(pretraining, "pretrain_unit", broken)
    with pytest.raises(RuntimeError, match="simulated"):  # the library call fails loudly by default
        O.run(["pretraining"], str(tiny), results, progress=False)
    report = O.run(["pretraining", "finetuning"], str(tiny), results, progress=False, keep_going=True)
    assert report.counts["pretraining"].failed == 1
    assert report.counts["finetuning"].blocked == 4 and report.counts["finetuning"].computed == 4
    runs, unavailable = finetuning.results(O.make_env(str(tiny), results).profile,
                                           O.make_env(str(tiny), results))
    assert set(runs["source"]) == {"random"}
    why = unavailable.set_index("source")["reason"]
    assert why.loc["pneumoniamnist"].str.startswith("blocked: pretraining:pneumoniamnist").all()
    monkeypatch.undo()
    again = O.run(["pretraining", "finetuning"], str(tiny), results, progress=False)
    assert again.counts["pretraining"].computed == 1 and again.counts["finetuning"].computed == 4
    assert again.counts["finetuning"].done_before == 4
    assert not list((results / "finetuning" / "problems").glob("*.json"))  # cleared once the task finished


def test_segmentation_and_representations_estimates_follow_the_measured_rate():
    """A U-Net unit costs UNET_COST ResNet-18 steps per image on its set's sizes; a ResNet-50 fine-tuning run its
    multiply-adds ratio; a predictions unit nothing; an unknown set no estimate."""
    from helpers.stages import throughput as T

    tp = T.measured()
    rate = tp.rate(128, grouped=False)
    sizes = {"kvasir_seg": (700, 100, 200)}
    recipe = {"epochs": 3, "max_train_images": 50, "max_val_images": None, "max_test_images": None}
    ft = {"stage": "segmentation_finetuning", "target": "kvasir_seg", "image_size": 128, "recipe": recipe}
    images = 50 * 3 + T.EVAL_COST * (100 * 3 + 200)
    assert T.segmentation_seconds(ft, sizes) == pytest.approx(T.UNET_COST * images / rate)
    sc = {"stage": "segmentation_scoring", "target": "kvasir_seg", "image_size": 128, "max_images": 200}
    assert T.segmentation_seconds(sc, sizes) == pytest.approx(T.UNET_COST * T.EVAL_COST * 200 / rate)
    assert T.segmentation_seconds({**ft, "target": "elsewhere"}, sizes) is None
    rep = {"unit": "finetune", "arch": "resnet50", "target": "breastmnist", "image_size": 224,
           "data": {"n_folds": 5, "val_fraction": 0.2}, "recipe": {"epochs": 2}}
    r18 = T.representations_seconds({**rep, "arch": "resnet18"}, {})
    assert T.representations_seconds(rep, {}) == pytest.approx(r18 * 4.089 / 1.814)
    assert T.representations_seconds({"unit": "predictions"}, {}) == 0.0


def test_run_cli_names_the_stage_to_run_first(tiny, tmp_path):
    """Fine-tuning on a fresh results folder: the units of a pretrained source wait for pretraining, and the
    command says which command to run first."""
    proc = subprocess.run([sys.executable, "-m", "helpers.run", "finetuning", "--profile", str(tiny),
                           "--results-dir", str(tmp_path / "r"), "--no-progress", "--threads", "1"],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"run first: python -m helpers.run pretraining --profile {tiny}" in proc.stdout, proc.stdout[-2000:]


def test_self_source_false_leaves_the_targets_own_flag_out_of_the_sweep():
    from helpers.stages import finetuning as F

    profile = load_profile("quick")
    srcs, tgts = ["random", "breastmnist", "pneumoniamnist"], ["breastmnist", "pneumoniamnist"]
    keys = {(s, t): "k" for s in srcs for t in tgts}
    assert profile["finetuning"]["self_source"] is False
    pairs = {(c["source"], c["target"]) for c in F.finetuning_configs(profile, srcs, tgts, source_keys=keys)}
    assert pairs == {("random", "breastmnist"), ("pneumoniamnist", "breastmnist"), ("random", "pneumoniamnist"),
                     ("breastmnist", "pneumoniamnist")}
    profile["finetuning"]["self_source"] = True  # [D]'s sweep (the default) fine-tunes the diagonal too
    assert len({(c["source"], c["target"]) for c in F.finetuning_configs(profile, srcs, tgts, source_keys=keys)}) == 6
