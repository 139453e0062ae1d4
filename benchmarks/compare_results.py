"""Are two results folders the same, bit for bit, apart from wall-clock times and where they lived?

    python benchmarks/compare_results.py OLD/results/quick NEW/results/quick

Compares every CSV under the two folders as text, cell by cell. Two kinds of column are expected to differ
between two runs of the same code and are left out (their names are printed): wall-clock times
(:data:`TIME_COLUMNS`) and absolute paths, which are compared after the folder's own root is cut off (a checkpoint
under ``/tmp/a/results/quick/sources/x`` and one under ``/tmp/b/results/quick/sources/x`` are the same file).
Everything else (unit keys, configurations, thread counts, metric values, AUCs) must be equal as text: a
float's last bit shows in its repr. Exit status 1 when anything differs.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

TIME_COLUMNS = {"seconds", "unit_seconds", "train_seconds", "extract_seconds", "score_seconds"}


def _root_of(folder: Path) -> str:
    """The checkout a results folder belongs to (``<root>/results/<profile>``)."""
    folder = folder.resolve()
    return str(folder.parents[1]) if folder.parent.name == "results" else str(folder)


def read(path: Path, root: str) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return [], []
    return rows[0], [[cell.replace(root, "<root>") for cell in row] for row in rows[1:]]


def compare(old: Path, new: Path) -> list[str]:
    problems = []
    old_root, new_root = _root_of(old), _root_of(new)
    old_files = {p.relative_to(old) for p in old.rglob("*.csv")}
    new_files = {p.relative_to(new) for p in new.rglob("*.csv")}
    for rel in sorted(old_files ^ new_files):
        problems.append(f"{rel}: only in {'old' if rel in old_files else 'new'}")
    for rel in sorted(old_files & new_files):
        head_a, rows_a = read(old / rel, old_root)
        head_b, rows_b = read(new / rel, new_root)
        if head_a != head_b:
            problems.append(f"{rel}: columns differ: {sorted(set(head_a) ^ set(head_b))}")
            continue
        if len(rows_a) != len(rows_b):
            problems.append(f"{rel}: {len(rows_a)} rows against {len(rows_b)}")
            continue
        keep = [i for i, c in enumerate(head_a) if c not in TIME_COLUMNS]
        bad = sorted({head_a[i] for a, b in zip(rows_a, rows_b) for i in keep if a[i] != b[i]})
        if bad:
            n = sum(any(a[i] != b[i] for i in keep) for a, b in zip(rows_a, rows_b))
            problems.append(f"{rel}: {n} of {len(rows_a)} rows differ, in columns {bad}")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    args = ap.parse_args(argv)
    n = len(list(args.old.rglob("*.csv")))
    problems = compare(args.old, args.new)
    print(f"{n} CSV files compared; left out as wall-clock times: {', '.join(sorted(TIME_COLUMNS))}; "
          f"paths compared below their checkout")
    for p in problems:
        print("DIFFERS", p)
    print("identical" if not problems else f"{len(problems)} files differ")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
