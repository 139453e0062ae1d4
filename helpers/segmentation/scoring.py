"""The segmentation scoring stage ([S], PROTOCOL.md section 7): CC-FV, its ablations and the baselines for
every (source, target) pair of the leave-one-out bank.

One runner unit per (source, target) on the first ``scoring.max_images`` images of the target's fine-tuning
train subset (the images the ground-truth runs were fine-tuned on). A unit

1. draws the pixels to read from the target masks alone (:func:`helpers.metrics.ccfv.sample_pixels`), so every
   candidate source is scored on the same pixels: per case ``per_case`` foreground pixels split across the
   classes present in proportion to their size, and ``global_per_case`` pixels uniformly over the image;
2. runs the *source* model (its own head, eval mode, no augmentation) once over those images and keeps, at
   the sampled pixels, the outputs of the decoder blocks named in ``scoring.layers`` (bilinearly upsampled to
   the mask size) and the source head's logits. They are cached as ``.npy`` files in the unit's work folder
   (read back with ``allow_pickle=False``);
3. computes every score of :data:`SCORES` from those arrays with the scoring kernel
   (:func:`helpers.scoring.score_model`). A score that fails for one pair gives a row with ``status == "error"``
   and the reason, never a crash.

Scores (all higher = better):

``ccfv``
    CC-FV as we define it (:func:`helpers.metrics.ccfv`): over the layers, ``-log(cc * fv)`` with the
    2-Wasserstein class consistency averaged correctly (mean over classes of the mean over case pairs) and the
    hyperspherical energy of L2-normalised per-case mean features.
``ccfv_official_average``
    the same with the official code's averaging of the class distances (a sum of sums that weights the
    classes unequally); for one foreground class it ranks sources exactly as ``ccfv`` does.
``ccfv_official``
    the official combination as published: official averaging, ``log(fv / cc)`` (energy with a plus sign) and
    the energy of raw (unnormalised) per-case means.
``ccfv_no_cc``, ``ccfv_no_fv``, ``ccfv_single_scale``, ``ccfv_kl``, ``ccfv_bhattacharyya``
    the ablations of [S] Table 2: without class consistency, without feature variety, only the shallowest
    layer, and the Gaussian KL divergence (symmetrised) or the Bhattacharyya distance instead of Wasserstein.
``ccfv_unit``
    ours, not in [S]: every sampled pixel feature put on the unit sphere before CC and FV. The 2-Wasserstein
    distance scales with the features while the energy of normalised means does not, so ``ccfv`` prefers a
    model whose features are merely small (an untrained network's are); this variant does not see the scale.
``scale_control``
    a control, not a transferability metric: minus the log of the root-mean-square of the sampled class
    features, averaged over the layers. A metric that agrees with it mostly measures feature scale.
``logme``, ``transrate``, ``gbc``, ``leep``
    the baselines of [S], on the same sampled pixels of the shallowest decoder layer (the features the head
    reads, the analogue of penultimate features) with their class ids, background included (class samples
    plus global samples, so that binary targets have two classes); LEEP on the source head's logits there.

The tidy table ``<results>/segmentation_scores.csv`` has the columns of :data:`helpers.scoring.COLUMNS` plus
``parts`` (the per-layer ``cc``/``fv`` of the CC-FV rows, JSON); :func:`helpers.scoring.score_tables` turns it
into the wide tables of :func:`helpers.evaluation.correlate`.
"""
from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import models as M
from ..compat import forward
from ..metrics.ccfv import PixelSample, ccfv, ccfv_parts, gather_pixels, sample_pixels
from ..paths import require_result
from ..runner import Stage
from ..scoring import FeatureCache, Outcome, extraction_table, score_model
from .training import load_segmentation_source, segmentation_section, target_datasets

#: CC-FV variants: name -> (ccfv_parts keyword arguments, ccfv keyword arguments, layers: "all" | "last")
CCFV_VARIANTS = {
    "ccfv": ({}, {}, "all"),
    "ccfv_official_average": ({"official_average": True}, {}, "all"),
    "ccfv_official": ({"official_average": True, "normalize": False}, {"official_direction": True}, "all"),
    "ccfv_no_cc": ({}, {"use_cc": False}, "all"),
    "ccfv_no_fv": ({}, {"use_fv": False}, "all"),
    "ccfv_single_scale": ({}, {}, "last"),
    "ccfv_kl": ({"distance": "kl"}, {}, "all"),
    "ccfv_bhattacharyya": ({"distance": "bhattacharyya"}, {}, "all"),
    "ccfv_unit": ({"unit_features": True}, {}, "all"),
}
BASELINES = ("logme", "transrate", "gbc", "leep")
#: a control that knows nothing but the scale of the sampled features
CONTROLS = ("scale_control",)
SCORES = tuple(CCFV_VARIANTS) + BASELINES + CONTROLS
#: what the chapter calls each score
LABELS = {"ccfv": "CC-FV (fixed)", "ccfv_official_average": "CC-FV, official averaging",
          "ccfv_official": "CC-FV, official code", "ccfv_no_cc": "without CC", "ccfv_no_fv": "without FV",
          "ccfv_single_scale": "single scale", "ccfv_kl": "KL instead of W2",
          "ccfv_bhattacharyya": "Bhattacharyya instead of W2", "ccfv_unit": "CC-FV on the unit sphere",
          "logme": "LogME", "transrate": "TransRate", "gbc": "GBC", "leep": "LEEP",
          "scale_control": "control: -log feature RMS"}

SCORING_DEFAULTS = {"max_images": 64, "per_case": 256, "global_per_case": 64, "min_per_class": 16,
                    "layers": ["dec2", "dec1", "dec0"], "batch_size": 32, "seed": 0}


def scoring_section(profile: dict) -> dict:
    """The ``segmentation.scoring`` settings of a profile with defaults filled in."""
    sec = segmentation_section(profile)
    out = {**SCORING_DEFAULTS, **(sec.get("scoring") or {})}
    out["layers"] = list(out["layers"])
    if not out["layers"]:
        raise ValueError("segmentation.scoring.layers must name at least one decoder block")
    unknown = [s for s in out.get("scores", SCORES) if s not in SCORES]
    if unknown:
        raise ValueError(f"unknown segmentation scores {unknown}; known: {', '.join(SCORES)}")
    return out


# ----------------------------------------------------------------------------------------------------------
# extraction


def target_scoring_set(config: dict, root=None, device=None, cache=None):
    """``(data, dataset)``: the first ``max_images`` images of the target's fine-tuning train subset, as a
    device dataset normalised for the source."""
    d, train, _, _ = target_datasets(config["target"], config["image_size"], config["source"], config["subset"],
                                     config["seed"], root, device, None, cache)
    n = len(train) if config["max_images"] is None else min(len(train), int(config["max_images"]))
    return d, train, n


def pixel_sample(config: dict, masks: torch.Tensor) -> PixelSample:
    return sample_pixels(masks, per_case=config["per_case"], global_per_case=config["global_per_case"],
                           min_per_class=config["min_per_class"], seed=config["sample_seed"])


def extract_sampled(model, dataset, n: int, sample: PixelSample, layers, batch_size: int = 32) -> dict:
    """Run ``model`` over the first ``n`` images of ``dataset`` and keep, at the sampled pixels, the outputs of
    the decoder blocks ``layers`` (upsampled bilinearly to the image size) and the logits.

    Returns NumPy arrays: ``<layer>`` (M, D) and ``<layer>__global`` (G, D) per layer, ``logits`` (M, K) and
    ``logits__global`` (G, K)."""
    device = next(model.parameters()).device
    keep = {k: [] for k in [*layers, "logits"]}
    glob = {k: [] for k in keep}
    model.eval()
    with torch.no_grad(), M.full_precision():  # features that feed a metric: IEEE float32, no TF32
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(n, start + batch_size), device=dataset.device)
            x, _ = dataset.batch(idx)
            logits, feats = model.decoder_features(x.to(device))
            missing = [name for name in layers if name not in feats]
            if missing:
                raise ValueError(f"decoder blocks {missing} not in the model (it has {list(feats)})")
            maps = {name: F.interpolate(feats[name], size=x.shape[-2:], mode="bilinear", align_corners=False)
                    for name in layers}
            maps["logits"] = logits
            for name, fm in maps.items():
                keep[name].append(gather_pixels(sample, fm.float(), start, "class").cpu())
                glob[name].append(gather_pixels(sample, fm.float(), start, "global").cpu())
    out = {}
    for name in keep:
        out[name] = torch.cat(keep[name]).numpy()
        out[f"{name}__global"] = torch.cat(glob[name]).numpy()
    return out


def _options(metric) -> str:
    """The keyword options of a CC-FV variant (what it changes against ``ccfv``), as JSON; "" otherwise."""
    if metric not in CCFV_VARIANTS:
        return ""
    pk, ck, which = CCFV_VARIANTS[metric]
    opts = {**pk, **ck, **({"layers": "last"} if which == "last" else {})}
    return json.dumps(opts, sort_keys=True) if opts else ""


def _row(config, metric, score=float("nan"), seconds=0.0, status="ok", reason="", parts=None):
    return {"source": config["source"], "target": config["target"], "fold": config["fold"], "metric": metric,
            "score": float(score), "seconds": float(seconds), "status": status, "reason": reason,
            "options": _options(metric), "parts": json.dumps(parts) if parts is not None else ""}


def score_unit(config: dict, workdir, profile: dict, results_dir, root=None, device=None, cache=None) -> list[dict]:
    """Sample, extract (cached) and compute every score of one (source, target); one row per score."""
    device = torch.device(device or "cpu")
    d, ds, n = target_scoring_set(config, root, device, cache)
    masks = ds.masks[:n].cpu()
    sample = pixel_sample(config, masks)
    layers = list(config["layers"])
    names = [*layers, *(f"{k}__global" for k in layers), "logits", "logits__global"]

    def compute():
        model = load_segmentation_source(config["source"], config["target"], profile, results_dir, root,
                                         device, cache)
        return extract_sampled(model, ds, n, sample, layers, config["batch_size"])

    t0 = time.perf_counter()
    arrays, cached = FeatureCache(workdir, names).get(compute)
    rows = [_row(config, "_extract", float(n), time.perf_counter() - t0, "ok",
                 "features loaded from cache" if cached else
                 f"{len(sample.label)} class and {len(sample.global_case)} global pixels of {n} images")]
    labels, cases, gcases = sample.label, sample.case, sample.global_case
    parts_cache: dict = {}

    def layer_parts(layer, kwargs):
        key = (layer, json.dumps(kwargs, sort_keys=True))
        if key not in parts_cache:
            parts_cache[key] = ccfv_parts(arrays[layer], labels, cases, arrays[f"{layer}__global"], gcases,
                                            **kwargs)
        return parts_cache[key]

    # baselines: the shallowest block's features at class and global pixels, with their class ids
    flat = masks.reshape(len(masks), -1)
    glabels = flat[gcases, sample.global_index].long()
    last = layers[-1]
    base_x = np.concatenate([arrays[last], arrays[f"{last}__global"]])
    base_logits = np.concatenate([arrays["logits"], arrays["logits__global"]])
    base_y = torch.cat([labels, glabels]).numpy()
    base_y = np.unique(base_y, return_inverse=True)[1].reshape(-1)  # classes absent from the sample dropped

    def variant(name):
        pk, ck, which = CCFV_VARIANTS[name]
        by_layer = {layer: layer_parts(layer, pk) for layer in (layers if which == "all" else [last])}
        return Outcome(score=float(ccfv(by_layer, **ck)),
                       parts={layer: {"cc": p.cc, "fv": p.fv} for layer, p in by_layer.items()})

    def scale_control():
        return -float(np.mean([np.log(np.sqrt(np.mean(np.square(arrays[k], dtype=np.float64)))) for k in layers]))

    # the baselines are the registry's metrics on the flattened pixels; CC-FV and the control are called here
    calls = {name: (lambda name=name: variant(name)) for name in CCFV_VARIANTS}
    calls["scale_control"] = scale_control
    scored = score_model(config["scores"], {"features": base_x, "logits": base_logits}, base_y, calls=calls)
    rows += [_row(config, name, o.score, o.seconds, o.status, o.reason, o.parts) for name, o in scored.items()]
    return rows


def extraction_times(results_dir) -> pd.DataFrame:
    """Seconds spent extracting (or loading cached) sampled features per (source, target) unit."""
    return extraction_table(Stage("segmentation_scoring", results_dir).collect())


def read_segmentation_scores(results_dir) -> pd.DataFrame:
    path = require_result(None, "segmentation_scores.csv", results_dir)
    return pd.read_csv(path).fillna({"reason": "", "parts": ""})


def layer_parts_table(scores: pd.DataFrame, metric: str = "ccfv") -> pd.DataFrame:
    """Long table of the per-layer ``cc`` and ``fv`` of one CC-FV variant: source, target, layer, cc, fv."""
    rows = []
    for r in scores[(scores["metric"] == metric) & (scores["parts"] != "")].itertuples():
        for layer, p in json.loads(r.parts).items():
            rows.append({"source": r.source, "target": r.target, "layer": layer, "cc": p["cc"], "fv": p["fv"]})
    return pd.DataFrame(rows, columns=["source", "target", "layer", "cc", "fv"])


# the stage's names that used to be importable from here (helpers.compat.MOVED), with a DeprecationWarning
__getattr__ = forward(__name__)
