"""The joint multi-hot label space of the leave-target-out MedMNIST union source (PROTOCOL.md section 3) and
class-balanced sampling weights."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


#: the order [D]'s pretraining walks the collection in; the joint layout depends on it
UNION_ORDER = ("chestmnist", "pneumoniamnist", "pathmnist", "dermamnist", "octmnist", "retinamnist",
               "breastmnist", "bloodmnist", "tissuemnist", "organamnist", "organcmnist", "organsmnist")
ORGANS = ("organamnist", "organcmnist", "organsmnist")
CHEST_PNEUMONIA, CHEST_NO_FINDING = 6, 14


@dataclass
class UnionLabelSpace:
    """The joint multi-hot label space of a union of MedMNIST flags (PROTOCOL.md section 3).

    Each flag gets a block of units in :data:`UNION_ORDER`; chestmnist has its 14 labels plus a "no finding"
    unit (set when all 14 are 0); pneumoniamnist maps onto chest's "pneumonia" (6) / "no finding" (14) units
    when chestmnist is in the union, else has its own 2 units; organa/c/s share one 11-unit block, placed
    after all other blocks.
    """

    flags: tuple[str, ...]
    layout: dict = field(default_factory=dict)  # flag -> list of global unit indices (its classes in order)
    n_outputs: int = 0
    chest_base: int | None = None

    @classmethod
    def build(cls, flags) -> "UnionLabelSpace":
        unknown = [f for f in flags if f not in UNION_ORDER]
        if unknown:
            raise ValueError(f"unknown flags for the union: {unknown}")
        pool = [f for f in UNION_ORDER if f in set(flags)]
        from medmnist import INFO

        layout, at, chest_base = {}, 0, None
        for f in pool:
            n = len(INFO[f]["label"])
            if f == "chestmnist":
                chest_base = at
                layout[f] = list(range(at, at + n + 1))  # 14 labels + no finding
                at += n + 1
            elif f == "pneumoniamnist" and "chestmnist" in pool:
                layout[f] = None  # filled below, once chest's base is known
            elif f in ORGANS:
                layout[f] = None
            else:
                layout[f] = list(range(at, at + n))
                at += n
        if "pneumoniamnist" in pool and chest_base is not None:
            # class 0 "normal" -> no finding, class 1 "pneumonia" -> chest's pneumonia unit
            layout["pneumoniamnist"] = [chest_base + CHEST_NO_FINDING, chest_base + CHEST_PNEUMONIA]
        organs = [f for f in pool if f in ORGANS]
        for f in organs:
            layout[f] = list(range(at, at + 11))
        if organs:
            at += 11
        return cls(tuple(pool), layout, at, chest_base)

    def encode(self, flag: str, labels) -> np.ndarray:
        """Multi-hot float32 targets (N, n_outputs) for ``labels`` of ``flag`` ((N, 1) or (N, 14) for chest)."""
        y = np.asarray(labels)
        if y.ndim == 1:
            y = y[:, None]
        out = np.zeros((len(y), self.n_outputs), dtype=np.float32)
        units = self.layout[flag]
        if flag == "chestmnist":
            out[:, units[:14]] = y[:, :14]
            out[:, units[14]] = (y[:, :14].sum(1) == 0)
        else:
            out[np.arange(len(y)), np.asarray(units)[y[:, 0]]] = 1.0
        return out

    def sampling_keys(self, flag: str, labels) -> np.ndarray:
        """The unit each sample counts towards for class-balanced sampling: its class's unit (single-label),
        the first positive label or "no finding" (chest)."""
        return self.encode(flag, labels).argmax(1)

    def unit_names(self) -> list[str]:
        from medmnist import INFO

        names = [""] * self.n_outputs
        for f, units in self.layout.items():
            labels = [INFO[f]["label"][str(i)] for i in range(len(INFO[f]["label"]))]
            if f == "chestmnist":
                labels = labels + ["no finding"]
            for u, name in zip(units, labels):
                prefix = "organ" if f in ORGANS else f.replace("mnist", "")
                if not names[u]:
                    names[u] = f"{prefix}:{name}"
        return names


def balanced_weights(keys) -> torch.Tensor:
    """Per-sample weights 1 / (count of the sample's key): WeightedRandomSampler's class balancing."""
    keys = torch.as_tensor(np.asarray(keys))
    counts = torch.bincount(keys)
    return 1.0 / counts[keys].double()
