"""Inpainting images of any size through an exported model, then Poisson blending.

One path for every image: it goes to the model as PNG bytes, and the exported graph
prepares it (preprocess.py: channels, resize, the known-pixel rule), searches, and
returns G(z*) at the image's own size, channels and bit depth; here G(z*) is put into
the ORIGINAL image, so known pixels come out exactly as they went in. The model is a
`local.LocalModel` (in this process) or a `client.RestModel` (TF Serving); both give
the same result. Masks: float [H, W, 1], 1 = known (the paper's M).

    result = inpaint(image, mask)              # arrays in, arrays out
    result.output                              # blended [H, W, C] in [0, 1]

Every search gives the best sample G(z*) and an estimate of the posterior mean (a
loss-weighted average of the restarts' completions); `estimate` chooses which is the
output ("typical": the restart's completion nearest the mean, one sharp sample of the
garment most restarts agree on), and SearchSettings(samples=K) asks for K distinct
samples besides.
"""

import dataclasses
import sys

import numpy as np

from tf_semantic_inpaint import blend as blending
from tf_semantic_inpaint import images as imaging
from tf_semantic_inpaint.errors import InpaintError
from tf_semantic_inpaint.masks import mask_png

ESTIMATES = ("sample", "mean", "typical")


@dataclasses.dataclass
class InpaintResult:
    """One completed image, at the input's full resolution and channels (alpha kept).

    Attributes:
        output: the result: the chosen estimate's completion (`blended`, `mean` or
            `typical`), Poisson-blended if blending was asked for, else composited.
        completed: M ⊙ y + (1 - M) ⊙ G(z*), float32 [H, W, C] in [0, 1].
        blended: the Poisson-blended completion, or None.
        generated: G(z*) at the image's size and channels.
        masked: the input with its hole shown in mid grey, for figures.
        z: the latent z*, float32 [z_dim]; None when nothing was missing.
        context_loss, prior_loss: the final L_c and L_p.
        mean: the completion from the posterior-mean estimate (blended like `output`).
        samples: K completions (blended like `output`), distinct where the restarts
            allowed; samples[0] is the best sample's.
        sample_losses: their L_c + L_p, K floats.
        typical: with estimate "typical", the restart's completion nearest the mean over
            the hole (blended like `output`); else None.
    """

    output: np.ndarray
    completed: np.ndarray
    blended: np.ndarray | None
    generated: np.ndarray
    masked: np.ndarray
    z: np.ndarray | None
    context_loss: float
    prior_loss: float
    mean: np.ndarray | None = None
    samples: list = dataclasses.field(default_factory=list)
    sample_losses: list = dataclasses.field(default_factory=list)
    typical: np.ndarray | None = None


@dataclasses.dataclass
class Pair:
    """One image and its mask, checked, with the PNG bytes the model receives.

    image: float32 [H, W, C] in [0, 1], C in {1, 3, 4}; known: float32 [H, W, 1] in {0, 1};
    image_png, mask_png: what is sent (a PNG file's own bytes when there was one).
    """

    image: np.ndarray
    known: np.ndarray
    image_png: bytes
    mask_png: bytes


def check_pair(image, mask, resize_mask=False, name=None, mask_name=None):
    """Validate one image/mask pair; return the mask as float32 [H, W, 1] in {0, 1}.

    Raises InpaintError when sizes differ (unless resize_mask), values are not finite
    in [0, 1], or every pixel is missing.
    """
    image = np.asarray(image)
    mask = np.asarray(mask, np.float32)
    name = f"image {name}" if name else "the image"
    mask_name = f"mask {mask_name}" if mask_name else "the mask"
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise InpaintError(f"{name} must be [H, W, 1, 3 or 4], got shape {image.shape}.")
    if not (np.all(np.isfinite(image)) and image.min() >= 0 and image.max() <= 1):
        raise InpaintError(f"{name} must hold finite values in [0, 1]; convert it with images.to_float.")
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


def make_pair(image, mask, resize_mask=False, image_png=None, mask_file_png=None, name=None, mask_name=None):
    """A checked Pair; PNG bytes are the given file's own, else encoded losslessly (16 bit)."""
    known = check_pair(image, mask, resize_mask, name, mask_name)
    image = np.asarray(image, np.float32)
    resized = known.shape[:2] != np.shape(mask)[:2]
    return Pair(image, known, image_png or imaging.encode_png(image, 16),
                mask_file_png if mask_file_png is not None and not resized else mask_png(known))


def mismatch_warnings(image, model):
    """Plain warnings when an image clearly does not suit the model, each with what to do."""
    found = []
    card = getattr(model, "card", {}) or {}
    about = f"{card['dataset']}, " if card.get("dataset") else ""
    shape = f"{model.resolution}x{model.resolution}x{model.channels}"
    colour, _ = imaging.colour_and_alpha(np.asarray(image, np.float32))
    if model.channels == 1 and colour.shape[-1] == 3 and np.ptp(colour, axis=-1).max() > 2 / 255:
        found.append(f"the image is in colour but the model ({about}{shape}) is greyscale: the fill "
                     "will be grey. Use a model trained on colour images (tfinpaint train --dataset ...).")
    side = max(np.shape(image)[:2])
    if side > 4 * model.resolution or side * 2 < model.resolution:
        found.append(f"the image is {np.shape(image)[1]}x{np.shape(image)[0]} but the model ({about}{shape}) "
                     f"works at {model.resolution}x{model.resolution}: it sees the image "
                     f"{'shrunk' if side > model.resolution else 'enlarged'} {side / model.resolution:.1f}x. "
                     "Crop the image around the hole, or use a model trained at a closer --resolution.")
    return found


def complete(pairs, model, settings=None, blend=True, progress=None, estimate="sample"):
    """Run checked Pairs through a model and blend; a list of InpaintResult.

    Masks with no missing pixel return their image untouched (with a notice).
    """
    if estimate not in ESTIMATES:
        raise InpaintError(f"unknown estimate {estimate!r}: use one of {', '.join(ESTIMATES)}.")
    keep = None  # the samples asked for, when "typical" asks the model for every restart's
    if estimate == "typical":
        settings, keep = _every_restart(model, settings)
    results = [None] * len(pairs)
    todo = [i for i, pair in enumerate(pairs) if not pair.known.all()]
    for i in set(range(len(pairs))) - set(todo):
        print("notice: the mask has no missing pixel; the output equals the input.", file=sys.stderr)
        image = pairs[i].image
        results[i] = InpaintResult(image, image, image if blend else None, image, image, None, 0.0, 0.0,
                                   mean=image, samples=[image], sample_losses=[0.0],
                                   typical=image if estimate == "typical" else None)
    if todo:
        found = model.inpaint_png([pairs[i].image_png for i in todo], [pairs[i].mask_png for i in todo],
                                  settings, progress=progress)
        for k, i in enumerate(todo):
            results[i] = _finish(pairs[i], found, k, blend, estimate, keep)
    return results


def _every_restart(model, settings):
    """(settings asking for every restart's completion, the K samples asked for): what
    the "typical" estimate chooses from."""
    settings = settings or getattr(model, "defaults", None)
    if settings is None:
        raise InpaintError("the typical estimate chooses among the restarts, but the model does not say how "
                           "many it runs; pass search settings (restarts) or use --estimate sample or mean.")
    return dataclasses.replace(settings, samples=settings.restarts), settings.samples


def nearest_to_mean(fills, mean, known):
    """Index of the fill nearest the mean over the hole (squared error).

    Args:
        fills: float [R, H, W, C], the restarts' completions; mean: float [H, W, C];
            known: float [H, W, 1] in {0, 1}, 1 = known (the paper's M).

    Returns:
        int in [0, R): ties go to the lower index, the lower loss.
    """
    hole = 1.0 - np.asarray(known, np.float64)
    error = ((np.asarray(fills, np.float64) - np.asarray(mean, np.float64)) ** 2 * hole).sum(axis=(1, 2, 3))
    return int(np.argmin(error))


def _finish(pair, found, k, blend, estimate, keep=None):
    """Put G's images of row k into the full-resolution image; blend the colour, keep alpha."""
    image, known = pair.image, pair.known
    colour, alpha = imaging.colour_and_alpha(image)

    def fill_of(png):  # the image's channels, alpha copied
        return imaging.colour_and_alpha(imaging.decode_image(png))[0]

    def put(fill):
        done = blending.poisson_blend(colour, fill, known) if blend else blending.composite(colour, fill, known)
        return np.concatenate([done, alpha], axis=-1)

    fill = fill_of(found["generated_png"][k])
    completed = np.concatenate([blending.composite(colour, fill, known), alpha], axis=-1)
    blended = put(fill) if blend else None
    best = blended if blend else completed
    mean_fill = fill_of(found["mean_png"][k]) if "mean_png" in found else None
    mean = None if mean_fill is None else put(mean_fill)
    # Every sample the model returned, each decoded once; the first is the best, `fill`.
    fills = [fill] + [fill_of(png) for png in found["samples_png"][k][1:]]
    typical = None
    if estimate == "typical":
        if mean_fill is None:
            raise InpaintError("the typical estimate needs the model's posterior mean, which this export "
                               "does not give; export it again with `tfinpaint export` or use --estimate sample.")
        nearest = nearest_to_mean(np.stack(fills), mean_fill, known)
        typical = best if nearest == 0 else put(fills[nearest])
        fills = fills[:keep]
    # samples[0] is the best sample, already put in; the others only when asked for.
    samples = [best] + [put(f) for f in fills[1:]]
    masked = np.concatenate([np.where(known > 0, colour, 0.5), alpha], axis=-1).astype(np.float32)
    output = {"sample": best, "mean": mean, "typical": typical}[estimate]
    return InpaintResult(
        output=output, completed=completed, blended=blended,
        generated=np.concatenate([fill, alpha], axis=-1), masked=masked, z=found["z"][k],
        context_loss=float(found["context_loss"][k]), prior_loss=float(found["prior_loss"][k]),
        mean=mean, samples=samples, typical=typical,
        sample_losses=[float(x) for x in found.get("sample_losses", [[found["context_loss"][k]]])[k]][:len(samples)],
    )


def _model(model):
    if model is None or isinstance(model, str) or hasattr(model, "__fspath__"):
        from tf_semantic_inpaint.local import LocalModel

        return LocalModel(model)
    return model


def inpaint_batch(images, masks, model=None, settings=None, blend=True, progress=None, resize_mask=False,
                  estimate="sample"):
    """Inpaint several images (each any size) in one request.

    Args:
        images: list of float arrays [H_i, W_i, C_i] in [0, 1], C_i in {1, 3, 4}.
        masks: list of float arrays [H_i, W_i, 1] (or [H_i, W_i]), 1 = known.
        model: a LocalModel, RestModel, or a SavedModel path (default: shipped).
        settings: SearchSettings (default: the model's).
        blend: Poisson-blend G(z*) into the image.
        progress: optional callable(done, total, losses) for the search iterations.
        estimate: "sample" (the best sample G(z*), sharp), "mean" (the posterior-mean
            estimate, the best guess under squared error) or "typical" (the restart's
            completion nearest the mean: sharp, and the garment most restarts agree on)
            as each result's `output`.

    Returns:
        list of InpaintResult, one per image, each [H_i, W_i, C_i].
    """
    if len(images) != len(masks):
        raise InpaintError(f"got {len(images)} images but {len(masks)} masks.")
    pairs = [make_pair(image, mask, resize_mask) for image, mask in zip(images, masks)]
    return complete(pairs, _model(model), settings, blend, progress, estimate)


def inpaint(image, mask, model=None, settings=None, blend=True, progress=None, resize_mask=False,
            estimate="sample"):
    """Inpaint one image: float [H, W, C] in [0, 1] and its mask [H, W, 1] (1 = known).

    Returns an InpaintResult; `.output` is the completed image [H, W, C] in [0, 1].
    """
    return inpaint_batch([image], [mask], model, settings, blend, progress, resize_mask, estimate)[0]
