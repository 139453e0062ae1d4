"""``python -m helpers.benchmarks evaluate TABLE.csv --target COL --candidate COL --truth COL
(--metric COL --score COL | --scores COL,COL,...) [--lower-is-better NAME,...] [--convention scipy|
truth_weighted|pooled] [--constant nan|zero] [--scenario COL] [--out OUT.csv]``

Prints a readable summary and, with ``--out``, writes the tidy CSV of :func:`helpers.benchmarks.evaluate`.
Bad input ends with exit status 2 and one line naming the problem; never a traceback.

``python -m helpers.benchmarks list`` prints the public benchmarks the package can load.
"""
from __future__ import annotations

import argparse
import sys

from .conventions import CONVENTIONS
from .evaluate import evaluate, format_summary
from .format import BenchmarkError
from .loaders import BENCHMARKS


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's own status), no usage dump
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def _split(text: str | None) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()] if text else []


def main(argv=None) -> int:
    p = _Parser(prog="python -m helpers.benchmarks", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    e = sub.add_parser("evaluate", help="correlate a benchmark table's scores with its ground truth")
    e.add_argument("table", help="CSV file, one row per (target, candidate[, metric])")
    e.add_argument("--target", required=True)
    e.add_argument("--candidate", required=True)
    e.add_argument("--truth", required=True)
    e.add_argument("--metric", help="long table: the column naming the metric")
    e.add_argument("--score", help="long table: the column holding the score")
    e.add_argument("--scores", help="wide table: comma-separated score columns")
    e.add_argument("--scenario", help="optional column that splits the table into scenarios")
    e.add_argument("--lower-is-better", default="", help="comma-separated metrics whose lower values are better")
    e.add_argument("--convention", default="scipy", choices=CONVENTIONS)
    e.add_argument("--constant", default="nan", choices=("nan", "zero"),
                   help="a constant score column: NaN (default) or 0 (Chaves et al.)")
    e.add_argument("--out", help="write the tidy result CSV here")
    sub.add_parser("list", help="list the public benchmarks")
    args = p.parse_args(argv)
    if args.command is None:
        p.error("a command is required: evaluate or list")
    try:
        if args.command == "list":
            width = max(map(len, BENCHMARKS))  # names differ in length; keep the columns aligned
            for name, (_, what, group, domain) in BENCHMARKS.items():
                print(f"{name:<{width}} {domain:<8} {what} ({group})")
            return 0
        if bool(args.metric) != bool(args.score):
            raise BenchmarkError("a long table needs both --metric and --score")
        result = evaluate(args.table, target=args.target, candidate=args.candidate, truth=args.truth,
                          metric=args.metric, score=args.score, scores=_split(args.scores),
                          lower_is_better=_split(args.lower_is_better), convention=args.convention,
                          constant=args.constant, scenario=args.scenario, out=args.out)
    except (BenchmarkError, ValueError, OSError) as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    print(format_summary(result))
    if args.out:
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
