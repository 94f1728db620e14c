"""An exported SavedModel run in this process (`LocalModel`).

`LocalModel` and `client.RestModel` answer the same two calls with the same keys, so
inpaint.py takes either:

    search(images, masks, settings)           arrays at the model's size (the `inpaint` signature)
    inpaint_png(image_pngs, mask_pngs, ...)   PNGs of any size (the `inpaint_png` signature)

Here both run the SavedModel's own functions, in chunks of iterations so a progress
callback can follow the search (`run_in_chunks`, the one driver); the result equals
one call of the signature, bit for bit.
"""

import os

import tensorflow as tf

from tf_semantic_inpaint.contract import Limits, SearchSettings, before_refinement, resolve_model_dir
from tf_semantic_inpaint.errors import InpaintError

SHIPPED_MODEL = "fashion_mnist"
CHUNK = 100  # iterations per graph call: progress every ~0.3 s at 28x28, a few calls in all
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def shipped_model_dir(name=SHIPPED_MODEL):
    """The model base that ships with the package (installed copy, else source checkout)."""
    for root in (os.path.join(_PACKAGE_DIR, "saved_models"),
                 os.path.join(os.path.dirname(_PACKAGE_DIR), "saved_models")):
        if os.path.isdir(os.path.join(root, name)):
            return os.path.join(root, name)
    raise InpaintError(
        f"the shipped model {name!r} is not installed; pass --model PATH to a SavedModel "
        "(e.g. one written by `tfinpaint export`)."
    )


def search_in_chunks(functions, start, inputs, settings, chunk=CHUNK):
    """The one driver of a chunked search: yield (done, carry, losses) as it goes.

    Args:
        functions: a loaded SavedModel (or an export.InpaintingModule, the same functions
            in memory); `start` is its `search_start` or `png_start`.
        inputs: start's two data inputs (images and masks, or their PNGs).
        settings: SearchSettings, already checked.

    Yields:
        (0, carry, None) first, then after each chunk (done, carry, losses float32
        [steps in the chunk, candidates]: L_c + L_p of every candidate at each step).
        Finish with `search_finish` / `png_finish` on the last carry.
    """
    lam, learning_rate = tf.constant(settings.lam, tf.float32), tf.constant(settings.learning_rate, tf.float32)
    ints = [tf.constant(int(getattr(settings, name))) for name in ("restarts", "seed", "samples", "window",
                                                                     "warm_start")]
    carry = start(*inputs, tf.constant(settings.iterations), lam, learning_rate, *ints, *_refinement(functions,
                                                                                                     settings))
    done = 0
    yield done, carry, None
    while done < settings.iterations:
        n = min(chunk, settings.iterations - done)
        carry, losses = functions.search_steps(carry, tf.constant(n), lam, learning_rate)
        done += n
        yield done, carry, losses.numpy()


def run_in_chunks(functions, start, finish, inputs, settings, progress=None, chunk=CHUNK):
    """`search_in_chunks` to the end, calling progress(done, total, losses) after each chunk,
    then `finish(carry, *inputs, λ, restarts, samples[, refine_steps, refine_radius])`; its outputs
    as NumPy."""
    for done, carry, losses in search_in_chunks(functions, start, inputs, settings, chunk):  # noqa: B007 (carry: after)
        if progress is not None and losses is not None:
            progress(done, settings.iterations, losses)
    outputs = finish(carry, *inputs, tf.constant(settings.lam, tf.float32), tf.constant(settings.restarts),
                     tf.constant(settings.samples), *_refinement(functions, settings))
    return {key: value.numpy() for key, value in outputs.items()}


def has_refinement(functions):
    """Whether an export takes the refinement settings (those before it have no refine_* inputs)."""
    return hasattr(functions, "inpaint_with_refinement")


def _refinement(functions, settings):
    """The refine_* inputs of the chunked functions: none for an export from before them."""
    if not has_refinement(functions):
        return ()
    return tf.constant(settings.refine_steps), tf.constant(settings.refine_radius, tf.float32)


class LocalModel:
    """An exported SavedModel loaded in this process.

    Args:
        path: a SavedModel directory or a TF Serving model base (its newest version);
            default the shipped Fashion-MNIST model.

    Attributes:
        path, card (the model card), resolution, channels, z_dim, defaults
        (SearchSettings baked in at export), limits (contract.Limits).
    """

    def __init__(self, path=None):
        from tf_semantic_inpaint.export import read_card

        self.path = resolve_model_dir(path or shipped_model_dir())
        try:
            self.functions = tf.saved_model.load(self.path)
        except (OSError, ValueError, tf.errors.OpError) as error:
            raise InpaintError(f"cannot load the SavedModel in {self.path}: {error}") from None
        if not hasattr(self.functions, "png_start"):
            raise InpaintError(
                f"{self.path} is a SavedModel but not one of tf-semantic-inpaint's current exports "
                "(no search_start / png_start); export it again with `tfinpaint export`."
            )
        spec = self.functions.signatures["inpaint"].structured_input_signature[1]["images"]
        _, self.resolution, _, self.channels = spec.shape.as_list()
        self.z_dim = self.functions.signatures["inpaint"].structured_outputs["z"].shape[-1]
        self.card = read_card(self.path)
        limits = {k: v.numpy().item() for k, v in self.functions.signatures["limits"]().items()}
        # An export from before the refinement has no refine_* defaults: it has no refinement.
        defaults = {k: limits.pop(f"default_{k}") for k in SearchSettings.__dataclass_fields__
                    if f"default_{k}" in limits}
        self.defaults = SearchSettings(**{**defaults, "warm_start": bool(defaults["warm_start"])})
        self.limits = Limits(**limits)

    @property
    def signatures(self):
        return self.functions.signatures

    def _settings(self, settings, batch):
        settings = (settings or self.defaults).check(self.limits, batch)
        if settings.refine_steps and not has_refinement(self.functions):
            raise InpaintError(before_refinement(self.path))
        return settings

    def search(self, images, masks, settings=None, progress=None):
        """The search on arrays at the model's size (what the `inpaint` signature does).

        Args:
            images: float32 [b, R, R, C] in [0, 1].
            masks: float32 [b, R, R, 1] in [0, 1], 1 = known.
            settings: SearchSettings (default: the model's).
            progress: optional callable(done, total, losses), see `search_in_chunks`.

        Returns:
            dict of NumPy arrays: completed, generated (the best sample), mean (the
            posterior-mean estimate) [b, R, R, C] in [0, 1], samples [b, K, R, R, C]
            (samples[:, 0] = generated), z [b, z_dim], context_loss, prior_loss [b],
            sample_losses [b, K].
        """
        images, masks = tf.constant(images, tf.float32), tf.constant(masks, tf.float32)
        settings = self._settings(settings, int(images.shape[0]))
        f = self.functions
        return _answer(run_in_chunks(f, f.search_start, f.search_finish, (images, masks), settings, progress))

    def inpaint_png(self, image_pngs, mask_pngs, settings=None, progress=None):
        """The search on PNGs of any size (what the `inpaint_png` signature does).

        Args:
            image_pngs: list of PNG bytes (any size, grey/RGB/RGBA, 8 or 16 bit).
            mask_pngs: list of PNG bytes of the masks (white = missing), each its image's size.
            settings, progress: as in `search`.

        Returns:
            dict: completed_png, generated_png, mean_png (lists of PNG bytes at each
            input's size, channels and bit depth), samples_png (list of b lists of K),
            z [b, z_dim], context_loss, prior_loss [b], sample_losses [b, K].
        """
        images, masks = tf.constant(list(image_pngs), tf.string), tf.constant(list(mask_pngs), tf.string)
        settings = self._settings(settings, len(image_pngs))
        f = self.functions
        return _answer(run_in_chunks(f, f.png_start, f.png_finish, (images, masks), settings, progress))


def _answer(outputs):
    """Signature outputs -> the keys both LocalModel and RestModel return."""
    def value(v):
        return [list(row) for row in v] if v.dtype == object and v.ndim == 2 else (
            list(v) if v.dtype == object else v)

    return {k.replace("_png_bytes", "_png"): value(v) for k, v in outputs.items()}

