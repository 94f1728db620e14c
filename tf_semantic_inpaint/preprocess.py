"""The one preprocessing: a user's image and mask to the model's input, and G(z*) back.

Every path calls these TensorFlow functions: training data (data.py), the exported
signatures (export.py: `inpaint`, `inpaint_png`), and through them the CLI, the REST
clients, Beam and the notebooks, so a PNG sent to TF Serving and the same PNG given to
`tfinpaint inpaint` are prepared by the same graph.

Value ranges: users and the SavedModel contract speak [0, 1]; G and D speak [-1, 1]
(tanh). `to_model_range` and `to_unit_range` are the only conversions between the two.
"""

import tensorflow as tf

from tf_semantic_inpaint.images import LUMA

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A low-resolution pixel counts as known only if every full-resolution pixel under it
# is (its area-weighted known share >= this), so hole contents never leak into the context.
KNOWN_SHARE = 0.999


def to_model_range(images):
    """[0, 1] -> G's and D's [-1, 1]."""
    return images * 2.0 - 1.0


def to_unit_range(images):
    """G's [-1, 1] -> [0, 1], clipped (tanh can round just past its bounds)."""
    return tf.clip_by_value(images * 0.5 + 0.5, 0.0, 1.0)


def colour_channels(images):
    """[..., c] with c in 1..4 -> (colour [..., 1 or 3], alpha [..., 0 or 1]).

    c may be known only when the graph runs (a decoded PNG's channels).
    """
    known = images.shape[-1]
    colour = (3 if known >= 3 else 1) if known is not None else tf.where(tf.shape(images)[-1] >= 3, 3, 1)
    return images[..., :colour], images[..., colour:]


def convert_channels(images, channels):
    """[..., c] (c in 1..4; alpha dropped) -> [..., channels] by luminance or replication.

    `channels` is 1 or 3, a Python int or (for outputs that follow an input) a scalar tensor.
    """
    colour, _ = colour_channels(images)
    have, static = tf.shape(colour)[-1], colour.shape[-1]

    def grey():
        luma = tf.reduce_sum(colour * tf.constant(LUMA, colour.dtype), axis=-1, keepdims=True)
        return colour if static == 1 else luma if static == 3 else tf.cond(have == 1, lambda: colour, lambda: luma)

    def rgb():
        spread = tf.repeat(colour[..., :1], 3, axis=-1)
        return colour if static == 3 else spread if static == 1 else tf.cond(have == 3, lambda: colour, lambda: spread)

    if isinstance(channels, int):
        out = grey() if channels == 1 else rgb()
        return tf.ensure_shape(out, out.shape[:-1].concatenate([channels]))
    return tf.cond(channels == 1, grey, rgb)


def resize_to(images, resolution):
    """[..., h, w, c] -> [..., resolution, resolution, c], antialiased (area-like) when shrinking."""
    return tf.image.resize(images, (resolution, resolution), antialias=True)


def to_model_inputs(images, known, resolution, channels):
    """A user's images and known-pixel masks -> the model's (y, M) at its resolution.

    Args:
        images: float32 [b, H, W, c] in [0, 1], c in 1..4 (alpha is ignored), any H, W.
        known: float32 [b, H, W, 1], 1 = known (binary).
        resolution, channels: the model's.

    Returns:
        (y float32 [b, R, R, channels] in [0, 1], M float32 [b, R, R, 1] in {0, 1}).
    """
    small = tf.clip_by_value(resize_to(convert_channels(images, channels), resolution), 0.0, 1.0)
    small_known = tf.cast(resize_to(known, resolution) >= KNOWN_SHARE, tf.float32)
    return small, small_known


def from_model_output(generated, height, width, channels):
    """G(z*) at the model's size [R, R, C] in [0, 1] -> [height, width, channels] in [0, 1].

    Bicubic; channels (1 or 3, int or scalar tensor) by luminance or replication.
    """
    big = tf.image.resize(generated, tf.stack([height, width]), method="bicubic", antialias=True)
    return tf.clip_by_value(convert_channels(big, channels), 0.0, 1.0)


def binary_known(masks):
    """Masks with any value in [0, 1] -> M in {0, 1} (>= 0.5 counts as known)."""
    return tf.cast(masks >= 0.5, tf.float32)


# --- PNG bytes ------------------------------------------------------------------------


def png_header(pngs):
    """What the first 26 bytes of PNG files say, without decoding them.

    Args:
        pngs: tf.string [b].

    Returns:
        dict of [b] tensors: is_png (bool: the PNG signature and an IHDR chunk), width,
        height (int64), bit_depth (int32). Garbage or short strings give is_png False.
    """
    padded = tf.strings.join([pngs, tf.constant(b"\0" * 26)])  # short inputs still parse
    head = tf.io.decode_raw(tf.strings.substr(padded, 0, 26), tf.uint8)  # [b, 26]
    as_int = tf.cast(head, tf.int64)

    def big_endian(start):
        return sum(as_int[:, start + k] * 256 ** (3 - k) for k in range(4))

    signature = tf.strings.substr(pngs, 0, 8) == PNG_SIGNATURE
    ihdr = tf.strings.substr(padded, 12, 4) == b"IHDR"
    return {
        "is_png": signature & ihdr,
        "width": big_endian(16),
        "height": big_endian(20),
        "bit_depth": tf.cast(head[:, 24], tf.int32),
    }


def decode_png(png):
    """One PNG (8 or 16 bit, grey, grey+alpha, RGB, RGBA or palette) -> float32 [H, W, c] in [0, 1].

    Callers check the header (`png_header`) first: this decodes whatever size it says.
    """
    return tf.cast(tf.io.decode_png(png, channels=0, dtype=tf.uint16), tf.float32) / 65535.0


def decode_mask_png(png):
    """A mask file's PNG (white = missing, any channels) -> M float32 [H, W, 1], 1 = known.

    The rule of masks.read_mask: luminance below half the range is known.
    """
    return tf.cast(convert_channels(decode_png(png), 1) < 0.5, tf.float32)


def encode_png(image, bit_depth):
    """float32 [H, W, c] in [0, 1] -> PNG bytes at 8 or 16 bits (a scalar int32 tensor)."""
    return tf.cond(
        bit_depth > 8,
        lambda: tf.io.encode_png(tf.cast(tf.round(image * 65535.0), tf.uint16)),
        lambda: tf.io.encode_png(tf.cast(tf.round(image * 255.0), tf.uint8)),
    )
