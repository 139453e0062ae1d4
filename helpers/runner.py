"""A resumable stage runner: units of work keyed by a hash of their full configuration.

A *unit* is one pretraining, one fine-tuning run, one (source, target) scoring: a pure function of its config
(a JSON-serialisable dict) that returns result rows. Each finished unit is stored as
``<results>/<stage>/units/<key>.json`` written atomically (temp file, then rename), so a killed run resumes
where it stopped, a repeated run recomputes nothing, and no half-written file is ever left. Units that need
files of their own (checkpoints, features) get a private folder ``<results>/<stage>/work/<key>/``.

Because a unit depends only on its config and its own folder, units can be dispatched to any executor (a
process pool, a cluster queue) and the results gathered by :func:`collect`.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

import pandas as pd

RESULT_FORMAT = 1


def canonical_json(config: Mapping) -> str:
    """Key-sorted compact JSON; raises on values JSON cannot represent (so keys are never ambiguous)."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_reject)


def _reject(value):
    raise TypeError(f"unit configs must be JSON-serialisable; got {type(value).__name__}: {value!r}")


def config_key(config: Mapping, length: int = 16) -> str:
    """Hex SHA-256 of the canonical JSON of ``config`` (first ``length`` characters)."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:length]


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_csv(df: pd.DataFrame, path: str | os.PathLike, **kwargs) -> None:
    atomic_write_text(path, df.to_csv(index=kwargs.pop("index", False), **kwargs))


def _flatten(config: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in config.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{name}."))
        elif isinstance(v, (list, tuple)):
            out[name] = json.dumps(v)
        else:
            out[name] = v
    return out


@dataclass(frozen=True)
class UnitContext:
    """What a unit function receives besides its config: its key and a private working folder."""

    key: str
    workdir: Path


def _timed_call(fn, config, ctx):
    start = time.perf_counter()
    rows = fn(config, ctx)
    return rows, time.perf_counter() - start


class Stage:
    """One stage (e.g. ``finetuning``) of one profile, stored under ``results_dir/<name>``."""

    def __init__(self, name: str, results_dir: str | os.PathLike):
        if not name or "/" in name:
            raise ValueError(f"stage name must be a plain word, got {name!r}")
        self.name = name
        self.root = Path(results_dir) / name
        self.units_dir = self.root / "units"

    def unit_path(self, key: str) -> Path:
        return self.units_dir / f"{key}.json"

    def workdir(self, key: str) -> Path:
        return self.root / "work" / key

    def is_done(self, config: Mapping) -> bool:
        return self.unit_path(config_key(config)).is_file()

    def run(self, configs: Iterable[Mapping], fn: Callable[[dict, UnitContext], list[dict] | dict],
            progress: bool = True, desc: str | None = None, executor=None) -> pd.DataFrame:
        """Run ``fn(config, ctx)`` for every config not yet done, then return :meth:`collect`.

        ``fn`` returns one result row (a dict) or a list of rows. Each row is stored with the unit's key, the
        stage name, the seconds the unit took and the flattened config columns, so tables carry the
        configuration that produced them. With ``executor`` (any ``concurrent.futures.Executor``; ``fn`` must
        then be picklable for process pools) the pending units run there and are stored as they finish.
        """
        from tqdm.auto import tqdm

        configs = [dict(c) for c in configs]
        keys = [config_key(c) for c in configs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"stage {self.name!r}: two units share a config (keys must be unique)")
        todo = [(k, c) for k, c in zip(keys, configs) if not self.unit_path(k).is_file()]
        bar = tqdm(total=len(configs), initial=len(configs) - len(todo), desc=desc or self.name,
                   disable=not progress)
        try:
            if executor is None:
                for key, config in todo:
                    self._store(key, config, *_timed_call(fn, config, self._context(key)))
                    bar.update(1)
            else:
                from concurrent.futures import as_completed

                futures = {executor.submit(_timed_call, fn, config, self._context(key)): (key, config)
                           for key, config in todo}
                for future in as_completed(futures):
                    key, config = futures[future]
                    self._store(key, config, *future.result())
                    bar.update(1)
        finally:
            bar.close()
        return self.collect(keys)

    def _context(self, key: str) -> UnitContext:
        workdir = self.workdir(key)
        workdir.mkdir(parents=True, exist_ok=True)
        return UnitContext(key=key, workdir=workdir)

    def pending(self, configs: Iterable[Mapping]) -> list[dict]:
        """The configs of ``configs`` whose unit is not stored yet."""
        return [dict(c) for c in configs if not self.is_done(c)]

    def store(self, config: Mapping, rows, seconds: float, threads: int | None = None) -> Path:
        """Store a finished unit (``rows``: one dict or a list) atomically, exactly as :meth:`run` does; this is
        what the engines of :mod:`helpers.engines` call on the driver, with the torch threads the unit ran with
        (``unit_threads`` in the table). Returns the unit's path."""
        key = config_key(config)
        self._store(key, dict(config), rows, seconds, threads)
        return self.unit_path(key)

    def _store(self, key: str, config: dict, rows, seconds: float, threads: int | None = None) -> None:
        rows = [rows] if isinstance(rows, Mapping) else list(rows)
        record = {"format": RESULT_FORMAT, "stage": self.name, "key": key, "config": config,
                  "seconds": seconds, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "rows": rows}
        if threads is not None:
            record["threads"] = int(threads)
        atomic_write_text(self.unit_path(key), json.dumps(record, allow_nan=True, default=_reject))

    def collect(self, keys: Iterable[str] | None = None) -> pd.DataFrame:
        """The tidy table of finished units (all of them, or those of ``keys``): one row per result row."""
        paths = sorted(self.units_dir.glob("*.json")) if keys is None else [self.unit_path(k) for k in keys]
        records = []
        for path in paths:
            if not path.is_file():
                continue
            try:
                record = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: unreadable unit result ({exc}); delete it to recompute the unit") from exc
            flat = _flatten(record["config"], "config.")
            extra = {"unit_threads": record["threads"]} if "threads" in record else {}
            for row in record["rows"]:
                records.append({"stage": record["stage"], "key": record["key"], **flat,
                                "unit_seconds": record["seconds"], **extra, **row})
        return pd.DataFrame.from_records(records)

    def write_table(self, df: pd.DataFrame | None = None, filename: str | None = None) -> Path:
        """Write the tidy table atomically as ``<results>/<stage>.csv`` (or ``filename``) and return its path."""
        df = self.collect() if df is None else df
        path = self.root.parent / (filename or f"{self.name}.csv")
        atomic_write_csv(df, path)
        return path


_FILE_HASHES: dict = {}


def file_hash(path) -> str:
    """SHA-256 (16 hex) of a file's content, remembered per (path, size, mtime): how helpers.rank names a
    user's checkpoint. The stages name sources by the key of the unit that makes them instead."""
    path = Path(path)
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
        _FILE_HASHES[key] = h.hexdigest()[:16]
    return _FILE_HASHES[key]
