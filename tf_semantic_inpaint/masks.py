"""Masks M of known pixels: the paper's four corruption types, mask files, importance weights.

Everywhere in the package a mask M is float32 [H, W, 1] (a batch: [N, H, W, 1]) with
1 = known pixel and 0 = missing, as in the paper. Mask files follow the OpenCV/editor
convention instead: white = missing, black = known; read_mask and write_mask translate.

The corruption types of the paper's experiments:
- center:  a central block, half the height x half the width (25% of the pixels).
- pattern: random blob-shaped regions, 25% of the pixels (Pathak et al.'s random regions).
- random:  80% of the pixels, chosen uniformly at random.
- half:    the left, right, top or bottom half ("half-left" etc. name the missing half).

TensorFlow is imported only inside importance_weights, so clients that just make, read
or write masks (e.g. a TF Serving REST client) do not pay for it.
"""

import numbers
import os

import numpy as np
import scipy.ndimage

from tf_semantic_inpaint import images
from tf_semantic_inpaint.errors import InpaintError

MASK_TYPES = ("center", "pattern", "random", "half")
HALF_SIDES = ("left", "right", "top", "bottom")
MASK_KINDS = MASK_TYPES + tuple(f"half-{side}" for side in HALF_SIDES)

PATTERN_MISSING = 0.25  # Pathak et al.'s density for random regions
# Noise cell of the pattern as a fraction of the shorter side: Pathak et al. upsample uniform
# noise 1/0.06 = 16.7x for 128-pixel crops, i.e. cells of 0.13 of the image side.
PATTERN_CELL = 0.13
RANDOM_MISSING = 0.8  # the paper's random mask


class MaskError(InpaintError):
    """A mask type, mask file or mask parameter is unusable; the message says what to use."""


def make_mask(kind, height, width, seed=None):
    """The mask M of corruption type `kind` for a height x width image.

    Args:
        kind: one of MASK_KINDS: "center", "pattern", "random", "half", or
            "half-left", "half-right", "half-top", "half-bottom" (the missing half).
        height, width: image size in pixels, any positive integers.
        seed: int (or None for fresh randomness); the same seed gives the same mask.

    Returns:
        float32 [height, width, 1], 1 = known, 0 = missing. For odd sizes the center
        block is floor(H/2) x floor(W/2) with its top-left corner at floor((H - h)/2),
        floor((W - w)/2); a missing half is floor(H/2) rows or floor(W/2) columns.
        pattern misses exactly round(0.25 HW) pixels, random exactly round(0.8 HW).
    """
    if kind not in MASK_KINDS:
        raise MaskError(f"unknown mask type {kind!r}; use one of {', '.join(MASK_KINDS)}.")
    if not all(isinstance(n, numbers.Integral) and n >= 1 for n in (height, width)):
        raise MaskError(f"mask size must be positive integers, got {height}x{width}.")
    rng = np.random.default_rng(seed)
    pixels = height * width
    missing = np.zeros((height, width), bool)
    if kind == "center":
        h, w = height // 2, width // 2
        top, left = (height - h) // 2, (width - w) // 2
        missing[top : top + h, left : left + w] = True
    elif kind == "pattern":
        missing = _lowest(_blob_field(height, width, rng), round(PATTERN_MISSING * pixels))
    elif kind == "random":
        missing.flat[rng.permutation(pixels)[: round(RANDOM_MISSING * pixels)]] = True
    else:
        side = kind[len("half-") :] if kind != "half" else HALF_SIDES[rng.integers(4)]
        h, w = height // 2, width // 2
        region = {
            "left": (slice(None), slice(0, w)),
            "right": (slice(None), slice(width - w, None)),
            "top": (slice(0, h), slice(None)),
            "bottom": (slice(height - h, None), slice(None)),
        }[side]
        missing[region] = True
    return (~missing).astype(np.float32)[..., np.newaxis]


def _blob_field(height, width, rng):
    """Smooth random field float64 [height, width]: uniform noise upsampled by a cubic spline.

    One noise sample per PATTERN_CELL * min(H, W) pixels, so blobs look alike at every size.
    """
    cell = PATTERN_CELL * min(height, width)
    # Two spare cells on each side keep the spline's edge handling out of the image.
    noise = rng.random((int(np.ceil(height / cell)) + 4, int(np.ceil(width / cell)) + 4))
    rows = 2.0 + np.arange(height) / cell
    cols = 2.0 + np.arange(width) / cell
    grid = np.meshgrid(rows, cols, indexing="ij")
    return scipy.ndimage.map_coordinates(noise, grid, order=3, mode="nearest")


def _lowest(field, count):
    """bool [H, W], True at the `count` smallest values of `field`: an exact missing fraction."""
    chosen = np.zeros(field.size, bool)
    if count > 0:
        chosen[np.argpartition(field.ravel(), count - 1)[:count]] = True
    return chosen.reshape(field.shape)


def missing_fraction(mask):
    """The fraction of missing pixels (M == 0) of a mask of any shape, a float in [0, 1]."""
    return float(np.mean(np.asarray(mask) == 0))


def read_mask(path):
    """The mask file at `path` as M, float32 [H, W, 1], 1 = known, 0 = missing.

    In the file white = missing: pixels at or above half the range (>= 128 of 255 at
    8 bits, >= 32768 of 65535 at 16 bits) are missing. Colour files are reduced to
    luminance first, so a pure red stroke (luminance 0.30) counts as known; alpha is
    ignored. The exported graph reads mask PNGs by the same rule
    (preprocess.decode_mask_png).
    """
    return _known(images.read_image(path))


def decode_mask(data, name=None):
    """A mask file's bytes (PNG, ...) as M, by the rule of `read_mask`; `name` is for errors."""
    return _known(images.decode_image_with_depth(data, name)[0])


def _known(image):
    """M of a mask image float [H, W, C] in [0, 1] (white = missing): luminance below half."""
    return (images.luminance(image) < 0.5).astype(np.float32)


def mask_png(mask):
    """M (float [H, W, 1] or [H, W], 1 = known) as the PNG bytes of a mask file (white = missing)."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise ValueError(f"a mask is [H, W, 1] or [H, W], got shape {mask.shape}.")
    return images.encode_png((mask == 0).astype(np.float32)[..., np.newaxis], bit_depth=8)


def write_mask(path, mask, overwrite=True):
    """Write M (float [H, W, 1] or [H, W], 1 = known) to `path` as an 8-bit grey PNG.

    Missing pixels (M == 0) become white 255, known ones black 0; atomic. With
    overwrite=False an existing file is an error and is left untouched.
    """
    if os.path.splitext(str(path))[1].lower() != ".png":
        raise MaskError(f"masks are written as PNG (lossless); name {str(path)!r} *.png.")
    if not overwrite and os.path.exists(path):
        raise MaskError(f"{str(path)!r} exists; choose another output or pass --force.")
    images.write_bytes_atomic(path, mask_png(mask))


def importance_weights(masks, window):
    """The paper's importance weights W of the importance-weighted context loss.

    W_i = mean over the window x window neighbourhood N(i) of (1 - M_j) if M_i != 0,
    else 0: known pixels next to the hole weigh most, hole pixels nothing. At the image
    border N(i) holds only the neighbours inside the image. Works inside a tf.function
    with unknown batch, H and W, and a window known only when the graph runs (a
    per-request setting): box sums come from summed-area tables, not a pooling op
    whose size is fixed when the graph is built.

    Args:
        masks: float [N, H, W, 1] tensor or array, 1 = known, 0 = missing.
        window: odd integer >= 1 (a Python int or an int32 scalar tensor), the side of
            N(i) (the paper uses 7).

    Returns:
        float32 tensor [N, H, W, 1] in [0, 1].
    """
    import tensorflow as tf

    if not tf.is_tensor(window):
        odd = isinstance(window, numbers.Integral) and not isinstance(window, bool) and window % 2 == 1
        if not odd or window < 1:
            raise MaskError(f"the importance window must be an odd integer >= 1 (the paper uses 7), "
                            f"got {window!r}.")
    masks = tf.cast(masks, tf.float32)
    half = tf.cast(window, tf.int32) // 2
    missing = _box_sum(1.0 - masks, half)
    inside = _box_sum(tf.ones_like(masks[:1]), half)  # how many of N(i) lie in the image
    return tf.where(tf.not_equal(masks, 0.0), missing / inside, tf.zeros_like(missing))


def _box_sum(images, half):
    """Sum over the (2 half + 1)^2 box around each pixel of [N, H, W, 1], zeros outside."""
    import tensorflow as tf

    padded = tf.pad(images, [[0, 0], [half + 1, half], [half + 1, half], [0, 0]])
    table = tf.cumsum(tf.cumsum(padded, axis=1), axis=2)  # summed-area table, a zero row/column first
    size = tf.shape(images)
    side = 2 * half + 1

    def corner(dy, dx):
        return tf.slice(table, [0, dy, dx, 0], [-1, size[1], size[2], -1])

    return corner(side, side) - corner(0, side) - corner(side, 0) + corner(0, 0)


def hole_depth(masks, cap):
    """How deep in the hole each pixel lies: its chessboard distance to the nearest known pixel.

    0 on known pixels, 1 on missing pixels with a known pixel among their 8 neighbours,
    and so on, counted up to `cap` (deeper pixels get `cap`): `cap` 3x3 max-pools of M.
    Pixels outside the image count as neither known nor missing.

    Args:
        masks: float [N, H, W, 1] tensor or array, 1 = known, 0 = missing.
        cap: Python int >= 1, the deepest distance counted.

    Returns:
        float32 tensor [N, H, W, 1] in {0, 1, ..., cap}.
    """
    import tensorflow as tf

    reached = tf.cast(tf.not_equal(tf.cast(masks, tf.float32), 0.0), tf.float32)
    depth = tf.zeros_like(reached)
    for _ in range(cap):  # pixel i is still unreached after t dilations iff its depth > t
        depth += 1.0 - reached
        reached = tf.nn.max_pool2d(reached, 3, 1, "SAME")
    return depth
