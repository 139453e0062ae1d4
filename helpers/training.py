"""Training: MedMNIST metrics, the union label space, a resumable device-resident training engine, the
pretraining stage (source models) and the fine-tuning stage (ground truth), PROTOCOL.md sections 3 and 4.

Design for the paper profile (15 sources x 11 targets x 120 configs x 5 folds):

* data stay on the device as uint8 (:class:`helpers.data.TensorImageDataset`), augmented there in batches;
* channels_last and bf16 autocast on CUDA, optional ``torch.compile``;
* no host synchronisation per batch: losses are accumulated on the device and read once per epoch;
* several runs of the same (source, target, fold) advance together (:func:`train_runs`): runs with the same
  batch size and seed share each augmented batch, and on CUDA each run issues its kernels on its own stream;
  every run keeps its own RNG state for dropout, so a run gives the same result alone or in a group;
* every run is resumable per epoch (model, optimizer, scheduler, early-stopping state, best weights), saved as
  safetensors + JSON, atomically, at most every ``save_every_s`` seconds.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import models as M
from .data import MEDMNIST_2D_FLAGS, TensorImageDataset, load_medmnist, paper_fold_indices
from .runner import Stage, atomic_write_csv, atomic_write_text, config_key
from .threads import fair_threads

# ----------------------------------------------------------------------------------------------------------
# MedMNIST metrics (medmnist.evaluator.getAUC / getACC)

MULTILABEL, BINARY, MULTICLASS = "multi-label, binary-class", "binary-class", "multi-class"


def task_kind(task: str) -> str:
    """``multilabel``, ``binary`` or ``multiclass`` (ordinal regression is scored as multi-class)."""
    if task.startswith("multi-label"):
        return "multilabel"
    if task == BINARY:
        return "binary"
    return "multiclass"


def medmnist_auc(y_true, y_score, task: str) -> float:
    """MedMNIST's AUC: multi-label = mean per-label AUC, binary = AUC of the positive class score (last
    column), otherwise mean one-vs-rest AUC over the score columns. ``y_score`` are probabilities."""
    from sklearn.metrics import roc_auc_score

    y_true, y_score = np.asarray(y_true).squeeze(), np.asarray(y_score, dtype=np.float64).squeeze()
    kind = task_kind(task)
    if kind == "multilabel":
        return float(np.mean([roc_auc_score(y_true[:, i], y_score[:, i]) for i in range(y_score.shape[1])]))
    if kind == "binary":
        return float(roc_auc_score(y_true, y_score[:, -1] if y_score.ndim == 2 else y_score))
    return float(np.mean([roc_auc_score((y_true == i).astype(float), y_score[:, i])
                          for i in range(y_score.shape[1])]))


def medmnist_acc(y_true, y_score, task: str, threshold: float = 0.5) -> float:
    """MedMNIST's ACC: threshold 0.5 per label (multi-label, averaged over labels) or on the positive class
    score (binary), argmax otherwise."""
    y_true, y_score = np.asarray(y_true).squeeze(), np.asarray(y_score, dtype=np.float64).squeeze()
    kind = task_kind(task)
    if kind == "multilabel":
        return float(np.mean([(y_true[:, i] == (y_score[:, i] > threshold)).mean() for i in range(y_true.shape[1])]))
    if kind == "binary":
        s = y_score[:, -1] if y_score.ndim == 2 else y_score
        return float((y_true == (s > threshold)).mean())
    return float((y_true == y_score.argmax(-1)).mean())


def probabilities(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    return torch.sigmoid(logits) if multilabel else torch.softmax(logits, -1)


def safe_auc(y_true, y_score, task: str) -> float:
    """:func:`medmnist_auc`, NaN where it is undefined (a class absent from ``y_true``); for multi-label, the
    mean over the labels where it is defined."""
    y_true = np.asarray(y_true)
    if task_kind(task) == "multilabel":
        ok = [i for i in range(y_true.shape[1]) if 0 < y_true[:, i].sum() < len(y_true)]
        if not ok:
            return float("nan")
        return medmnist_auc(y_true[:, ok], np.asarray(y_score)[:, ok], task)
    try:
        return medmnist_auc(y_true, y_score, task)
    except ValueError:
        return float("nan")


# ----------------------------------------------------------------------------------------------------------
# the leave-target-out union source's label space

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


# ----------------------------------------------------------------------------------------------------------
# state (de)serialisation without pickle


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


# ----------------------------------------------------------------------------------------------------------
# the training engine


@dataclass
class RunConfig:
    """One training run's recipe."""

    epochs: int
    batch_size: int = 64
    optimizer: str = "sgd"          # sgd (Nesterov when momentum > 0) | adam
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    scheduler: str | None = "cosine"  # cosine (over epochs) | step | multistep | None
    step_size: int = 15
    gamma: float = 0.1
    milestones: tuple = ()
    monitor: str = "val_auc"        # early stopping and best checkpoint: val_auc (max) | val_loss (min)
    patience: int | None = None     # epochs without improvement before stopping; None = never
    balanced: bool = False          # class-balanced sampling with replacement (torch.multinomial)
    seed: int = 0
    compile: bool = False


class InterruptTraining(RuntimeError):
    """Raised by a callback to stop training (tests simulate a kill with it)."""


def _rng_state(device: torch.device):
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _set_rng_state(state, device: torch.device):
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


def _seeded_rng_state(seed: int, device: torch.device):
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g.get_state()


def make_optimizer(params, name: str, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
    """Adam, or SGD with Nesterov momentum when ``momentum > 0`` (PROTOCOL.md section 4)."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
    raise ValueError(f"unknown optimizer {name!r} (adam or sgd)")


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


class Run(ResumableTraining):
    """A model under training with its optimizer, scheduler, RNG state, history and best weights."""

    def __init__(self, model: nn.Module, cfg: RunConfig, task: str, device, workdir=None, save_every_s=60.0,
                 name: str = "run"):
        self.cfg, self.task, self.name = cfg, task, name
        self.kind = task_kind(task)
        self.device = torch.device(device)
        self.model = model.to(self.device)
        if self.device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)
        self.opt = make_optimizer(self.model.parameters(), cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
        if cfg.scheduler == "cosine":
            self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=max(1, cfg.epochs))
        elif cfg.scheduler == "step":
            self.sched = torch.optim.lr_scheduler.StepLR(self.opt, cfg.step_size, cfg.gamma)
        elif cfg.scheduler == "multistep":
            self.sched = torch.optim.lr_scheduler.MultiStepLR(self.opt, list(cfg.milestones), cfg.gamma)
        elif cfg.scheduler in (None, "none"):
            self.sched = None
        else:
            raise ValueError(f"unknown scheduler {cfg.scheduler!r}")
        self.forward = torch.compile(self.model) if cfg.compile else self.model
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self.epoch = 0                      # epochs finished
        self.history: list[dict] = []
        self.best: dict | None = None       # metrics of the best epoch
        self.best_state: dict | None = None
        self.bad_epochs = 0
        self.stopped = False
        self.rng = None
        self.loss_sum = torch.zeros((), device=self.device)
        self.n_seen = 0
        self.workdir = Path(workdir) if workdir is not None else None
        self.save_every_s = save_every_s
        self._last_save = time.monotonic()

    # -- loss -----------------------------------------------------------------------------------------
    def loss(self, logits, y, reduction="mean"):
        logits = logits.float()
        if self.kind == "multilabel":
            return F.binary_cross_entropy_with_logits(logits, y.float(), reduction=reduction)
        return F.cross_entropy(logits, y, reduction=reduction)

    def autocast(self):
        return M.autocast_context(self.device)

    # -- one optimisation step (no host sync) -----------------------------------------------------------
    @fair_threads()  # fewer CPU threads where torch's OpenMP pool spins on a busy machine (helpers.threads)
    def step(self, x, y):
        _set_rng_state(self.rng, self.device)
        self.model.train()
        with self.autocast():
            out = self.forward(x)
        loss = self.loss(out, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.loss_sum += loss.detach() * len(x)
        self.n_seen += len(x)
        self.rng = _rng_state(self.device)

    def start_epoch(self):
        self.rng = _seeded_rng_state(self.cfg.seed * 1_000_003 + self.epoch + 1, self.device)
        self.loss_sum.zero_()
        self.n_seen = 0

    @torch.no_grad()
    @fair_threads()
    def logits(self, x):
        self.model.eval()
        with self.autocast():
            return self.forward(x).float()

    # -- end of epoch: metrics, early stopping, best weights ---------------------------------------------
    def end_epoch(self, val: dict, seconds: float):
        train_loss = float(self.loss_sum) / max(1, self.n_seen)
        if self.sched is not None:
            self.sched.step()
        self.epoch += 1
        row = {"epoch": self.epoch, "train_loss": train_loss, **val, "seconds": seconds}
        self.history.append(row)
        key = self.cfg.monitor
        value = val[key]
        if self.best is None:
            better = True
        elif key == "val_loss":
            better = value < self.best[key]
        else:
            better = (value > self.best[key]) or (math.isnan(self.best[key]) and not math.isnan(value))
        if better:
            self.best = dict(row)
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        if self.epoch >= self.cfg.epochs or (self.cfg.patience is not None and self.bad_epochs >= self.cfg.patience):
            self.stopped = True
        if self.workdir is not None and (self.stopped or time.monotonic() - self._last_save >= self.save_every_s):
            self.save()

    def load_best(self):
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return self.model


def _stream(run: Run):
    return torch.cuda.stream(run.stream) if run.stream is not None else contextlib.nullcontext()


def _sync_streams(runs):
    if runs and runs[0].stream is not None:
        cur = torch.cuda.current_stream(runs[0].device)
        for r in runs:
            cur.wait_stream(r.stream)


def _epoch_order(n: int, seed: int, epoch: int, device, weights=None):
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed) * 7_919 + int(epoch) + 1)
    if weights is not None:
        order = torch.multinomial(weights.to(device), n, replacement=True, generator=gen)
    else:
        order = torch.randperm(n, generator=gen, device=device)
    return order, gen


@torch.no_grad()
def evaluate(runs: list[Run], dataset: TensorImageDataset, batch_size: int = 256) -> list[dict]:
    """Loss, MedMNIST AUC and ACC of each run on ``dataset`` (no augmentation); one host sync per run."""
    outs = [[] for _ in runs]
    for x, _ in dataset.batches(batch_size):
        if x.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        for r, o in zip(runs, outs):
            with _stream(r):
                o.append(r.logits(x))
    _sync_streams(runs)
    y = dataset.targets
    y_np = y.cpu().numpy()
    res = []
    for r, o in zip(runs, outs):
        logits = torch.cat(o)
        loss = float(r.loss(logits, y))
        p = probabilities(logits, r.kind == "multilabel").cpu().numpy()
        res.append({"val_loss": loss, "val_auc": safe_auc(y_np, p, r.task),
                    "val_acc": medmnist_acc(y_np, p, r.task)})
    return res


def train_runs(runs: list[Run], train: TensorImageDataset, val: TensorImageDataset, sample_weights=None,
               callback=None, eval_batch_size: int = 256) -> list[Run]:
    """Advance ``runs`` (same training data) together until each stops (epoch budget or early stopping).

    Runs that share ``batch_size`` and ``seed`` share each augmented batch. ``callback(run, epoch_row)`` is
    called after each run's epoch (it may raise :class:`InterruptTraining`). Resumes each run from its
    workdir when it holds a saved state.
    """
    for r in runs:
        r.try_resume()
    n = len(train)
    while True:
        active = [r for r in runs if not r.stopped]
        if not active:
            break
        groups: dict = {}
        for r in active:
            groups.setdefault((r.cfg.batch_size, r.cfg.seed, r.epoch, r.cfg.balanced), []).append(r)
        for (bs, seed, epoch, balanced), group in groups.items():
            start = time.perf_counter()
            for r in group:
                r.start_epoch()
            order, gen = _epoch_order(n, seed, epoch, train.device, sample_weights if balanced else None)
            for s in range(0, n, bs):
                idx = order[s:s + bs]
                if len(idx) < 2:  # BatchNorm needs two samples
                    continue
                x, y = train.batch(idx, augment=True, generator=gen)
                if x.device.type == "cuda":
                    x = x.contiguous(memory_format=torch.channels_last)
                for r in group:
                    if r.stream is not None:
                        r.stream.wait_stream(torch.cuda.current_stream(r.device))
                    with _stream(r):
                        r.step(x, y)
            _sync_streams(group)
            vals = evaluate(group, val, eval_batch_size)
            seconds = (time.perf_counter() - start) / len(group)
            for r, v in zip(group, vals):
                r.end_epoch(v, seconds)
                if callback is not None:
                    callback(r, r.history[-1])
    return runs


@torch.no_grad()
def test_run(run: Run, test: TensorImageDataset, batch_size: int = 256) -> dict:
    run.load_best()
    res = evaluate([run], test, batch_size)[0]
    return {"test_loss": res["val_loss"], "test_auc": res["val_auc"], "test_acc": res["val_acc"]}


# ----------------------------------------------------------------------------------------------------------
# profiles -> recipes


def _section(profile: dict, kind: str) -> dict:
    """The pretraining recipe of ``kind`` (single_dataset | union), defaults from PROTOCOL.md."""
    pre = profile["pretraining"]
    base = {k: v for k, v in pre.items() if k not in ("single_dataset", "union")}
    own = pre.get(kind, {})
    defaults = {
        "single_dataset": {"epochs": 100, "batch_size": 128, "optimizer": {"name": "adam", "lr": 0.001},
                           "milestones": [50, 75], "gamma": 0.1, "monitor": "val_auc", "patience": None},
        "union": {"epochs": 45, "batch_size": 128,
                  "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
                  "step_size": 15, "gamma": 0.1, "monitor": "val_loss", "patience": 20},
    }[kind]
    out = {**defaults, **base, **own}
    out.setdefault("architecture", "resnet18")
    return out


def _run_config(recipe: dict, seed: int = 0) -> RunConfig:
    opt = recipe["optimizer"]
    if "milestones" in recipe and recipe.get("milestones"):
        sched = "multistep"
    elif "step_size" in recipe:
        sched = "step"
    else:
        sched = None
    return RunConfig(epochs=int(recipe["epochs"]), batch_size=int(recipe["batch_size"]), optimizer=opt["name"],
                     lr=float(opt["lr"]), momentum=float(opt.get("momentum", 0.0)),
                     weight_decay=float(opt.get("weight_decay", 0.0)), scheduler=sched,
                     step_size=int(recipe.get("step_size", 15)), gamma=float(recipe.get("gamma", 0.1)),
                     milestones=tuple(recipe.get("milestones") or ()), monitor=recipe.get("monitor", "val_auc"),
                     patience=recipe.get("patience"), balanced=bool(recipe.get("balanced", False)), seed=seed,
                     compile=bool(recipe.get("compile", False)))


def _subsample(n: int, k: int | None, seed: int) -> np.ndarray:
    if k is None or k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, int(k), replace=False))


def data_hash(*arrays) -> str:
    import hashlib

    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------------
# pretraining stage


def sources_dir(results_dir) -> Path:
    return Path(results_dir) / "sources"


def union_name(target: str) -> str:
    return f"medmnist_union__{target}"


def pretraining_configs(profile: dict, flags: list[str], targets: list[str]) -> list[dict]:
    """One unit per source to train: each single-dataset source of the profile present in ``flags``, and
    one leave-target-out union per target when ``medmnist_union`` is a source."""
    sources = profile["sources"]["dataset"]
    data = profile["data"]
    out = []
    single = _section(profile, "single_dataset")
    for s in sources:
        if s in flags:
            out.append({"stage": "pretraining", "kind": "single_dataset", "name": s, "flags": [s],
                        "file_size": data["file_size"], "image_size": single.get("image_size", data["image_size"]),
                        "recipe": single, "seed": 0})
    if "medmnist_union" in sources:
        union = {**_section(profile, "union"), "balanced": True}
        for t in targets:
            pool = [f for f in UNION_ORDER if f in flags and f != t]
            if pool:
                out.append({"stage": "pretraining", "kind": "union", "name": union_name(t), "flags": pool,
                            "file_size": data["file_size"],
                            "image_size": union.get("image_size", data["image_size"]), "recipe": union, "seed": 0})
    return out


def _load(flag, size, root, cache: dict):
    key = (flag, size)
    if key not in cache:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cache[key] = load_medmnist(flag, size=size, root=root)
    return cache[key]


def pretrain_unit(config: dict, workdir: Path, results_dir: Path, root=None, device=None, cache=None,
                  callback=None, save_every_s: float = 60.0) -> dict:
    """Train one source model (single dataset or union) and write it to ``<results>/sources/<name>``."""
    cache = {} if cache is None else cache
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    recipe = config["recipe"]
    cfg = _run_config(recipe, config["seed"])
    parts = {s: [] for s in ("train", "val")}
    hashes = {}
    if config["kind"] == "union":
        space = UnionLabelSpace.build(config["flags"])
        task, n_out, classes = MULTILABEL, space.n_outputs, space.unit_names()
    else:
        d0 = _load(config["flags"][0], config["file_size"], root, cache)
        space, task, n_out, classes = None, d0.task, d0.n_classes, d0.class_names
    limits = {"train": recipe.get("max_train_images"), "val": recipe.get("max_val_images")}
    keys = []
    for i, flag in enumerate(config["flags"]):
        d = _load(flag, config["file_size"], root, cache)
        hashes[flag] = d.md5
        for split in ("train", "val"):
            x, y = d.split(split)
            lim = limits[split]
            per_flag = None if lim is None else max(2, int(lim) // len(config["flags"]))
            idx = _subsample(len(x), per_flag, seed=1000 * i + (split == "val"))
            x, y = x[idx], y[idx]
            if x.ndim == 3:
                x = np.repeat(x[..., None], 3, -1)
            if space is not None:
                if split == "train":
                    keys.append(space.sampling_keys(flag, y))
                y = space.encode(flag, y).astype(np.int64)
            parts[split].append((x, y))
    train = TensorImageDataset(np.concatenate([p[0] for p in parts["train"]]),
                               np.concatenate([p[1] for p in parts["train"]]), config["image_size"], device=device)
    val = TensorImageDataset(np.concatenate([p[0] for p in parts["val"]]),
                             np.concatenate([p[1] for p in parts["val"]]), config["image_size"], device=device)
    weights = None
    if cfg.balanced:
        if space is None:
            keys = [train.targets.cpu().numpy() if train.labels.shape[1] == 1 else train.labels.argmax(1).cpu().numpy()]
        weights = balanced_weights(np.concatenate(keys))
    arch = recipe.get("architecture", "resnet18")
    torch.manual_seed(cfg.seed)
    model = M.build_model(arch, n_out, "random", head="linear")
    run = Run(model, cfg, task, device, workdir=workdir, save_every_s=save_every_s, name=config["name"])
    start = time.perf_counter()
    train_runs([run], train, val, sample_weights=weights, callback=callback)
    run.load_best()
    path = M.save_checkpoint(run.model, sources_dir(results_dir) / config["name"], {
        "source": config["name"], "kind": config["kind"], "classes": classes, "task": task,
        "flags": config["flags"], "training": recipe, "image_size": config["image_size"],
        "data_md5": hashes, "train_hash": data_hash(train.images.cpu().numpy()), "best": run.best,
        "epochs_run": run.epoch})
    run.clear_workdir()
    hist = pd.DataFrame(run.history)
    atomic_write_csv(hist, Path(workdir) / "history.csv")
    return {"source": config["name"], "kind": config["kind"], "flags": ",".join(config["flags"]),
            "train_images": len(train), "val_images": len(val), "n_outputs": n_out, "epochs_run": run.epoch,
            "best_epoch": run.best["epoch"], "val_loss": run.best["val_loss"], "val_auc": run.best["val_auc"],
            "val_acc": run.best["val_acc"], "train_seconds": time.perf_counter() - start,
            "checkpoint": str(path), "history": run.history}


def run_pretraining(profile: dict, flags, targets, results_dir, root=None, device=None, progress=True):
    """Run (or resume) every pretraining unit; returns the tidy table (one row per source)."""
    stage = Stage("pretraining", results_dir)
    cache: dict = {}
    configs = pretraining_configs(profile, flags, targets)

    def fn(config, ctx):
        return pretrain_unit(config, ctx.workdir, Path(results_dir), root, device, cache)

    df = stage.run(configs, fn, progress=progress)
    if not df.empty:
        stage.write_table(df.drop(columns=["history"], errors="ignore"))
    return df


# ----------------------------------------------------------------------------------------------------------
# RadImageNet (or any image-folder data set): <root>/<split>/<class>/<image files>

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def read_image_folder(folder, size: int, classes: list[str] | None = None):
    """uint8 images (N, size, size, 3) and labels (N,) of an image folder ``<folder>/<class>/<file>``.

    Images are decoded with PIL once, converted to RGB and resized to ``size`` (bilinear); training then runs
    on the device like MedMNIST. ``classes`` fixes the class order (default: sorted folder names).
    """
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    classes = classes or sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"{folder}: no class folders")
    xs, ys = [], []
    for k, name in enumerate(classes):
        for f in sorted((folder / name).iterdir()) if (folder / name).is_dir() else []:
            if f.suffix.lower() in IMAGE_SUFFIXES:
                with Image.open(f) as im:
                    xs.append(np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.uint8))
                ys.append(k)
    if not xs:
        raise ValueError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return np.stack(xs), np.asarray(ys, dtype=np.int64), classes


#: [D]'s RadImageNet recipe (PROTOCOL.md section 3)
RADIMAGENET_RECIPE = {"epochs": 45, "batch_size": 256, "image_size": 224, "balanced": True,
                      "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
                      "step_size": 15, "gamma": 0.1, "monitor": "val_loss", "patience": None}


def pretrain_image_folder(root, out_path, workdir, recipe: dict | None = None, arch: str = "resnet18",
                          store_size: int | None = None, device=None, callback=None,
                          save_every_s: float = 60.0) -> Path:
    """Train a source from scratch on ``<root>/train/<class>/*`` with ``<root>/val/<class>/*`` for model
    selection (RadImageNet's layout after a split), class-balanced; writes a safetensors checkpoint + JSON."""
    recipe = {**RADIMAGENET_RECIPE, **(recipe or {})}
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    size = int(store_size or recipe["image_size"])
    xt, yt, classes = read_image_folder(Path(root) / "train", size)
    xv, yv, _ = read_image_folder(Path(root) / "val", size, classes)
    train = TensorImageDataset(xt, yt, recipe["image_size"], device=device)
    val = TensorImageDataset(xv, yv, recipe["image_size"], device=device)
    cfg = _run_config(recipe)
    torch.manual_seed(cfg.seed)
    model = M.build_model(arch, len(classes), "random", head="linear")
    run = Run(model, cfg, MULTICLASS if len(classes) > 2 else BINARY, device, workdir=workdir,
              save_every_s=save_every_s)
    train_runs([run], train, val, sample_weights=balanced_weights(yt) if cfg.balanced else None, callback=callback)
    run.load_best()
    path = M.save_checkpoint(run.model, out_path, {"source": "image_folder", "classes": classes,
                                                   "training": recipe, "root": str(root),
                                                   "train_hash": data_hash(xt, yt), "best": run.best})
    run.clear_workdir()
    return path


# ----------------------------------------------------------------------------------------------------------
# sources: what each name resolves to


_IMAGENET_CHECKED: dict = {}


def check_imagenet(arch: str = "resnet18") -> None:
    """Raise :class:`models.SourceUnavailable` when ``arch``'s ImageNet weights cannot be loaded here (the
    answer is remembered for the process, so an offline machine is asked once)."""
    if arch not in _IMAGENET_CHECKED:
        try:
            M.load_source("imagenet", arch)
            _IMAGENET_CHECKED[arch] = None
        except M.SourceUnavailable as exc:
            _IMAGENET_CHECKED[arch] = exc
    if _IMAGENET_CHECKED[arch] is not None:
        raise _IMAGENET_CHECKED[arch]


def resolve_source(profile: dict, source: str, target: str | None, results_dir) -> str:
    """``random``, ``imagenet`` or a checkpoint path for a source name; :class:`models.SourceUnavailable`
    when it cannot be had here (with the reason)."""
    if source in ("random", "imagenet"):
        if source == "imagenet":
            check_imagenet(profile["pretraining"].get("architecture", "resnet18"))
        return source
    if source == "radimagenet":
        path = profile["sources"].get("radimagenet_checkpoint") or os.environ.get("RADIMAGENET_CHECKPOINT")
        if not path:
            raise M.SourceUnavailable("radimagenet", "no checkpoint configured (RadImageNet needs a data-use "
                                      "agreement): set sources.radimagenet_checkpoint or $RADIMAGENET_CHECKPOINT")
        if not Path(path).is_file():
            raise M.SourceUnavailable("radimagenet", f"checkpoint {path} does not exist")
        return str(path)
    name = union_name(target) if source == "medmnist_union" else source
    path = sources_dir(results_dir) / f"{name}.safetensors"
    if not path.is_file():
        if Path(source).suffix in (".pt", ".pth", ".safetensors") and Path(source).is_file():
            return str(source)
        raise M.SourceUnavailable(source, f"no trained checkpoint {path}: run the Pretraining chapter first")
    return str(path)


def source_table(profile: dict, targets, results_dir) -> pd.DataFrame:
    """One row per (source, target): available or not, what it resolves to, and why not."""
    rows = []
    for s in profile["sources"]["dataset"]:
        for t in targets:
            try:
                spec = resolve_source(profile, s, t, results_dir)
                rows.append({"source": s, "target": t, "available": True, "resolves_to": spec, "reason": ""})
            except M.SourceUnavailable as exc:
                rows.append({"source": s, "target": t, "available": False, "resolves_to": "", "reason": exc.reason})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------
# fine-tuning stage (ground truth)

RUN_COLUMNS = ["source", "target", "fold", "lr", "batch_size", "momentum", "weight_decay", "epochs_run",
               "best_epoch", "val_auc", "val_acc", "val_loss", "test_auc", "test_acc", "test_loss", "seconds"]


def finetuning_configs(profile: dict, sources, targets, scenario: str = "dataset") -> list[dict]:
    from .profiles import finetune_grid

    ft, data = profile["finetuning"], profile["data"]
    epochs = ft["epochs"] if scenario == "dataset" else ft.get("epochs_architectures", ft["epochs"])
    out = []
    for t in targets:
        for s in sources:
            for fold in range(1, int(data.get("folds", 5)) + 1):
                for hp in finetune_grid(profile, t):
                    out.append({"stage": "finetuning", "scenario": scenario, "source": s, "target": t, "fold": fold,
                                **hp, "epochs": int(epochs), "patience": ft.get("patience"),
                                "arch": s if scenario == "architecture" else profile["pretraining"].get("architecture", "resnet18"),
                                "head": "linear" if scenario == "architecture" else "dropout_linear",
                                "file_size": data["file_size"], "image_size": ft.get("image_size", data["image_size"]),
                                "fold_seed": data.get("fold_seed", 24), "max_train_images": ft.get("max_train_images"),
                                "max_test_images": ft.get("max_test_images"), "seed": 0})
    return out


def target_datasets(config: dict, root=None, device=None, cache=None):
    """Train (fold subset), val (fold subset) and test (whole) datasets of a fine-tuning config."""
    cache = {} if cache is None else cache
    d = _load(config["target"], config["file_size"], root, cache)
    folds = paper_fold_indices(len(d.labels["train"]), len(d.labels["val"]), d.n_classes,
                               max(config["fold"], 1), config["fold_seed"])
    tr, va = folds[config["fold"] - 1]
    if config.get("max_train_images"):
        tr = tr[: int(config["max_train_images"])]
    te = np.arange(len(d.labels["test"]))
    if config.get("max_test_images"):
        te = _subsample(len(te), int(config["max_test_images"]), seed=config["fold"])
    mean, std = M.normalization_for(config["source"] if config["scenario"] == "dataset" else "imagenet")
    kw = dict(image_size=config["image_size"], mean=mean, std=std, device=device)
    return (d, TensorImageDataset.from_medmnist(d, "train", indices=tr, **kw),
            TensorImageDataset.from_medmnist(d, "val", indices=va, **kw),
            TensorImageDataset.from_medmnist(d, "test", indices=te, **kw))


def finetune_group(configs: list[dict], spec: str, workdirs: list, root=None, device=None, cache=None,
                   callback=None, save_every_s: float = 60.0, eval_batch_size: int = 256) -> list[dict]:
    """Fine-tune several configs of one (source, target, fold) together; one result row per config."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    c0 = configs[0]
    d, train, val, test = target_datasets(c0, root, device, cache)
    runs = []
    for c, wd in zip(configs, workdirs):
        torch.manual_seed(c["seed"])  # same head init for every config of a source
        model = M.build_model(c["arch"], d.n_classes, spec, head=c["head"])
        cfg = RunConfig(epochs=c["epochs"], batch_size=c["batch_size"], optimizer="sgd", lr=c["lr"],
                        momentum=c["momentum"], weight_decay=c["weight_decay"], scheduler="cosine",
                        monitor="val_auc", patience=c["patience"], seed=c["seed"], compile=c.get("compile", False))
        runs.append(Run(model, cfg, d.task, device, workdir=wd, save_every_s=save_every_s))
    start = time.perf_counter()
    train_runs(runs, train, val, callback=callback, eval_batch_size=eval_batch_size)
    seconds = (time.perf_counter() - start) / len(runs)
    rows = []
    for c, r in zip(configs, runs):
        test_res = test_run(r, test, eval_batch_size)
        rows.append({"source": c["source"], "target": c["target"], "fold": c["fold"], "lr": c["lr"],
                     "batch_size": c["batch_size"], "momentum": c["momentum"], "weight_decay": c["weight_decay"],
                     "epochs_run": r.epoch, "best_epoch": r.best["epoch"], "val_auc": r.best["val_auc"],
                     "val_acc": r.best["val_acc"], "val_loss": r.best["val_loss"], **test_res,
                     "seconds": seconds, "history": r.history})
        r.clear_workdir()
    return rows


def run_finetuning(profile: dict, sources, targets, results_dir, root=None, device=None, scenario="dataset",
                   progress=True, group_size: int | None = None):
    """Run (or resume) the fine-tuning sweep. Configs of one (source, target, fold) are advanced together in
    groups of ``group_size`` (default: all of them). Returns ``(runs, unavailable)``: the tidy table of runs
    and a table of the (source, target) pairs whose source is unavailable here, with the reason."""
    stage = Stage("finetuning" if scenario == "dataset" else "finetuning_architectures", results_dir)
    cache: dict = {}
    configs = finetuning_configs(profile, sources, targets, scenario)
    groups: dict = {}
    for c in configs:
        groups.setdefault((c["source"], c["target"], c["fold"]), []).append(c)
    unavailable, keys = [], []
    from tqdm.auto import tqdm

    bar = tqdm(total=len(configs), desc=stage.name, disable=not progress)
    for (source, target, fold), group in groups.items():
        try:
            if scenario == "architecture":
                check_imagenet(source)
                spec = "imagenet"
            else:
                spec = resolve_source(profile, source, target, results_dir)
        except M.SourceUnavailable as exc:
            unavailable.append({"source": source, "target": target, "fold": fold, "reason": exc.reason})
            bar.update(len(group))
            continue
        todo = [c for c in group if not stage.is_done(c)]
        keys += [config_key(c) for c in group]
        step = group_size or len(todo) or 1
        for i in range(0, len(todo), step):
            chunk = todo[i:i + step]
            rows = finetune_group(chunk, spec, [stage.workdir(config_key(c)) for c in chunk], root, device, cache)
            by_key = {config_key(c): r for c, r in zip(chunk, rows)}
            stage.run(chunk, lambda c, ctx: by_key[ctx.key], progress=False)
        bar.update(len(group))
    bar.close()
    runs = stage.collect(keys)
    if not runs.empty:
        stage.write_table(runs.drop(columns=["history"], errors="ignore"))
    return runs, pd.DataFrame(unavailable, columns=["source", "target", "fold", "reason"])


def select_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (source, target, fold), the run with the lowest val loss ([D]'s rule; ties: first in the table)."""
    order = runs.sort_values("val_loss", kind="stable")
    return order.groupby(["source", "target", "fold"], sort=True).head(1).reset_index(drop=True)


def ground_truth_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Ground truth (source x target): test AUC of the lowest-val-loss run, averaged over folds."""
    sel = select_runs(runs)
    table = sel.pivot_table(index="source", columns="target", values="test_auc", aggfunc="mean")
    table.index.name, table.columns.name = "source", "target"
    return table


def write_ground_truth(runs: pd.DataFrame, results_dir) -> Path:
    """``<results>/ground_truth.csv`` (wide: a ``source`` column, one column per target) and
    ``ground_truth_runs.csv`` (the selected runs)."""
    table = ground_truth_table(runs)
    path = Path(results_dir) / "ground_truth.csv"
    atomic_write_csv(table.reset_index(), path)
    sel = select_runs(runs)
    atomic_write_csv(sel[[c for c in RUN_COLUMNS if c in sel.columns]], Path(results_dir) / "ground_truth_runs.csv")
    return path
