"""The classification training engine: :class:`Run` (a model under training with its optimizer, scheduler, RNG
state, early stopping and best weights) and :func:`train_runs`, which advances several runs of the same data
together on one device.

* data stay on the device as uint8 (:class:`helpers.data.TensorImageDataset`), augmented there in batches;
* channels_last and bf16 autocast on CUDA, optional ``torch.compile``;
* no host synchronisation per batch: losses are accumulated on the device and read once per epoch;
* runs with the same batch size and seed share each augmented batch, and on CUDA each run issues its kernels on
  its own stream; every run keeps its own RNG state for dropout, so a run gives the same result alone or in a
  group;
* every run is resumable per epoch (:class:`helpers.trainer.state.ResumableTraining`).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import models as M
from ..data import TensorImageDataset
from ..threads import fair_threads
from .auc import auc_over_present, medmnist_acc, probabilities, task_kind
from .state import ResumableTraining


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
    monitor: str = "val_auc"        # early stopping and best checkpoint: val_auc | val_acc (max) | val_loss (min)
    patience: int | None = None     # epochs without improvement before stopping; None = never
    balanced: bool = False          # class-balanced sampling with replacement (torch.multinomial)
    augment: bool = True            # the dataset's training augmentation on the device; MedMNIST's recipe has none
    seed: int = 0
    compile: bool = False
    # module-name prefixes that train (e.g. ("fc",) for a head-only phase); every other module is frozen: no
    # gradient, not in the optimizer, BatchNorm statistics fixed (eval mode), as Keras's trainable=False.
    # None = the whole model trains.
    trainable: tuple | None = None


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
        params, self.frozen_modules = _trainable_split(self.model, cfg.trainable)
        self.opt = make_optimizer(params, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
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
        self.steps = 0                      # optimizer steps taken (recorded in each history row)
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
        for m in self.frozen_modules:
            m.eval()
        with self.autocast():
            out = self.forward(x)
        loss = self.loss(out, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.steps += 1
        self.loss_sum += loss.detach() * len(x)
        self.n_seen += len(x)
        self.rng = _rng_state(self.device)

    def start_epoch(self):
        self.rng = _seeded_rng_state(self.cfg.seed * 1_000_003 + self.epoch + 1, self.device)
        self.loss_sum.zero_()
        self.n_seen = 0

    @fair_threads()
    @torch.no_grad()
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
        row = {"epoch": self.epoch, "train_loss": train_loss, **val, "seconds": seconds, "steps": self.steps}
        self.history.append(row)
        key = self.cfg.monitor
        if key == "val_auc" and math.isnan(val[key]) and self.best is not None and math.isnan(self.best[key]):
            key = "val_loss"  # the AUC is undefined on this validation set (e.g. one class): fall back, recorded
            row["monitor_fallback"] = "val_loss"
        self.track_best(row, key, self.cfg.epochs, self.cfg.patience)
        # a stopped run is not saved (as in the segmentation trainer): its result is written right after, and a
        # run killed before that is trained again from its last save, to the same numbers (batch order and
        # dropout come from the seed and epoch). The final save of ~130 MB per run cost more than a fine-tuning
        # epoch on 28 px images.
        if self.workdir is not None and not self.stopped and time.monotonic() - self._last_save >= self.save_every_s:
            self.save()

    def load_best(self):
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return self.model

    def try_resume(self) -> bool:
        resumed = super().try_resume()
        if resumed:
            self.steps = int(self.history[-1].get("steps", 0)) if self.history else 0
        return resumed


def _trainable_split(model: nn.Module, prefixes) -> tuple[list, list]:
    """``(parameters to optimise, leaf modules to keep in eval mode)`` for :attr:`RunConfig.trainable`: with
    prefixes, the parameters of the modules under them train and every other parameter gets
    ``requires_grad=False``; without, all parameters go to the optimizer and ``requires_grad`` is left as it is
    (after a head phase, switch it back on before training the whole model)."""
    if prefixes is None:
        return list(model.parameters()), []
    prefixes = tuple(prefixes)
    names = [n for n, _ in model.named_modules() if n]
    unknown = [p for p in prefixes if p not in names]
    if unknown:
        raise ValueError(f"trainable: no module named {unknown} in the model (top level: "
                         f"{[n for n in names if '.' not in n]})")

    def under(name):
        return any(name == p or name.startswith(p + ".") for p in prefixes)

    params = []
    for name, p in model.named_parameters():
        p.requires_grad_(under(name.rsplit(".", 1)[0]))
        if p.requires_grad:
            params.append(p)
    frozen = [m for n, m in model.named_modules() if n and not under(n) and not list(m.children())]
    return params, frozen


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
        auc, used, total = auc_over_present(y_np, p, r.task)
        res.append({"val_loss": loss, "val_auc": auc, "val_acc": medmnist_acc(y_np, p, r.task),
                    "val_auc_classes": used, "val_auc_classes_total": total})
    return res


def train_runs(runs: list[Run], train: TensorImageDataset, val: TensorImageDataset, sample_weights=None,
               callback=None, eval_batch_size: int = 256) -> list[Run]:
    """Advance ``runs`` (same training data) together until each stops (epoch budget or early stopping).

    Runs that share ``batch_size``, ``seed`` and the augmentation switch share each (augmented) batch.
    ``callback(run, epoch_row)`` is called after each run's epoch (it may raise :class:`InterruptTraining`).
    Resumes each run from its workdir when it holds a saved state.
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
            groups.setdefault((r.cfg.batch_size, r.cfg.seed, r.epoch, r.cfg.balanced, r.cfg.augment), []).append(r)
        for (bs, seed, epoch, balanced, augment), group in groups.items():
            start = time.perf_counter()
            for r in group:
                r.start_epoch()
            order, gen = _epoch_order(n, seed, epoch, train.device, sample_weights if balanced else None)
            for s in range(0, n, bs):
                idx = order[s:s + bs]
                if len(idx) < 2:  # BatchNorm needs two samples
                    continue
                x, y = train.batch(idx, augment=augment, generator=gen)
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
