"""Inpainting images of any size: resize to G, latent search, resize back, blend.

The model sees the image resized to its resolution; G(z*) is resized back and
put into the ORIGINAL image, so known pixels keep their full resolution and come
out exactly as they went in. Masks: float [H, W, 1], 1 = known (the paper's M).

    result = inpaint(image, mask)              # arrays in, arrays out
    result.output                              # blended [H, W, C] in [0, 1]

The search runs in an exported SavedModel, in-process (`LocalModel`) or behind
TF Serving (`serving.RestModel`); both give the same result.
"""

import dataclasses
import os
import re
import sys

import numpy as np

from tf_semantic_inpaint import blend as blending
from tf_semantic_inpaint.errors import InpaintError
from tf_semantic_inpaint.images import resize, to_channels
from tf_semantic_inpaint.search import SearchSettings

SHIPPED_MODEL = "fashion_mnist"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class ModelError(InpaintError):
    """The model directory is not a usable SavedModel."""


# --- Finding models --------------------------------------------------------------


def shipped_model_dir(name=SHIPPED_MODEL):
    """The model base that ships with the package (installed copy, else source checkout)."""
    for root in (os.path.join(_PACKAGE_DIR, "saved_models"),
                 os.path.join(os.path.dirname(_PACKAGE_DIR), "saved_models")):
        if os.path.isdir(os.path.join(root, name)):
            return os.path.join(root, name)
    raise ModelError(
        f"the shipped model {name!r} is not installed; pass --model PATH to a SavedModel "
        "(e.g. one written by `tfinpaint export`)."
    )


def resolve_model_dir(path=None):
    """A SavedModel directory: `path` itself, or the newest integer version under it."""
    path = path or shipped_model_dir()
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    if os.path.isdir(path):
        numbered = sorted((int(d) for d in os.listdir(path) if re.fullmatch(r"\d+", d)), reverse=True)
        for version in numbered:
            candidate = os.path.join(path, str(version))
            if os.path.isfile(os.path.join(candidate, "saved_model.pb")):
                return candidate
    raise ModelError(
        f"{path} is not a SavedModel (no saved_model.pb in it or in a numbered version folder); "
        "pass a directory written by `tfinpaint export`."
    )


class LocalModel:
    """An exported SavedModel loaded in this process.

    Args:
        path: a SavedModel directory or a TF Serving base (newest version is used);
            default the shipped Fashion-MNIST model.
    """

    def __init__(self, path=None):
        import tensorflow as tf

        from tf_semantic_inpaint.export import read_card

        self.path = resolve_model_dir(path)
        try:
            self._loaded = tf.saved_model.load(self.path)
        except (OSError, ValueError, tf.errors.OpError) as error:
            raise ModelError(f"cannot load the SavedModel in {self.path}: {error}") from None
        if not hasattr(self._loaded, "search_steps"):
            raise ModelError(
                f"{self.path} is a SavedModel but not one of tf-semantic-inpaint's "
                "(no latent search in it); export one with `tfinpaint export`."
            )
        spec = self._loaded.signatures["inpaint"].structured_input_signature[1]["images"]
        _, self.resolution, _, self.channels = spec.shape.as_list()
        self.z_dim = self._loaded.signatures["generate"].structured_input_signature[1]["z"].shape[-1]
        self.card = read_card(self.path)
        self.defaults = SearchSettings(**self.card["search_defaults"]) if self.card.get(
            "search_defaults") else SearchSettings()

    @property
    def signatures(self):
        return self._loaded.signatures

    def search(self, images, masks, settings=None, progress=None, chunk=100):
        """The latent search at the model's resolution.

        Args:
            images: float32 [b, R, R, C] in [0, 1].
            masks: float32 [b, R, R, 1], 1 = known.
            settings: SearchSettings (default: the model's own defaults). Its window
                and prior are fixed at export and must match them.
            progress: optional callable(done, total) called after each chunk.

        Returns:
            dict of NumPy arrays: generated [b, R, R, C] in [0, 1], z [b, z_dim],
            context_loss [b], prior_loss [b], best_restart [b], history
            [iterations, b * restarts] (loss of every candidate at every step).
        """
        import tensorflow as tf

        settings = settings or self.defaults
        if (settings.window, settings.prior) != (self.defaults.window, self.defaults.prior):
            raise ModelError(
                f"this model was exported with window {self.defaults.window} and prior "
                f"{self.defaults.prior!r}; re-export it to search with other ones."
            )
        f32 = lambda x: tf.constant(x, tf.float32)  # noqa: E731
        restarts = tf.constant(settings.restarts)
        tiled, weights, state = self._loaded.search_start(
            f32(images), f32(masks), restarts, tf.constant(settings.seed)
        )
        history, done = [], 0
        while done < settings.iterations:
            n = min(chunk, settings.iterations - done)
            state, losses = self._loaded.search_steps(
                state, tiled, weights, tf.constant(n), f32(settings.lam), f32(settings.learning_rate)
            )
            history.append(losses.numpy())
            done += n
            if progress is not None:
                progress(done, settings.iterations)
        result = self._loaded.search_finish(state, tiled, weights, f32(settings.lam), restarts)
        result = {k: v.numpy() for k, v in result.items()}
        result["history"] = np.concatenate(history) if history else np.zeros((0, len(tiled)))
        return result


# --- Inpainting ------------------------------------------------------------------


@dataclasses.dataclass
class InpaintResult:
    """One completed image, at the input's full resolution and channels.

    Attributes:
        output: the result: `blended` if blending was asked for, else `completed`.
        completed: M ⊙ y + (1 - M) ⊙ G(z*), float32 [H, W, C] in [0, 1].
        blended: the Poisson-blended completion, or None.
        generated: G(z*) resized to [H, W, C].
        masked: the input with its hole shown in mid grey, for figures.
        z: the latent z*, float32 [z_dim]; None when nothing was missing.
        context_loss, prior_loss: the final L_c and L_p.
    """

    output: np.ndarray
    completed: np.ndarray
    blended: np.ndarray | None
    generated: np.ndarray
    masked: np.ndarray
    z: np.ndarray | None
    context_loss: float
    prior_loss: float


def check_pair(image, mask, resize_mask=False, name=None, mask_name=None):
    """Validate one image/mask pair; return the mask as float32 [H, W, 1] in {0, 1}.

    Raises InpaintError when sizes differ (unless resize_mask) or every pixel is missing.
    """
    image = np.asarray(image)
    mask = np.asarray(mask, np.float32)
    name = f"image {name}" if name else "the image"
    mask_name = f"mask {mask_name}" if mask_name else "the mask"
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise InpaintError(f"{name} must be [H, W, 1 or 3], got shape {image.shape}.")
    if mask.ndim == 2:
        mask = mask[..., np.newaxis]
    if mask.shape[:2] != image.shape[:2]:
        if not resize_mask:
            raise InpaintError(
                f"{mask_name} is {mask.shape[1]}x{mask.shape[0]} but {name} is "
                f"{image.shape[1]}x{image.shape[0]} (width x height); pass --resize-mask to "
                "stretch the mask to the image."
            )
        import cv2

        mask = cv2.resize(mask[..., 0], (image.shape[1], image.shape[0]),
                          interpolation=cv2.INTER_NEAREST)[..., np.newaxis]
    mask = (mask >= 0.5).astype(np.float32)
    if not mask.any():
        raise InpaintError(
            f"every pixel of {mask_name} is missing: there is no context to condition on."
        )
    return mask


def to_model_inputs(image, mask, resolution, channels):
    """Full-resolution (y, M) -> the model's (y_small [R, R, C], M_small [R, R, 1]).

    A low-resolution pixel counts as known only if every pixel under it is known,
    so hole contents never leak into the context.
    """
    small = resize(to_channels(image, channels), resolution, resolution)
    small_known = resize(mask, resolution, resolution)
    return small, (small_known >= 0.999).astype(np.float32)


def inpaint_batch(images, masks, model=None, settings=None, blend=True, progress=None,
                  resize_mask=False):
    """Inpaint several images (each any size) in one search batch.

    Args:
        images: list of float arrays [H_i, W_i, C_i] in [0, 1], C_i in {1, 3}.
        masks: list of float arrays [H_i, W_i, 1] (or [H_i, W_i]), 1 = known.
        model: a LocalModel, RestModel, or a SavedModel path (default: shipped).
        settings: SearchSettings (default: the model's).
        blend: Poisson-blend G(z*) into the image.
        progress: optional callable(done, total) for the search iterations.

    Returns:
        list of InpaintResult, one per image, each [H_i, W_i, C_i].
    """
    if len(images) != len(masks):
        raise InpaintError(f"got {len(images)} images but {len(masks)} masks.")
    if model is None or isinstance(model, (str, os.PathLike)):
        model = LocalModel(model)
    masks = [check_pair(img, m, resize_mask) for img, m in zip(images, masks)]
    images = [np.asarray(img, np.float32) for img in images]
    results = [None] * len(images)
    todo = [i for i, m in enumerate(masks) if not m.all()]
    for i in set(range(len(images))) - set(todo):
        print("notice: the mask has no missing pixel; the output equals the input.", file=sys.stderr)
        results[i] = InpaintResult(images[i], images[i], images[i] if blend else None,
                                   images[i], images[i], None, 0.0, 0.0)
    if todo:
        small = [to_model_inputs(images[i], masks[i], model.resolution, model.channels) for i in todo]
        found = model.search(np.stack([s[0] for s in small]), np.stack([s[1] for s in small]),
                             settings, progress=progress)
        for k, i in enumerate(todo):
            results[i] = _finish(images[i], masks[i], found, k, blend)
    return results


def _finish(image, mask, found, k, blend):
    """Put G(z*) of search row k back into the full-resolution image."""
    height, width, channels = image.shape
    generated = to_channels(resize(found["generated"][k], height, width), channels)
    completed = blending.composite(image, generated, mask)
    blended = blending.poisson_blend(image, generated, mask) if blend else None
    masked = np.where(mask > 0, image, 0.5).astype(np.float32)
    return InpaintResult(
        output=blended if blend else completed, completed=completed, blended=blended,
        generated=generated, masked=masked, z=found["z"][k],
        context_loss=float(found["context_loss"][k]), prior_loss=float(found["prior_loss"][k]),
    )


def inpaint(image, mask, model=None, settings=None, blend=True, progress=None, resize_mask=False):
    """Inpaint one image: float [H, W, C] in [0, 1] and its mask [H, W, 1] (1 = known).

    Returns an InpaintResult; `.output` is the completed image [H, W, C] in [0, 1].
    """
    return inpaint_batch([image], [mask], model, settings, blend, progress, resize_mask)[0]


# --- Files -----------------------------------------------------------------------

FILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _plan(image, mask, out, compare):
    """[(image path, mask path or None, output path, compare path or None)] of a job."""
    if not os.path.isdir(image):
        stem = os.path.splitext(image)[0]
        return [(image, mask, out or f"{stem}_inpainted.png", compare)]
    if not out:
        raise InpaintError("IMAGE is a folder: name an output folder with -o.")
    names = sorted(f for f in os.listdir(image) if f.lower().endswith(FILE_SUFFIXES))
    if not names:
        raise InpaintError(f"folder {image} holds no images ({', '.join(FILE_SUFFIXES)}).")
    plan = []
    for name in names:
        mask_path = mask
        if mask is not None and os.path.isdir(mask):
            mask_path = os.path.join(mask, name)
            if not os.path.isfile(mask_path):
                raise InpaintError(f"no mask for {name}: expected {mask_path} (same file name).")
        stem = os.path.splitext(name)[0]
        plan.append((os.path.join(image, name), mask_path, os.path.join(out, f"{stem}.png"),
                     os.path.join(compare, f"{stem}.png") if compare else None))
    return plan


def _check_outputs(plan, force):
    """Refuse to clobber inputs ever, or existing outputs without force."""
    inputs = {os.path.abspath(p) for job in plan for p in job[:2] if p}
    for job in plan:
        for target in job[2:]:
            if target is None:
                continue
            if os.path.abspath(target) in inputs:
                raise InpaintError(f"output {target} is one of the inputs; choose another -o.")
            if os.path.exists(target) and not force:
                raise InpaintError(f"{target} exists; pass --force to overwrite it or choose another -o.")


def comparison(result, original):
    """input | masked | G(z*) | output side by side, float [h, 4w + pad, C], enlarged if small."""
    from tf_semantic_inpaint.images import grid

    panels = np.stack([original, result.masked, result.generated, result.output])
    return grid(panels, columns=4, scale=max(1, 128 // max(original.shape[:2])))


def inpaint_files(image, mask, out=None, model=None, mask_type=None, mask_seed=0, blend=True,
                  compare=None, resize_mask=False, force=False, server=None, model_name=None,
                  timeout=60.0, settings=None, batch_size=16, progress=True):
    """Inpaint image files (one file, or every image in a folder); return written paths.

    Every input is read and checked before the search starts, and nothing is
    written unless all of it succeeds; each file is written atomically at the
    input's bit depth (16-bit PNGs stay 16-bit), so known pixels are unchanged.

    Args:
        image: an image file or a folder of images.
        mask: a mask file (white = missing), a folder of masks named like the
            images, or None with `mask_type`.
        out: output file (single image) or folder (batch).
        settings: SearchSettings, or a callable(model defaults) -> SearchSettings.
    """
    from tf_semantic_inpaint import masks as masking
    from tf_semantic_inpaint.images import read_image_with_depth, write_image

    plan = _plan(image, mask, out, compare)
    _check_outputs(plan, force)
    loaded = []
    for image_path, mask_path, _, _ in plan:
        pixels, depth = read_image_with_depth(image_path)
        if mask_path is not None:
            m = masking.read_mask(mask_path)
        else:
            m = masking.make_mask(mask_type, pixels.shape[0], pixels.shape[1], mask_seed)
        loaded.append((pixels, check_pair(pixels, m, resize_mask, image_path, mask_path), depth))

    if server:
        from tf_semantic_inpaint.serving import RestModel

        model = RestModel(server, model_name, timeout=timeout)
    elif not isinstance(model, LocalModel):
        model = LocalModel(model)
    if callable(settings):
        # Behind a server the baked-in defaults are not visible: None lets the server use them.
        settings = settings(None if server else model.defaults)
    if not server:
        settings = settings or model.defaults

    bar = None
    if progress and settings is not None:
        from tqdm import tqdm

        groups = -(-len(loaded) // batch_size)
        bar = tqdm(total=settings.iterations * groups, unit="step", desc="latent search",
                   disable=None, leave=False)
    results = []
    for start in range(0, len(loaded), batch_size):
        group = loaded[start:start + batch_size]
        base = bar.n if bar else 0
        report = (lambda done, total, base=base: bar.update(base + done - bar.n)) if bar else None
        results += inpaint_batch([g[0] for g in group], [g[1] for g in group], model, settings,
                                 blend=blend, progress=report)
    if bar:
        bar.close()

    written = []
    for (_, _, out_path, compare_path), (pixels, _, depth), result in zip(plan, loaded, results):
        png = out_path.lower().endswith(".png")
        write_image(out_path, result.output, bit_depth=depth if png else 8)
        written.append(out_path)
        if compare_path:
            write_image(compare_path, comparison(result, pixels))
            written.append(compare_path)
    return written
