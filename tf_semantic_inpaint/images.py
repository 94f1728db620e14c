"""Image files in and out (OpenCV), as float arrays in [0, 1].

Arrays are float32 [H, W, C] with C = 1 (grayscale) or 3 (RGB, in RGB order;
OpenCV's BGR stays inside this module). 8- and 16-bit files are read; alpha is
dropped. Writes are atomic: a temporary file in the same folder, then a rename,
so a failed write never leaves a partial file or clobbers an existing one.
"""

import os
import tempfile

import cv2
import numpy as np

from tf_semantic_inpaint.errors import InpaintError


class ImageError(InpaintError):
    """An image file is missing or unreadable; the message names it."""


def read_image(path):
    """The image at `path` as float32 [H, W, C] in [0, 1], C in {1, 3}."""
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
    """Encoded image bytes (PNG, JPEG, ...) -> float32 [H, W, C] in [0, 1]."""
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ImageError("the bytes are not an image OpenCV can decode (PNG, JPEG, ...).")
    return to_float(raw, bgr=True)


def decode_image_with_depth(data, name=None):
    """(float32 [H, W, C] in [0, 1], bit depth 8 or 16) of encoded image bytes.

    The same decoding as `read_image_with_depth` of a file with these bytes; `name`
    only goes into the error message.
    """
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if len(data) else None
    if raw is None:
        raise ImageError(f"cannot read {name or 'the bytes'!r} as an image (PNG, JPEG, BMP, TIFF, ...).")
    return to_float(raw, bgr=True), 16 if raw.dtype == np.uint16 else 8


def to_float(raw, bgr=False):
    """uint8/uint16/float array [H, W] or [H, W, C] -> float32 [H, W, 1 or 3] in [0, 1]."""
    if raw.dtype == np.uint8:
        image = raw.astype(np.float32) / 255.0
    elif raw.dtype == np.uint16:
        image = raw.astype(np.float32) / 65535.0
    else:
        image = np.clip(raw.astype(np.float32), 0.0, 1.0)
    if image.ndim == 2:
        image = image[..., np.newaxis]
    if image.shape[-1] == 4:
        image = image[..., :3]  # alpha is not image content
    if image.shape[-1] == 2:  # grey + alpha
        image = image[..., :1]
    if image.shape[-1] == 3 and bgr:
        image = image[..., ::-1]
    return np.ascontiguousarray(image)


def to_channels(image, channels):
    """float [H, W, c] -> [H, W, channels] (1 <-> 3) by luminance or replication."""
    have = image.shape[-1]
    if have == channels:
        return image
    if channels == 1:
        return (image @ np.array([0.299, 0.587, 0.114], np.float32))[..., np.newaxis]
    return np.repeat(image, 3, axis=-1)


def resize(image, height, width):
    """float [h, w, c] -> [height, width, c]; area when shrinking, cubic when growing."""
    if image.shape[:2] == (height, width):
        return image
    shrink = height * width < image.shape[0] * image.shape[1]
    out = cv2.resize(
        image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    )
    return np.clip(out.reshape(height, width, image.shape[-1]), 0.0, 1.0).astype(np.float32)


def encode_png(image, bit_depth=8):
    """float [H, W, C] in [0, 1] -> PNG bytes (8 or 16 bit)."""
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}.")
    scale, dtype = (255.0, np.uint8) if bit_depth == 8 else (65535.0, np.uint16)
    pixels = np.round(np.clip(image, 0.0, 1.0) * scale).astype(dtype)
    if pixels.shape[-1] == 3:
        pixels = pixels[..., ::-1]
    ok, data = cv2.imencode(".png", pixels)
    if not ok:
        raise ImageError("OpenCV could not encode the image as PNG.")
    return data.tobytes()


def write_image(path, image, bit_depth=8, overwrite=True):
    """Write float [H, W, C] in [0, 1] to `path` atomically.

    The format follows the suffix (PNG for .png, JPEG for .jpg, ...).
    With overwrite=False an existing file is an error and is left untouched.
    """
    path = str(path)
    if not overwrite and os.path.exists(path):
        raise ImageError(f"{path!r} exists; choose another output or pass --force.")
    suffix = os.path.splitext(path)[1].lower() or ".png"
    if suffix == ".png":
        data = encode_png(image, bit_depth)
    else:
        pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
        ok, buf = cv2.imencode(suffix, pixels[..., ::-1] if pixels.shape[-1] == 3 else pixels)
        if not ok:
            raise ImageError(f"OpenCV cannot write {suffix} files; use .png.")
        data = buf.tobytes()
    write_bytes_atomic(path, data)


def write_bytes_atomic(path, data):
    """Write `data` to `path` through a temporary file and a rename."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask():
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
