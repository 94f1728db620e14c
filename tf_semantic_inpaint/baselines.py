"""Classical and data-driven inpainting baselines, to compare with the semantic search.

Every method is a callable `fn(image, mask) -> completed`:

- image: float32 [H, W, C] in [0, 1]. The hole's contents are ignored (zeroed on
  entry), so whatever a caller leaves there cannot leak into the result.
- mask: float32 [H, W, 1] (or [H, W]), 1 = known pixel, 0 = missing.
- completed: float32 [H, W, C] in [0, 1] whose known pixels equal the input's
  float32 values bit for bit (every method composites at the end).

Classical methods (`CLASSICAL`) use only the image itself: OpenCV's Telea and
Navier-Stokes, scikit-image's biharmonic, and total-variation inpainting.
Data-driven ones (`DATA_DRIVEN`) are built from training images [N, H, W, C]: the
mean training image, and the nearest training image on the known pixels (the
paper's "NN" comparison). `make_baselines` builds a set of them by name.
"""

import cv2
import numpy as np

from tf_semantic_inpaint.errors import InpaintError

# OpenCV's neighbourhood radius for Telea and Navier-Stokes, in pixels (its docs' example value).
OPENCV_RADIUS = 3
# Chambolle-Pock iterations for TV inpainting. Against 10,000 iterations, 500 reach a TV
# within 0.2% of it and pixels within 0.03, for 28x28 images with a 14x14 hole and 64x64
# ones with a 32x32 hole (300 leave 64x64 pixels up to 0.12 off); mean PSNR on 200
# Fashion-MNIST test images: 19.08 dB at 500 iterations, 19.09 dB at 5,000.
TV_ITERATIONS = 500
# Bytes of training images per matrix product in NearestNeighbour (334 Fashion-MNIST images).
# Chunks of 0.5-1.5 MB measured 25-45 ms per query over 60,000 images; from 2 MB OpenBLAS
# threads its matrix-vector product and, with another job on the cores, took 0.3-0.9 s.
NN_CHUNK_BYTES = 1 << 20


class BaselineError(InpaintError):
    """A baseline cannot run on this input or configuration; the message says why."""


def _prepare(image, mask, need_known=True):
    """Validated (image with a zeroed hole as float32 [H, W, C], known as bool [H, W, 1])."""
    image = np.asarray(image)
    if image.ndim != 3 or not np.issubdtype(image.dtype, np.floating):
        raise BaselineError(
            f"the image must be float [H, W, C] in [0, 1], got {image.dtype} of shape "
            f"{image.shape}; convert with tf_semantic_inpaint.images.to_float."
        )
    mask = np.asarray(mask)
    if mask.ndim == 2:
        mask = mask[..., np.newaxis]
    if mask.shape != image.shape[:2] + (1,):
        raise BaselineError(
            f"the mask has shape {mask.shape} but the image is {image.shape}; "
            "pass a mask [H, W, 1] of the image's size (1 = known, 0 = missing)."
        )
    known = mask > 0.5
    if need_known and not known.any():
        raise BaselineError("the mask has no known pixels; this method needs some to fill from.")
    image = np.where(known, image.astype(np.float32), np.float32(0.0))
    return image, known


def _composite(image, known, filled):
    """Known pixels from `image`, hole pixels from `filled` clipped to [0, 1]; float32."""
    return np.where(known, image, np.clip(filled, 0.0, 1.0)).astype(np.float32)


# --- Classical methods (the image alone) -----------------------------------------


def _opencv(image, mask, flag):
    image, known = _prepare(image, mask)
    hole = (~known[..., 0]).astype(np.uint8)
    # OpenCV inpaints 16-bit only one channel at a time; channels are independent in
    # both algorithms (8-bit 3-channel gives the same result per channel), and 16 bits
    # avoids 8-bit rounding. Its float32 Telea path is broken (values far outside 0..1).
    pixels = np.round(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16)
    filled = np.stack(
        [cv2.inpaint(np.ascontiguousarray(pixels[..., c]), hole, OPENCV_RADIUS, flag)
         for c in range(image.shape[-1])],
        axis=-1,
    )
    return _composite(image, known, filled.astype(np.float32) / 65535.0)


def telea(image, mask):
    """Telea's fast-marching inpainting (OpenCV INPAINT_TELEA, radius 3).

    Args/returns as in the module docstring: float32 [H, W, C] in [0, 1].
    """
    return _opencv(image, mask, cv2.INPAINT_TELEA)


def navier_stokes(image, mask):
    """Bertalmio et al.'s Navier-Stokes inpainting (OpenCV INPAINT_NS, radius 3).

    Args/returns as in the module docstring: float32 [H, W, C] in [0, 1].
    """
    return _opencv(image, mask, cv2.INPAINT_NS)


def biharmonic(image, mask):
    """Biharmonic (smooth, thin-plate-like) fill of each hole, via scikit-image.

    Unlike the others it can overshoot the known values near strong edges (bright
    blobs on Fashion-MNIST); the result is clipped to [0, 1].

    Args/returns as in the module docstring: float32 [H, W, C] in [0, 1].
    """
    try:
        from skimage.restoration import inpaint_biharmonic
    except ImportError as error:  # scikit-image is an optional dependency
        raise BaselineError(
            "biharmonic inpainting needs scikit-image: `pip install scikit-image` "
            "(or `pip install tf-semantic-inpaint[evaluate]`)."
        ) from error
    image, known = _prepare(image, mask)
    filled = inpaint_biharmonic(image, ~known[..., 0], channel_axis=-1)
    return _composite(image, known, filled)


def _gradient(x):
    """Forward differences of x [H, W, C] with Neumann boundary -> (d/dx, d/dy), each [H, W, C]."""
    dx, dy = np.zeros_like(x), np.zeros_like(x)
    dx[:, :-1] = x[:, 1:] - x[:, :-1]
    dy[:-1] = x[1:] - x[:-1]
    return dx, dy


def _divergence(px, py):
    """The negative adjoint of `_gradient`: <grad x, p> = -<x, div p>; [H, W, C]."""
    div = np.zeros_like(px)
    div[:, :-1] += px[:, :-1]
    div[:, 1:] -= px[:, :-1]
    div[:-1] += py[:-1]
    div[1:] -= py[:-1]
    return div


def total_variation(image, mask, iterations=TV_ITERATIONS):
    """Total-variation inpainting: min_x TV(x) subject to x = y on the known pixels.

    Isotropic TV per channel, sum over pixels of sqrt(dx^2 + dy^2), solved with
    Chambolle & Pock's primal-dual algorithm (2011, Algorithm 1, theta = 1) with
    tau = sigma = 1/sqrt(8), so tau * sigma * ||grad||^2 <= 1. The primal step
    projects onto {x = y on known pixels, x within the known values' range}; clipping
    to that range never raises TV, so a minimiser lies in it and the range only keeps
    iterates tidy.
    Only the hole's bounding box plus a one-pixel ring is solved: outside it every
    TV term is fixed by known pixels.

    Args:
        image, mask: as in the module docstring.
        iterations: primal-dual iterations (TV_ITERATIONS = 500 by default).

    Returns:
        float32 [H, W, C] in [0, 1].
    """
    image, known = _prepare(image, mask)
    rows, cols = np.nonzero(~known[..., 0])
    if rows.size == 0:
        return image
    top, bottom = max(rows.min() - 1, 0), min(rows.max() + 2, image.shape[0])
    left, right = max(cols.min() - 1, 0), min(cols.max() + 2, image.shape[1])
    y, fixed = image[top:bottom, left:right].astype(np.float64), known[top:bottom, left:right]
    values = image[known[..., 0]].astype(np.float64)  # [K, C], the known pixels
    low, high = values.min(axis=0), values.max(axis=0)

    def project(x):
        return np.where(fixed, y, np.clip(x, low, high))

    # Start the hole at the mean known value: closer to the answer than zero.
    x = project(np.where(fixed, y, values.mean(axis=0)))
    x_bar, px, py = x.copy(), np.zeros_like(x), np.zeros_like(x)
    step = 1.0 / np.sqrt(8.0)
    for _ in range(iterations):
        # Dual ascent on p, then projection onto the unit ball per pixel and channel.
        dx, dy = _gradient(x_bar)
        px, py = px + step * dx, py + step * dy
        norm = np.maximum(1.0, np.sqrt(px * px + py * py))
        px, py = px / norm, py / norm
        # Primal descent on x (grad* = -div), then over-relaxation.
        x_new = project(x + step * _divergence(px, py))
        x_bar, x = 2.0 * x_new - x, x_new
    filled = image.copy()
    filled[top:bottom, left:right] = x
    return _composite(image, known, filled)


# --- Data-driven methods (need training images) ----------------------------------


def _training_images(train_images):
    """Validated float32 [N, H, W, C] training images."""
    train = np.asarray(train_images)
    if train.ndim != 4 or train.shape[0] == 0:
        raise BaselineError(
            f"training images must be a non-empty array [N, H, W, C], got shape {train.shape}; "
            "add a channel axis to grayscale images."
        )
    if not np.issubdtype(train.dtype, np.floating):
        raise BaselineError(
            f"training images must be float in [0, 1], got {train.dtype}; divide uint8 by 255."
        )
    return train.astype(np.float32, copy=False)


def _check_size(image, expected):
    if image.shape != expected:
        raise BaselineError(
            f"the image is {image.shape} but the training images are {expected}; "
            "use training images of the same size and channels."
        )


class TrainingMean:
    """Fills the hole with the mean training image.

    Args:
        train_images: float [N, H, W, C] in [0, 1].

    Call with (image, mask) as in the module docstring; images must be [H, W, C].
    """

    def __init__(self, train_images):
        self.mean = _training_images(train_images).mean(axis=0, dtype=np.float64).astype(np.float32)

    def __call__(self, image, mask):
        image, known = _prepare(image, mask, need_known=False)
        _check_size(image, self.mean.shape)
        return _composite(image, known, self.mean)


class NearestNeighbour:
    """Fills the hole with the training image closest to the input on the known pixels.

    The distance is the L2 distance over known pixels only, sum_k m_k (t_k - y_k)^2,
    computed as a matrix-vector product over chunks of NN_CHUNK_BYTES of training images, so
    60,000 Fashion-MNIST images take about 30 ms per query. Ties go to the lower index.

    Args:
        train_images: float [N, H, W, C] in [0, 1] (kept as float32 [N, H*W*C]).

    Call with (image, mask) as in the module docstring; `nearest(image, mask)` gives
    the index of the training image used.
    """

    def __init__(self, train_images):
        train = _training_images(train_images)
        self.shape = train.shape[1:]
        self.train = np.ascontiguousarray(train.reshape(len(train), -1))

    def nearest(self, image, mask):
        """Index into the training images of the one closest on the known pixels (int)."""
        return self._nearest(*_prepare(image, mask, need_known=False))

    def _nearest(self, image, known):
        _check_size(image, self.shape)
        y = image.reshape(-1)
        weights = np.broadcast_to(known, image.shape).reshape(-1).astype(np.float32)
        distances = np.empty(len(self.train), np.float32)
        rows = max(1, NN_CHUNK_BYTES // (4 * y.size))
        buffer = np.empty((rows, y.size), np.float32)
        for start in range(0, len(self.train), rows):
            chunk = self.train[start : start + rows]
            # The direct form (t - y)^2, not |t|^2 - 2ty + |y|^2: no cancellation, so an
            # exact match scores exactly 0.
            diff = np.subtract(chunk, y, out=buffer[: len(chunk)])
            np.square(diff, out=diff)
            distances[start : start + len(chunk)] = diff @ weights
        return int(np.argmin(distances))

    def __call__(self, image, mask):
        image, known = _prepare(image, mask, need_known=False)
        index = self._nearest(image, known)
        return _composite(image, known, self.train[index].reshape(self.shape))


# --- Registry --------------------------------------------------------------------

CLASSICAL = {
    "telea": telea,
    "navier_stokes": navier_stokes,
    "biharmonic": biharmonic,
    "total_variation": total_variation,
}
DATA_DRIVEN = {"train_mean": TrainingMean, "nearest_neighbour": NearestNeighbour}


def make_baselines(names, train_images=None):
    """The named baselines as {name: fn(image, mask) -> completed}, in the order given.

    Args:
        names: baseline names (a list, or one name as a string) from CLASSICAL and
            DATA_DRIVEN.
        train_images: float [N, H, W, C] in [0, 1]; required for data-driven names.

    Raises:
        BaselineError: for an unknown name (the message lists the valid ones) or a
            data-driven name without training images.
    """
    names = [names] if isinstance(names, str) else list(names)
    valid = list(CLASSICAL) + list(DATA_DRIVEN)
    for name in names:
        if name not in valid:
            raise BaselineError(f"unknown baseline {name!r}: use one of {', '.join(valid)}.")
    needing = [name for name in names if name in DATA_DRIVEN]
    if needing and train_images is None:
        raise BaselineError(
            f"baseline(s) {', '.join(needing)} need training images: pass train_images "
            "(float [N, H, W, C] in [0, 1]) or choose from " + ", ".join(CLASSICAL) + "."
        )
    train = _training_images(train_images) if needing else None
    return {
        name: CLASSICAL[name] if name in CLASSICAL else DATA_DRIVEN[name](train)
        for name in names
    }
