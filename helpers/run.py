"""Run the stages of a profile from one command, on this machine or a Ray cluster.

    python -m helpers.run all --profile quick                         # every stage, here, resumable
    python -m helpers.run pretraining finetuning --profile paper --engine ray --address auto
    python -m helpers.run all --profile paper --plan                  # what it would do and cost, offline
    python -m helpers.run all --profile paper --plan --json
    python -m helpers.run all --profile paper --plan --images-per-s 1500   # plus a GPU what-if at that rate

Stages: pretraining, finetuning, scoring, segmentation (and any stage module registered in
helpers.stages.REGISTRY), or all. Results go to results/<profile>/ ($RESULTS_ROOT/<profile>/ when set); a
finished unit is never computed again, so a killed run is resumed by running the same command. The summary
at the end counts, per stage, the units planned, already done, computed now, and those without a result
(unavailable input, blocked by a dependency, failed). Exit status 1 when a task failed.

On a CPU the numbers depend on torch's thread count (helpers.threads): every task runs with as many threads as
CPUs it declares (its ``num_cpus``), on either engine, so both give the same tables; ``--threads N`` pins every
task to N instead. Each unit records its count (the ``unit_threads`` column). The functions behind this command
are those of helpers.orchestration.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from . import orchestration
from .engines import ENGINES
from .paths import MissingResultError
from .stages import available_stages


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stages", nargs="+", help=f"stages: {', '.join(available_stages())} or all")
    parser.add_argument("--profile", default="quick", help="profile name (profiles/<name>.yml) or path to a YAML file")
    parser.add_argument("--engine", choices=ENGINES, default="local")
    parser.add_argument("--address", default=None,
                        help="Ray cluster address (host:port, or 'auto' on a node of the cluster); default: start "
                             "a local Ray instance")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray instance (default: all)")
    parser.add_argument("--num-gpus", type=int, default=None, help="GPUs of a local Ray instance (default: all)")
    parser.add_argument("--max-retries", type=int, default=3, help="Ray: re-runs of a task whose worker died")
    parser.add_argument("--data-root", default=None, help="data root (default: $DATA_ROOT, else data/)")
    parser.add_argument("--results-dir", default=None, help="results folder (default: results/<profile>/)")
    parser.add_argument("--device", default=None, help="device for the local engine (default: the profile's)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for every task on either engine (CPU results depend on the count; "
                             "default: the CPUs each task declares, the same on both engines)")
    parser.add_argument("--group-size", type=int, default=None,
                        help="fine-tuning configs advanced together per chunk of a group (default: all of them)")
    parser.add_argument("--plan", action="store_true", help="print what would run and what it costs; compute nothing")
    parser.add_argument("--json", action="store_true", help="with --plan: machine-readable output")
    parser.add_argument("--images-per-s", type=float, default=None,
                        help="with --plan: a GPU what-if training rate (images/s of one ResNet-18 run at 224 px), "
                             "estimated beside the measured figures and labelled as assumed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.json and not args.plan:
        parser.error("--json goes with --plan")
    try:
        names = orchestration.expand(args.stages)
    except ValueError as exc:
        parser.error(str(exc))

    if args.images_per_s and not args.plan:
        parser.error("--images-per-s goes with --plan")
    if args.plan:
        p = orchestration.plan(names, args.profile, args.results_dir, args.data_root, args.device,
                               images_per_s=args.images_per_s)
        print(json.dumps(p, indent=1) if args.json else orchestration.plan_text(p))
        return 0

    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be a positive integer")
    options = {"group_size": args.group_size} if args.group_size else {}
    engine_options = {}
    if args.engine == "ray":
        engine_options = {"address": args.address, "num_cpus": args.num_cpus, "num_gpus": args.num_gpus,
                          "max_retries": args.max_retries}
    elif args.address:
        parser.error("--address needs --engine ray")

    start = time.perf_counter()
    try:
        report = orchestration.run(names, args.profile, args.results_dir, args.data_root, args.device,
                                   engine=args.engine, progress=not args.no_progress, keep_going=True,
                                   options=options, threads=args.threads, **engine_options)
    except MissingResultError as exc:
        print(f"[run] an input is missing: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    first = run_first(report, names, args.profile)
    if first:
        print(first)
    for name, path in report.tables.items():
        print(f"  wrote {name}: {path}")
    print(f"[run] {', '.join(names)} on profile {args.profile!r} in {time.perf_counter() - start:.0f} s")
    return 1 if report.failed else 0


def run_first(report, names, profile) -> str:
    """The 'run first' line for tasks blocked because a stage outside this run has not been run."""
    needed = sorted({reason.split(":", 1)[0] for _, status, reason in report.problems
                     if status == "blocked" and "is not done" in reason} - set(names))
    if not needed:
        return ""
    return ("[run] some units wait for stages that have not run; run first: "
            + "; ".join(f"python -m helpers.run {n} --profile {profile}" for n in needed))


if __name__ == "__main__":
    sys.exit(main())
