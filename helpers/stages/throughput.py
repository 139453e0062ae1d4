"""Measured training throughput, read from the training benchmark's table, and the seconds a unit would take.

The source is ``benchmarks/results/training_gpu.txt`` when it exists (written by ``benchmarks/gpu_check.sh`` on
a GPU), else ``benchmarks/results/training_cpu.txt``. The assumptions, stated with every estimate:

* a training step costs the same per image at every epoch, and compute scales with the number of pixels, so a
  rate measured at ``b`` px becomes ``rate * (b / s)**2`` at ``s`` px;
* an evaluation pass (no backward) costs a third of a training step per image;
* every run trains for its whole epoch budget (early stopping only makes it shorter: an upper bound);
* the configs of one fine-tuning group run together at the best aggregate rate the benchmark measured for
  several runs sharing a device; a pretraining run at the rate of one run alone;
* data loading, checkpointing and the metrics themselves are not counted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..paths import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "benchmarks" / "results"
EVAL_COST = 1 / 3


@dataclass(frozen=True)
class Throughput:
    source: str          # the file it was read from
    machine: str         # the machine line of the table
    device: str          # cpu | cuda
    image_size: int      # px of the measured inputs
    solo: float          # images/s of one run
    grouped: float       # best aggregate images/s of several runs together
    grouped_runs: int    # how many runs gave ``grouped``

    def rate(self, image_size: int, grouped: bool) -> float:
        base = self.grouped if grouped else self.solo
        return base * (self.image_size / float(image_size)) ** 2

    def describe(self) -> str:
        kind = "GPU" if self.device.startswith("cuda") else "CPU (no GPU measurement yet: run benchmarks/gpu_check.sh)"
        if self.source.startswith("assumed"):
            kind = "ASSUMED, not measured"
        grouped = (f"{self.grouped:.1f} images/s in all for {self.grouped_runs} runs together"
                   if self.grouped_runs > 1 else "no gain measured from grouping runs")
        return (f"{Path(self.source).name}, {kind}: {self.solo:.1f} images/s for one ResNet-18 run, {grouped}, "
                f"at {self.image_size} px ({self.machine})")


def parse_training_table(text: str, source: str = "") -> Throughput:
    """Parse a table written by ``benchmarks/training.py``."""
    machine = device = ""
    size = None
    solo = None
    grouped, grouped_runs = None, 1
    for line in text.splitlines():
        if line.startswith("# benchmarks/training.py on "):
            machine = line.split(" on ", 1)[1].strip()
        m = re.match(r"# device (\S+), .*?(\d+) px inputs", line)
        if m:
            device, size = m.group(1).rstrip(","), int(m.group(2))
        m = re.match(r"\(b\) ours, (\d+) runs?(?: together)?\s+([\d.]+)", line)
        if m:
            k, ips = int(m.group(1)), float(m.group(2))
            if k == 1:
                solo = ips
            if grouped is None or ips > grouped:
                grouped, grouped_runs = ips, k
    if size is None or solo is None:
        raise ValueError(f"{source or 'table'}: not a benchmarks/training.py table (no device line or no "
                         "'(b) ours, 1 run' row)")
    return Throughput(source, machine, device, size, solo, grouped, grouped_runs)


_ASSUMED: list = []


def assume(images_per_s: float | None, image_size: int = 224) -> None:
    """Use an assumed rate (images/s of one run and of a group, at ``image_size`` px) instead of the measured
    tables, for a what-if plan (``python -m helpers.run ... --plan --images-per-s N``); ``None`` undoes it."""
    _ASSUMED.clear()
    if images_per_s:
        _ASSUMED.append(Throughput("assumed (--images-per-s)", "no machine: a what-if", "cuda", int(image_size),
                                   float(images_per_s), float(images_per_s), 1))


def measured(results_dir: str | None = None) -> Throughput | None:
    """An assumed rate when one was set (:func:`assume`), else the GPU table when there is one, else the CPU
    table; ``None`` when neither exists."""
    if _ASSUMED:
        return _ASSUMED[0]
    return _measured(results_dir)


@lru_cache(maxsize=4)
def _measured(results_dir: str | None = None) -> Throughput | None:
    folder = Path(results_dir) if results_dir else RESULTS
    for name in ("training_gpu.txt", "training_cpu.txt"):
        path = folder / name
        if path.is_file():
            return parse_training_table(path.read_text(), str(path))
    return None


def training_seconds(train_images: int, epochs: int, image_size: int, val_images: int = 0, test_images: int = 0,
                     grouped: bool = False, runs: int = 1) -> float | None:
    """Seconds of ``runs`` training runs (see the module docstring); ``None`` without a measurement."""
    tp = measured()
    if tp is None:
        return None
    images = runs * (train_images * epochs + EVAL_COST * (val_images * epochs + test_images))
    return images / tp.rate(image_size, grouped)


def forward_seconds(images: int, image_size: int) -> float | None:
    """Seconds of one forward pass over ``images`` (feature extraction)."""
    tp = measured()
    if tp is None:
        return None
    return EVAL_COST * images / tp.rate(image_size, False)
