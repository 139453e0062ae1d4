"""Training state without pickle: nested dicts of tensors and plain values as safetensors + JSON, written
atomically, and :class:`ResumableTraining`, the per-epoch resume shared by the classification and segmentation
loops."""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch

from ..runner import atomic_write_text


def improves(value: float, best: float | None, lower_is_better: bool) -> bool:
    """Whether a monitored value beats the best so far (the first value always does; for a maximised value a
    real number beats a NaN best, so an epoch with an undefined AUC never blocks a later defined one)."""
    if best is None:
        return True
    if lower_is_better:
        return value < best
    return value > best or (math.isnan(best) and not math.isnan(value))


def _flatten_state(obj, prefix: str, tensors: dict):
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().to("cpu").contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[_flatten_state(k, f"{prefix}.k{i}", tensors), _flatten_state(v, f"{prefix}.{i}", tensors)]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)],
                "tuple": isinstance(obj, tuple)}
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot serialise {type(obj).__name__} in training state at {prefix}")


def _unflatten_state(obj, tensors: dict):
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {_unflatten_state(k, tensors): _unflatten_state(v, tensors) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            items = [_unflatten_state(v, tensors) for v in obj["__list__"]]
            return tuple(items) if obj.get("tuple") else items
        if "__float__" in obj:
            return float(obj["__float__"])
    return obj


def save_state(path_json: Path, state: dict) -> None:
    """Write a nested state (tensors + plain values) as ``<name>-<stamp>.safetensors`` plus ``<name>.json``
    pointing at it; both atomic, the JSON last, so a crash leaves the previous state readable."""
    from safetensors.torch import save_file

    path_json = Path(path_json)
    tensors: dict = {}
    skeleton = _flatten_state(state, "s", tensors)
    stamp = f"{time.time_ns()}"
    blob = path_json.with_name(f"{path_json.stem}-{stamp}.safetensors")
    tmp = blob.with_name(f".{blob.name}.tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, blob)
    old = None
    if path_json.is_file():
        old = json.loads(path_json.read_text()).get("tensors")
    atomic_write_text(path_json, json.dumps({"tensors": blob.name, "state": skeleton}))
    if old and old != blob.name:
        (path_json.parent / old).unlink(missing_ok=True)


def load_state(path_json: Path, device=None) -> dict | None:
    from safetensors.torch import load_file

    path_json = Path(path_json)
    if not path_json.is_file():
        return None
    meta = json.loads(path_json.read_text())
    tensors = load_file(str(path_json.parent / meta["tensors"]), device=str(device or "cpu"))
    return _unflatten_state(meta["state"], tensors)


class ResumableTraining:
    """Per-epoch resume for a training loop object: ``save`` writes its state (model, optimizer, scheduler,
    history, best weights) atomically as ``<workdir>/state.json`` + tensors, ``try_resume`` reads it back,
    ``clear_workdir`` removes it once the run is finished. Subclasses set ``model``, ``opt``, ``sched``,
    ``epoch``, ``history``, ``best``, ``bad_epochs``, ``stopped``, ``best_state``, ``workdir``, ``device`` and
    ``_last_save``."""

    def _state(self) -> dict:
        return {"epoch": self.epoch, "history": self.history, "best": self.best, "bad_epochs": self.bad_epochs,
                "stopped": self.stopped, "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict() if self.sched is not None else None,
                "best_state": self.best_state}

    def track_best(self, row: dict, key: str, max_epochs: int, patience: int | None) -> None:
        """After an epoch: keep ``row`` and a copy of the weights when ``row[key]`` improves on the best epoch
        (``val_loss`` is minimised, anything else maximised; :func:`improves`), count epochs without
        improvement, and stop at ``max_epochs`` or after ``patience`` of them."""
        if improves(row[key], None if self.best is None else self.best[key], lower_is_better=key == "val_loss"):
            self.best = dict(row)
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        if self.epoch >= max_epochs or (patience is not None and self.bad_epochs >= patience):
            self.stopped = True

    def save(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        save_state(self.workdir / "state.json", self._state())
        self._last_save = time.monotonic()

    def try_resume(self) -> bool:
        if self.workdir is None:
            return False
        state = load_state(self.workdir / "state.json", self.device)
        if state is None:
            return False
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if self.sched is not None and state["scheduler"] is not None:
            self.sched.load_state_dict(state["scheduler"])
        self.epoch, self.history, self.best = state["epoch"], state["history"], state["best"]
        self.bad_epochs, self.stopped, self.best_state = state["bad_epochs"], state["stopped"], state["best_state"]
        return True

    def clear_workdir(self):
        if self.workdir is not None:
            for p in self.workdir.glob("state*"):
                p.unlink(missing_ok=True)
