"""Batched image transforms on tensors, on whatever device the batch lives (GPU when present).

These replace the per-image PIL pipeline of [D] (PROTOCOL.md section 4): horizontal flip, RandomResizedCrop,
a small rotation, sharpness (factor 2), autocontrast and equalize, each with per-sample random parameters, for a
whole batch at once and without host synchronisation. Images are float tensors of shape (B, C, H, W) holding
values on the uint8 scale 0..255; the photometric ops round to integers after each step, as the uint8/PIL
pipeline does, so that equalize sees the histogram it would see there.

The crop, resize and rotation are composed into one sampling grid (bilinear, zero fill): one interpolation
instead of torchvision's two (bilinear crop, then nearest-neighbour rotation). The crop alone reproduces
``torchvision.transforms.v2.functional.resized_crop(..., antialias=False)`` and the rotation alone
``rotate(..., interpolation=BILINEAR)``; see the tests.

[R]'s augmentation (PROTOCOL.md section 8) is a different one: a random affine warp (rotation, shifts, zoom,
shear) and a horizontal flip, :class:`AffineAugmentConfig` and :func:`affine_augment_batch`, one interpolation
per image and no rounding (Keras works on float arrays). :func:`apply_augmentation` picks the function of a
config, so a dataset can carry either.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Parameters of the [D] training augmentation. Probabilities follow torchvision's Random* defaults."""

    flip_p: float = 0.5
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    rotation_degrees: tuple[float, float] = (0.0, 5.0)
    sharpness_factor: float = 2.0
    sharpness_p: float = 0.5
    autocontrast_p: float = 0.5
    equalize_p: float = 0.5


def _quantize(x: torch.Tensor) -> torch.Tensor:
    """Round to the uint8 grid (what a uint8 resize does)."""
    return x.round_().clamp_(0, 255)


def _truncate(x: torch.Tensor) -> torch.Tensor:
    """Clamp and truncate to the uint8 grid (what torchvision's colour ops do when casting back to uint8)."""
    return x.clamp_(0, 255).floor_()


def sample_crop_boxes(n: int, height: int, width: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                      generator: torch.Generator | None = None, device=None, tries: int = 10) -> torch.Tensor:
    """RandomResizedCrop boxes (top, left, h, w) as a float tensor (n, 4), torchvision's sampling rule.

    Ten candidate boxes per image are drawn at once; the first that fits is kept, else the central crop with
    the ratio clamped to ``ratio`` (torchvision's fallback). No Python loop over images, no host sync.
    """
    area = height * width
    u = torch.rand(n, tries, 4, generator=generator, device=device)
    target_area = area * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[..., 1])
    w = torch.sqrt(target_area * aspect).round()
    h = torch.sqrt(target_area / aspect).round()
    ok = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    top = torch.floor(u[..., 2] * (height - h + 1).clamp(min=1))
    left = torch.floor(u[..., 3] * (width - w + 1).clamp(min=1))
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.zeros(n, dtype=torch.long, device=ok.device))
    pick = lambda t: t.gather(1, first[:, None])[:, 0]  # noqa: E731
    box = torch.stack([pick(top), pick(left), pick(h), pick(w)], 1)
    # central-crop fallback where no candidate fitted
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fh, fw = height, round(height * ratio[1])
    else:
        fw, fh = width, height
    fallback = torch.tensor([(height - fh) // 2, (width - fw) // 2, fh, fw], dtype=box.dtype, device=box.device)
    return torch.where(ok.any(1)[:, None], box, fallback)


def affine_resample(x: torch.Tensor, out_size: int, boxes: torch.Tensor | None = None,
                    angles_deg: torch.Tensor | None = None) -> torch.Tensor:
    """Crop each image to its box (top, left, h, w), resize to ``out_size``, rotate by its angle, in one pass.

    Pixel-centre conventions match ``F.interpolate(..., align_corners=False)``; the rotation is about the
    output's centre, counter-clockwise for positive angles (torchvision's convention), with zero fill.
    """
    b, _, height, width = x.shape
    dev, dt = x.device, x.dtype
    if boxes is None:
        boxes = torch.tensor([0.0, 0.0, height, width], device=dev).expand(b, 4)
    boxes = boxes.to(dev, dt)
    # output pixel centres relative to the output centre, in output pixels
    coords = torch.arange(out_size, device=dev, dtype=dt) + 0.5 - out_size / 2
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    xx = xx.expand(b, -1, -1)
    yy = yy.expand(b, -1, -1)
    if angles_deg is not None:
        theta = angles_deg.to(dev, dt) * (math.pi / 180)
        cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
        # inverse rotation (output -> source), image y axis pointing down
        xx, yy = cos * xx - sin * yy, sin * xx + cos * yy
    # pixel-index coordinates in the (cropped and resized) intermediate image
    u = xx + out_size / 2 - 0.5
    v = yy + out_size / 2 - 0.5
    top, left, h, w = (boxes[:, i, None, None] for i in range(4))
    # crop + resize: F.interpolate's rule, source index clamped to the crop (edge pixels replicated)
    src_x = torch.minimum(torch.maximum(left + (u + 0.5) * (w / out_size) - 0.5, left), left + w - 1)
    src_y = torch.minimum(torch.maximum(top + (v + 0.5) * (h / out_size) - 0.5, top), top + h - 1)
    grid = torch.stack([(2 * src_x + 1) / width - 1, (2 * src_y + 1) / height - 1], -1)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if angles_deg is None:
        return out
    # rotation's zero fill: the bilinear weight that falls inside the intermediate image
    inside = ((torch.minimum(u + 1, out_size - u).clamp(0, 1)) * (torch.minimum(v + 1, out_size - v).clamp(0, 1)))
    return out * inside[:, None]


def adjust_sharpness(x: torch.Tensor, factor: float) -> torch.Tensor:
    """torchvision's sharpness on the 0..255 scale: blend with a 3x3 smoothed copy, borders untouched."""
    c = x.shape[1]
    kernel = torch.ones(3, 3, device=x.device, dtype=x.dtype)
    kernel[1, 1] = 5.0
    kernel = (kernel / kernel.sum()).expand(c, 1, 3, 3)
    blurred = F.conv2d(x, kernel, groups=c).round_()  # torchvision rounds the blur of a uint8 image
    out = x.clone()
    inner = out[..., 1:-1, 1:-1]
    inner.add_(blurred.sub_(inner), alpha=1.0 - factor)  # x + (1 - f) (blur - x), torchvision's form
    return _truncate(out)


def autocontrast(x: torch.Tensor) -> torch.Tensor:
    """Stretch each image's channels to the full 0..255 range (channels with a single value are left as is)."""
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    flat = hi == lo
    inv_scale = torch.where(flat, torch.ones_like(hi), (hi - lo) * (1.0 / 255.0))
    lo = torch.where(flat, torch.zeros_like(lo), lo)
    return _truncate((x - lo) / inv_scale)


def equalize(x: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation per image and channel, torchvision's (PIL's) rule, as one batched op."""
    b, c, h, w = x.shape
    v = x.reshape(b * c, h * w).long().clamp_(0, 255)
    hist = torch.zeros(b * c, 256, device=x.device, dtype=torch.long).scatter_add_(1, v, torch.ones_like(v))
    # PIL: step = (number of pixels - count of the last non-empty bin) // 255
    idx = torch.arange(256, device=x.device).expand(b * c, -1)
    last = torch.where(hist > 0, idx, torch.zeros_like(idx)).amax(1, keepdim=True)
    step = torch.div(hist.sum(1, keepdim=True) - hist.gather(1, last), 255, rounding_mode="floor")
    safe = step.clamp(min=1)
    lut = torch.div(hist.cumsum(1) + torch.div(safe, 2, rounding_mode="floor"), safe, rounding_mode="floor")
    lut = torch.cat([torch.zeros_like(lut[:, :1]), lut[:, :-1]], 1).clamp_(0, 255)
    out = lut.gather(1, v)
    out = torch.where(step == 0, v, out)
    return out.reshape(b, c, h, w).to(x.dtype)


def _where_batch(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(mask[:, None, None, None], a, b)


def augment_batch(x: torch.Tensor, out_size: int, cfg: AugmentConfig = AugmentConfig(),
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """[D]'s training augmentation for a batch on the 0..255 scale: (B, C, H, W) -> (B, C, out, out).

    Order as in [D]: flip, RandomResizedCrop, rotation, sharpness, autocontrast, equalize.
    """
    b, _, height, width = x.shape
    dev = x.device
    r = torch.rand(b, 5, generator=generator, device=dev)
    x = _where_batch(r[:, 0] < cfg.flip_p, x.flip(-1), x)
    boxes = sample_crop_boxes(b, height, width, cfg.crop_scale, cfg.crop_ratio, generator, dev)
    lo, hi = cfg.rotation_degrees
    angles = lo + (hi - lo) * r[:, 1]
    x = _quantize(affine_resample(x, out_size, boxes, angles))
    x = _where_batch(r[:, 2] < cfg.sharpness_p, adjust_sharpness(x, cfg.sharpness_factor), x)
    x = _where_batch(r[:, 3] < cfg.autocontrast_p, autocontrast(x), x)
    x = _where_batch(r[:, 4] < cfg.equalize_p, equalize(x), x)
    return x


def resize_batch(x: torch.Tensor, out_size: int) -> torch.Tensor:
    """Evaluation resize (bilinear, no antialias; identity when the size already matches)."""
    if x.shape[-2:] == (out_size, out_size):
        return x
    return F.interpolate(x, size=(out_size, out_size), mode="bilinear", align_corners=False, antialias=False)


def normalize_batch(x: torch.Tensor, mean, std) -> torch.Tensor:
    """0..255 scale -> (x / 255 - mean) / std, per channel."""
    m = torch.as_tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.as_tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x / 255.0 - m) / s


# ----------------------------------------------------------------------------------------------------------
# [R]'s augmentation: a random affine warp and a horizontal flip


@dataclass(frozen=True)
class AffineAugmentConfig:
    """[R]'s training augmentation (PROTOCOL.md section 8) as a batched random affine warp.

    [R] used Keras ``ImageDataGenerator(rotation_range=10, width_shift_range=0.1, height_shift_range=0.1,
    shear_range=0.1, zoom_range=0.1, fill_mode="nearest", horizontal_flip=True)`` (no flip for the chest X-rays),
    which these defaults follow. Per image: an angle uniform in ``[-degrees, degrees]``, shifts uniform in
    ``[-translate, translate]`` times the output side (not rounded to whole pixels), a shear angle (degrees, along
    x) uniform in ``[-shear, shear]``, a zoom and, with probability ``flip_p``, a horizontal flip.

    ``scale_mode``: ``"keras"`` draws two factors ``zx, zy`` uniform in ``scale`` independently and shrinks the
    content by them (Keras's ``zoom_range`` scales the sampling coordinates, so content scale is ``1 / z`` per
    axis); ``"torchvision"`` draws one factor ``s`` uniform in ``scale`` and enlarges the content by it
    (``RandomAffine(scale=...)``). ``fill``: ``"nearest"`` repeats the edge pixels (Keras's ``fill_mode``),
    ``"zeros"`` fills with 0 (torchvision's default). Interpolation is bilinear (Keras's order 1).

    Where the composition differs from Keras's: the warp is torchvision's (rotation, then scale, then shear along
    x, about the image centre; :func:`affine_warp`), while Keras composes its zoom before the rotation and shears
    with another parametrisation. The two agree when ``zx = zy`` and the shear is 0; at [R]'s 0.1 degree the
    shear moves a pixel by at most 0.002 px per px from the centre.
    """

    degrees: float = 10.0
    translate: tuple[float, float] = (0.1, 0.1)
    scale: tuple[float, float] = (0.9, 1.1)
    scale_mode: str = "keras"
    shear: float = 0.1
    flip_p: float = 0.5
    fill: str = "nearest"

    def __post_init__(self):
        if self.scale_mode not in ("keras", "torchvision"):
            raise ValueError(f"scale_mode must be 'keras' or 'torchvision', got {self.scale_mode!r}")
        if self.fill not in ("nearest", "zeros"):
            raise ValueError(f"fill must be 'nearest' or 'zeros', got {self.fill!r}")
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise ValueError(f"scale must be a range (lo, hi) with 0 < lo <= hi, got {self.scale}")
        if self.degrees < 0 or self.shear < 0 or min(self.translate) < 0 or not 0 <= self.flip_p <= 1:
            raise ValueError("degrees, shear and translate must be >= 0 and flip_p in [0, 1]")


def sample_affine_params(n: int, cfg: AffineAugmentConfig, out_size: int, generator: torch.Generator | None = None,
                         device=None) -> dict[str, torch.Tensor]:
    """Random parameters of :class:`AffineAugmentConfig` for ``n`` images: ``angle`` (n,) degrees, ``translate``
    (n, 2) output pixels (x, y), ``scale`` (n, 2) content scale (x, y), ``shear`` (n,) degrees, ``flip`` (n,)
    bool. One ``torch.rand`` call on ``device``, no host synchronisation."""
    u = torch.rand(n, 7, generator=generator, device=device)
    sym = lambda col, half: (2 * u[:, col] - 1) * half  # noqa: E731  (uniform in [-half, half])
    lo, hi = cfg.scale
    if cfg.scale_mode == "keras":
        scale = 1.0 / torch.stack([lo + (hi - lo) * u[:, 3], lo + (hi - lo) * u[:, 4]], 1)
    else:
        scale = (lo + (hi - lo) * u[:, 3])[:, None].expand(n, 2)
    translate = torch.stack([sym(1, cfg.translate[0] * out_size), sym(2, cfg.translate[1] * out_size)], 1)
    return {"angle": sym(0, cfg.degrees), "translate": translate, "scale": scale, "shear": sym(5, cfg.shear),
            "flip": u[:, 6] < cfg.flip_p}


def affine_warp(x: torch.Tensor, out_size: int, angle, translate=None, scale=None, shear=None, flip=None,
                fill: str = "zeros") -> torch.Tensor:
    """Warp each image of ``x`` (B, C, H, W) by its own affine map into (B, C, out_size, out_size), in one
    bilinear interpolation (the resize from H x W to the output size included).

    The map is torchvision's ``affine(img, angle, translate, scale, shear)``: about the image centre, content
    rotated by ``angle`` degrees (torchvision's sign: clockwise on screen for positive angles), scaled by
    ``scale`` ((B,) or (B, 2) for x and y), sheared along x by ``shear`` degrees, shifted by ``translate`` (B, 2)
    output pixels (x right, y down); then ``flip`` (B,) bool mirrors the output horizontally. Outside the
    source: ``fill="zeros"`` (torchvision's ``fill=None``) or ``"nearest"`` (edge pixels repeated, Keras's
    ``fill_mode="nearest"``). Pixel centres follow ``align_corners=False``, so with the identity map and
    ``fill="nearest"`` this is ``F.interpolate(..., mode="bilinear", align_corners=False)`` (with zeros, an
    upsampled image's outermost half pixel blends with the fill).
    """
    if fill not in ("zeros", "nearest"):
        raise ValueError(f"fill must be 'zeros' or 'nearest', got {fill!r}")
    b = x.shape[0]
    dev, dt = x.device, x.dtype

    def per_image(v, default, width=None):
        t = torch.as_tensor(default if v is None else v, device=dev, dtype=dt)
        if width is None:
            return t.expand(b)
        return t.reshape(-1, 1).expand(b, width) if t.ndim < 2 else t  # a scalar or (B,) -> (B, width)

    a = per_image(angle, 0.0) * (math.pi / 180)
    sh = per_image(shear, 0.0) * (math.pi / 180)
    t = per_image(translate, 0.0, 2)
    s = per_image(scale, 1.0, 2)
    cos, sin, tan = torch.cos(a), torch.sin(a), torch.tan(sh)
    # forward content map A = R(a) diag(sx, sy) SHx(sh), R = [[cos, -sin], [sin, cos]], SHx = [[1, -tan], [0, 1]]
    a11, a12 = cos * s[:, 0], -cos * s[:, 0] * tan - sin * s[:, 1]
    a21, a22 = sin * s[:, 0], -sin * s[:, 0] * tan + cos * s[:, 1]
    det = a11 * a22 - a12 * a21
    i11, i12, i21, i22 = a22 / det, -a12 / det, -a21 / det, a11 / det
    coords = torch.arange(out_size, device=dev, dtype=dt) + 0.5 - out_size / 2  # output pixel centres, centred
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    xx, yy = xx.expand(b, -1, -1), yy.expand(b, -1, -1)
    if flip is not None:
        xx = torch.where(torch.as_tensor(flip, device=dev)[:, None, None], -xx, xx)
    qx, qy = xx - t[:, 0, None, None], yy - t[:, 1, None, None]
    src_x = i11[:, None, None] * qx + i12[:, None, None] * qy
    src_y = i21[:, None, None] * qx + i22[:, None, None] * qy
    # centred output-pixel units -> grid_sample's [-1, 1] (the same for any input size: the resize is implied)
    grid = torch.stack([src_x / (out_size / 2), src_y / (out_size / 2)], -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border" if fill == "nearest" else "zeros",
                         align_corners=False)


def affine_augment_batch(x: torch.Tensor, out_size: int, cfg: AffineAugmentConfig = AffineAugmentConfig(),
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """[R]'s training augmentation for a batch on the 0..255 scale: (B, C, H, W) -> (B, C, out, out), float (not
    rounded). Parameters from :func:`sample_affine_params`, warp by :func:`affine_warp`."""
    p = sample_affine_params(x.shape[0], cfg, out_size, generator, x.device)
    return affine_warp(x, out_size, p["angle"], p["translate"], p["scale"], p["shear"], p["flip"], cfg.fill)


def apply_augmentation(x: torch.Tensor, out_size: int, cfg, generator: torch.Generator | None = None) -> torch.Tensor:
    """The training augmentation a config stands for: :class:`AugmentConfig` ([D]'s, :func:`augment_batch`) or
    :class:`AffineAugmentConfig` ([R]'s, :func:`affine_augment_batch`)."""
    if isinstance(cfg, AffineAugmentConfig):
        return affine_augment_batch(x, out_size, cfg, generator)
    if isinstance(cfg, AugmentConfig):
        return augment_batch(x, out_size, cfg, generator)
    raise TypeError(f"unknown augmentation config {type(cfg).__name__}; expected AugmentConfig or AffineAugmentConfig")
