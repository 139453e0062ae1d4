"""The segmentation bank's fine-tuning seeds: which seeds a profile runs, and the seed of one unit."""
from __future__ import annotations

__all__ = ["finetuning_seeds", "finetuning_seed"]


def finetuning_seeds(section: dict) -> list[int]:
    """The fine-tuning seeds of a (filled-in) segmentation section: ``finetuning.seeds``, default
    ``[seed]`` (one run, today's). Each (source, target) is fine-tuned once per seed; the seed drives the new
    head's initialisation, the batch order and the augmentation draws, never the image subsets nor the source
    (both stay on the section's ``seed``)."""
    seeds = section["finetuning"].get("seeds")
    if seeds is None:
        return [int(section["seed"])]
    if (not isinstance(seeds, (list, tuple)) or not seeds
            or any(isinstance(x, bool) or not isinstance(x, int) for x in seeds)):
        raise ValueError(f"segmentation.finetuning.seeds must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"segmentation.finetuning.seeds must not repeat a seed, got {list(seeds)}")
    return [int(x) for x in seeds]


def finetuning_seed(config: dict) -> int:
    """The fine-tuning seed of a fine-tuning unit config: ``finetuning_seed``, present only where it differs
    from the section's ``seed`` (so that the unit of that seed keeps the key it had before seeds were added),
    else ``seed``."""
    return int(config.get("finetuning_seed", config["seed"]))
