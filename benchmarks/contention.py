"""Speed on a shared CPU: the pairwise metrics of one case and a training step, idle and beside busy processes.

    python benchmarks/contention.py                                  # 3 repeats, both workloads, 4 configurations
    python benchmarks/contention.py --repeats 5 --save benchmarks/results/contention_cpu.txt

Each measurement runs in a fresh Python process, so that the import order is real:

* configurations: imports ``helpers`` then ``torch``, or ``torch`` then ``helpers``; with the library's
  shared-CPU behaviour (:mod:`helpers.threads`) or without it (``HELPERS_THREADS=off``). ``OMP_WAIT_POLICY``,
  ``GOMP_SPINCOUNT`` and ``HELPERS_THREADS`` are removed from the environment of the measured process (so a
  user's shell settings do not hide the effect); everything else is inherited.
* workloads: ``metrics``, every registered pairwise metric that needs features or logits (``metrics.score``)
  on the real case ``resnet18_pneumonia_to_retina`` of the reference fixtures (500 x 512 features, 5 classes),
  one warm-up pass then one timed pass; ``train``, ``--steps`` SGD steps of ``helpers.trainer.Run`` on a
  ResNet-18 at 28 px, batch 64, after 2 warm-up steps.
* conditions: ``idle`` (nothing of ours beside it), ``busy`` (``--busy`` other processes on the same cores for
  the duration, killed afterwards): ``--busy-kind python`` spins a pure-Python loop (one thread each),
  ``--busy-kind torch`` a loop of small matrix products in a default torch process (its own OpenMP pool, spinning).

The table gives, per configuration and workload, the median seconds over ``--repeats`` (with the range) idle and
busy, the busy/idle ratio of the medians, and busy against the fastest idle median of that workload (on a machine
that is not idle to begin with, a configuration can look fine by its own ratio while its idle time is already
slowed down). Configurations and conditions are interleaved within each repeat,
so slow drifts of the machine's load spread over all of them. The goal on a 2-core machine beside 2 busy
processes (3 parties sharing 2 cores) is a ratio of at most 3.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {  # name: (import order, HELPERS_THREADS)
    "helpers, torch": ("helpers_first", None),
    "torch, helpers": ("torch_first", None),
    "helpers, torch; off": ("helpers_first", "off"),
    "torch, helpers; off": ("torch_first", "off"),
}
CASE = "resnet18_pneumonia_to_retina.npz"


# ------------------------------------------------------------------------------------------- measured process

def child(workload: str, order: str, steps: int) -> dict:
    if order == "helpers_first":
        import helpers  # noqa: F401
        import torch
    else:
        import torch
        import helpers  # noqa: F401
    import numpy as np

    from helpers import threads
    from helpers.paths import fixtures_root

    if workload == "metrics":
        from helpers import metrics

        case = np.load(fixtures_root() / "metrics" / CASE, allow_pickle=False)
        inputs = {"features": case["features"], "logits": case["logits"], "labels": case["labels"]}
        names = [n for n, m in metrics.REGISTRY.items()
                 if not m.set_level and m.task == "classification" and set(m.inputs) <= {"features", "logits"}]

        def work():
            for name in names:
                metrics.score(name, **inputs)
    else:
        from helpers.models import build_model
        from helpers.trainer import Run, RunConfig

        torch.manual_seed(0)
        run = Run(build_model("resnet18", 5), RunConfig(epochs=1, lr=0.01, momentum=0.9), "multi-class", "cpu")
        x, y = torch.randn(64, 3, 28, 28), torch.randint(0, 5, (64,))
        run.start_epoch()

        def work(n=steps):
            for _ in range(n):
                run.step(x, y)
            float(run.loss_sum)  # the steps are done

        work(2)  # warm-up
    if workload == "metrics":
        work()  # warm-up
    start = time.perf_counter()
    work()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "torch_threads": torch.get_num_threads(), **threads.status()}


# ------------------------------------------------------------------------------------------------- driver

BUSY_CODE = {
    "python": "print('ready', flush=True)\nwhile True: pass",
    "torch": "import torch\nx = torch.randn(192, 192)\nprint('ready', flush=True)\nwhile True: x @ x",
}


def spinners(n: int, kind: str, env: dict) -> list[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_CODE[kind]], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(n)]
    for p in procs:
        p.stdout.readline()  # started (torch imported) and spinning from now on
    return procs


def measure(workload: str, config: str, busy: int, busy_kind: str, steps: int, timeout: float) -> dict:
    order, switch = CONFIGS[config]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "HELPERS_THREADS")}
    procs = spinners(busy, busy_kind, env)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if switch:
        env["HELPERS_THREADS"] = switch
    cmd = [sys.executable, __file__, "--child", workload, "--order", order, "--steps", str(steps)]
    try:
        load = open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "?"
        try:
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"seconds": float("inf"), "load": load, "error": f"timed out after {timeout:.0f} s"}
    finally:
        for p in procs:
            p.kill()
            p.wait()
    if out.returncode != 0:
        raise RuntimeError(f"{workload} / {config} failed:\n{out.stderr[-2000:]}")
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "load": load}


def fmt(values: list[float]) -> str:
    med = statistics.median(values)
    return f"{med:8.2f} [{min(values):6.2f}-{max(values):6.2f}]"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", nargs="+", default=["metrics", "train"], choices=["metrics", "train"])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--busy", type=int, default=2, help="busy processes beside the measured one")
    ap.add_argument("--busy-kind", default="python", choices=list(BUSY_CODE), help="what the busy processes run")
    ap.add_argument("--steps", type=int, default=8, help="timed training steps")
    ap.add_argument("--timeout", type=float, default=600, help="seconds before one measurement is given up")
    ap.add_argument("--save", default=None, help="also write the table to this file")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--order", default="helpers_first", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.order, args.steps)))
        return

    lines = []

    def out(line=""):
        print(line, flush=True)
        lines.append(line)

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    out(f"# helpers on a shared CPU: {cpus} usable cores, {args.busy} busy {args.busy_kind} processes beside the "
        f"measured one; median [min-max] seconds of {args.repeats} repeats")
    out(f"# python {sys.version.split()[0]} on {platform.platform()}; started {time.strftime('%Y-%m-%d %H:%M')}")
    out(f"# metrics: all pairwise feature/logit metrics of {CASE} once; train: {args.steps} SGD steps, "
        f"ResNet-18, 28 px, batch 64")
    runs: dict[tuple, list[dict]] = {}
    for rep in range(args.repeats):
        for workload in args.workloads:
            for config in args.configs:
                for busy in (0, args.busy):
                    r = measure(workload, config, busy, args.busy_kind, args.steps, args.timeout)
                    runs.setdefault((workload, config, busy), []).append(r)
                    print(f"#   repeat {rep + 1}: {workload:<8} {config:<20} {'busy' if busy else 'idle'} "
                          f"{r['seconds']:8.2f} s  (1-min load before {r['load']}; threads {r.get('torch_threads')}, "
                          f"passive {r.get('passive')}, capping {r.get('capping')}) {r.get('error', '')}",
                          flush=True)
    out()
    out(f"{'workload':<9}{'imports; fix':<22}{'passive':>8}{'capping':>8}{'idle s':>24}{'busy s':>24}{'ratio':>7}"
        f"{'vs best idle':>13}")
    for workload in args.workloads:
        best_idle = min(statistics.median(r["seconds"] for r in runs[(workload, c, 0)]) for c in args.configs)
        for config in args.configs:
            idle = [r["seconds"] for r in runs[(workload, config, 0)]]
            busy = [r["seconds"] for r in runs[(workload, config, args.busy)]]
            first = runs[(workload, config, 0)][0]
            out(f"{workload:<9}{config + ('' if 'off' in config else '; on'):<22}{str(first['passive']):>8}"
                f"{str(first['capping']):>8}{fmt(idle):>24}{fmt(busy):>24}"
                f"{statistics.median(busy) / statistics.median(idle):7.1f}"
                f"{statistics.median(busy) / best_idle:13.1f}")
    if args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save).write_text("\n".join(lines) + "\n")
        print(f"# written to {args.save}")


if __name__ == "__main__":
    main()
