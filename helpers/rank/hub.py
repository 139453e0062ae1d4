"""Foundation models from the Hugging Face hub as :mod:`helpers.rank` candidates (``hf:`` and ``timm:hf-hub:``).

``hf:ORG/NAME[@REVISION]`` or ``hf:PATH``
    a `transformers <https://huggingface.co/docs/transformers>`_ vision model (``AutoModel``: DINOv2, RAD-DINO,
    ViT, ConvNeXt, ResNet, Swin...; the image tower of a CLIP / SigLIP model), or an `open_clip` model whose
    image tower is a timm model (BiomedCLIP's layout: ``open_clip_config.json`` + ``open_clip_*`` weights).
    ``PATH`` is a folder in the hub's layout (``config.json`` + ``model.safetensors``, as ``save_pretrained``
    writes).
``timm:hf-hub:ORG/NAME[@REVISION]`` or ``timm:local-dir:PATH``
    a timm model in the hub's layout (``config.json`` with ``architecture`` and ``pretrained_cfg``, plus
    ``model.safetensors``, as ``timm.models.save_for_hf`` / ``push_to_hf_hub`` write), built by timm.

Where the files come from: a hub id is looked up in the local hub cache first (``$HF_HUB_CACHE``, else
``$HF_HOME/hub``, else huggingface_hub's default; the snapshot of the revision, ``main`` by default), then
downloaded with ``huggingface_hub.snapshot_download`` (configs and safetensors; ``.bin`` weights only where a
repository has no safetensors). Offline and not cached, the candidate is ``unavailable`` with the reason and
the cache folder. Everything is then loaded from that local folder.

Safety: no code from a model repository runs. transformers is called with ``trust_remote_code=False``; a
config whose ``model_type`` transformers does not implement but which maps to code in the repository
(``auto_map``) is refused with :class:`RemoteCodeRefused` before anything is loaded. Weights: safetensors
where the folder has them (``use_safetensors=True``), else transformers' / timm's ``torch.load(...,
weights_only=True)``. Missing or unexpected weights are an error, not a silent random init.

What the candidate computes (:class:`HubEmbedding`): images -> an embedding (the penultimate representation the
metrics see) -> a placeholder one-unit ``head`` (zero weights; ``has_source_head = False``: a hub backbone
has no source classes, so LEEP / NCE are skipped). The embedding is

* transformers: ``pooler_output`` (DINOv2 / RAD-DINO: the CLS token after the final norm; ResNet / ConvNeXt
  / Swin: the average pool; BEiT: its mean pooling; CLIP's vision tower: the CLS token after
  ``post_layernorm``; SigLIP: its attention-pool head), except where the pooler is ViT's dense + tanh layer
  (``pooler.dense``), which self-supervised checkpoints such as DINO ship untrained: there the CLS token of
  ``last_hidden_state``; a ViT run at another size than its config's gets ``interpolate_pos_encoding=True``;
* timm: ``forward_head(forward_features(x), pre_logits=True)`` (the input of its classifier);
* open_clip / BiomedCLIP: the timm trunk's pooled output, before the image-text projection.

FU needs two convolutions: CNN backbones get FU on their first two ``Conv2d``; a vision transformer has one
(the patch embedding) and gets FU ``skipped`` with that reason.

Preprocessing (:func:`declared_preprocessing`): what the model declares. transformers: its
``preprocessor_config.json`` (``image_mean``, ``image_std``, ``do_normalize``, ``rescale_factor``, the crop
size where ``do_center_crop``, else ``size``; ``resample``); timm: ``pretrained_cfg`` (``mean``, ``std``,
``input_size``, ``interpolation``, ``crop_pct``); open_clip: ``preprocess_cfg`` and the tower's
``image_size``. A model that declares none gets ImageNet mean/std and its config's ``image_size``
(``declared: False``). :func:`helpers.rank.candidates.preprocessing` passes on the size, mean and std; the
target images are then resized square (bilinear) to that size, without the declared crop or interpolation,
which are reported, not applied.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path

import torch
import torch.nn as nn

from .. import models as M
from ..data import IMAGENET_MEAN, IMAGENET_STD
from ..runner import file_hash

#: PIL resample codes of transformers' image processors
RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                     "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth")


class RemoteCodeRefused(ValueError):
    """The model needs code from its repository (``trust_remote_code``), which is never run here."""


class HubLayoutError(ValueError):
    """A folder or repository that is not in a layout this module loads; the message says which it is."""


# ----------------------------------------------------------------------------------------------------------
# where the files are


def is_local_ref(ref: str) -> bool:
    """A hub reference that is a folder path rather than ``ORG/NAME``."""
    return (ref.startswith(("/", ".", "~")) or "\\" in ref or ref.count("/") != 1
            or Path(ref).expanduser().is_dir())


def split_revision(ref: str) -> tuple[str, str | None]:
    repo, sep, rev = ref.partition("@")
    return repo, (rev or None) if sep else None


def hub_cache_dir() -> Path:
    """The hub cache folder, read from the environment at call time: ``$HF_HUB_CACHE``, ``$HF_HOME/hub``,
    else huggingface_hub's default."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:
        return Path("~/.cache/huggingface/hub").expanduser()


def _has_weights(folder: Path) -> bool:
    return any(p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir() if p.is_file())


def _cached_snapshot(repo: str, revision: str | None, cache: Path) -> Path | None:
    """The cached snapshot folder of ``repo`` at ``revision`` when it holds a config and weights."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for name in ("config.json", OPEN_CLIP_CONFIG):
        hit = try_to_load_from_cache(repo, name, cache_dir=str(cache), revision=revision)
        if isinstance(hit, str):
            folder = Path(hit).parent
            if _has_weights(folder):
                return folder
    return None


def resolve(ref: str, spec: str = "") -> Path:
    """The local folder of a hub reference: the folder itself, the cached snapshot, or a fresh download.
    :class:`helpers.models.SourceUnavailable` when none can be had here."""
    spec = spec or ref
    if is_local_ref(ref):
        folder = Path(ref).expanduser()
        if not folder.is_dir():
            raise M.SourceUnavailable(spec, f"folder {folder} does not exist")
        return folder
    repo, revision = split_revision(ref)
    cache = hub_cache_dir()
    folder = _cached_snapshot(repo, revision, cache)
    if folder is not None:
        return folder
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise M.SourceUnavailable(spec, "huggingface_hub is not installed: pip install .[hub]") from exc
    try:
        folder = Path(snapshot_download(repo, revision=revision, cache_dir=str(cache), etag_timeout=20,
                                        allow_patterns=["*.json", "*.safetensors", "*.txt"]))
        if not any(folder.glob("*.safetensors")):  # an older repository: pickled weights (weights_only)
            folder = Path(snapshot_download(repo, revision=revision, cache_dir=str(cache), etag_timeout=20,
                                            allow_patterns=["*.json", "*.bin", "*.pth"]))
    except Exception as exc:  # offline, unknown repo, gated repo, HTTP errors: all "cannot be had here"
        raise M.SourceUnavailable(spec, f"{repo} is not in the hub cache {cache} and could not be downloaded "
                                  f"({type(exc).__name__}: {str(exc)[:200]}); offline, run `hf download {repo}` "
                                  f"on a connected machine and copy the cache, or pass the folder as hf:PATH")
    if not _has_weights(folder):
        raise M.SourceUnavailable(spec, f"{repo}: no weight files in {folder}")
    return folder


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HubLayoutError(f"{path} is not valid JSON ({exc})") from exc


def folder_identity(folder: Path) -> str:
    """SHA-256 (16 hex) over the folder's config and weight files (names and contents): the cache key of a
    hub candidate, so that changed weights are never served from the feature cache."""
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.suffix == ".json"):
            h.update(p.name.encode())
            h.update(file_hash(p.resolve()).encode())
    return h.hexdigest()[:16]


def layout(folder: Path) -> str:
    """``transformers``, ``timm`` or ``open_clip``: which library's layout a hub folder is in."""
    if (folder / OPEN_CLIP_CONFIG).is_file():
        return "open_clip"
    if not (folder / "config.json").is_file():
        raise HubLayoutError(f"{folder}: no config.json (nor {OPEN_CLIP_CONFIG}): not a model in the hub's layout "
                             "(save_pretrained / timm save_for_hf write one)")
    cfg = _read_json(folder / "config.json")
    if "architecture" in cfg and "model_type" not in cfg:
        return "timm"
    return "transformers"


# ----------------------------------------------------------------------------------------------------------
# the model


class HubEmbedding(nn.Module):
    """A hub backbone as a candidate model: images ``(B, 3, H, W)`` -> embedding ``(B, D)`` -> ``head``.

    ``head`` is a one-unit Linear with zero weights, a placeholder: its input is what
    :func:`helpers.models.extract` takes as the penultimate features, and replacing it with ``Identity``
    (:func:`helpers.models.penultimate_model`) makes the model output the embedding. ``has_source_head`` is
    False (no source classes: LEEP / NCE are skipped)."""

    def __init__(self, backbone: nn.Module, dim: int, kind: str, image_size: int | None = None,
                 name: str = ""):
        super().__init__()
        self.backbone = backbone
        self.kind = kind
        self.image_size = image_size
        self.head = nn.Linear(int(dim), 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.has_source_head = False
        self.input_size_name = name
        self._interpolate = kind == "transformers" and "interpolate_pos_encoding" in inspect.signature(
            backbone.forward).parameters
        # ViT / DeiT's pooler: a dense + tanh layer on the CLS token, trained only by supervised checkpoints
        self._cls_token = isinstance(getattr(getattr(backbone, "pooler", None), "dense", None), nn.Linear)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind in ("timm", "open_clip"):
            return self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True).flatten(1)
        kwargs = {}
        if self._interpolate and self.image_size and tuple(x.shape[-2:]) != (self.image_size,) * 2:
            kwargs["interpolate_pos_encoding"] = True
        out = self.backbone(pixel_values=x, **kwargs)
        pooled = getattr(out, "pooler_output", None)
        hidden = getattr(out, "last_hidden_state", None)
        if pooled is not None and not self._cls_token:
            return pooled.flatten(1)
        if hidden is not None and hidden.dim() == 3:
            return hidden[:, 0]
        if hidden is not None and hidden.dim() == 4:
            return hidden.mean(dim=(2, 3))
        raise HubLayoutError(f"{type(self.backbone).__name__} returns neither pooler_output nor last_hidden_state")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def _transformers():
    try:
        import transformers
    except ImportError as exc:
        raise M.SourceUnavailable("hf", "the optional transformers package is not installed: pip install .[hub]"
                                  ) from exc
    return transformers


def check_remote_code(folder: Path) -> dict:
    """The folder's ``config.json``; :class:`RemoteCodeRefused` when the model needs code from its repository
    (a ``model_type`` transformers does not implement, with an ``auto_map`` to the repository's code)."""
    transformers = _transformers()
    cfg = _read_json(folder / "config.json")
    model_type = cfg.get("model_type")
    native = model_type in transformers.CONFIG_MAPPING
    if not native:
        if cfg.get("auto_map"):
            raise RemoteCodeRefused(
                f"{folder}: the model needs code from its repository (config.json auto_map "
                f"{json.dumps(cfg['auto_map'])[:160]}; model_type {model_type!r} is not in transformers "
                f"{transformers.__version__}); trust_remote_code stays off here, so it is not loaded. Use a "
                "checkpoint of an architecture transformers or timm implements")
        raise HubLayoutError(f"{folder}: config.json model_type {model_type!r} is not a transformers model "
                             f"(transformers {transformers.__version__})")
    return cfg


def _weights_fit(info: dict, folder: Path) -> None:
    missing = sorted(info.get("missing_keys") or [])
    unexpected = sorted(info.get("unexpected_keys") or [])
    mismatched = sorted(str(k) for k in (info.get("mismatched_keys") or []))
    if missing or mismatched:
        raise ValueError(f"{folder}: the weights do not fit the model its config describes: {len(missing)} "
                         f"missing {missing[:4]}, {len(mismatched)} of another shape {mismatched[:4]}"
                         f"{f', {len(unexpected)} unexpected' if unexpected else ''}")


def load_transformers(folder: Path, name: str = "") -> HubEmbedding:
    transformers = _transformers()
    cfg = check_remote_code(folder)
    safetensors = any(folder.glob("*.safetensors")) or (folder / "model.safetensors.index.json").is_file()
    tlog = transformers.utils.logging
    bars = tlog.is_progress_bar_enabled()
    tlog.disable_progress_bar()  # one bar per candidate would drown the ranking's own progress
    try:
        model, info = transformers.AutoModel.from_pretrained(
            str(folder), trust_remote_code=False, use_safetensors=safetensors, local_files_only=True,
            output_loading_info=True)
    finally:
        if bars:
            tlog.enable_progress_bar()
    _weights_fit(info, folder)
    vision_cfg = cfg.get("vision_config")
    if vision_cfg and hasattr(model, "vision_model"):  # CLIP / SigLIP: the image tower alone
        model, cfg = model.vision_model, vision_cfg
    dim = cfg.get("hidden_size") or (cfg.get("hidden_sizes") or [None])[-1]
    if dim is None:
        raise HubLayoutError(f"{folder}: config.json gives neither hidden_size nor hidden_sizes")
    size = cfg.get("image_size")
    size = size[0] if isinstance(size, (list, tuple)) else size
    return HubEmbedding(model.float().eval(), int(dim), "transformers", size, name)


def require_timm():
    """The timm module, or :class:`helpers.models.SourceUnavailable` with the install command."""
    try:
        import timm
    except ImportError as exc:
        raise M.SourceUnavailable("timm", "the optional timm package is not installed: pip install .[timm] "
                                  "(or pip install timm)") from exc
    return timm


def _timm_from_folder(folder: Path) -> nn.Module:
    """timm's own loader of a folder in the hub layout (``local-dir:``; weights: ``model.safetensors`` first, else
    ``torch.load(weights_only=True)``)."""
    timm = require_timm()
    try:
        from timm.models._factory import parse_model_name

        parse_model_name(f"local-dir:{folder}")
    except (ImportError, ValueError) as exc:
        raise M.SourceUnavailable(str(folder), f"timm {timm.__version__} cannot load a model from a local folder "
                                  "(its 'local-dir:' source): pip install -U timm") from exc
    return timm.create_model(f"local-dir:{folder}", pretrained=True).eval()


def timm_embedding(model: nn.Module, name: str = "") -> nn.Module:
    """A timm model as a candidate: itself where its classifier is a Linear that
    :func:`helpers.models.feature_path` finds (its source classes give logits), else (``num_classes=0``
    backbones such as timm's DINOv2) a :class:`HubEmbedding` of its pre-logits features."""
    clf = model.get_classifier() if hasattr(model, "get_classifier") else None
    if isinstance(clf, nn.Linear) and M.get_submodule(model, M.feature_path(model)) is clf:
        model.input_size_name = name
        return model
    return HubEmbedding(model, int(model.num_features), "timm", None, name)


def load_timm(ref: str, spec: str = "") -> nn.Module:
    """``hf-hub:ORG/NAME`` or ``local-dir:PATH`` through timm, from the local folder :func:`resolve` gives."""
    source, _, target = ref.partition(":")
    folder = resolve(target if source == "hf-hub" else str(Path(target).expanduser()), spec)
    if layout(folder) != "timm":
        raise HubLayoutError(f"{folder}: not in timm's hub layout (config.json has no 'architecture'); a "
                             f"transformers model is written hf:{target}")
    return timm_embedding(_timm_from_folder(folder), spec)


def load_open_clip(folder: Path, name: str = "") -> HubEmbedding:
    """The image tower of an open_clip model whose tower is a timm model (``vision_cfg.timm_model_name``, as
    BiomedCLIP): the timm trunk built by timm with the repository's ``visual.trunk.*`` weights (safetensors
    first, else ``torch.load(weights_only=True)``); the image-text projection is left out."""
    timm = require_timm()
    cfg = _read_json(folder / OPEN_CLIP_CONFIG)
    vision = (cfg.get("model_cfg") or {}).get("vision_cfg") or {}
    arch = vision.get("timm_model_name")
    if not arch:
        raise HubLayoutError(f"{folder}: an open_clip model whose image tower is not a timm model (no "
                             "vision_cfg.timm_model_name); only timm towers (BiomedCLIP's layout) are loaded here")
    if vision.get("timm_pool") not in (None, "", "token", "avg"):
        raise HubLayoutError(f"{folder}: open_clip timm_pool {vision['timm_pool']!r} adds pooling weights outside "
                             "the trunk; not supported")
    weights = next((folder / f for f in OPEN_CLIP_WEIGHTS if (folder / f).is_file()), None)
    if weights is None:
        raise M.SourceUnavailable(name or str(folder), f"{folder}: none of {', '.join(OPEN_CLIP_WEIGHTS)}")
    state = M.read_state_dict(weights)
    trunk = {k[len("visual.trunk."):]: v for k, v in state.items() if k.startswith("visual.trunk.")}
    if not trunk:
        raise HubLayoutError(f"{weights}: no visual.trunk.* weights (open_clip's timm tower)")
    kwargs = {"num_classes": 0}
    if vision.get("image_size"):
        kwargs["img_size"] = vision["image_size"]
    if vision.get("timm_pool"):
        kwargs["global_pool"] = vision["timm_pool"]
    model = timm.create_model(arch, pretrained=False, **kwargs)
    missing, unexpected = model.load_state_dict(trunk, strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights}: the visual.trunk weights do not fit timm's {arch}: {len(missing)} missing "
                         f"{sorted(missing)[:4]}, {len(unexpected)} unexpected {sorted(unexpected)[:4]}")
    return HubEmbedding(model.eval(), int(model.num_features), "open_clip", vision.get("image_size"), name)


def load_hf(ref: str, spec: str = "") -> nn.Module:
    """The model of an ``hf:`` candidate (module docstring)."""
    folder = resolve(ref, spec)
    kind = layout(folder)
    if kind == "timm":
        return timm_embedding(_timm_from_folder(folder), spec)
    if kind == "open_clip":
        return load_open_clip(folder, spec)
    return load_transformers(folder, spec)


# ----------------------------------------------------------------------------------------------------------
# preprocessing


def _side(value) -> int | None:
    """A processor size entry as one side: an int, ``{"height", "width"}`` or ``{"shortest_edge"}``."""
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, dict):
        for key in ("height", "shortest_edge", "width"):
            if value.get(key):
                return int(value[key])
    return None


def _processor_preprocessing(folder: Path) -> dict:
    cfg = _read_json(folder / "config.json")
    vision = cfg.get("vision_config") or cfg
    size = vision.get("image_size")
    size = size[0] if isinstance(size, (list, tuple)) else size
    proc_path = folder / "preprocessor_config.json"
    if not proc_path.is_file():
        return {"image_size": size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "interpolation": None,
                "crop": None, "declared": False}
    proc = _read_json(proc_path)
    mean = proc.get("image_mean") or [0.0, 0.0, 0.0]
    std = proc.get("image_std") or [1.0, 1.0, 1.0]
    if not proc.get("do_normalize", True):
        mean, std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    factor = float(proc.get("rescale_factor", 1 / 255)) if proc.get("do_rescale", True) else 1.0
    # the model sees (x * factor - mean) / std for x in 0..255; the pipeline feeds (x / 255 - m) / s
    scale = 255.0 * factor
    mean = [float(m) / scale for m in mean]
    std = [float(s) / scale for s in std]
    crop = _side(proc.get("crop_size")) if proc.get("do_center_crop") else None
    resize = _side(proc.get("size"))
    return {"image_size": crop or resize or size, "mean": mean, "std": std,
            "interpolation": RESAMPLE.get(proc.get("resample")), "crop": crop, "resize": resize,
            "declared": True}


def _timm_preprocessing(folder: Path) -> dict:
    cfg = (_read_json(folder / "config.json").get("pretrained_cfg") or {})
    return {"image_size": (cfg.get("input_size") or [3, None, None])[-1], "mean": cfg.get("mean", IMAGENET_MEAN),
            "std": cfg.get("std", IMAGENET_STD), "interpolation": cfg.get("interpolation"),
            "crop": cfg.get("crop_pct"), "declared": bool(cfg)}


def declared_preprocessing(folder: Path) -> dict:
    """What a hub folder declares for its input: ``image_size``, ``mean``, ``std`` (for x / 255),
    ``interpolation``, ``crop`` and ``declared`` (False where nothing is declared and defaults are used)."""
    kind = layout(folder)
    if kind == "timm":
        out = _timm_preprocessing(folder)
    elif kind == "open_clip":
        cfg = _read_json(folder / OPEN_CLIP_CONFIG)
        pre = cfg.get("preprocess_cfg") or {}
        vision = (cfg.get("model_cfg") or {}).get("vision_cfg") or {}
        # open_clip's defaults where preprocess_cfg is silent: OpenAI CLIP's mean/std, bicubic, image_size
        out = {"image_size": _side(pre.get("size")) or vision.get("image_size"),
               "mean": pre.get("mean", OPENAI_CLIP_MEAN), "std": pre.get("std", OPENAI_CLIP_STD),
               "interpolation": pre.get("interpolation", "bicubic"), "crop": None, "declared": bool(pre)}
    else:
        out = _processor_preprocessing(folder)
    out["layout"] = kind
    out["mean"] = [float(v) for v in out["mean"]]
    out["std"] = [float(v) for v in out["std"]]
    return out


#: open_clip's OPENAI_DATASET_MEAN / _STD (its default normalisation)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
