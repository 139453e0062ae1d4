"""Measured training throughput, read from the training benchmark's table, and the seconds a unit would take.

The source is ``benchmarks/results/training_gpu.txt`` when it exists (written by ``benchmarks/gpu_check.sh`` on
a GPU), else ``benchmarks/results/training_cpu.txt``. The assumptions, stated with every estimate:

* a training step costs the same per image at every epoch, and compute scales with the number of pixels, so a
  rate measured at ``b`` px becomes ``rate * (b / s)**2`` at ``s`` px;
* an evaluation pass (no backward) costs a third of a training step per image;
* every run trains for its whole epoch budget (early stopping only makes it shorter: an upper bound);
* the configs of one fine-tuning group run together at the best aggregate rate the benchmark measured for
  several runs sharing a device; a pretraining run at the rate of one run alone;
* other networks cost the measured ResNet-18 rate times their multiply-adds relative to ResNet-18 (torchvision's
  weights metadata: ResNet-50 4.09 against 1.81 GFLOPs, x2.26);
* a segmentation U-Net with a ResNet-18 encoder costs twice a ResNet-18 step per image (its decoder is assumed to
  cost what the encoder does); the segmentation sets' sizes are those of the data folder's MANIFEST.json;
* a representation-similarity unit costs the CCA and CKA seconds measured by ``benchmarks/similarity.py``
  (``similarity_*.txt``) per layer and repeat, twice with its permutation null; a unit that compares stored
  predictions is counted as 0;
* data loading, checkpointing and the metrics themselves are not counted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..data import medmnist_info
from ..paths import PROJECT_ROOT
from ..segmentation.data import read_manifest

RESULTS = PROJECT_ROOT / "benchmarks" / "results"
EVAL_COST = 1 / 3
#: compute per image relative to ResNet-18 (torchvision weights metadata, GFLOPs at 224 px: 1.814 and 4.089)
ARCH_COST = {"resnet18": 1.0, "resnet50": 4.089 / 1.814}
UNET_COST = 2.0  # a U-Net with a ResNet-18 encoder, per image, relative to ResNet-18 (assumed; see above)


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
                     grouped: bool = False, runs: int = 1, cost: float = 1.0) -> float | None:
    """Seconds of ``runs`` training runs (see the module docstring); ``None`` without a measurement. ``cost``:
    compute per image relative to ResNet-18 (:data:`ARCH_COST`, :data:`UNET_COST`)."""
    tp = measured()
    if tp is None:
        return None
    images = runs * (train_images * epochs + EVAL_COST * (val_images * epochs + test_images))
    return cost * images / tp.rate(image_size, grouped)


def forward_seconds(images: int, image_size: int, cost: float = 1.0) -> float | None:
    """Seconds of one forward pass over ``images`` (feature extraction)."""
    tp = measured()
    if tp is None:
        return None
    return cost * EVAL_COST * images / tp.rate(image_size, False)


# ---------------------------------------------------------------------------------------------- segmentation

def segmentation_sizes(root=None) -> dict:
    """``{set: (train, val, test)}`` images per split, from the segmentation folder's MANIFEST.json."""
    out = {}
    for name, entry in read_manifest(root).items():
        counts = entry.get("counts") if isinstance(entry, dict) else None
        if counts and all(f"{s}_images" in counts for s in ("train", "val", "test")):
            out[name] = tuple(int(counts[f"{s}_images"]) for s in ("train", "val", "test"))
    return out


def _cap(n: int, cap) -> int:
    return n if cap in (None, 0) else min(n, int(cap))


def segmentation_seconds(config: dict, sizes: dict) -> float | None:
    """Seconds of one segmentation unit (pretraining, fine-tuning or scoring); ``None`` when a set's size is
    unknown or nothing was measured."""
    size = int(config["image_size"])
    stage = config["stage"]
    if stage == "segmentation_scoring":
        if config["target"] not in sizes:
            return None
        n = _cap(sizes[config["target"]][0], config.get("max_images"))
        return forward_seconds(n, size, UNET_COST)
    recipe = config["recipe"]
    sets = config.get("sets") or [config.get("target")]
    if any(s not in sizes for s in sets):
        return None
    train = sum(_cap(sizes[s][0], recipe.get("max_train_images")) for s in sets)
    val = sum(_cap(sizes[s][1], recipe.get("max_val_images")) for s in sets)
    test = 0 if stage == "segmentation_pretraining" else sum(
        _cap(sizes[s][2], recipe.get("max_test_images")) for s in sets)
    return training_seconds(train, int(recipe["epochs"]), size, val, test, cost=UNET_COST)


# ---------------------------------------------------------------------------------------------- representations

@lru_cache(maxsize=4)
def similarity_seconds_table(results_dir: str | None = None) -> dict:
    """``{(measure, d): seconds}`` for 10 000 points, from ``benchmarks/results/similarity_*.txt`` (GPU first)."""
    folder = Path(results_dir) if results_dir else RESULTS
    for name in ("similarity_gpu.txt", "similarity_cpu.txt"):
        path = folder / name
        if not path.is_file():
            continue
        out = {}
        for line in path.read_text().splitlines():
            m = re.match(r"(cca|linear_cka|linear_cka_debiased)\s+(\d+)\s+10000\s+([\d.]+)", line)
            if m:
                out[(m.group(1), int(m.group(2)))] = float(m.group(3))
        if out:
            return out
    return {}


def _fold_sizes(config: dict) -> tuple[int, int, int]:
    """(train, val, test) images of one fold of the representations protocol: the flag's images pooled, one of
    ``n_folds`` held out for test, ``val_fraction`` of the rest for validation."""
    data = config.get("data", {})
    pooled = sum(int(v) for v in medmnist_info(config["target"])["n_samples"].values())
    test = pooled // int(data.get("n_folds", 5))
    val = round((pooled - test) * float(data.get("val_fraction", 0.2)))
    train = pooled - test - val
    return (_cap(train, data.get("max_train_images")), _cap(val, data.get("max_val_images")),
            _cap(test, data.get("max_test_images")))


def representations_seconds(config: dict, profile: dict) -> float | None:
    """Seconds of one unit of the representations stage (fine-tuning, activations, or an analysis unit)."""
    unit = config["unit"]
    if unit == "predictions":
        return 0.0
    if unit == "similarity":
        table = similarity_seconds_table()
        sim = (profile.get("representations") or {}).get("similarity", {})
        layers, repeats = len(sim.get("layers", [])) or 5, int(sim.get("repeats", 1))
        d = int(sim.get("channels", 64))
        points = float(sim.get("points", 10000)) / 10000
        per = [table.get((m, d)) for m in config.get("measures", [])]
        if not per or any(p is None for p in per):
            return None
        return sum(per) * layers * repeats * points * (2 if config.get("null") else 1)
    cost = ARCH_COST.get(config.get("arch", "resnet18"))
    if cost is None:
        return None
    train, val, test = _fold_sizes(config)
    size = int(config["image_size"])
    if unit == "finetune":
        return training_seconds(train, int(config["recipe"]["epochs"]), size, val, test, cost=cost)
    if unit == "activations":
        return forward_seconds(val + test, size, cost)
    return None
