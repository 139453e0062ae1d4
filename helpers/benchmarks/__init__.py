"""Public transferability benchmarks in one tidy format, the correlation conventions their authors used, and
one command to evaluate a user's own table.

    python -m helpers.benchmarks evaluate TABLE.csv --target T --candidate C --truth Y --scores A,B
    helpers.benchmarks.evaluate("TABLE.csv", target="T", candidate="C", truth="Y", scores=["A", "B"])

Modules: :mod:`.format` (the long format, validation, readers), :mod:`.conventions` (``scipy``,
``truth_weighted``, ``pooled``), :mod:`.evaluate` (correlations, summaries, bootstrap, paired differences),
:mod:`.loaders` (the public benchmarks under ``data/reference/``).
"""
from .conventions import CONVENTIONS, pair_taus, pooled_tau
from .evaluate import (bootstrap_replicates, bootstrap_summary, correlations, evaluate, format_summary,
                       paired_differences, summarize)
from .format import (COLUMNS, REPLICATE_COLUMNS, BenchmarkError, from_tables, read_long, read_wide, validate,
                     validate_replicates)
from .loaders import BENCHMARKS, load, load_all, load_replicates

__all__ = ["CONVENTIONS", "pair_taus", "pooled_tau", "bootstrap_replicates", "bootstrap_summary", "correlations",
           "evaluate", "format_summary", "paired_differences", "summarize", "COLUMNS", "REPLICATE_COLUMNS",
           "BenchmarkError", "from_tables", "read_long", "read_wide", "validate", "validate_replicates",
           "BENCHMARKS", "load", "load_all", "load_replicates"]
