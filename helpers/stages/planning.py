"""``--plan``: what a run of some stages would do, without computing or downloading anything.

Per stage: tasks and units, done and pending, the pairs nothing here can make, the missing inputs with how to
get each (and what the downloads weigh), and an estimate of device-hours from measured throughput
(:mod:`helpers.stages.throughput`; the source table and the assumptions are part of the plan). The hours are
labelled by the device that was measured: *CPU device-hours* when only the CPU table exists. With
``images_per_s`` (``--images-per-s``) the same plan is also estimated at that assumed GPU rate and shown beside
the measured figures (a what-if, labelled so). Wall-clock estimates for 1, 8 and 64 devices are lower bounds: the
total divided by the number of devices (perfect packing), and never below the longest chain of dependent tasks.
"""
from __future__ import annotations

import time

from . import stage_module, throughput
from .base import Env, pending_configs

GPU_COUNTS = (1, 8, 64)


def _device_kind(tp) -> str | None:
    if tp is None:
        return None
    if tp.source.startswith("assumed"):
        return "assumed GPU"
    return "GPU" if tp.device.startswith("cuda") else "CPU"


def make_plan(names: list[str], env: Env, images_per_s: float | None = None) -> dict:
    """The plan of ``names`` on the measured throughput, and, with ``images_per_s``, the same at that assumed
    GPU rate (images/s of one ResNet-18 training run at 224 px) under ``"what_if"``."""
    start = time.perf_counter()
    if images_per_s:
        previous = list(throughput._ASSUMED)
        try:
            throughput.assume(images_per_s)
            what_if = _estimate(names, env)
        finally:
            throughput._ASSUMED[:] = previous
    p = _estimate(names, env)
    if images_per_s:
        p["what_if"] = {"images_per_s": float(images_per_s), "image_size": 224,
                        "device_hours_pending": what_if["device_hours_pending"],
                        "wall_hours": what_if["wall_hours"],
                        "stages": {s["stage"]: s["device_hours_pending"] for s in what_if["stages"]}}
    p["downloads"] = downloads(p["stages"])
    p["plan_seconds"] = time.perf_counter() - start
    return p


def downloads(stages: list[dict]) -> dict:
    """What the missing inputs weigh: ``{"rows": [{"what", "bytes", "exact"}], "known_bytes", "unknown"}``."""
    rows, seen = [], set()
    for s in stages:
        for m in s["missing_inputs"]:
            if (m["what"], m["path"]) in seen:
                continue
            seen.add((m["what"], m["path"]))
            rows.append({"what": m["what"], "bytes": m.get("bytes"), "exact": bool(m.get("bytes_exact"))})
    return {"rows": rows, "known_bytes": sum(r["bytes"] for r in rows if r["bytes"]),
            "unknown": [r["what"] for r in rows if not r["bytes"]]}


def _estimate(names: list[str], env: Env) -> dict:
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
            "device_hours": est_all / 3600 if tasks and unestimated < len(tasks) else None,
            "device_hours_pending": est_pending / 3600 if tasks and unestimated < len(tasks) else None,
            "tasks_without_estimate": unestimated,
            "missing_inputs": module.missing_inputs(env.profile, env)})
    total_pending = sum(pending_s.values()) / 3600
    critical = _longest_chain(all_tasks, pending_s) / 3600
    wall = {str(n): max(total_pending / n, critical) for n in GPU_COUNTS}
    return {"profile": env.profile["name"], "results_dir": str(env.results_dir), "stages": stages,
            "device": _device_kind(tp),
            "throughput": None if tp is None else {"source": tp.source, "description": tp.describe(),
                                                   "device": tp.device, "image_size": tp.image_size,
                                                   "images_per_s_one_run": tp.solo,
                                                   "images_per_s_grouped": tp.grouped,
                                                   "grouped_runs": tp.grouped_runs},
            "assumptions": _assumptions(),
            "device_hours_pending": total_pending, "critical_path_hours": critical, "wall_hours": wall}


def _assumptions() -> list[str]:
    doc = throughput.__doc__.split("assumptions, stated with every estimate:")[1]
    items = [" ".join(x.split()) for x in doc.split("\n* ")[1:]]
    return [i.rstrip(".;") for i in items] + [
        "wall-clock = pending device-hours / devices (perfect packing of fractional-GPU tasks), never below the "
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


def _bytes(n) -> str:
    if not n:
        return "size unknown"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} B"


def format_plan(p: dict) -> str:
    kind = p.get("device") or "device"
    label = f"{kind} dev-h" if kind in ("CPU", "GPU") else "dev-h"
    what_if = p.get("what_if")
    head = (f"{'stage':<15}{'tasks':>8}{'units':>10}{'done':>10}{'pending':>10}{'unavail.':>10}"
            f"{label + ' all':>16}{label + ' left':>17}")
    if what_if:
        head += f"{'GPU what-if left':>18}"
    lines = [f"plan of profile {p['profile']!r}, results in {p['results_dir']}", head,
             f"  (units: planned here; unavail.: units of the pairs nothing here can make; {label}: hours on one "
             f"{kind} like the measured one" + (f"; GPU what-if: hours at the assumed --images-per-s "
                                                f"{what_if['images_per_s']:g})" if what_if else ")")]
    for s in p["stages"]:
        line = (f"{s['stage']:<15}{s['tasks']:>8,}{s['units']:>10,}{s['done']:>10,}{s['pending']:>10,}"
                f"{s['unavailable_units']:>10,}{_h(s['device_hours']):>16}{_h(s['device_hours_pending']):>17}")
        if what_if:
            line += f"{_h(what_if['stages'].get(s['stage'])):>18}"
        lines.append(line)
    for s in p["stages"]:
        if s["tasks_without_estimate"]:
            lines.append(f"  {s['stage']}: {s['tasks_without_estimate']} tasks without an estimate (no throughput "
                         "or data-set size known for them)")
        for reason in s["unavailable_reasons"]:
            lines.append(f"  {s['stage']}: unavailable pairs: {reason}")
    missing = [(s["stage"], m) for s in p["stages"] for m in s["missing_inputs"]]
    lines.append("missing inputs:" if missing else "missing inputs: none")
    seen = set()
    for stage, m in missing:
        if (m["what"], m["path"]) in seen:
            continue
        seen.add((m["what"], m["path"]))
        size = ""
        if m.get("bytes"):
            size = f" ({'' if m.get('bytes_exact') else 'at most '}{_bytes(m['bytes'])})"
        lines.append(f"  - {m['what']}{size}: {m['path']}\n      how: {m['how']}")
    dl = p.get("downloads")
    if dl and dl["rows"]:
        unknown = f"; size unknown for {', '.join(dl['unknown'])}" if dl["unknown"] else ""
        lines.append(f"downloads: {len(dl['rows'])} missing inputs, at most {_bytes(dl['known_bytes'])} where the "
                     "size is known (MedMNIST: the arrays' bytes from medmnist.INFO's n_samples, an upper bound "
                     f"since the npz files are compressed; weights: torchvision's metadata){unknown}")
    tp = p["throughput"]
    if tp is None:
        lines.append("estimate: no throughput table under benchmarks/results/ (run benchmarks/training.py)")
    else:
        lines.append(f"throughput: {tp['description']}")
        lines.append("assumptions: " + "; ".join(p["assumptions"]))
        unit = f"{kind} device-hours" if kind in ("CPU", "GPU") else "device-hours"
        lines.append(f"{unit} left: {_h(p['device_hours_pending'])}; longest chain of dependent tasks "
                     f"{_h(p['critical_path_hours'])} h")
        noun = {"CPU": "CPU device", "GPU": "GPU"}.get(kind, "device")
        lines.append(f"wall-clock (lower bound, on {noun}s like the measured one): " + ", ".join(
            f"{n} {noun}{'s' if n != '1' else ''} ~ {_h(h)} h" for n, h in p["wall_hours"].items()))
        if what_if:
            lines.append(f"GPU what-if at --images-per-s {what_if['images_per_s']:g} (assumed, not measured: one "
                         f"ResNet-18 training run at {what_if['image_size']} px): "
                         f"{_h(what_if['device_hours_pending'])} GPU-hours left; wall-clock " + ", ".join(
                             f"{n} GPU{'s' if n != '1' else ''} ~ {_h(h)} h"
                             for n, h in what_if["wall_hours"].items()))
        elif kind == "CPU":
            lines.append("these are CPU figures; for a GPU what-if beside them, add --images-per-s N (images/s of "
                         "one ResNet-18 training run at 224 px on that GPU), or measure one with "
                         "benchmarks/gpu_check.sh")
    lines.append(f"planned in {p['plan_seconds']:.1f} s")
    return "\n".join(lines)
