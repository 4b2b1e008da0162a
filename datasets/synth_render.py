"""Drawing synthetic pedestrians in visible light and infrared, vectorised over images.

An identity is a set of cues of three groups (see docs/synthetic-dataset.md):

* shared by both modalities: body shape and proportions (height, shoulders, hips, head,
  legs, arms), sleeve and trouser length, a carried bag, and a clothing pattern (stripes of
  some orientation and frequency, checks, two-tone);
* visible only: the clothing, shoe, skin, hair and bag colours (hue, saturation, value);
* infrared only: for a near-infrared camera (SYSU-MM01, LLCM: active NIR illumination) the
  NIR reflectance of each material ("dye"); for a thermal camera (RegDB) body temperature,
  clothing insulation (upper and lower) and a few identity-specific hot/cold spots.

Every cue derives from a latent identity code ``z`` (``LATENT_DIM`` standard normals): cue
``c`` is ``Phi(sqrt(rho) * <z, w_c> + sqrt(1 - rho) * e_c)`` mapped onto its range, with a
fixed random unit direction ``w_c`` per cue and independent noise ``e_c``. ``rho`` is
``cue_correlation``: 0 draws every cue independently (version 1), 1 makes every cue a
function of the 8-d code. In between, the modality-specific cues carry identity knowledge
that is partly predictable from the other modality: the premise IDKL tests.

How the infrared image forms depends on the camera's ``ir_model``:

* ``nir``: intensity = illumination x reflectance, where each material's NIR reflectance is
  ``nir_luma_weight`` x its visible luminance + the rest x its own NIR dye; hue is invisible,
  skin is bright (NIR skin reflectance is high whatever the visible tone), hair dark;
* ``thermal``: intensity = emitted heat: bare skin warmest, clothing cooler by its
  insulation, faint emissivity patterns, identity-specific hot/cold spots, cold bags.

A camera adds nuisance: a cluttered background scene, person scale and position,
illumination gain and colour cast (visible) or gain control and gamma (infrared), blur,
sensor noise, occluders, and a horizontal flip per image. ``difficulty`` in [0, 1] scales
the nuisance up and the spread of the shared cues down.

Every array is computed with numpy broadcasting over (images, rows, columns); the only
Python loops run over images for blurring and over a handful of layers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["Identities", "Camera", "Views", "draw_identities", "draw_camera", "draw_views", "render",
           "CUE_GROUPS", "IR_MODELS", "swap_cues"]

N_PATTERNS = 6  # plain, horizontal, vertical, diagonal stripes, checks, two-tone
N_SPOTS = 3
LATENT_DIM = 8
NIR_SKIN = 0.62  # NIR reflectance of skin (high for every visible skin tone)
IR_MODELS = ("nir", "thermal")
F = np.float32


@dataclass
class Identities:
    """Struct of arrays, one row per identity (see the module docstring for the cue kinds)."""

    # shared by both modalities
    height: np.ndarray
    shoulder: np.ndarray
    hip: np.ndarray
    head: np.ndarray
    hair: np.ndarray
    waist: np.ndarray
    leg_w: np.ndarray
    leg_gap: np.ndarray
    arm_w: np.ndarray
    sleeve: np.ndarray
    trouser: np.ndarray
    pattern: np.ndarray
    freq: np.ndarray
    phase: np.ndarray
    pattern_strength: np.ndarray
    bag: np.ndarray
    bag_side: np.ndarray
    bag_size: np.ndarray
    # visible only (RGB in [0, 1])
    upper: np.ndarray
    upper2: np.ndarray
    lower: np.ndarray
    shoes: np.ndarray
    skin: np.ndarray
    hair_rgb: np.ndarray
    bag_rgb: np.ndarray
    # infrared only: thermal cameras (temperatures in [0, 1])
    body_temp: np.ndarray
    upper_temp: np.ndarray
    lower_temp: np.ndarray
    spots: np.ndarray  # (n, N_SPOTS, 4): v, u, radius, amplitude
    # infrared only: near-infrared cameras (each material's own NIR reflectance, in [0, 1])
    nir_upper: np.ndarray
    nir_upper2: np.ndarray
    nir_lower: np.ndarray
    nir_shoes: np.ndarray
    nir_hair: np.ndarray
    nir_bag: np.ndarray

    def take(self, index: np.ndarray) -> "Identities":
        return Identities(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


_SHARED = ("height", "shoulder", "hip", "head", "hair", "waist", "leg_w", "leg_gap", "arm_w", "sleeve", "trouser",
           "pattern", "freq", "phase", "pattern_strength", "bag", "bag_side", "bag_size")
_VISIBLE = ("upper", "upper2", "lower", "shoes", "skin", "hair_rgb", "bag_rgb")
_INFRARED = ("body_temp", "upper_temp", "lower_temp", "spots", "nir_upper", "nir_upper2", "nir_lower", "nir_shoes",
             "nir_hair", "nir_bag")
CUE_GROUPS = {"shared": _SHARED, "visible": _VISIBLE, "infrared": _INFRARED}
assert sorted(sum(CUE_GROUPS.values(), ())) == sorted(f.name for f in fields(Identities))


def swap_cues(ids: Identities, group: str, donor: np.ndarray) -> Identities:
    """``ids`` with the cues of ``group`` taken from identity ``donor[i]`` (the audit's cue shuffle)."""
    out = {f.name: getattr(ids, f.name) for f in fields(ids)}
    for name in CUE_GROUPS[group]:
        out[name] = out[name][donor]
    return Identities(**out)


@dataclass
class Camera:
    """One camera's fixed nuisance; ``scene`` is (2H, 2W, C), C = 3 visible, 1 infrared."""

    infrared: bool
    ir_model: str  # "nir" or "thermal" (infrared cameras only)
    nir_luma_weight: float  # nir: share of a material's reflectance that follows its visible luminance
    scene: np.ndarray
    scale: float
    blur: float
    noise: float
    gain: np.ndarray  # visible: per-channel gain; infrared: (lo, hi, gamma) of the gain control
    occlusion: float  # probability of an occluder per image


@dataclass
class Views:
    """Per-image draws, arrays over the images of one batch."""

    flip: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    scale: np.ndarray
    stride: np.ndarray
    light: np.ndarray
    scene_y: np.ndarray
    scene_x: np.ndarray
    occluder: np.ndarray  # (B, 5): present, y0, y1, x0, x1 (fractions of the frame)
    occluder_value: np.ndarray  # (B, 3) colour or temperature
    blur: np.ndarray
    seeds: np.ndarray  # per-image noise seeds


def _hsv_to_rgb(h, s, v) -> np.ndarray:
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack([np.stack(c, -1) for c in
                      ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))], 0)
    return table[i, np.arange(len(h))].astype(F)


SKIN_TONES = np.array([[0.96, 0.80, 0.69], [0.87, 0.67, 0.53], [0.76, 0.57, 0.42], [0.55, 0.38, 0.26],
                       [0.40, 0.27, 0.18]], F)


class _Cues:
    """Draws cue values from the latent identity code: ``u(lo, hi)`` is uniform on [lo, hi] for
    every identity, correlated with the code as ``rho`` says (module docstring)."""

    def __init__(self, rng: np.random.Generator, n: int, rho: float):
        self.rng, self.n = rng, n
        self.a, self.b = math.sqrt(rho), math.sqrt(1.0 - rho)
        self.z = rng.standard_normal((n, LATENT_DIM))

    def u(self, lo: float, hi: float, size: tuple[int, ...] | None = None) -> np.ndarray:
        from scipy.special import ndtr

        extra = () if size is None else tuple(size[1:])
        w = self.rng.standard_normal((LATENT_DIM, *extra))
        w = w / np.linalg.norm(w, axis=0, keepdims=True)
        g = self.a * np.tensordot(self.z, w, axes=1) + self.b * self.rng.standard_normal((self.n, *extra))
        return (lo + (hi - lo) * ndtr(g)).astype(F)

    def choice(self, k: int) -> np.ndarray:
        return np.minimum((self.u(0, 1) * k).astype(int), k - 1)

    def hsv(self, h: tuple[float, float], s: tuple[float, float], v: tuple[float, float]) -> np.ndarray:
        return _hsv_to_rgb(self.u(*h) % 1, self.u(*s), self.u(*v))


def draw_identities(rng: np.random.Generator, n: int, difficulty: float, cue_correlation: float = 0.5) -> Identities:
    """``n`` identities from their latent codes; the spread of the shared cues shrinks as
    ``difficulty`` grows, and ``cue_correlation`` ties every cue to the code."""
    s = 1.0 - 0.5 * difficulty
    c = _Cues(rng, n, cue_correlation)
    u = c.u
    shoulder = 0.125 + s * u(-0.035, 0.035)
    hue = u(0, 1)
    upper = _hsv_to_rgb(hue, u(0.3, 0.9), u(0.25, 0.95))
    upper2 = _hsv_to_rgb((hue + u(0.25, 0.75)) % 1, u(0.2, 0.9), u(0.15, 0.95))
    body = u(0.84, 0.96)
    spots = np.stack([u(0.22, 0.9, (n, N_SPOTS)), u(-0.1, 0.1, (n, N_SPOTS)), u(0.03, 0.07, (n, N_SPOTS)),
                      u(-0.18, 0.22, (n, N_SPOTS))], -1)
    return Identities(
        height=0.86 + s * u(-0.08, 0.08), shoulder=shoulder, hip=shoulder * (0.78 + s * u(-0.15, 0.15)),
        head=0.068 + s * u(-0.012, 0.012), hair=u(0.45, 1.1), waist=0.52 + s * u(-0.05, 0.05),
        leg_w=0.052 + s * u(-0.015, 0.015), leg_gap=0.025 + s * u(-0.015, 0.02), arm_w=0.04 + s * u(-0.012, 0.012),
        sleeve=np.where(u(0, 1) < 0.4, u(0.25, 0.45), 1.0).astype(F),
        trouser=np.where(u(0, 1) < 0.3, u(0.3, 0.5), 1.0).astype(F),
        pattern=c.choice(N_PATTERNS), freq=u(4, 9), phase=u(0, 2 * np.pi),
        pattern_strength=(1.0 - 0.6 * difficulty) * u(0.6, 1.0),
        bag=c.choice(3), bag_side=np.where(u(0, 1) < 0.5, -1.0, 1.0).astype(F), bag_size=u(0.06, 0.11),
        upper=upper, upper2=upper2, lower=c.hsv((0, 1), (0.1, 0.7), (0.15, 0.8)),
        shoes=c.hsv((0, 1), (0, 0.5), (0.05, 0.4)), skin=SKIN_TONES[c.choice(len(SKIN_TONES))],
        hair_rgb=c.hsv((0.02, 0.12), (0.2, 0.8), (0.05, 0.6)), bag_rgb=c.hsv((0, 1), (0.1, 0.8), (0.1, 0.7)),
        body_temp=body, upper_temp=body - u(0.12, 0.38), lower_temp=body - u(0.12, 0.38), spots=spots,
        nir_upper=u(0.1, 0.9), nir_upper2=u(0.1, 0.9), nir_lower=u(0.1, 0.9), nir_shoes=u(0.05, 0.5),
        nir_hair=u(0.05, 0.35), nir_bag=u(0.1, 0.8),
    )


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], channels: int, cells: int) -> np.ndarray:
    """A smooth random field in [0, 1]: coarse noise, upsampled bilinearly."""
    h, w = shape
    coarse = rng.random((cells + 1, cells + 1, channels)).astype(F)
    ys = np.linspace(0, cells, h, dtype=F)
    xs = np.linspace(0, cells, w, dtype=F)
    y0 = np.minimum(ys.astype(int), cells - 1)
    x0 = np.minimum(xs.astype(int), cells - 1)
    fy = (ys - y0)[:, None, None]
    fx = (xs - x0)[None, :, None]
    a = coarse[y0][:, x0]
    b = coarse[y0][:, x0 + 1]
    c = coarse[y0 + 1][:, x0]
    d = coarse[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def draw_camera(rng: np.random.Generator, infrared: bool, size: tuple[int, int], difficulty: float,
                ir_model: str = "thermal", nir_luma_weight: float = 0.5) -> Camera:
    if ir_model not in IR_MODELS:
        raise ValueError(f"ir_model must be one of {IR_MODELS}, got {ir_model!r}")
    a = difficulty
    height, width = size
    channels = 1 if infrared else 3
    shape = (2 * height, 2 * width)
    base = rng.uniform(0.15, 0.35, channels) if infrared else rng.uniform(0.1, 0.5, channels)
    clutter = 0.15 + 0.6 * a
    scene = base + clutter * (_smooth_field(rng, shape, channels, 6) - 0.5)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    for _ in range(int(rng.integers(3, 9))):  # clutter objects; warm ones in infrared
        y0, x0 = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        box = (yy >= y0) & (yy < y0 + rng.integers(height // 8, height // 2)) & \
              (xx >= x0) & (xx < x0 + rng.integers(width // 8, width // 2))
        value = rng.uniform(0.2, 0.75, channels) if infrared else rng.uniform(0, 1, channels)
        scene = np.where(box[..., None], (1 - clutter) * scene + clutter * value, scene)
    if infrared:
        gain = np.array([rng.uniform(0.1, 0.25), rng.uniform(0.9, 1.1), rng.uniform(1 - 0.4 * a, 1 + 0.4 * a)], F)
        noise = 0.015 + 0.06 * a
    else:
        gain = (rng.uniform(1 - 0.35 * a, 1 + 0.1 * a) * (1 + rng.uniform(-0.25 * a, 0.25 * a, 3))).astype(F)
        noise = 0.01 + 0.05 * a
    return Camera(infrared=infrared, ir_model=ir_model, nir_luma_weight=float(nir_luma_weight),
                  scene=np.clip(scene, 0, 1).astype(F), scale=float(rng.uniform(0.86, 1.0)),
                  blur=float(rng.uniform(0.2, 1.0) * (0.3 + 1.4 * a) * height / 96), noise=float(noise),
                  gain=gain, occlusion=float(0.45 * a))


def draw_views(rngs: list[np.random.Generator], camera: Camera, difficulty: float) -> Views:
    """One draw per image; each image has its own generator, so an image does not depend on
    which other images are rendered with it."""
    a = difficulty
    h, w = camera.scene.shape[0] // 2, camera.scene.shape[1] // 2
    rows = []
    for rng in rngs:
        occ = rng.random() < camera.occlusion
        if rng.random() < 0.5:  # an object in front of the lower body
            top = rng.uniform(0.6, 0.8)
            box = (occ, top, 1.0, rng.uniform(-0.2, 0.3), rng.uniform(0.7, 1.2))
        else:  # a pole
            x0 = rng.uniform(0.1, 0.8)
            box = (occ, 0.0, 1.0, x0, x0 + rng.uniform(0.1, 0.25))
        rows.append((rng.random() < 0.5, rng.uniform(-1, 1) * (0.01 + 0.04 * a), rng.uniform(-1, 1) * 0.02,
                     1 + rng.uniform(-1, 1) * (0.02 + 0.08 * a), rng.uniform(0, 0.12),
                     1 + rng.uniform(-1, 1) * (0.05 + 0.25 * a), rng.integers(0, h + 1), rng.integers(0, w + 1),
                     box, rng.uniform(0, 1, 3), camera.blur * rng.uniform(0.7, 1.3), rng.integers(0, 2**31)))
    cols = list(zip(*rows))
    return Views(flip=np.array(cols[0]), dx=np.array(cols[1], F), dy=np.array(cols[2], F),
                 scale=np.array(cols[3], F), stride=np.array(cols[4], F), light=np.array(cols[5], F),
                 scene_y=np.array(cols[6]), scene_x=np.array(cols[7]), occluder=np.array(cols[8], F),
                 occluder_value=np.array(cols[9], F), blur=np.array(cols[10], F), seeds=np.array(cols[11]))


def _inside(d: np.ndarray, px: np.ndarray) -> np.ndarray:
    """Soft mask of a signed distance (negative inside), anti-aliased over one pixel."""
    return np.clip(0.5 - d / px, 0.0, 1.0)


def _col(x: np.ndarray) -> np.ndarray:
    """(B,) -> (B, 1, 1) for broadcasting over rows and columns."""
    return x[:, None, None]


def _pattern(ids: Identities, u: np.ndarray, v: np.ndarray, t0: np.ndarray, t1: np.ndarray,
             px: np.ndarray) -> np.ndarray:
    """Clothing pattern value in [0, 1] (0 = base colour) over the person's coordinates."""
    f, ph = _col(ids.freq), _col(ids.phase)
    sharp = lambda x: 0.5 + 0.5 * np.tanh(3.0 * x)  # noqa: E731
    kinds = [
        np.zeros_like(u * v),
        sharp(np.sin(2 * np.pi * f * v + ph)),
        sharp(np.sin(2 * np.pi * f * u + ph)),
        # diagonal stripes slant the way of the identity's bag side (any fixed +-1 per identity)
        sharp(np.sin(2 * np.pi * f * (v + _col(ids.bag_side) * u) / math.sqrt(2) + ph)),
        sharp(np.sin(2 * np.pi * f * v + ph) * np.sin(2 * np.pi * f * u + ph)),
        _inside(v - 0.5 * (t0 + t1), px) * np.ones_like(u),
    ]
    out = np.select([_col(ids.pattern) == k for k in range(N_PATTERNS)], kinds)
    return out * _col(ids.pattern_strength)


LUMA = np.array([0.299, 0.587, 0.114], F)


def _pattern_polarity(ids: Identities) -> np.ndarray:
    """+1 where the pattern's second colour is the lighter one: the pattern then has the same
    polarity in infrared (warmer) as in a grey-level view of the visible image (lighter)."""
    return np.where(ids.upper2 @ LUMA > ids.upper @ LUMA, 1.0, -1.0).astype(F)


def _masks(ids: Identities, views: Views, camera: Camera, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Soft masks of the body parts, the pattern and the coordinates, each (B, H, W)."""
    height, width = size
    ys = ((np.arange(height, dtype=F) + 0.5) / height)[None, :, None]
    xs = ((np.arange(width, dtype=F) + 0.5 - width / 2) / height)[None, None, :]
    h = ids.height * camera.scale * views.scale
    top = 0.5 * (1 - h) + views.dy
    hb = _col(h)
    v = (ys - _col(top)) / hb
    u = (xs - _col(views.dx)) / hb * _col(np.where(views.flip, -1, 1).astype(F))
    px = 1.0 / (hb * height)
    head, sh, hip = _col(ids.head), _col(ids.shoulder), _col(ids.hip)
    t0 = 2.1 * head + 0.012
    t1 = _col(ids.waist)
    half = sh + (hip - sh) * np.clip((v - t0) / (t1 - t0), 0, 1)
    au = np.abs(u)
    arm_len = 0.36
    arm_w = _col(ids.arm_w)
    leg_end = 0.955
    centre = _col(ids.leg_gap) / 2 + _col(ids.leg_w) / 2 + _col(views.stride) * np.clip(v - t1, 0, 1)
    side_u = _col(ids.bag_side) * u
    bag_size = _col(ids.bag_size)
    bag_top = t0 + 0.03
    bag_d = np.where(_col(ids.bag) == 1,  # a backpack showing at one side
                     np.maximum(np.abs(side_u - (sh + bag_size / 2 - 0.02)) - bag_size / 2,
                                np.maximum(bag_top - v, v - (bag_top + 2.6 * bag_size))),
                     np.maximum(np.abs(side_u - (sh + arm_w + bag_size / 2)) - bag_size / 2,  # a shoulder bag
                                np.maximum(t1 - 0.05 - v, v - (t1 - 0.05 + 1.4 * bag_size))))
    masks = {
        "bag": _inside(bag_d, px) * _col((ids.bag > 0).astype(F)),
        "arms": _inside(np.maximum(np.abs(au - (sh + arm_w / 2)) - arm_w / 2,
                                   np.maximum(t0 + 0.01 - v, v - (t0 + arm_len))), px),
        "legs": _inside(np.maximum(np.abs(au - centre) - _col(ids.leg_w) / 2,
                                   np.maximum(t1 - 0.02 - v, v - leg_end)), px),
        "shoes": _inside(np.maximum(np.abs(au - centre) - 0.65 * _col(ids.leg_w),
                                    np.maximum(leg_end - 0.025 - v, v - 1.0)), px),
        "torso": _inside(np.maximum(au - half, np.maximum(t0 - v, v - t1)), px),
        "head": _inside(np.sqrt(u ** 2 + ((v - 1.05 * head) / 1.15) ** 2) - head, px),
    }
    masks["hair"] = masks["head"] * _inside(v - _col(ids.hair) * head, px)
    masks["covered_arm"] = _inside(v - (t0 + _col(ids.sleeve) * arm_len), px)
    masks["covered_leg"] = _inside(v - (t1 + _col(ids.trouser) * (leg_end - t1)), px)
    masks["pattern"] = _pattern(ids, u, v, t0, t1, px)
    masks["u"], masks["v"] = u, v
    return masks


def _layer(canvas: np.ndarray, mask: np.ndarray, value: np.ndarray) -> np.ndarray:
    return canvas + mask[..., None] * (value - canvas)


def _background(camera: Camera, views: Views, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    rows = views.scene_y[:, None] + np.arange(height)[None, :]
    cols = views.scene_x[:, None] + np.arange(width)[None, :]
    return camera.scene[rows[:, :, None], cols[:, None, :]]


def _occlude(canvas: np.ndarray, views: Views, value: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    ys = ((np.arange(height) + 0.5) / height)[None, :, None]
    xs = ((np.arange(width) + 0.5) / width)[None, None, :]
    o = views.occluder
    box = (_col(o[:, 0]) > 0) & (ys >= _col(o[:, 1])) & (ys < _col(o[:, 2])) & (xs >= _col(o[:, 3])) & \
          (xs < _col(o[:, 4]))
    return _layer(canvas, box.astype(F), value[:, None, None, :])


def _finish(canvas: np.ndarray, views: Views, camera: Camera) -> np.ndarray:
    """Blur and sensor noise per image, then quantise to uint8."""
    out = np.empty(canvas.shape, np.uint8)
    for i in range(canvas.shape[0]):
        img = gaussian_filter(canvas[i], sigma=(float(views.blur[i]),) * 2 + (0,), mode="nearest")
        noise = np.random.default_rng(int(views.seeds[i])).normal(0, camera.noise, img.shape[:2] + (1,))
        out[i] = np.clip((img + noise.astype(F)) * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


def _nir_layers(ids: Identities, m: dict[str, np.ndarray], luma_weight: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """NIR reflectance of each body layer: part visible luminance, part the material's own dye."""
    def refl(rgb: str, dye: str) -> np.ndarray:
        lum = getattr(ids, rgb) @ LUMA
        return _col(luma_weight * lum + (1 - luma_weight) * getattr(ids, dye))

    skin = _col(NIR_SKIN + 0.1 * (ids.skin @ LUMA - 0.6))
    upper = refl("upper", "nir_upper") * (1 - m["pattern"]) + refl("upper2", "nir_upper2") * m["pattern"]
    return [
        (m["bag"], refl("bag_rgb", "nir_bag") * np.ones_like(upper)),
        (m["arms"], np.where(m["covered_arm"] > 0.5, upper, skin)),
        (m["legs"], np.where(m["covered_leg"] > 0.5, refl("lower", "nir_lower"), skin)),
        (m["shoes"], refl("shoes", "nir_shoes") * np.ones_like(upper)),
        (m["torso"], upper),
        (m["head"], skin * np.ones_like(upper)),
        (m["hair"], refl("hair_rgb", "nir_hair") * np.ones_like(upper)),
    ]


def _thermal_layers(ids: Identities, m: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Emitted heat of each body layer: skin warmest, clothing cooler by its insulation."""
    t = _col(ids.body_temp)
    upper = _col(ids.upper_temp) + 0.2 * _col(_pattern_polarity(ids)) * m["pattern"]
    return [
        (m["bag"], np.full_like(t, 0.3) + 0.1 * _col(ids.bag_size)),
        (m["arms"], np.where(m["covered_arm"] > 0.5, upper, t - 0.03)),
        (m["legs"], np.where(m["covered_leg"] > 0.5, _col(ids.lower_temp), t - 0.04)),
        (m["shoes"], np.full_like(t, 0.45)),
        (m["torso"], upper),
        (m["head"], t + 0.03),
        (m["hair"], t - 0.22),
    ]


def render(ids: Identities, views: Views, camera: Camera, size: tuple[int, int]) -> np.ndarray:
    """Images of ``ids`` (one row per image) seen by ``camera``: uint8 (B, H, W, 3) for a
    visible camera, (B, H, W) for an infrared one."""
    m = _masks(ids, views, camera, size)
    canvas = _background(camera, views, size)
    shade2 = 0.85 + 0.15 * np.cos(np.clip(m["u"] / 0.2, -1, 1) * np.pi / 2)
    if camera.infrared:
        thermal = camera.ir_model == "thermal"
        layers = _thermal_layers(ids, m) if thermal else _nir_layers(ids, m, camera.nir_luma_weight)
        for mask, value in layers:
            canvas = _layer(canvas, mask, (value if thermal else value * shade2)[..., None])
        if thermal:
            person = m["torso"] + m["legs"] + m["arms"]
            spots = sum(_col(ids.spots[:, j, 3]) * np.exp(-((m["v"] - _col(ids.spots[:, j, 0])) ** 2 +
                                                             (m["u"] - _col(ids.spots[:, j, 1])) ** 2)
                                                           / (2 * _col(ids.spots[:, j, 2]) ** 2))
                        for j in range(N_SPOTS))
            canvas = canvas + (np.clip(person, 0, 1) * spots)[..., None]
        canvas = _occlude(canvas, views, views.occluder_value[:, :1] * 0.6 + 0.15, size)
        lo, hi, gamma = camera.gain
        light = _col(views.light)[..., None]
        canvas = np.clip((canvas - lo) / (hi - lo) * light, 0, 1) ** gamma
        return _finish(canvas.astype(F), views, camera)[..., 0]
    rgb = lambda name: getattr(ids, name)[:, None, None, :]  # noqa: E731
    pattern = m["pattern"][..., None]
    upper = rgb("upper") * (1 - pattern) + rgb("upper2") * pattern
    shade = shade2[..., None]
    layers = [
        (m["bag"], rgb("bag_rgb")),
        (m["arms"], np.where(m["covered_arm"][..., None] > 0.5, upper, rgb("skin"))),
        (m["legs"], np.where(m["covered_leg"][..., None] > 0.5, rgb("lower"), rgb("skin"))),
        (m["shoes"], rgb("shoes")),
        (m["torso"], upper),
        (m["head"], rgb("skin")),
        (m["hair"], rgb("hair_rgb")),
    ]
    for mask, value in layers:
        canvas = _layer(canvas, mask, value * shade)
    canvas = _occlude(canvas, views, views.occluder_value, size)
    canvas = np.clip(canvas * camera.gain * _col(views.light)[..., None], 0, 1)
    return _finish(canvas.astype(F), views, camera)
