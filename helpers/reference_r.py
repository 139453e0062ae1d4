"""The published tables of [R] (Juodelyte, Jiménez-Sánchez, Cheplygina, TMLR 2023) as tidy tables.

The tables live in ``data/reference/juodelyte2023/results/`` (copied unchanged from github.com/DovileDo/
revisiting-transfer at commit 54853c3, MIT licence; the v1 numbers of 2023-02, see the README there and
PROTOCOL.md section 8). Their formats, as read here:

``AUC.csv``
    ``target, source, freeze, fold, AUC``: test AUC as a *fraction* per target (7), source (``ImageNet``,
    ``RadImageNet``, ``random`` = fine-tuned from random init), ``freezeTrue`` / ``freezeFalse`` (no freeze
    variant for ``random``) and ``fold1`` .. ``fold5``. [R]'s code computes it on each fold's
    ``val_fold<k>.csv`` images (scikit-learn; multi-class one-vs-rest, weighted).
``AUC_mean.csv``
    the same rows in *percent* with a leading index and the published ``mean`` (1 decimal) and ``std``
    (sample SD, ddof = 1, 2 decimals) over the 5 folds repeated on every row.
``CCA_<target>.csv``
    ``model1, model2, fold, stimuli, conv1, block1 .. block4``: mean CCA similarity (PROTOCOL.md section 8:
    google/svcca CCA on 64 random channels and about 10 000 spatial positions, mean of all coefficients,
    averaged over 5 draws) at the stem ReLU and the four residual stages of a ResNet-50, on ``<target>``'s
    images. Model names: ``ImageNet`` / ``RadImageNet`` = the pre-trained network, ``random`` = a freshly
    initialised, untrained one (a new random init each time it is loaded, so ``random`` vs ``random`` is two
    different inits), ``<target>-<source>-freeze<True|False>`` = fine-tuned on ``<target>``. 14 pairs per
    target (see :data:`PAIR_KINDS`) x 5 folds.
``simVSaucImNet.csv``, ``simVSaucRadNet.csv``
    the pre-trained vs fine-tuned (no freeze) rows of the CCA tables, per source (no AUC columns despite the
    name: [R]'s plotting script joins ``AUC.csv`` at read time). :func:`similarity_vs_gain` rebuilds them.
``similarity.csv``
    ``target, model1 (ImageNet), model2 (RadImageNet), freeze, fold, prob, value``: the prediction similarity
    of the ImageNet-fine-tuned vs the RadImageNet-fine-tuned network, ``prob == "real"`` the fraction of images
    on which both are right or both wrong, ``prob == "rand"`` [R]'s "independent" baseline as coded,
    ``acc_A^2 + (1 - acc_A)^2`` with acc_A the ImageNet network's accuracy (a defect; see
    :func:`load_prediction_similarity` for what the tables allow instead).

[R]'s Breast and Chest targets come from the same image sources as BreastMNIST and PneumoniaMNIST, ISIC from
DermaMNIST's (:data:`MEDMNIST_COUNTERPARTS`); resolutions, splits and architectures differ, so the MedMNIST runs
are comparable, not reproductions.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.paths import PROJECT_ROOT
from helpers.similarity import R_STAGE_OF_LAYER

#: [R]'s seven targets, in the order of its figures' file names
TARGETS = ("breast", "chest", "isic", "knee", "mammograms", "pcam-small", "thyroid")
#: sources of fine-tuning (``random`` = random initialisation)
SOURCES = ("ImageNet", "RadImageNet", "random")
#: [R]'s column names for the five places it compares, and the torchvision module of each
STAGES = ("conv1", "block1", "block2", "block3", "block4")
LAYER_OF_STAGE = {stage: layer for layer, stage in R_STAGE_OF_LAYER.items()}
#: the MedMNIST flag with the same image source as an [R] target (PROTOCOL.md section 8)
MEDMNIST_COUNTERPARTS = {"breast": "breastmnist", "chest": "pneumoniamnist", "isic": "dermamnist"}
#: [R]'s input side per target in its code (Breast 224 px; Chest and ISIC 112 px), by MedMNIST counterpart
INPUT_SIZE = {"breastmnist": 224, "pneumoniamnist": 112, "dermamnist": 112}
#: [R]'s images per fold: its split files train on 80 % of a target's images and hold out the other 20 %; this
#: project carves its validation set out of the training part (64 / 16 / 20 %)
TRAIN_SHARE = 0.8

#: the kinds of network pairs in the CCA tables
PAIR_KINDS = {
    "pretrained_vs_finetuned": "a pre-trained network vs itself after fine-tuning (with or without freeze)",
    "finetuned_across_sources": "ImageNet-fine-tuned vs RadImageNet-fine-tuned, same target, same freeze",
    "pretrained_across_sources": "ImageNet vs RadImageNet, both before fine-tuning",
    "vs_untrained": "a pre-trained or fine-tuned network vs an untrained (random) one",
    "untrained_vs_untrained": "two untrained networks (two random inits): the floor",
    "freeze_vs_no_freeze": "the same source fine-tuned with the freeze variant vs without",
}

_FINETUNED = re.compile(r"^(?P<target>.+)-(?P<source>ImageNet|RadImageNet|random)-freeze(?P<freeze>True|False)$")


def reference_dir(path: str | os.PathLike | None = None) -> Path:
    """The folder holding [R]'s ``results/``: ``path``, else the project's copy ``data/reference/juodelyte2023``."""
    root = Path(path).expanduser().resolve() if path is not None else PROJECT_ROOT / "data" / "reference" / "juodelyte2023"
    if not (root / "results" / "AUC.csv").is_file():
        raise FileNotFoundError(f"no [R] reference tables under {root} (expected results/AUC.csv)")
    return root


def _results(ref_dir) -> Path:
    return reference_dir(ref_dir) / "results"


def _fold(col: pd.Series) -> pd.Series:
    return col.str.removeprefix("fold").astype(int)


def _freeze(col: pd.Series) -> pd.Series:
    return col.map({"freezeTrue": True, "freezeFalse": False}).astype(bool)


def load_auc(ref_dir=None) -> pd.DataFrame:
    """``target, source, freeze (bool), fold (1..5), auc (fraction)``: 175 rows (7 targets x (2 sources x 2
    freeze variants + random init) x 5 folds)."""
    df = pd.read_csv(_results(ref_dir) / "AUC.csv")
    return pd.DataFrame({"target": df.target, "source": df.source, "freeze": _freeze(df.freeze),
                         "fold": _fold(df.fold), "auc": df.AUC.astype(float)})


def load_auc_summary(ref_dir=None) -> pd.DataFrame:
    """The published mean and SD over folds per ``target, source, freeze``, in percent as printed
    (``mean_percent`` to 1 decimal, ``sd_percent`` = sample SD to 2 decimals), from ``AUC_mean.csv``."""
    df = pd.read_csv(_results(ref_dir) / "AUC_mean.csv", index_col=0)
    out = df.groupby(["target", "source", "freeze"], sort=False)[["mean", "std"]].first().reset_index()
    out["freeze"] = _freeze(out.freeze)
    return out.rename(columns={"mean": "mean_percent", "std": "sd_percent"})


@dataclass(frozen=True)
class ModelName:
    """One network of [R]'s tables: ``role`` is ``pretrained``, ``finetuned`` or ``untrained``."""

    role: str
    source: str          # ImageNet, RadImageNet or random
    target: str | None   # the fine-tuning target (fine-tuned networks only)
    freeze: bool | None  # the freeze variant (fine-tuned networks only)

    @property
    def label(self) -> str:
        if self.role != "finetuned":
            return self.source
        return f"{self.source}-FT" + (" (freeze)" if self.freeze else "")


def parse_model(name: str) -> ModelName:
    """``"ImageNet"`` -> pre-trained, ``"random"`` -> untrained, ``"breast-ImageNet-freezeFalse"`` -> fine-tuned."""
    if name in ("ImageNet", "RadImageNet"):
        return ModelName("pretrained", name, None, None)
    if name == "random":
        return ModelName("untrained", "random", None, None)
    m = _FINETUNED.match(name)
    if not m:
        raise ValueError(f"unrecognised [R] model name {name!r}")
    return ModelName("finetuned", m["source"], m["target"], m["freeze"] == "True")


def pair_kind(model1: str, model2: str) -> str:
    """The kind (a key of :data:`PAIR_KINDS`) of a pair of [R] model names, in either order."""
    a, b = parse_model(model1), parse_model(model2)
    roles = {a.role, b.role}
    if roles == {"untrained"}:
        return "untrained_vs_untrained"
    if "untrained" in roles:
        return "vs_untrained"
    if roles == {"pretrained"}:
        return "pretrained_across_sources"
    if roles == {"pretrained", "finetuned"}:
        if a.source == b.source:
            return "pretrained_vs_finetuned"
    elif a.source != b.source and a.freeze == b.freeze:
        return "finetuned_across_sources"
    elif a.source == b.source and a.freeze != b.freeze:
        return "freeze_vs_no_freeze"
    raise ValueError(f"pair {model1!r} vs {model2!r} is none of {sorted(PAIR_KINDS)}")


def load_cca(targets=TARGETS, ref_dir=None) -> pd.DataFrame:
    """All CCA tables, long: one row per ``target, model1, model2, fold, stage``, with the ``cca`` value, the
    torchvision ``layer`` of the stage, the ``pair_kind`` (:data:`PAIR_KINDS`), a readable ``pair`` label and
    each network's ``role``, ``source`` and ``freeze`` (``<NA>`` unless fine-tuned). 7 targets x 14 pairs x
    5 folds x 5 stages = 2450 rows."""
    parts = []
    for target in targets:
        path = _results(ref_dir) / f"CCA_{target}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"no CCA table for target {target!r}: {path}")
        wide = pd.read_csv(path)
        long = wide.melt(id_vars=["model1", "model2", "fold", "stimuli"], value_vars=list(STAGES),
                         var_name="stage", value_name="cca")
        long.insert(0, "target", target)
        parts.append(long)
    df = pd.concat(parts, ignore_index=True)
    if not (df.stimuli == df.target).all():
        raise ValueError("a CCA table holds rows computed on another target's images")
    df["fold"] = _fold(df.fold)
    pairs = df[["model1", "model2"]].drop_duplicates()
    info = {}
    for m1, m2 in pairs.itertuples(index=False):
        a, b = parse_model(m1), parse_model(m2)
        info[(m1, m2)] = {"pair_kind": pair_kind(m1, m2), "pair": f"{a.label} vs {b.label}",
                          "role1": a.role, "source1": a.source, "freeze1": a.freeze,
                          "role2": b.role, "source2": b.source, "freeze2": b.freeze}
    meta = pd.DataFrame([info[k] for k in zip(df.model1, df.model2)])
    for col in ("freeze1", "freeze2"):
        meta[col] = meta[col].astype("boolean")
    df = pd.concat([df.drop(columns="stimuli"), meta], axis=1)
    df["layer"] = df.stage.map(LAYER_OF_STAGE)
    df["stage"] = pd.Categorical(df.stage, categories=list(STAGES), ordered=True)
    cols = ["target", "model1", "model2", "pair_kind", "pair", "fold", "stage", "layer", "cca",
            "role1", "source1", "freeze1", "role2", "source2", "freeze2"]
    return df[cols].sort_values(["target", "pair_kind", "model1", "model2", "fold", "stage"]).reset_index(drop=True)


def cca_summary(cca_long: pd.DataFrame | None = None, ref_dir=None) -> pd.DataFrame:
    """Mean, SD (ddof = 1, as [R]'s seaborn ``errorbar="sd"``) and count over folds of :func:`load_cca`, per
    ``target, pair_kind, pair, model1, model2, stage``: the curves of [R]'s CCA figures."""
    df = load_cca(ref_dir=ref_dir) if cca_long is None else cca_long
    keys = ["target", "pair_kind", "pair", "model1", "model2", "stage"]
    out = df.groupby(keys, observed=True, sort=True)["cca"].agg(mean="mean", sd="std", n_folds="count")
    return out.reset_index()


def load_prediction_similarity(ref_dir=None) -> pd.DataFrame:
    """[R]'s prediction similarity of ImageNet-fine-tuned (A) vs RadImageNet-fine-tuned (B) networks, per
    ``target, freeze, fold`` (70 rows), with what the tables allow to say about the correct baseline.

    Columns:

    - ``observed``: fraction of images on which both networks are right or both wrong (``real``);
    - ``r_baseline``: [R]'s "independent" baseline as coded, ``acc_A^2 + (1 - acc_A)^2`` (``rand``);
    - ``accuracy_a``: A's accuracy solved from it, ``(1 + sqrt(2 r - 1)) / 2``; the equation has a second root
      ``1 - accuracy_a``, which the tables cannot exclude;
    - ``accuracy_b_low`` / ``_high``: the accuracies of B compatible with ``accuracy_a`` and the observed
      agreement. B's accuracy is not in the tables (``AUC.csv`` holds AUC, not accuracy), but with a
      disagreement ``D = 1 - observed``: two networks whose accuracies differ by ``delta`` disagree on at least
      ``delta`` of the images (``|acc_B - acc_A| <= D``), and they can disagree on at most
      ``min(acc_A, 1 - acc_B) + min(1 - acc_A, acc_B)``, which gives ``D - acc_A <= acc_B <= 2 - acc_A - D``;
      the two roots of ``accuracy_a`` give the same ranges of the baseline and kappa below;
    - ``r_baseline_feasible``: whether ``acc_B = acc_A``, the assumption under which [R]'s baseline is the
      correct one, is compatible with the observed agreement at all;
    - ``correct_baseline_low`` / ``_high``: the range of the correct independent-errors baseline
      ``acc_A acc_B + (1 - acc_A)(1 - acc_B) = r_baseline + (2 acc_A - 1)(acc_B - acc_A)`` over that range of
      ``acc_B``. The baseline itself is not recoverable from the tables; it equals [R]'s exactly when the two
      accuracies are equal;
    - ``kappa_r_baseline``: Cohen's kappa of error consistency against [R]'s baseline; ``kappa_low`` /
      ``kappa_high``: its range over the correct baseline's range (kappa falls as the baseline rises);
    - ``auc_a``, ``auc_b``: the two networks' AUC on the same fold (``AUC.csv``), for context.
    """
    raw = pd.read_csv(_results(ref_dir) / "similarity.csv")
    if not ((raw.model1 == "ImageNet") & (raw.model2 == "RadImageNet")).all():
        raise ValueError("similarity.csv: expected model1 = ImageNet and model2 = RadImageNet on every row")
    wide = raw.pivot_table(index=["target", "freeze", "fold"], columns="prob", values="value").reset_index()
    out = pd.DataFrame({"target": wide.target, "freeze": _freeze(wide.freeze), "fold": _fold(wide.fold),
                        "observed": wide.real, "r_baseline": wide.rand})
    p_o, r = out.observed.to_numpy(), out.r_baseline.to_numpy()
    a = (1 + np.sqrt(np.clip(2 * r - 1, 0, None))) / 2
    b_lo, b_hi = _accuracy_b_range(a, 1 - p_o)
    out["accuracy_a"] = a
    out["accuracy_b_low"], out["accuracy_b_high"] = b_lo, b_hi
    out["r_baseline_feasible"] = (b_lo <= a + 1e-12) & (a <= b_hi + 1e-12)
    # p_e = acc_a acc_b + (1 - acc_a)(1 - acc_b) = r + (2 acc_a - 1)(acc_b - acc_a): linear in acc_b, acc_a >= .5
    out["correct_baseline_low"] = r + (2 * a - 1) * (b_lo - a)
    out["correct_baseline_high"] = r + (2 * a - 1) * (b_hi - a)

    def kappa(p_e):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(p_e < 1, (p_o - p_e) / (1 - p_e), np.nan)

    out["kappa_r_baseline"] = kappa(r)
    out["kappa_low"] = kappa(out.correct_baseline_high.to_numpy())
    out["kappa_high"] = kappa(out.correct_baseline_low.to_numpy())
    auc = load_auc(ref_dir)
    for side, source in (("auc_a", "ImageNet"), ("auc_b", "RadImageNet")):
        part = auc[auc.source == source][["target", "freeze", "fold", "auc"]].rename(columns={"auc": side})
        out = out.merge(part, on=["target", "freeze", "fold"], how="left")
    return out.sort_values(["target", "freeze", "fold"]).reset_index(drop=True)


def _accuracy_b_range(acc_a, disagreement):
    """The accuracies of B compatible with A's accuracy and the fraction of images on which exactly one of the
    two is right: ``|b - a| <= D`` (the accuracy gap needs that many disagreements) and
    ``D <= min(a, 1 - b) + min(1 - a, b)`` (at most that many are possible), which is
    ``max(0, a - D, D - a) <= b <= min(1, a + D, 2 - a - D)``."""
    a, d = np.asarray(acc_a, float), np.asarray(disagreement, float)
    lo = np.maximum.reduce([np.zeros_like(a), a - d, d - a])
    hi = np.minimum.reduce([np.ones_like(a), a + d, 2 - a - d])
    return lo, hi


def similarity_vs_gain(ref_dir=None, sources=("ImageNet", "RadImageNet"), freeze: bool = False) -> pd.DataFrame:
    """Per ``source, target, fold, stage``: CCA of the pre-trained vs the fine-tuned network (``cca``) beside
    the relative AUC gain over random init on the same target and fold, ``(auc_finetuned - auc_random) /
    auc_random``, as [R]'s ``simVSauc_plot.py`` joins them. ``freeze=False`` is [R]'s analysis (its
    ``simVSauc*.csv`` tables); ``freeze=True`` uses the freeze variant's networks. 2 x 7 x 5 x 5 = 350 rows."""
    cca = load_cca(ref_dir=ref_dir)
    sel = cca[(cca.pair_kind == "pretrained_vs_finetuned") & cca.source1.isin(sources)]
    ft_freeze = sel.freeze1.where(sel.role1 == "finetuned", sel.freeze2)
    sel = sel[ft_freeze == freeze]
    out = sel[["source1", "target", "fold", "stage", "layer", "cca"]].rename(columns={"source1": "source"})
    auc = load_auc(ref_dir)
    ft = auc[auc.freeze == freeze].rename(columns={"auc": "auc_finetuned"})[["target", "source", "fold", "auc_finetuned"]]
    base = auc[(auc.source == "random")].rename(columns={"auc": "auc_random"})[["target", "fold", "auc_random"]]
    out = out.merge(ft, on=["target", "source", "fold"], how="left").merge(base, on=["target", "fold"], how="left")
    if out[["auc_finetuned", "auc_random"]].isna().any().any():
        raise ValueError("AUC.csv lacks a fold needed to compute the gain")
    out["relative_gain"] = (out.auc_finetuned - out.auc_random) / out.auc_random
    out.insert(3, "freeze", freeze)
    return out.sort_values(["source", "stage", "target", "fold"]).reset_index(drop=True)


def _corr_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair of (B, n) arrays (NaN for a constant row)."""
    xc, yc = x - x.mean(1, keepdims=True), y - y.mean(1, keepdims=True)
    den = np.sqrt((xc**2).sum(1) * (yc**2).sum(1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, (xc * yc).sum(1) / den, np.nan)


def gain_correlation(table: pd.DataFrame, x: str = "cca", y: str = "relative_gain", by=("source", "stage"),
                     method: str = "pearson", n_boot: int = 2000, ci: float = 0.95, resample: str = "points",
                     seed: int = 0) -> pd.DataFrame:
    """Correlation of ``x`` with ``y`` per group of ``by`` (default: per source and stage of
    :func:`similarity_vs_gain`), with a percentile bootstrap interval.

    ``method``: ``"pearson"`` or ``"spearman"``. ``resample="points"`` draws (target, fold) rows with
    replacement, treating the 35 points as independent, as [R]'s regression plot does; ``"targets"`` draws
    whole targets (all their folds), which respects that folds of one target share a data set (wider, and
    coarse with 7 targets). Columns: the ``by`` keys, ``n, r, ci_low, ci_high, p_value`` (scipy's test,
    which assumes independent points), ``method, resample, n_boot``.
    """
    from scipy import stats

    if method not in ("pearson", "spearman"):
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    if resample not in ("points", "targets"):
        raise ValueError(f"resample must be 'points' or 'targets', got {resample!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    by = list(by)
    rng = np.random.default_rng(seed)
    rows = []
    for key, g in table.groupby(by, observed=True, sort=True):
        g = g.dropna(subset=[x, y])
        xv, yv = g[x].to_numpy(float), g[y].to_numpy(float)
        n = len(g)
        if n < 3:
            raise ValueError(f"group {key}: {n} points, need at least 3 for a correlation")
        test = stats.pearsonr(xv, yv) if method == "pearson" else stats.spearmanr(xv, yv)
        if resample == "points":
            idx = rng.integers(0, n, size=(n_boot, n))
        else:
            members = [np.flatnonzero(g.target.to_numpy() == t) for t in g.target.unique()]
            picks = rng.integers(0, len(members), size=(n_boot, len(members)))
            idx = [np.concatenate([members[j] for j in row]) for row in picks]
            if len({len(i) for i in idx}) > 1:  # unequal fold counts: pad-free per-draw loop
                boot = np.array([_boot_corr(xv[i][None], yv[i][None], method)[0] for i in idx])
                idx = None
            else:
                idx = np.stack(idx)
        if idx is not None:
            boot = _boot_corr(xv[idx], yv[idx], method)
        alpha = (1 - ci) / 2
        lo, hi = np.nanquantile(boot, [alpha, 1 - alpha])
        keys = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        rows.append({**keys, "n": n, "r": float(test[0]), "ci_low": float(lo), "ci_high": float(hi),
                     "p_value": float(test[1]), "method": method, "resample": resample, "n_boot": n_boot})
    return pd.DataFrame(rows)


def _boot_corr(xb: np.ndarray, yb: np.ndarray, method: str) -> np.ndarray:
    if method == "spearman":
        from scipy.stats import rankdata

        xb, yb = rankdata(xb, axis=1), rankdata(yb, axis=1)
    return _corr_rows(xb, yb)
