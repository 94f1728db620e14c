"""Image files in and out (OpenCV), as float arrays in [0, 1].

Arrays are float32 [H, W, C] with C = 1 (grayscale), 3 (RGB) or 4 (RGBA), in RGB
order (OpenCV's BGR stays inside this module). 8- and 16-bit files are read; alpha is
kept, so a completed RGBA image keeps its transparency. Writes are atomic: a temporary
file in the same folder, then a rename, so a failed write never leaves a partial file or
clobbers an existing one.
"""

import os
import tempfile

import cv2
import numpy as np

from tf_semantic_inpaint.errors import InpaintError


class ImageError(InpaintError):
    """An image file is missing or unreadable; the message names it."""


# Luminance weights (ITU-R BT.601, as OpenCV's and PIL's RGB -> grey); preprocess.py
# uses the same ones inside the exported graph.
LUMA = (0.299, 0.587, 0.114)


def read_image(path):
    """The image at `path` as float32 [H, W, C] in [0, 1], C in {1, 3, 4} (alpha kept)."""
    return read_image_with_depth(path)[0]


def read_image_with_depth(path):
    """(image float32 [H, W, C] in [0, 1], bit depth 8 or 16) of the file at `path`."""
    if not os.path.isfile(path):
        raise ImageError(f"image {path!r} does not exist.")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ImageError(f"cannot read {path!r} as an image (PNG, JPEG, BMP, TIFF, ...).")
    return to_float(raw, bgr=True), 16 if raw.dtype == np.uint16 else 8


def decode_image(data):
    """Encoded image bytes (PNG, JPEG, ...) -> float32 [H, W, C] in [0, 1], alpha kept."""
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ImageError("the bytes are not an image OpenCV can decode (PNG, JPEG, ...).")
    return to_float(raw, bgr=True)


def to_float(raw, bgr=False):
    """uint8/uint16/float array [H, W] or [H, W, C] -> float32 [H, W, C] in [0, 1].

    C is 1 (grey), 3 (RGB) or 4 (RGBA); grey + alpha becomes RGBA, as OpenCV reads it.
    """
    if raw.dtype == np.uint8:
        image = raw.astype(np.float32) / 255.0
    elif raw.dtype == np.uint16:
        image = raw.astype(np.float32) / 65535.0
    else:
        image = np.clip(raw.astype(np.float32), 0.0, 1.0)
    if image.ndim == 2:
        image = image[..., np.newaxis]
    if image.shape[-1] == 2:  # grey + alpha
        image = np.concatenate([np.repeat(image[..., :1], 3, axis=-1), image[..., 1:]], axis=-1)
    if image.shape[-1] in (3, 4) and bgr:
        image = np.concatenate([image[..., 2::-1], image[..., 3:]], axis=-1)
    return np.ascontiguousarray(image)


def colour_and_alpha(image):
    """float [H, W, C], C in 1..4 -> (colour [H, W, 1 or 3], alpha [H, W, 0 or 1])."""
    colour = 3 if image.shape[-1] in (3, 4) else 1
    return image[..., :colour], image[..., colour:]


def luminance(image):
    """float [H, W, C] (alpha ignored) -> grey [H, W, 1]."""
    colour, _ = colour_and_alpha(image)
    if colour.shape[-1] == 1:
        return colour
    return (colour @ np.array(LUMA, np.float32))[..., np.newaxis]


def encode_png(image, bit_depth=8):
    """float [H, W, C] in [0, 1], C in {1, 3, 4} -> PNG bytes (8 or 16 bit)."""
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}.")
    scale, dtype = (255.0, np.uint8) if bit_depth == 8 else (65535.0, np.uint16)
    pixels = np.round(np.clip(image, 0.0, 1.0) * scale).astype(dtype)
    if pixels.shape[-1] in (3, 4):
        pixels = np.concatenate([pixels[..., 2::-1], pixels[..., 3:]], axis=-1)
    ok, data = cv2.imencode(".png", pixels)
    if not ok:
        raise ImageError("OpenCV could not encode the image as PNG.")
    return data.tobytes()


def encode_image(suffix, image, bit_depth=8):
    """float [H, W, C] in [0, 1] -> the bytes of an image file of format `suffix` (".png", ".jpg", ...)."""
    if suffix == ".png":
        return encode_png(image, bit_depth)
    pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    if pixels.shape[-1] in (3, 4):
        pixels = np.concatenate([pixels[..., 2::-1], pixels[..., 3:]], axis=-1)
    ok, buf = cv2.imencode(suffix, pixels)
    if not ok:
        raise ImageError(f"OpenCV cannot write {suffix} files; use .png.")
    return buf.tobytes()


def write_image(path, image, bit_depth=8, overwrite=True):
    """Write float [H, W, C] in [0, 1] to `path` atomically.

    The format follows the suffix (PNG for .png, JPEG for .jpg, ...).
    With overwrite=False an existing file is an error and is left untouched.
    """
    path = str(path)
    if not overwrite and os.path.exists(path):
        raise ImageError(f"{path!r} exists; choose another output or pass --force.")
    write_bytes_atomic(path, encode_image(os.path.splitext(path)[1].lower() or ".png", image, bit_depth))


def write_bytes_atomic(path, data):
    """Write `data` to `path` through a temporary file and a rename."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def umask():
    """The process's umask (reading it means setting it; it is set back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def grid(images, columns=8, pad=2, scale=1, pad_value=1.0):
    """Tile float [N, H, W, C] in [0, 1] into one image, `columns` wide, padded.

    `scale` enlarges each tile by pixel replication so small images stay visible.
    """
    images = np.asarray(images, np.float32)
    if scale > 1:
        images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w, c = images.shape
    rows = -(-n // columns)
    out = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), pad_value, np.float32)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = image
    return out


# --- Labels for figures (OpenCV draws text on 8-bit canvases) -------------------------------


def text_width(text, font_scale=0.5):
    """Width in pixels of `text` in OpenCV's simplex font at `font_scale`."""
    return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)[0][0]


def put_text(canvas, text, center_x, baseline_y, max_width):
    """Draw black `text` centred at center_x on a uint8 [h, w] canvas, shrunk to fit max_width."""
    font_scale = 0.5
    while font_scale > 0.25 and text_width(text, font_scale) > max_width:
        font_scale -= 0.05
    x = int(center_x - text_width(text, font_scale) / 2)
    cv2.putText(canvas, text, (max(x, 0), baseline_y), cv2.FONT_HERSHEY_SIMPLEX, font_scale, 0, 1, cv2.LINE_AA)


def label_strip(height, width, channels):
    """A white canvas (uint8 [height, width]) and how to turn it into float [h, w, channels]."""
    canvas = np.full((height, width), 255, np.uint8)
    return canvas, lambda: np.repeat(canvas[..., np.newaxis].astype(np.float32) / 255.0, channels, axis=-1)


def labelled(body, labels, tile, pad=2):
    """A `grid` body (float [h, w, C]) under a strip naming its columns (tiles `tile` wide)."""
    canvas, as_image = label_strip(24, body.shape[1], body.shape[-1])
    for c, label in enumerate(labels):
        put_text(canvas, label, pad + c * (tile + pad) + tile // 2, 16, tile - 4)
    return np.concatenate([as_image(), body], axis=0)
