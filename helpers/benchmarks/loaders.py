"""Loaders of the public benchmarks with per-target fine-tuned ground truth, into the tidy format.

Each loader reads only files under ``data/reference/<name>/`` (numeric tables copied from the authors'
repositories; see each folder's README.md for repository, commit, file names and licence) and returns the
validated long table of :mod:`helpers.benchmarks.format`. :data:`BENCHMARKS` lists them with what they hold;
:func:`load` and :func:`load_all` call them by name.

Score directions follow each paper: every score here is "higher = predicted better" except where a loader
says otherwise (Godau et al.'s task distances: lower = closer = predicted better).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ..paths import PROJECT_ROOT
from .format import BenchmarkError, validate, validate_replicates

REFERENCE = PROJECT_ROOT / "data" / "reference"


def _path(name: str, *parts: str):
    p = REFERENCE.joinpath(name, *parts)
    if not p.is_file():
        raise BenchmarkError(f"benchmark file {p} is missing (a fresh clone has it under data/reference/)")
    return p


# ----------------------------------------------------------------------------------------------------
# Chaves et al., TMLR 2024


#: Chaves et al.'s 14 scorers (``inputs/transf_scores.csv``'s ``transf_metric``), ``imagenet`` = the
#: architecture's ImageNet top-1 accuracy (a static baseline)
CHAVES_SCORERS = ("imagenet", "hscore_score", "nce_score", "leep_score", "nleep_score", "parc_score",
                  "reg_hscore_score", "sfda_score", "logme_score", "gbc_score", "pactran_score",
                  "etran_energy_score", "ncti_score", "tmi_score")
#: Chaves et al.'s medical targets
CHAVES_MEDICAL = ("brain_tumor_kaggle", "breakhis", "skin_splits")


def load_chaves2024() -> pd.DataFrame:
    """Chaves et al. (TMLR 2024): 11 targets (3 medical) x 10 ImageNet architectures, 14 scorers
    (``imagenet`` = ImageNet top-1 accuracy), truth = fine-tuned test accuracy. Scenario ``architecture``."""
    truth = pd.read_csv(_path("chaves2024_tmlr", "test_scores.csv"))
    scores = pd.read_csv(_path("chaves2024_tmlr", "transf_scores_by_metric.csv"))
    models = [c for c in truth.columns if c not in ("dataset", "classes")]
    t = truth.melt(id_vars=["dataset"], value_vars=models, var_name="candidate", value_name="truth")
    s = scores.melt(id_vars=["dataset", "transf_metric"], value_vars=models, var_name="candidate",
                    value_name="score")
    df = s.merge(t, on=["dataset", "candidate"], how="left")
    df = df.rename(columns={"dataset": "target", "transf_metric": "metric"})
    df.insert(0, "scenario", "architecture")
    df.insert(0, "benchmark", "chaves2024")
    df["higher_is_better"] = True
    df["medical"] = df["target"].isin(CHAVES_MEDICAL)
    return validate(df)


# ----------------------------------------------------------------------------------------------------
# Model Spider (Zhang et al., NeurIPS 2023)

#: Model Spider's baseline columns -> the names in its README table
MODELSPIDER_LABELS = {"H-Score": "H-Score", "NCE": "NCE", "LEEP": "LEEP", "NLEEP": "N-LEEP", "LogME": "LogME",
                      "PACTranDirichlet": "PACTran", "OTCE": "OTCE", "LFC": "LFC", "GBC": "GBC"}


def load_modelspider() -> pd.DataFrame:
    """Model Spider's single-source zoo: 8 natural-image targets x 10 ImageNet models, 9 baseline scores
    (``assests/baseline_results.csv``), truth = fine-tuned accuracy (``learnware/learnware_info.py``).
    Scenario ``architecture``."""
    truth = pd.read_csv(_path("modelspider", "finetuning_accuracy.csv"))
    scores = pd.read_csv(_path("modelspider", "baseline_results.csv"))
    scores["Dataset"] = scores["Dataset"].astype(str)
    s = scores.melt(id_vars=["Dataset", "Model"], var_name="metric", value_name="score")
    s = s.rename(columns={"Dataset": "target", "Model": "candidate"})
    df = s.merge(truth.rename(columns={"model": "candidate", "accuracy": "truth"}), on=["target", "candidate"],
                 how="left")
    df.insert(0, "scenario", "architecture")
    df.insert(0, "benchmark", "modelspider")
    df["higher_is_better"] = True
    df["medical"] = False
    return validate(df)


def modelspider_published() -> pd.DataFrame:
    """Model Spider's README table of weighted tau (methods x targets, plus ``Mean``)."""
    return pd.read_csv(_path("modelspider", "readme_weighted_tau.csv")).set_index("method")


# ----------------------------------------------------------------------------------------------------
# [D] (Juodelyte et al. 2024): already in the project, through helpers.reference


def load_dovile2024() -> pd.DataFrame:
    """[D]: 11 MedMNIST targets; scenario ``dataset`` (15 sources, the target itself excluded) and
    ``architecture`` (9 ImageNet architectures); the eight published scores, flipped as [D]'s notebooks do
    (:data:`helpers.reference.ARCHITECTURE_FLIPS`); truth = fine-tuned test AUC."""
    from ..names import canonical_name
    from .. import reference as ref

    parts = []
    for scen in ("dataset", "architecture"):
        truth = ref.load_ground_truth(scen)
        flips = ref.ARCHITECTURE_FLIPS if scen == "architecture" else ()
        for m in ref.METRICS:
            sc = ref.load_scores(m, scen, flip=m in flips)
            sc = sc.reindex(index=truth.index, columns=truth.columns)
            for t in truth.columns:
                for src in truth.index:
                    if canonical_name(src) == canonical_name(t):
                        continue
                    y = truth.at[src, t]
                    if not np.isfinite(y):
                        continue
                    parts.append((scen, t, src, y, m, sc.at[src, t]))
    df = pd.DataFrame(parts, columns=["scenario", "target", "candidate", "truth", "metric", "score"])
    df.insert(0, "benchmark", "dovile2024")
    df["higher_is_better"] = True
    df["medical"] = True
    return validate(df)


# ----------------------------------------------------------------------------------------------------
# registry

#: name -> (loader, one line: what it holds, independent group, medical targets?)
BENCHMARKS: dict[str, tuple[Callable[[], pd.DataFrame], str, str, str]] = {
    "dovile2024": (load_dovile2024, "[D] Juodelyte et al. 2024: MedMNIST, 15 source data sets and 9 architectures",
                   "ITU Copenhagen / Cheplygina", "medical"),
    "chaves2024": (load_chaves2024, "Chaves et al. TMLR 2024: 11 targets x 10 ImageNet architectures, 14 scorers",
                   "UNICAMP / Avila & Valle", "mixed"),
    "modelspider": (load_modelspider, "Model Spider (Zhang et al. NeurIPS 2023): 8 targets x 10 ImageNet models",
                    "Nanjing University / Zhan & Ye", "natural"),
}


def load(name: str) -> pd.DataFrame:
    """The tidy table of one benchmark of :data:`BENCHMARKS`."""
    if name not in BENCHMARKS:
        raise BenchmarkError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name][0]()


def load_all(names=None) -> pd.DataFrame:
    """All (or the named) benchmarks in one tidy table."""
    return pd.concat([load(n) for n in (names or BENCHMARKS)], ignore_index=True)


def load_replicates(name: str) -> pd.DataFrame | None:
    """The replicate table (repeated fine-tuning runs) of a benchmark, or None where none was published."""
    fn = REPLICATES.get(name)
    return validate_replicates(fn()) if fn else None


REPLICATES: dict[str, Callable[[], pd.DataFrame]] = {}
