"""The tidy benchmark format: one row per (scenario, target, candidate, metric), and its validation.

Columns (:data:`COLUMNS`):

``benchmark``
    the benchmark's name (``chaves2024``); one table may hold several.
``scenario``
    what the candidates are within that benchmark: ``dataset`` (source data sets), ``architecture``, a model
    zoo's name. Correlations and pooled summaries never mix scenarios.
``target``, ``candidate``
    the target task and the candidate (a source data set, an architecture, a pre-trained model).
``truth``
    the fine-tuned ground truth of the candidate on the target (higher = better; accuracy, AUC, Dice). Where
    a paper published repeated runs, ``truth`` is their mean and the runs live in a second table
    (:data:`REPLICATE_COLUMNS`: ``benchmark, scenario, target, candidate, replicate, truth``).
``metric``, ``score``
    the transferability score's name and value. A NaN score means the metric was not computed for that
    candidate (it is left out of that metric's correlation and counted); a non-numeric score is an error.

Optional: ``higher_is_better`` (bool per row, constant per metric: ``False`` scores are negated before any
correlation) and ``cost`` (what computing the score cost, in seconds, where a paper published it).

:func:`validate` checks a table and raises :class:`BenchmarkError` (a ``ValueError``) with one sentence that
names the column, the row or the target at fault.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

KEY = ("benchmark", "scenario", "target", "candidate", "metric")
COLUMNS = ("benchmark", "scenario", "target", "candidate", "truth", "metric", "score")
OPTIONAL = ("higher_is_better", "cost")
REPLICATE_COLUMNS = ("benchmark", "scenario", "target", "candidate", "replicate", "truth")
MIN_CANDIDATES = 3


class BenchmarkError(ValueError):
    """A benchmark table that cannot be evaluated; the message names the problem and where it is."""


def _row_label(df: pd.DataFrame, i) -> str:
    r = df.loc[i]
    parts = [f"{c}={r[c]!r}" for c in ("target", "candidate", "metric") if c in df.columns]
    return f"row {i} ({', '.join(parts)})"


def _numeric(df: pd.DataFrame, column: str, allow_nan: bool) -> pd.Series:
    raw = df[column]
    if pd.api.types.is_bool_dtype(raw):
        raise BenchmarkError(f"column {column!r} holds booleans, not numbers")
    if pd.api.types.is_numeric_dtype(raw):
        num = raw.astype(float)
        bad = pd.Series(False, index=raw.index)
    else:
        num = pd.to_numeric(raw, errors="coerce")
        bad = num.isna() & raw.notna() & (raw.astype(str).str.strip().str.lower() != "nan")
    if bad.any():
        i = bad.index[bad.to_numpy()][0]
        raise BenchmarkError(f"column {column!r} is not numeric at {_row_label(df, i)}: {raw.loc[i]!r}")
    if not allow_nan and num.isna().any():
        i = num.index[num.isna().to_numpy()][0]
        raise BenchmarkError(f"column {column!r} is missing (NaN) at {_row_label(df, i)}")
    inf = ~np.isfinite(num.fillna(0.0).to_numpy(float))
    if inf.any():
        i = num.index[inf][0]
        raise BenchmarkError(f"column {column!r} is infinite at {_row_label(df, i)}")
    return num.astype(float)


def _bool_column(df: pd.DataFrame, column: str) -> pd.Series:
    raw = df[column]
    if pd.api.types.is_bool_dtype(raw):
        return raw.astype(bool)
    mapping = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
    text = raw.astype(str).str.strip().str.lower()
    bad = ~text.isin(list(mapping))
    if bad.any():
        i = bad.index[bad.to_numpy()][0]
        raise BenchmarkError(f"column {column!r} must be true/false, got {raw.loc[i]!r} at {_row_label(df, i)}")
    return text.map(mapping).astype(bool)


def validate(table: pd.DataFrame, min_candidates: int = MIN_CANDIDATES) -> pd.DataFrame:
    """A checked copy of a long benchmark table (``benchmark``/``scenario`` filled with ``"benchmark"`` /
    ``"default"`` when absent). Raises :class:`BenchmarkError` on: a missing column; a NaN or non-numeric
    truth (named as a candidate that has a score but no truth); a non-numeric score; duplicate
    (scenario, target, candidate, metric) rows; one candidate with two different truths on one target; a
    metric whose direction differs between rows; a target with fewer than ``min_candidates`` candidates."""
    if not isinstance(table, pd.DataFrame):
        raise BenchmarkError(f"a benchmark table must be a pandas DataFrame, got {type(table).__name__}")
    df = table.copy()
    for c in ("benchmark", "scenario"):
        if c not in df.columns:
            df[c] = "benchmark" if c == "benchmark" else "default"
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise BenchmarkError(f"missing column(s) {missing}; have {list(table.columns)}")
    if df.empty:
        raise BenchmarkError("the benchmark table has no rows")
    df = df.reset_index(drop=True)
    for c in ("benchmark", "scenario", "target", "candidate", "metric"):
        if df[c].isna().any():
            i = df.index[df[c].isna().to_numpy()][0]
            raise BenchmarkError(f"column {c!r} is empty at row {i}")
        if df[c].dtype != object or not df[c].map(type).eq(str).all():
            df[c] = df[c].astype(str)
    if pd.api.types.is_numeric_dtype(df["truth"]):
        no_truth = df["truth"].isna()
    else:
        no_truth = df["truth"].isna() | (df["truth"].astype(str).str.strip().str.lower() == "nan")
    if no_truth.any():
        i = df.index[no_truth.to_numpy()][0]
        raise BenchmarkError(f"candidate {df.at[i, 'candidate']!r} of target {df.at[i, 'target']!r} has a score "
                             f"for metric {df.at[i, 'metric']!r} but no truth (row {i}, column 'truth')")
    df["truth"] = _numeric(df, "truth", allow_nan=False)
    df["score"] = _numeric(df, "score", allow_nan=True)
    if "higher_is_better" in df.columns:
        df["higher_is_better"] = _bool_column(df, "higher_is_better")
        mixed = df.groupby(["benchmark", "scenario", "metric"])["higher_is_better"].nunique()
        if (mixed > 1).any():
            b, s, m = mixed.index[(mixed > 1).to_numpy()][0]
            raise BenchmarkError(f"metric {m!r} ({b}/{s}) has both higher_is_better true and false rows")
    if "cost" in df.columns:
        df["cost"] = _numeric(df, "cost", allow_nan=True)
    dup = df.duplicated(list(KEY), keep=False)
    if dup.any():
        i = df.index[dup.to_numpy()][0]
        raise BenchmarkError(f"duplicate (target, candidate, metric) rows: {_row_label(df, i)} appears more than once")
    truths = df.groupby(["benchmark", "scenario", "target", "candidate"])["truth"].nunique()
    if (truths > 1).any():
        b, s, t, c = truths.index[(truths > 1).to_numpy()][0]
        raise BenchmarkError(f"candidate {c!r} of target {t!r} ({b}/{s}) has more than one truth value")
    counts = df.groupby(["benchmark", "scenario", "target"])["candidate"].nunique()
    few = counts[counts < min_candidates]
    if len(few):
        (b, s, t), n = few.index[0], int(few.iloc[0])
        raise BenchmarkError(f"target {t!r} ({b}/{s}) has {n} candidate(s); a ranking needs at least {min_candidates}")
    return df


def validate_replicates(replicates: pd.DataFrame | None) -> pd.DataFrame | None:
    """A checked copy of a replicate table (:data:`REPLICATE_COLUMNS`), or None."""
    if replicates is None:
        return None
    if not isinstance(replicates, pd.DataFrame):
        raise BenchmarkError(f"replicates must be a DataFrame, got {type(replicates).__name__}")
    missing = [c for c in REPLICATE_COLUMNS if c not in replicates.columns]
    if missing:
        raise BenchmarkError(f"replicate table: missing column(s) {missing}")
    df = replicates.reset_index(drop=True).copy()
    df["truth"] = _numeric(df, "truth", allow_nan=False)
    for c in ("benchmark", "scenario", "target", "candidate", "replicate"):
        df[c] = df[c].astype(str)
    dup = df.duplicated(["benchmark", "scenario", "target", "candidate", "replicate"], keep=False)
    if dup.any():
        i = df.index[dup.to_numpy()][0]
        raise BenchmarkError(f"replicate table: duplicate (target, candidate, replicate) at row {i}")
    return df


# ----------------------------------------------------------------------------------------------------
# readers


def _frame(table, what: str) -> pd.DataFrame:
    if isinstance(table, pd.DataFrame):
        return table.copy()
    try:
        return pd.read_csv(table)
    except FileNotFoundError:
        raise BenchmarkError(f"{what}: no such file {str(table)!r}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise BenchmarkError(f"{what}: cannot read {str(table)!r} as CSV ({str(exc).splitlines()[0]})") from None


def _need(df: pd.DataFrame, cols: Sequence[str], option: str = "") -> None:
    for c in cols:
        if c not in df.columns:
            hint = f" (given as {option})" if option else ""
            raise BenchmarkError(f"column {c!r}{hint} is not in the table; have {list(df.columns)}")


def _check_input_numbers(df: pd.DataFrame, columns: Sequence[str], target: str, candidate: str) -> None:
    """Name the user's own column and data row (1 = the first row under the header) of a non-numeric value."""
    for col in columns:
        raw = df[col]
        if pd.api.types.is_bool_dtype(raw):
            raise BenchmarkError(f"column {col!r} holds true/false values, not numbers")
        if pd.api.types.is_numeric_dtype(raw):
            continue
        num = pd.to_numeric(raw, errors="coerce")
        bad = num.isna() & raw.notna() & (raw.astype(str).str.strip().str.lower() != "nan")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise BenchmarkError(f"column {col!r} is not numeric at data row {i + 1} ({target}={df[target].iloc[i]!r}, "
                                 f"{candidate}={df[candidate].iloc[i]!r}): {raw.iloc[i]!r}")


def read_long(table, target: str = "target", candidate: str = "candidate", truth: str = "truth",
              metric: str = "metric", score: str = "score", scenario: str | None = None,
              benchmark: str = "benchmark", lower_is_better: Sequence[str] = (),
              min_candidates: int = MIN_CANDIDATES) -> pd.DataFrame:
    """A user's long table (CSV path or DataFrame), one row per (target, candidate, metric), renamed to the
    tidy format and validated. ``lower_is_better``: metric names whose smaller values predict better."""
    df = _frame(table, "benchmark table")
    _need(df, [target, candidate, truth, metric, score] + ([scenario] if scenario else []))
    _check_input_numbers(df, [truth, score], target, candidate)
    out = pd.DataFrame({"benchmark": benchmark,
                        "scenario": df[scenario].astype(str) if scenario else "default",
                        "target": df[target], "candidate": df[candidate], "truth": df[truth],
                        "metric": df[metric].astype(str), "score": df[score]})
    return _directions(validate(out, min_candidates), lower_is_better)


def read_wide(table, scores: Sequence[str], target: str = "target", candidate: str = "candidate",
              truth: str = "truth", scenario: str | None = None, benchmark: str = "benchmark",
              lower_is_better: Sequence[str] = (), min_candidates: int = MIN_CANDIDATES) -> pd.DataFrame:
    """A user's wide table (one row per (target, candidate), one column per metric in ``scores``), melted
    to the tidy format and validated."""
    df = _frame(table, "benchmark table")
    scores = [s for s in scores if s]
    if not scores:
        raise BenchmarkError("no score column given (--scores COL,COL,...)")
    _need(df, [target, candidate, truth] + ([scenario] if scenario else []))
    _need(df, scores, "a score column")
    _check_input_numbers(df, [truth, *scores], target, candidate)
    base = pd.DataFrame({"benchmark": benchmark,
                         "scenario": df[scenario].astype(str) if scenario else "default",
                         "target": df[target], "candidate": df[candidate], "truth": df[truth]})
    parts = [base.assign(metric=s, score=df[s].to_numpy()) for s in scores]
    out = pd.concat(parts, ignore_index=True)
    return _directions(validate(out, min_candidates), lower_is_better)


def _directions(df: pd.DataFrame, lower_is_better: Sequence[str]) -> pd.DataFrame:
    lower = [m for m in (lower_is_better or ()) if m]
    unknown = [m for m in lower if m not in set(df["metric"])]
    if unknown:
        raise BenchmarkError(f"--lower-is-better names metric(s) {unknown} that are not in the table "
                             f"(metrics: {sorted(set(df['metric']))[:12]})")
    if "higher_is_better" not in df.columns:
        df["higher_is_better"] = True
    df.loc[df["metric"].isin(lower), "higher_is_better"] = False
    return df


def from_tables(scores: pd.DataFrame, truth: pd.DataFrame, benchmark: str = "benchmark",
                scenario: str = "default", min_candidates: int = MIN_CANDIDATES) -> pd.DataFrame:
    """The tidy format from a long score table (``target, candidate, metric, score``) and a truth table
    (``target, candidate, truth``). A scored (target, candidate) absent from the truth is an error that
    names it, never silently dropped."""
    _need(scores, ["target", "candidate", "metric", "score"])
    _need(truth, ["target", "candidate", "truth"])
    t = truth[["target", "candidate", "truth"]].astype({"target": str, "candidate": str})
    s = scores.astype({"target": str, "candidate": str})
    merged = s.merge(t, on=["target", "candidate"], how="left", indicator=True)
    orphan = merged[merged["_merge"] == "left_only"]
    if len(orphan):
        r = orphan.iloc[0]
        raise BenchmarkError(f"candidate {r['candidate']!r} of target {r['target']!r} has a score for metric "
                             f"{r['metric']!r} but no truth ({len(orphan)} such row(s))")
    merged = merged.drop(columns="_merge")
    merged.insert(0, "scenario", scenario)
    merged.insert(0, "benchmark", benchmark)
    return validate(merged, min_candidates)
