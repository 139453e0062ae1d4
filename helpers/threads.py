"""How ``helpers`` shares a CPU with other busy processes (torch's OpenMP threads).

torch runs its CPU kernels on an OpenMP thread pool (GNU libgomp in the official wheels). By default an idle
pool thread spins for a few milliseconds before it sleeps, and a thread that reaches the end of a parallel
region spins while it waits for its team mates. On cores shared with other busy processes a team mate is
often descheduled, so the waiting threads burn the time slices it needs: on a 2-core machine beside two busy
processes the pairwise metrics of one case and a training step ran tens of times slower than on the idle
machine (``benchmarks/contention.py``; its results are in ``benchmarks/results/contention_cpu.txt``).
With ``OMP_WAIT_POLICY=PASSIVE`` waiting threads sleep instead, and the slowdown is what sharing the cores costs.
The OpenMP runtime reads that variable once, when it is loaded with torch, so ``import helpers`` does this:

* **torch not imported yet**: ``OMP_WAIT_POLICY=PASSIVE`` is put in the environment (only if the variable is
  unset: a value of yours wins). torch, imported later, and child processes then wait passively.
* **torch imported first** without that variable: the pool keeps spinning, which can no longer be changed. Work
  is then run under :func:`fair_threads` where it is run, not on each function: every metric call of the scoring
  kernel (:func:`helpers.scoring.call_metric`, which CC-FV's variants also go through) and of
  :func:`helpers.metrics.registry.score`, and the training and validation steps of :class:`helpers.trainer.Run`
  get at most as many intra-op threads as there are idle cores at the start of the call (one on a busy 2-core
  machine, torch's setting on an idle one), torch's setting restored afterwards. A metric function called
  directly, feature extraction (:func:`helpers.models.extract`) and segmentation training are not capped:
  import helpers first (or set ``OMP_WAIT_POLICY=PASSIVE``) for those.

Passive waiting has a price on an idle machine with small kernels: waking a sleeping thread for each parallel
region made 8 training steps at 28 px take about 1.5 s instead of 1.0 s when the 2-core machine was quiet. Short
spins (``GOMP_SPINCOUNT`` 300 to 30000 with the passive policy) did not pay: as slow or slower whenever other
work ran, and much slower for the metrics. On a machine of your own, ``OMP_WAIT_POLICY=ACTIVE`` (or
``HELPERS_THREADS=off``) keeps the spinning default.

``HELPERS_THREADS=off`` in the environment (before ``import helpers``) turns both off: the environment and the
thread count are left as they are. :func:`status` says which case holds.

**Thread count and results.** On a CPU, torch splits reductions (convolution gradients, batch statistics) by
thread, so the same training run gives last-bit different numbers with 1 and with 2 threads, and a few epochs
of SGD turn those into different models (a quick-profile pretraining unit: best validation loss 2.17 with 2
threads, 1.91 with 1). :func:`task_threads` pins the count for a unit of work. The count belongs to the
task, not to the engine or the machine: a task runs with as many threads as CPUs it declares
(:attr:`helpers.stages.base.Task.threads`, its ``num_cpus``; 2 for every task of the book), or with the
``threads`` of the run when one is given (``--threads``, an explicit override for every task). Both engines of
:mod:`helpers.engines` (and so the chapters, which run their stage on the local engine) run every task under
:func:`task_threads` with that count and record it with the unit's result (``unit_threads``), which is what makes
the local and Ray engines give the same tables by default. Inside it :func:`fair_threads` does not cap (a count
that followed the machine's load would make the results follow it too), and ``HELPERS_THREADS=off`` does not
change it (it concerns the waiting policy and the capping above, not the count a task's results depend on).
"""
from __future__ import annotations

import contextlib
import os
import sys

__all__ = ["ENV_SWITCH", "enabled", "status", "idle_cores", "fair_threads", "task_threads"]

ENV_SWITCH = "HELPERS_THREADS"
_OFF = {"off", "0", "false", "no"}

# decided once, when helpers is imported (configure() below, called from helpers/__init__.py)
_state = {"enabled": True, "torch_first": False, "passive": False}
_pinned = [0]  # depth of task_threads() blocks with a count: fair_threads leaves a pinned count alone


def enabled() -> bool:
    """False when ``HELPERS_THREADS=off`` was set when helpers was imported."""
    return _state["enabled"]


def _passive_env() -> bool:
    """Whether the environment asks OpenMP runtimes to sleep rather than spin while waiting."""
    return (os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"
            or os.environ.get("GOMP_SPINCOUNT", "").strip() == "0")


def configure() -> None:
    """Called once on ``import helpers``: the environment rule of the module docstring."""
    _state["enabled"] = os.environ.get(ENV_SWITCH, "").strip().lower() not in _OFF
    _state["torch_first"] = "torch" in sys.modules
    if _state["enabled"] and not _state["torch_first"]:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # torch imported before us: it read the environment as it was then, which is the environment now
    # unless someone changed it in between (not knowable; the variable is what the runtime saw in the usual case)
    _state["passive"] = _passive_env()


def status() -> dict:
    """``enabled``, ``torch_first`` (torch was imported before helpers), ``passive`` (torch's OpenMP threads
    wait passively) and ``capping`` (metric calls and training steps run under :func:`fair_threads`)."""
    return {**_state, "capping": _capping()}


def _capping() -> bool:
    return _state["enabled"] and not _state["passive"] and not _pinned[0]


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _running_threads_of_this_process() -> int:
    n = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        n += state == "R"
    return n


def idle_cores() -> int:
    """Cores of this process's CPU set not taken by other processes' running threads right now (at least 1).

    Linux: the kernel's count of running threads (``/proc/loadavg``) less this process's own, with the other
    processes' threads assumed spread evenly over all online cores. Elsewhere: every usable core.
    """
    usable = _usable_cores()
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
        others = max(0, running - _running_threads_of_this_process())
    except (OSError, ValueError, IndexError):
        return usable
    on_ours = others * usable / max(usable, os.cpu_count() or usable)
    return max(1, usable - round(on_ours))


@contextlib.contextmanager
def fair_threads():
    """Run the body with torch's intra-op threads capped at :func:`idle_cores`, where torch's OpenMP pool spins
    (torch imported before helpers without ``OMP_WAIT_POLICY=PASSIVE``, and not ``HELPERS_THREADS=off``);
    torch's setting is restored afterwards. Elsewhere it does nothing. Usable as a decorator."""
    if not _capping():
        yield
        return
    import torch

    before = torch.get_num_threads()
    n = min(before, idle_cores()) if before > 1 else before
    if n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def task_threads(n: int | None):
    """Run the body with exactly ``n`` torch intra-op threads (``None``: torch's setting as it is), restored
    afterwards; :func:`fair_threads` does not cap inside. Yields the count the body runs with."""
    import torch

    if n is None:
        yield torch.get_num_threads()
        return
    n = int(n)
    if n < 1:
        raise ValueError(f"threads must be a positive integer, got {n}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    _pinned[0] += 1
    try:
        yield n
    finally:
        _pinned[0] -= 1
        torch.set_num_threads(before)
