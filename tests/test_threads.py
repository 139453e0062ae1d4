"""helpers.threads: passive OpenMP waiting when helpers is imported first, capped threads when torch came first,
and HELPERS_THREADS=off. Each case runs in a fresh interpreter so that the import order is real (not timed:
benchmarks/contention.py measures the speed)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# In the child: the state helpers decided, what libgomp itself read (OMP_DISPLAY_ENV=VERBOSE prints its spin count
# on stderr when torch loads it), and the torch thread counts seen inside a metric run by the scoring kernel
# (which applies the thread policy; the metric functions carry none) and a training step while
# idle_cores() reports a busy machine (1 idle core).
PROBE = """
import json, os, sys
{imports}
from helpers import threads
from helpers.metrics import pairwise
from helpers.scoring import call_metric
from helpers.trainer import Run, RunConfig

torch.set_num_threads(2)
threads.idle_cores = lambda: 1          # as on a machine whose other processes keep every core but one busy
seen = {{}}
prepare = pairwise.prepare
def spy(*a, **k):
    seen["metric"] = torch.get_num_threads()
    return prepare(*a, **k)
pairwise.prepare = spy
g = torch.Generator().manual_seed(0)
call_metric("logme", {{"features": torch.randn(40, 8, generator=g)}}, torch.arange(40) % 2)  # the kernel's call

class Probe(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 2)
    def forward(self, x):
        seen["step"] = torch.get_num_threads()
        return self.fc(x)

run = Run(Probe(), RunConfig(epochs=1, scheduler=None), "binary-class", "cpu")
run.start_epoch()
run.step(torch.randn(8, 4, generator=g), torch.arange(8) % 2)
print(json.dumps({{"status": threads.status(), "env": os.environ.get("OMP_WAIT_POLICY"), "seen": seen,
                   "after": torch.get_num_threads()}}))
"""
ORDERS = {"helpers_first": "import helpers\nimport torch", "torch_first": "import torch\nimport helpers"}


def probe(order: str, **env_changes) -> tuple[dict, int | None]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "HELPERS_THREADS")}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]), OMP_DISPLAY_ENV="VERBOSE",
               **env_changes)
    out = subprocess.run([sys.executable, "-c", PROBE.format(imports=ORDERS[order])], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    spin = re.search(r"GOMP_SPINCOUNT = '(\d+)'", out.stderr)  # None where torch's OpenMP is not GNU libgomp
    return json.loads(out.stdout.strip().splitlines()[-1]), (int(spin.group(1)) if spin else None)


def test_helpers_first_makes_torch_wait_passively():
    res, spin = probe("helpers_first")
    assert res["env"] == "PASSIVE"
    assert res["status"] == {"enabled": True, "torch_first": False, "passive": True, "capping": False}
    if spin is not None:
        assert spin == 0, "libgomp was loaded with a spinning wait policy"
    assert res["seen"] == {"metric": 2, "step": 2}  # passive threads: torch's thread count is left alone


def test_torch_first_caps_threads_in_metrics_and_training_steps():
    res, spin = probe("torch_first")
    assert res["status"] == {"enabled": True, "torch_first": True, "passive": False, "capping": True}
    if spin is not None:
        assert spin > 0  # what the cap is for: too late to make libgomp passive
    assert res["seen"] == {"metric": 1, "step": 1}
    assert res["after"] == 2  # torch's setting restored after each call


@pytest.fixture
def fresh_state(monkeypatch):
    """helpers.threads as configure() leaves it, restored afterwards (the in-process tests call configure())."""
    from helpers import threads

    for var in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "HELPERS_THREADS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(threads, "_state", dict(threads._state))
    return threads


@pytest.mark.parametrize("torch_loaded", [False, True])
def test_users_own_wait_policy_is_kept(fresh_state, monkeypatch, torch_loaded):
    threads = fresh_state
    if not torch_loaded:
        monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    threads.configure()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    assert threads.status()["capping"] is True  # spinning threads, by the user's choice: capped calls
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    threads.configure()
    assert threads.status()["passive"] is True and threads.status()["capping"] is False


@pytest.fixture
def capping_one_idle_core(fresh_state, monkeypatch):
    """helpers.threads with spinning OpenMP threads (capping on) and one idle core; torch's count restored."""
    import torch

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    fresh_state.configure()
    monkeypatch.setattr(fresh_state, "idle_cores", lambda: 1)
    before = torch.get_num_threads()
    yield fresh_state
    torch.set_num_threads(before)


def test_fair_threads_caps_and_restores(capping_one_idle_core):
    import torch

    threads = capping_one_idle_core
    torch.set_num_threads(2)
    with threads.fair_threads():
        assert torch.get_num_threads() == 1
        with threads.fair_threads():  # nested calls (a metric calling another) keep the cap
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), threads.fair_threads():
        raise RuntimeError("restored on errors too")
    assert torch.get_num_threads() == 2


def test_task_threads_pins_the_count_and_fair_threads_leaves_it(capping_one_idle_core):
    """A pinned count (what the engines run each task under) is not capped by the machine's load: CPU results
    depend on the thread count, so a load-dependent count would make them depend on the load."""
    import torch

    threads = capping_one_idle_core
    torch.set_num_threads(1)
    with threads.task_threads(2) as n:
        assert n == 2 and torch.get_num_threads() == 2
        with threads.fair_threads():
            assert torch.get_num_threads() == 2  # pinned: not capped at the one idle core
    assert torch.get_num_threads() == 1
    with threads.task_threads(None) as n:  # None: torch's setting, as it is
        assert n == 1 and torch.get_num_threads() == 1
    torch.set_num_threads(2)
    with threads.fair_threads():  # unpinned again: capped as before
        assert torch.get_num_threads() == 1
    with pytest.raises(ValueError, match="positive"), threads.task_threads(0):
        pass
    with pytest.raises(RuntimeError), threads.task_threads(1):
        raise RuntimeError("restored on errors too")
    assert torch.get_num_threads() == 2 and threads.status()["capping"] is True


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_helpers_threads_off_leaves_openmp_and_threads_alone(order):
    res, spin = probe(order, HELPERS_THREADS="off")
    assert res["env"] is None
    assert res["status"] == {"enabled": False, "torch_first": order == "torch_first", "passive": False,
                             "capping": False}
    if spin is not None:
        assert spin > 0
    assert res["seen"] == {"metric": 2, "step": 2}


def test_idle_cores_counts_this_process_cores():
    from helpers import threads

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = threads.idle_cores()
    assert isinstance(n, int) and 1 <= n <= usable
