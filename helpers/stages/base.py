"""What a stage module provides and what an engine schedules.

A *unit* is one config (a JSON dict) whose result rows are stored once under ``runner.config_key(config)`` by
:class:`helpers.runner.Stage` (atomic JSON per unit, a private work folder). A :class:`Task` is what an engine
schedules: one or more units computed together on one worker (the configs of one fine-tuning group, one
pretraining run, one scoring pair), the ids of the tasks that must finish first and the resources it needs.

A stage module (``helpers/stages/<name>.py``, listed in :data:`helpers.stages.REGISTRY`) provides

``NAME``
    the name on the command line; every task id starts with ``"<NAME>:"``.
``tasks(profile, env) -> list[Task]``
    the units and their dependencies, *without computing anything and without reading the outputs of other
    stages*: configs name what they depend on by the key of the unit that produces it (e.g. ``source_key``,
    the pretraining unit's key), never by a file's content, so the whole graph of the paper profile is planned
    offline in seconds and the same configs give the same keys on every engine.
``run_task(task, env) -> list``
    run in a worker: computes ``task.configs`` (only the pending ones are passed) and returns, per config, its
    result row (a dict) or rows (a list of dicts). Raises :class:`helpers.models.SourceUnavailable` when an
    input cannot be had here (recorded as *unavailable*, not as a failure).
``finalize(profile, env) -> dict``
    on the driver, after the tasks: writes the stage's tidy tables from the stored units (and only reads
    them); returns ``{table name: path}``.
``missing_inputs(profile, env) -> list[dict]``
    the inputs that are not here, as rows ``{"what", "path", "how"}`` (how to get each); offline, no download.

and optionally ``pending(task, env) -> list[dict]`` (default: the configs without a stored unit) when a unit
also needs a file to count as done (a pretraining checkpoint).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..paths import results_root
from ..profiles import load_profile
from ..runner import Stage, atomic_write_text, config_key


@dataclass(frozen=True)
class Task:
    """One schedulable piece of work: ``configs`` computed together by the stage module that owns ``id``."""

    stage: str                       # the runner.Stage (storage folder) its units are stored in
    id: str                          # "<module NAME>:<readable name>", unique in a plan
    configs: tuple = ()              # the units it computes, each stored once under config_key(config)
    deps: tuple = ()                 # ids of tasks that must finish first
    resources: dict = field(default_factory=dict)  # {"num_cpus": 2, "num_gpus": 0.5}; Ray reserves them
    estimate_s: float | None = None  # seconds on the reference device (see helpers.stages.planning)

    @property
    def module(self) -> str:
        return self.id.split(":", 1)[0]

    @property
    def threads(self) -> int:
        """The torch intra-op threads the task runs with on any engine: the CPUs it declares
        (``resources["num_cpus"]``, at least 1). CPU results depend on the count, so it belongs to the task, not
        to the engine or the machine that runs it; each unit records it (``unit_threads``)."""
        return max(1, int((self.resources or {}).get("num_cpus", 1)))

    def keys(self) -> list[str]:
        return [config_key(c) for c in self.configs]


@dataclass
class Env:
    """Where and how tasks run: the results folder, the data root, the device, the profile and options.

    ``device`` is the profile's setting (``auto``: CUDA when the worker has one); ``options`` are per-call knobs
    of a stage (``sources``/``targets`` subsets, ``group_size``). ``cache`` holds loaded data sets for the
    tasks of one process; it is never sent to a worker."""

    results_dir: Path
    profile: dict
    data_root: str | None = None
    device: str | None = None
    progress: bool = True
    options: dict = field(default_factory=dict)
    threads: int | None = None  # torch threads for every task (None: each task's own, Task.threads)
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        self.results_dir = Path(self.results_dir).resolve()
        if self.data_root is not None:
            self.data_root = str(Path(self.data_root).expanduser().resolve())

    def __getstate__(self):
        state = dict(self.__dict__)
        state["cache"] = {}
        return state

    def fresh(self) -> "Env":
        """The same environment with an empty cache (for a worker)."""
        return dataclasses.replace(self, cache={})

    def task_threads(self, task: Task) -> int:
        """The torch threads ``task`` runs with: ``threads`` when set (``--threads``, an explicit override),
        else the task's own count (:attr:`Task.threads`)."""
        return self.threads if self.threads is not None else task.threads

    def resolved_device(self) -> str:
        want = str(self.device or self.profile.get("device", "auto"))
        if want != "auto":
            return want
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def storage(self, stage: str) -> Stage:
        return Stage(stage, self.results_dir)

    def workdir(self, stage: str, config: dict) -> Path:
        """The private work folder of a unit (created), as :meth:`helpers.runner.Stage.run` gives it."""
        path = self.storage(stage).workdir(config_key(config))
        path.mkdir(parents=True, exist_ok=True)
        return path


def make_env(profile, results_dir=None, data_root=None, device=None, progress: bool = True,
             options: dict | None = None, threads: int | None = None) -> Env:
    """The :class:`Env` of a run: ``profile`` is a name, a path or a loaded profile; results default to
    ``results/<profile>/`` (``$RESULTS_ROOT`` honoured); ``threads``: torch threads for every task, overriding
    the count each task declares (None: the task's own, see :meth:`Env.task_threads`)."""
    if not isinstance(profile, dict):
        profile = load_profile(profile)
    return Env(Path(results_dir) if results_dir is not None else results_root(profile["name"]), profile,
               data_root, device, progress, dict(options or {}), threads)


def pending_configs(module, task: Task, env: Env) -> list[dict]:
    """The configs of ``task`` still to compute: the module's ``pending`` when it has one, else the configs
    without a stored unit."""
    if hasattr(module, "pending"):
        return module.pending(task, env)
    return env.storage(task.stage).pending(task.configs)


# ----------------------------------------------------------------------------------------------------------
# problems: why a task did not finish (unavailable input, blocked by a dependency, failure), kept beside the
# units so that finalize can say why a pair has no result without trying again


def _problem_path(env: Env, task: Task) -> Path:
    return env.results_dir / task.stage / "problems" / f"{config_key({'task': task.id})}.json"


def record_problem(env: Env, task: Task, kind: str, reason: str) -> None:
    atomic_write_text(_problem_path(env, task), json.dumps({"task": task.id, "kind": kind, "reason": reason,
                                                            "time": time.strftime("%Y-%m-%dT%H:%M:%S")}))


def clear_problem(env: Env, task: Task) -> None:
    _problem_path(env, task).unlink(missing_ok=True)


def read_problems(env: Env, stage: str) -> dict[str, dict]:
    """``{task id: {"kind", "reason", ...}}`` of the tasks of ``stage`` whose last attempt did not finish."""
    folder = env.results_dir / stage / "problems"
    out = {}
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            rec = json.loads(p.read_text())
        except json.JSONDecodeError:
            continue
        out[rec["task"]] = rec
    return out


def problem_reason(record: dict) -> str:
    """A problem's reason in one line: the reason of an unavailable input, the last line of a failure."""
    reason = record.get("reason", "").strip()
    if record.get("kind") == "unavailable":
        return reason
    last = reason.splitlines()[-1] if reason else ""
    return f"{record.get('kind', 'failed')}: {last}"


def clean_temp_files(root: Path, folders=None) -> list[Path]:
    """Remove temp files a killed run left (``*.tmp``, ``.*.tmp.npy``) under ``root`` (only in ``folders``
    and ``root`` itself when given). Only call it while holding :func:`results_lock`."""
    root = Path(root)
    removed = []
    places = [root] if folders is None else [root / f for f in folders]
    for place in places:
        if not place.is_dir():
            continue
        for p in place.rglob("*.tmp*"):
            if p.is_file() and (p.name.endswith(".tmp") or ".tmp." in p.name):
                p.unlink(missing_ok=True)
                removed.append(p)
    if folders is not None and root.is_dir():
        for p in root.glob(".*.tmp"):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


class ResultsBusy(RuntimeError):
    """Another process holds the lock of this results folder."""


class results_lock:
    """An exclusive lock on ``<results>/.lock`` (``fcntl.flock``; released by the kernel when the holder dies,
    even by SIGKILL), so that the stale temp files of a killed run can be removed safely."""

    def __init__(self, results_dir: Path):
        self.path = Path(results_dir) / ".lock"
        self.fd = None

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise ResultsBusy(f"another run is using {self.path.parent} (it holds {self.path}); wait for it or "
                              "point this one at another results folder (RESULTS_ROOT)") from None
        return self

    def __exit__(self, *exc):
        import fcntl

        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
        return False
