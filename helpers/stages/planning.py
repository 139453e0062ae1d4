"""``--plan``: what a run of some stages would do, without computing or downloading anything.

Per stage: tasks and units, done and pending, the pairs nothing here can make, the missing inputs with how to
get each, and an estimate of device hours from measured throughput (:mod:`helpers.stages.throughput`; the
source table and the assumptions are part of the plan). Wall-clock estimates for 1, 8 and 64 GPUs are lower
bounds: the total divided by the number of GPUs (perfect packing), and never below the longest chain of
dependent tasks.
"""
from __future__ import annotations

import time

from . import stage_module, throughput
from .base import Env, pending_configs

GPU_COUNTS = (1, 8, 64)


def make_plan(names: list[str], env: Env) -> dict:
    start = time.perf_counter()
    tp = throughput.measured()
    stages, all_tasks, pending_s = [], {}, {}
    for name in names:
        module = stage_module(name)
        if hasattr(module, "plan"):
            tasks, unavailable = module.plan(env.profile, env)
            if isinstance(unavailable, dict):
                unavailable = [r for rows in unavailable.values() for r in rows]
        else:
            tasks, unavailable = module.tasks(env.profile, env), []
        units = done = pending_tasks = 0
        est_all = est_pending = 0.0
        unestimated = 0
        for t in tasks:
            left = len(pending_configs(module, t, env))
            units += len(t.configs)
            done += len(t.configs) - left
            pending_tasks += bool(left)
            if t.estimate_s is None:
                unestimated += 1
                share = 0.0
            else:
                est_all += t.estimate_s
                share = t.estimate_s * left / max(1, len(t.configs))
                est_pending += share
            all_tasks[t.id] = t
            pending_s[t.id] = share
        stages.append({
            "stage": name, "tasks": len(tasks), "units": units, "done": done, "pending": units - done,
            "pending_tasks": pending_tasks, "unavailable_pairs": len(unavailable),
            "unavailable_units": sum(int(r.get("units", 1)) for r in unavailable),
            "unavailable_reasons": sorted({r["reason"] for r in unavailable})[:5],
            "gpu_hours": est_all / 3600 if tasks and unestimated < len(tasks) else None,
            "gpu_hours_pending": est_pending / 3600 if tasks and unestimated < len(tasks) else None,
            "tasks_without_estimate": unestimated,
            "missing_inputs": module.missing_inputs(env.profile, env)})
    total_pending = sum(pending_s.values()) / 3600
    critical = _longest_chain(all_tasks, pending_s) / 3600
    wall = {str(n): max(total_pending / n, critical) for n in GPU_COUNTS}
    return {"profile": env.profile["name"], "results_dir": str(env.results_dir), "stages": stages,
            "throughput": None if tp is None else {"source": tp.source, "description": tp.describe(),
                                                   "device": tp.device, "image_size": tp.image_size,
                                                   "images_per_s_one_run": tp.solo,
                                                   "images_per_s_grouped": tp.grouped,
                                                   "grouped_runs": tp.grouped_runs},
            "assumptions": _assumptions(),
            "gpu_hours_pending": total_pending, "critical_path_hours": critical, "wall_hours": wall,
            "plan_seconds": time.perf_counter() - start}


def _assumptions() -> list[str]:
    doc = throughput.__doc__.split("assumptions, stated with every estimate:")[1]
    items = [" ".join(x.split()) for x in doc.split("\n* ")[1:]]
    return [i.rstrip(".;") for i in items] + [
        "wall-clock = pending device-hours / GPUs (perfect packing of fractional-GPU tasks), never below the "
        "longest chain of dependent tasks"]


def _longest_chain(tasks: dict, seconds: dict) -> float:
    memo: dict = {}

    def length(tid: str, depth: int = 0) -> float:
        if tid in memo:
            return memo[tid]
        if depth > 100:
            raise ValueError(f"dependency chain too deep at {tid}")
        t = tasks[tid]
        memo[tid] = seconds.get(tid, 0.0) + max([length(d, depth + 1) for d in t.deps if d in tasks] or [0.0])
        return memo[tid]

    return max([length(t) for t in tasks] or [0.0])


def _h(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.1f}" if value >= 0.1 else f"{value:.3f}"


def format_plan(p: dict) -> str:
    lines = [f"plan of profile {p['profile']!r}, results in {p['results_dir']}",
             f"{'stage':<15}{'tasks':>8}{'units':>10}{'done':>10}{'pending':>10}{'unavail.':>10}"
             f"{'dev-h all':>12}{'dev-h left':>12}",
             "  (units: planned here; unavail.: units of the pairs nothing here can make; dev-h: device-hours)"]
    for s in p["stages"]:
        lines.append(f"{s['stage']:<15}{s['tasks']:>8,}{s['units']:>10,}{s['done']:>10,}{s['pending']:>10,}"
                     f"{s['unavailable_units']:>10,}{_h(s['gpu_hours']):>12}{_h(s['gpu_hours_pending']):>12}")
    for s in p["stages"]:
        if s["tasks_without_estimate"]:
            lines.append(f"  {s['stage']}: {s['tasks_without_estimate']} tasks without an estimate (no throughput "
                         "measured for them)")
        for reason in s["unavailable_reasons"]:
            lines.append(f"  {s['stage']}: unavailable pairs: {reason}")
    missing = [(s["stage"], m) for s in p["stages"] for m in s["missing_inputs"]]
    lines.append("missing inputs:" if missing else "missing inputs: none")
    seen = set()
    for stage, m in missing:
        if (m["what"], m["path"]) in seen:
            continue
        seen.add((m["what"], m["path"]))
        lines.append(f"  - {m['what']}: {m['path']}\n      how: {m['how']}")
    tp = p["throughput"]
    if tp is None:
        lines.append("estimate: no throughput table under benchmarks/results/ (run benchmarks/training.py)")
    else:
        lines.append(f"throughput: {tp['description']}")
        lines.append("assumptions: " + "; ".join(p["assumptions"]))
        lines.append(f"device-hours left: {_h(p['gpu_hours_pending'])}; longest chain of dependent tasks "
                     f"{_h(p['critical_path_hours'])} h")
        lines.append("wall-clock (lower bound, on devices like the measured one): " + ", ".join(
            f"{n} GPU{'s' if n != '1' else ''} ~ {_h(h)} h" for n, h in p["wall_hours"].items()))
    lines.append(f"planned in {p['plan_seconds']:.1f} s")
    return "\n".join(lines)
