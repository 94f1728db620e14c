"""One SavedModel for TF Serving: G, D and the latent search with its defaults baked in.

Layout (TF Serving's): BASE/<integer version>/{saved_model.pb, variables/,
model_card.json}. Signatures, a public contract (images in [0, 1], masks with
1 = known pixel):

    inpaint, serving_default   images [b,H,W,C], masks [b,H,W,1] ->
                               completed, generated [b,H,W,C], z [b,z_dim],
                               context_loss, prior_loss [b]
    inpaint_with_settings      the same plus scalars iterations, lam,
                               learning_rate, restarts, seed
    inpaint_png                image_png, mask_png (PNG bytes [b], any size,
                               mask white = missing) -> completed_png_bytes,
                               generated_png_bytes
    generate                   z [b,z_dim] -> images [b,H,W,C] in [0, 1]
    discriminate               images [b,H,W,C] in [0, 1] -> logits [b]

Besides the signatures, the SavedModel carries `search_start`, `search_steps`
and `search_finish`: the same search in pieces, which the library calls to show
progress (TF2 loading only; TF Serving sees just the signatures).

The exported module holds the raw tf.Variables rather than the Keras models: TF
Serving restores variables the TF1 way, and that fails for Keras models held as
attributes of a tf.Module (see tests/test_export.py).
"""

import dataclasses
import datetime
import json
import os
import re
import shutil
import tempfile

import keras
import tensorflow as tf

from tf_semantic_inpaint.errors import InpaintError
from tf_semantic_inpaint.search import LatentSearch, SearchSettings

CARD_NAME = "model_card.json"


class ExportError(InpaintError):
    """The run cannot be exported or the target version exists."""


def _binary(masks):
    """Masks thresholded at 0.5, so callers may send any float in [0, 1]."""
    return tf.cast(masks >= 0.5, tf.float32)


class InpaintingModule(tf.Module):
    """What the SavedModel holds: G's and D's variables and the serving functions.

    Args:
        generator, discriminator: the trained Keras models.
        settings: the `SearchSettings` baked into `inpaint` and `inpaint_png`.
    """

    def __init__(self, generator, discriminator, settings=SearchSettings()):
        super().__init__(name="semantic_inpainting")
        # Raw tf.Variables: what both the TF2 and the TF1 (TF Serving) loaders restore.
        self.model_variables = [v.value for v in generator.weights + discriminator.weights]
        res, ch, z_dim = generator.resolution, generator.channels, generator.z_dim
        search = LatentSearch(generator, discriminator, window=settings.window, prior=settings.prior)

        images_spec = tf.TensorSpec([None, res, res, ch], tf.float32)
        masks_spec = tf.TensorSpec([None, res, res, 1], tf.float32)
        scalar = lambda dtype: tf.TensorSpec([], dtype)  # noqa: E731
        defaults = dict(
            iterations=tf.constant(settings.iterations),
            lam=tf.constant(settings.lam, tf.float32),
            learning_rate=tf.constant(settings.learning_rate, tf.float32),
            restarts=tf.constant(settings.restarts),
            seed=tf.constant(settings.seed),
        )

        def inpaint_with_settings(images, masks, iterations, lam, learning_rate, restarts, seed):
            same_batch = tf.debugging.assert_equal(
                tf.shape(images)[0], tf.shape(masks)[0],
                message="images and masks must have the same batch size",
            )
            with tf.control_dependencies([same_batch]):  # before anything mixes the two
                masks = _binary(masks)
            result = search.search(images * 2.0 - 1.0, masks, iterations, lam, learning_rate, restarts, seed)
            generated = tf.clip_by_value(result["generated"] * 0.5 + 0.5, 0.0, 1.0)
            return {
                "completed": masks * images + (1.0 - masks) * generated,
                "generated": generated,
                "z": result["z"],
                "context_loss": result["context_loss"],
                "prior_loss": result["prior_loss"],
            }

        def inpaint(images, masks):
            return inpaint_with_settings(images, masks, **defaults)

        def inpaint_png(image_png, mask_png):
            def decode(png, mask_bytes):
                """An image [H, W, ch] in [0, 1] and its known-pixel mask [H, W, 1] from PNG bytes."""
                image = tf.image.convert_image_dtype(
                    tf.io.decode_png(png, channels=ch, dtype=tf.uint16), tf.float32
                )
                mask = tf.image.convert_image_dtype(
                    tf.io.decode_png(mask_bytes, channels=1, dtype=tf.uint16), tf.float32
                )
                same_size = tf.debugging.assert_equal(
                    tf.shape(image)[:2], tf.shape(mask)[:2],
                    message="mask_png and image_png differ in size",
                )
                # An explicit dependency: graph optimisers may otherwise run the maths first.
                with tf.control_dependencies([same_size]):
                    return tf.identity(image), tf.cast(mask < 0.5, tf.float32)  # white = missing

            def to_model(pngs):
                image, known = decode(*pngs)
                small_known = tf.image.resize(known, (res, res), antialias=True)
                # A low-resolution pixel is known only if every pixel under it is.
                small_known = tf.cast(small_known >= 0.999, tf.float32)
                small = tf.image.resize(image, (res, res), antialias=True)
                return small, small_known

            small, small_known = tf.map_fn(
                to_model, (image_png, mask_png),
                fn_output_signature=(tf.TensorSpec([res, res, ch], tf.float32),
                                     tf.TensorSpec([res, res, 1], tf.float32)),
            )
            result = inpaint(tf.clip_by_value(small, 0.0, 1.0), small_known)

            def to_png(args):
                png, mask_bytes, generated = args
                image, known = decode(png, mask_bytes)
                big = tf.clip_by_value(
                    tf.image.resize(generated, tf.shape(image)[:2], method="bicubic"), 0.0, 1.0
                )
                completed = known * image + (1.0 - known) * big
                encode = lambda x: tf.io.encode_png(tf.image.convert_image_dtype(x, tf.uint8, saturate=True))  # noqa: E731
                return encode(completed), encode(big)

            completed_png, generated_png = tf.map_fn(
                to_png, (image_png, mask_png, result["generated"]),
                fn_output_signature=(tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.string)),
            )
            return {"completed_png_bytes": completed_png, "generated_png_bytes": generated_png}

        def generate(z):
            return {"images": tf.clip_by_value(generator(z, training=False) * 0.5 + 0.5, 0.0, 1.0)}

        def discriminate(images):
            return {"logits": tf.reshape(discriminator(images * 2.0 - 1.0, training=False), [-1])}

        self.inpaint = tf.function(inpaint, input_signature=[images_spec, masks_spec])
        self.inpaint_with_settings = tf.function(
            inpaint_with_settings,
            input_signature=[images_spec, masks_spec, scalar(tf.int32), scalar(tf.float32),
                             scalar(tf.float32), scalar(tf.int32), scalar(tf.int32)],
        )
        self.inpaint_png = tf.function(
            inpaint_png, input_signature=[tf.TensorSpec([None], tf.string)] * 2
        )
        self.generate = tf.function(generate, input_signature=[tf.TensorSpec([None, z_dim], tf.float32)])
        self.discriminate = tf.function(discriminate, input_signature=[images_spec])

        # The search in pieces (state in, state out) for progress bars in the library.
        n_images = tf.TensorSpec([None, res, res, ch], tf.float32)
        n_weights = tf.TensorSpec([None, res, res, 1], tf.float32)
        z_spec = tf.TensorSpec([None, z_dim], tf.float32)
        self.search_start = tf.function(
            lambda images, masks, restarts, seed: search.prepare(
                images * 2.0 - 1.0, _binary(masks), restarts, seed
            ),
            input_signature=[images_spec, masks_spec, scalar(tf.int32), scalar(tf.int32)],
        )
        state_spec = (z_spec, z_spec, z_spec, scalar(tf.int32), z_spec, tf.TensorSpec([None], tf.float32))
        self.search_steps = tf.function(
            lambda state, images, weights, iterations, lam, learning_rate: search.adam_steps(
                state, images, weights, iterations, lam, learning_rate
            ),
            input_signature=[state_spec, n_images, n_weights, scalar(tf.int32), scalar(tf.float32),
                             scalar(tf.float32)],
        )

        def search_finish(state, images, weights, lam, restarts):
            result = search.select_best(state, images, weights, lam, restarts)
            result["generated"] = tf.clip_by_value(result["generated"] * 0.5 + 0.5, 0.0, 1.0)
            return result

        self.search_finish = tf.function(
            search_finish,
            input_signature=[state_spec, n_images, n_weights, scalar(tf.float32), scalar(tf.int32)],
        )

    def signatures(self):
        """The serving signatures; `inpaint` is also `serving_default`."""
        return {
            "serving_default": self.inpaint.get_concrete_function(),
            "inpaint": self.inpaint.get_concrete_function(),
            "inpaint_with_settings": self.inpaint_with_settings.get_concrete_function(),
            "inpaint_png": self.inpaint_png.get_concrete_function(),
            "generate": self.generate.get_concrete_function(),
            "discriminate": self.discriminate.get_concrete_function(),
        }


def load_trained_models(run_dir, raw=False):
    """(generator, discriminator, run config) of a training run.

    Uses the final generator.keras / discriminator.keras, or the newest checkpoint
    when training stopped early. The generator is the moving average of G's weights
    when the run keeps one (the better sampler); raw=True gives the last iterate.
    """
    from tf_semantic_inpaint import train as training  # noqa: F401  (registers classes)
    from tf_semantic_inpaint.models import Discriminator, Generator  # noqa: F401

    config = training.load_run_config(run_dir)
    g_name = "raw_generator" if raw and config.ema_decay else "generator"
    final = [os.path.join(run_dir, f"{n}.keras") for n in (g_name, "discriminator")]
    if all(os.path.isfile(p) for p in final):
        generator, discriminator = (keras.saving.load_model(p) for p in final)
        epochs = config.epochs
    else:
        gan, config, epochs = training.restore_gan(run_dir)
        generator = gan.generator if raw else gan.inference_generator
        discriminator = gan.discriminator
    return generator, discriminator, dataclasses.replace(config, epochs=epochs)


def versions(base):
    """The integer versions already in the TF Serving model base directory."""
    if not os.path.isdir(base):
        return []
    return sorted(int(d) for d in os.listdir(base) if re.fullmatch(r"\d+", d))


def export(run_dir, base, version=None, force=False, settings=SearchSettings(), notes=None):
    """Export a training run as BASE/<version>/ for TF Serving; return that path.

    Args:
        run_dir: a `tfinpaint train` run directory.
        base: the model base directory (e.g. saved_models/fashion_mnist).
        version: integer version; default one more than the newest present.
        force: replace an existing version.
        settings: search defaults baked into `inpaint` / `inpaint_png`.
        notes: extra fields for the model card (e.g. training time).

    The SavedModel is written to a temporary directory beside the target and
    renamed into place, so a failed export leaves nothing behind.
    """
    if not os.path.isdir(run_dir):
        raise ExportError(f"{run_dir} is not a directory; pass the --out folder of `tfinpaint train`.")
    existing = versions(base)
    version = version if version is not None else (existing[-1] + 1 if existing else 1)
    if version < 1:
        raise ExportError(f"version must be a positive integer, got {version}.")
    target = os.path.join(base, str(version))
    if os.path.exists(target) and not force:
        raise ExportError(f"{target} exists; pass --force to replace it or choose another --version.")
    generator, discriminator, config = load_trained_models(run_dir)
    from tf_semantic_inpaint.train import load_sessions

    sessions = load_sessions(run_dir)
    module = InpaintingModule(generator, discriminator, settings)
    card = {
        "format": "tf-semantic-inpaint model card 1",
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "resolution": generator.resolution,
        "channels": generator.channels,
        "z_dim": generator.z_dim,
        "width": generator.width,
        "ema_decay": config.ema_decay,  # the exported G is the EMA of G's weights when > 0
        "dataset": config.dataset,
        "training_command": config.command,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "training_sessions": sessions,
        "training_seconds": round(sum(session["seconds"] for session in sessions), 1),
        "search_defaults": dataclasses.asdict(settings),
        "signatures": sorted(module.signatures()),
        **(notes or {}),
    }
    write_savedmodel(module, target, card, force)
    return target


def write_savedmodel(module, target, card, force=False):
    """Save `module` with its signatures and `card` to `target`, atomically."""
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-export-")
    try:
        tf.saved_model.save(module, tmp, signatures=module.signatures())
        with open(os.path.join(tmp, CARD_NAME), "w") as f:
            json.dump(card, f, indent=2)
        if os.path.exists(target):
            if not force:
                raise ExportError(f"{target} exists; pass --force to replace it.")
            old = tempfile.mkdtemp(dir=parent, prefix=".old-export-")
            os.replace(target, os.path.join(old, "v"))
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_card(model_dir):
    """The model card of an exported version, or {} when it has none."""
    path = os.path.join(model_dir, CARD_NAME)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)
