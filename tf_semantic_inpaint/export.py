"""One SavedModel for TF Serving: a completion model wrapped in the public contract.

Layout (TF Serving's): BASE/<integer version>/{saved_model.pb, variables/,
model_card.json}. The contract, the same for every completion model (images in
[0, 1], masks M with 1 = known pixel):

    inpaint, serving_default   images [b,R,R,C], masks [b,R,R,1] ->
                               completed, generated, mean [b,R,R,C], z [b,z_dim],
                               context_loss, prior_loss [b]
    inpaint_with_settings      the same plus scalars iterations, lam,
                               learning_rate, restarts, seed
    inpaint_with_options       the same plus scalars samples (K), window,
                               warm_start (0/1) -> also samples [b,K,R,R,C],
                               sample_losses [b,K]
    inpaint_with_refinement    the same plus scalars refine_steps, refine_radius
    inpaint_png                image_png, mask_png (PNG bytes [b], any size and
                               channels, 8 or 16 bit; mask white = missing) ->
                               completed_png_bytes, generated_png_bytes,
                               mean_png_bytes (the input's size, channels and bit
                               depth), z, context_loss, prior_loss
    inpaint_png_with_settings  the same plus the five scalar settings
    inpaint_png_with_options   the same plus samples, window, warm_start -> also
                               samples_png_bytes [b,K], sample_losses [b,K]
    inpaint_png_with_refinement  the same plus refine_steps, refine_radius
    limits                     no inputs -> the limits and defaults below
    generate                   z [b,z_dim] -> images [b,R,R,C] in [0, 1]
    discriminate               images [b,R,R,C] in [0, 1] -> logits [b]
    encode                     images, masks -> z [b,z_dim] (with an encoder)

`generated` is the best sample G(z*), `mean` the posterior-mean estimate (a
loss-weighted average of the restarts' completions, deep in the hole mixed with draws
around the encoder's guess when the export has a search.DepthMix: the best single
guess under squared error, blurrier than a sample); both are G's whole image, `completed` pastes
the best sample into the hole. The signatures without refine_* inputs use the model's
default refinement (search.LatentSearch.refine); with it, `generated` is drawn from G's
refined features at z, no longer G(z) itself.

Every request is checked in the graph BEFORE anything it sizes is allocated: batch,
restarts, iterations, batch x restarts, their product, the pixels each PNG header
declares (a 20000x20000 PNG is 400 KB but 4.8 GB decoded), finite values in range,
PNG signatures. A refused request is an InvalidArgument naming the input, its value
and the limit (contract.Limits); the process keeps serving.

Besides the signatures, the SavedModel carries the same search in pieces for the
library's progress bars (TF2 loading only; TF Serving sees the signatures):
`search_start` / `png_start` -> carry, `search_steps` (carry -> carry, losses),
`search_finish` / `png_finish` -> the signatures' outputs. local.LocalModel strings
them together.

The exported module holds the raw tf.Variables rather than the Keras models: TF
Serving restores variables the TF1 way, and that fails for Keras models held as
attributes of a tf.Module (see tests/test_export.py).
"""

import dataclasses
import datetime
import json
import os
import shutil
import socket
import tempfile

import keras
import tensorflow as tf

from tf_semantic_inpaint import preprocess
from tf_semantic_inpaint.contract import Limits, SearchSettings, over_limit, versions
from tf_semantic_inpaint.errors import InpaintError
from tf_semantic_inpaint.search import REFINE_LAYER, REFINE_LEARNING_RATE, DepthMix, LatentSearch, check_fixed

CARD_NAME = "model_card.json"
CARD_FORMAT = "tf-semantic-inpaint model card 3"
SETTING_NAMES = ("iterations", "lam", "learning_rate", "restarts", "seed")
OPTION_NAMES = SETTING_NAMES + ("samples", "window", "warm_start")
REFINE_NAMES = ("refine_steps", "refine_radius")
ALL_NAMES = OPTION_NAMES + REFINE_NAMES  # the inputs of the *_with_refinement signatures
KEEP = "keep"  # export's `mix`: a new export with an encoder gets DepthMix(), an export exported again its own


# --- Checks inside the graph -------------------------------------------------------------


def _refuse_unless(condition, template, *values):
    """An Assert whose message is `template` formatted with tensor values ({} placeholders)."""
    return tf.debugging.Assert(condition, [tf.strings.format(template, values)])


def _gated(checks, *tensors):
    """`tensors` made to wait for `checks`: graph optimisers may otherwise run work first."""
    with tf.control_dependencies(checks):
        return tuple(tf.identity(t) for t in tensors)


def check_settings(limits, batch, iterations, lam, learning_rate, restarts, samples=1, window=1, warm_start=0,
                   completer=None, refine_steps=0, refine_radius=0.0):
    """Asserts of the per-request settings against `limits` (ints are int32, floats float32)."""
    batch, restarts_64, iterations_64, refine_64 = (
        tf.cast(x, tf.int64) for x in (batch, restarts, iterations, refine_steps))
    single = completer is not None and completer.kind != "dcgan"  # one completion per image
    # restarts < 1 has its own message below
    samples_ok = (restarts < 1) | ((samples >= 1) & (samples <= (1 if single else restarts)))
    checks = [
        _refuse_unless(samples_ok, "samples must be in 1..restarts ({}), got {}" + (
            "; this model gives one completion per image." if single else "."), restarts, samples),
        _refuse_unless((window >= 1) & (window % 2 == 1), "window must be an odd number >= 1, got {}.", window),
        _refuse_unless((warm_start == 0) | (warm_start == 1), "warm_start must be 0 or 1, got {}.", warm_start),
        _refuse_unless((warm_start == 0) | (getattr(completer, "encoder", None) is not None),
                       "warm_start = 1 needs an encoder and this model has none; ask for 0, or export "
                       "the model with --encoder.", ),
        _refuse_unless(iterations >= 0, "iterations must be >= 0, got {}.", iterations),
        _refuse_unless(restarts >= 1, "restarts must be >= 1, got {}.", restarts),
        _refuse_unless(tf.math.is_finite(learning_rate) & (learning_rate > 0),
                       "learning_rate must be a finite number > 0, got {}.", learning_rate),
        _refuse_unless(tf.math.is_finite(lam) & (lam >= 0), "lam must be a finite number >= 0, got {}.", lam),
        *_refinement_checks(limits, refine_steps, refine_radius),
    ]
    for name, value, limit in (("iterations", iterations_64, limits.max_iterations),
                               ("restarts", restarts_64, limits.max_restarts),
                               ("batch", batch, limits.max_batch),
                               ("window", tf.cast(window, tf.int64), limits.max_window),
                               ("batch x restarts", batch * restarts_64, limits.max_candidates),
                               ("batch x restarts x iterations", batch * restarts_64 * iterations_64,
                                limits.max_candidate_steps),
                               ("batch x restarts x (iterations + refine_steps)",
                                batch * restarts_64 * (iterations_64 + refine_64), limits.max_candidate_steps)):
        checks.append(_refuse_unless(value <= limit, over_limit(name, "{}", limit), value))
    return checks


def _refinement_checks(limits, refine_steps, refine_radius):
    """Asserts of the refinement's settings alone: steps in 0..max_iterations, radius finite >= 0."""
    return [
        _refuse_unless(refine_steps >= 0, "refine_steps must be >= 0, got {}.", refine_steps),
        _refuse_unless(refine_steps <= limits.max_iterations,
                       over_limit("refine_steps", "{}", limits.max_iterations), refine_steps),
        _refuse_unless(tf.math.is_finite(refine_radius) & (refine_radius >= 0),
                       "refine_radius must be a finite number >= 0, got {}.", refine_radius),
    ]


def check_images(images, masks):
    """Asserts that images and masks agree in batch size and hold finite values in [0, 1]."""
    checks = [
        _refuse_unless(tf.shape(images)[0] == tf.shape(masks)[0],
                       "images and masks must have the same batch size, got {} and {}.",
                       tf.shape(images)[0], tf.shape(masks)[0]),
    ]
    for name, x in (("images", images), ("masks", masks)):
        ok = tf.reduce_all(tf.math.is_finite(x) & (x >= 0.0) & (x <= 1.0))
        checks.append(_refuse_unless(
            ok, name + " must hold finite values in [0, 1]; got values from {} to {}.",
            tf.reduce_min(x), tf.reduce_max(x)))
    return checks


def check_pngs(limits, image_png, mask_png):
    """Asserts on the PNG headers: PNG files of matching, bounded sizes (nothing decoded)."""
    image, mask = preprocess.png_header(image_png), preprocess.png_header(mask_png)
    pixels = image["width"] * image["height"]
    checks = [
        _refuse_unless(tf.size(image_png) == tf.size(mask_png),
                       "image_png and mask_png must have the same length, got {} and {}.",
                       tf.size(image_png), tf.size(mask_png)),
    ]
    for name, pngs, header in (("image_png", image_png, image), ("mask_png", mask_png, mask)):
        # The first non-PNG (index b, past the end, when all are PNGs: no reduction of an empty batch).
        bad = tf.argmin(tf.cast(tf.concat([header["is_png"], [False]], 0), tf.int32), output_type=tf.int32)
        # Bytes as numbers: raw bytes would make the error message invalid UTF-8.
        start = tf.io.decode_raw(tf.strings.substr(tf.gather(
            tf.strings.join([tf.concat([pngs, [""]], 0), "\0\0\0\0"]), bad), 0, 4), tf.uint8)
        checks.append(_refuse_unless(
            tf.reduce_all(header["is_png"]),
            name + "[{}] is not a PNG file (its first bytes are {}, a JPEG starts with 255 216); send "
            "PNG bytes, converting other formats first.", bad, start))
    with tf.control_dependencies(checks[1:]):  # sizes are only meaningful for real PNGs
        largest = tf.reduce_max(tf.concat([pixels, [0]], 0))
        checks += [
            _refuse_unless(largest <= limits.max_image_pixels,
                           "image_png holds an image of {} pixels, over the limit of "
                           f"{limits.max_image_pixels} per image of this model; send smaller images.", largest),
            _refuse_unless(tf.reduce_sum(pixels) <= limits.max_request_pixels,
                           "the PNGs of the request hold {} pixels in all, over the limit of "
                           f"{limits.max_request_pixels} of this model; send fewer or smaller images.",
                           tf.reduce_sum(pixels)),
        ]
        same = (image["width"] == mask["width"]) & (image["height"] == mask["height"])
        bad = tf.argmin(tf.cast(tf.concat([same, [False]], 0), tf.int32), output_type=tf.int32)
        size = lambda header, key: tf.gather(tf.concat([header[key], [0]], 0), bad)  # noqa: E731
        checks.append(_refuse_unless(
            tf.reduce_all(same), "mask_png[{}] is {}x{} but image_png[{}] is {}x{} (width x height); make each "
            "mask the size of its image.", bad, size(mask, "width"), size(mask, "height"), bad,
            size(image, "width"), size(image, "height")))
    return checks


# --- What the SavedModel runs --------------------------------------------------------------


class SearchCompleter:
    """The latent search over G and D: the completion model of a DCGAN export.

    The contract calls it in three steps, so the same graph runs whole (signatures)
    or in chunks (the library's progress bars):

        carry = start(images, masks, restarts, seed, window, warm_start)
                                                  images in [-1, 1], M in {0, 1}
        carry = steps(carry, iterations, lam, learning_rate)
        result = finish(carry, masks, lam, restarts, samples, refine_steps, refine_radius)
                                                  dict: generated, mean [b,R,R,C] and
                                                  samples [b,K,R,R,C] in [-1, 1], z,
                                                  context_loss, prior_loss, sample_losses

    Args:
        generator, discriminator: G and D.
        prior: the prior term (search.PRIORS), fixed at export.
        encoder: optional encoder.Encoder E(y ⊙ M, M) -> z for warm starts.
        refine_layer, refine_learning_rate: the refinement's, fixed (search.LatentSearch).
        mix: optional search.DepthMix for the posterior mean of warm-started searches
            (needs the encoder); None: the mean of the search's candidates alone.
    """

    kind = "dcgan"

    def __init__(self, generator, discriminator, prior="paper", encoder=None, refine_layer=REFINE_LAYER,
                 refine_learning_rate=REFINE_LEARNING_RATE, mix=None):
        if mix is not None and encoder is None:
            raise ValueError("the posterior mean's draws need an encoder: export one with --encoder, or none.")
        self.generator, self.discriminator, self.encoder = generator, discriminator, encoder
        self.search = LatentSearch(generator, discriminator, prior=prior, refine_layer=refine_layer,
                                   refine_learning_rate=refine_learning_rate, mix=mix)
        self.resolution, self.channels = generator.resolution, generator.channels
        self.z_dim = generator.z_dim
        # Raw tf.Variables: what both the TF2 and the TF1 (TF Serving) loaders restore.
        networks = [generator, discriminator] + ([encoder] if encoder is not None else [])
        self.variables = [v.value for network in networks for v in network.weights]
        self.fixed = {"prior": prior, "encoder": encoder is not None, "refine_layer": refine_layer,
                      "refine_learning_rate": refine_learning_rate,
                      "mean_mix": None if mix is None else dataclasses.asdict(mix)}

    def carry_spec(self):
        res, ch, z = self.resolution, self.channels, self.z_dim
        vector = tf.TensorSpec([None, z], tf.float32)
        state = (vector, vector, vector, tf.TensorSpec([], tf.int32), vector, tf.TensorSpec([None], tf.float32))
        return (tf.TensorSpec([None, res, res, ch], tf.float32), tf.TensorSpec([None, res, res, 1], tf.float32),
                state, vector)  # the last: the DepthMix draws' z (0 rows: none)

    def start(self, images, masks, restarts, seed, window, warm_start):
        tiled, weights, state = self.search.prepare(images, masks, restarts, seed, window)
        no_draws = tf.zeros([0, self.z_dim])
        if self.encoder is None:  # warm_start was checked: 1 only for models with an encoder
            return tiled, weights, state, no_draws

        def warm():
            guess = self.encoder(images, masks, training=False)
            draws = no_draws if self.search.mix is None else self.search.draw_z(guess, seed)
            return self.search.initial_z(tf.shape(images)[0], restarts, seed, guess), draws

        z, draws = tf.cond(warm_start > 0, warm, lambda: (state[0], no_draws))
        return tiled, weights, (z, *state[1:4], z, state[5]), draws  # Adam from z, best visited z

    def steps(self, carry, iterations, lam, learning_rate, record_history=False):
        tiled, weights, state, draws = carry
        out = self.search.adam_steps(state, tiled, weights, iterations, lam, learning_rate, record_history)
        if record_history:
            return (tiled, weights, out[0], draws), out[1]
        return tiled, weights, out, draws

    def finish(self, carry, masks, lam, restarts, samples, refine_steps, refine_radius):
        tiled, weights, state, draws = carry
        return self.search.alternatives(state, tiled, weights, masks, lam, restarts, samples, refine_steps,
                                        refine_radius, draws)

    def extra_functions(self):
        """generate, discriminate (and encode), in the contract's [0, 1] image space."""
        res, ch, z_dim = self.resolution, self.channels, self.z_dim
        images_spec = tf.TensorSpec([None, res, res, ch], tf.float32)

        def generate(z):
            return {"images": preprocess.to_unit_range(self.generator(z, training=False))}

        def discriminate(images):
            logits = self.discriminator(preprocess.to_model_range(images), training=False)
            return {"logits": tf.reshape(logits, [-1])}

        functions = {
            "generate": tf.function(generate, input_signature=[tf.TensorSpec([None, z_dim], tf.float32)]),
            "discriminate": tf.function(discriminate, input_signature=[images_spec]),
        }
        if self.encoder is not None:
            def encode(images, masks):
                images, known = _gated(check_images(images, masks), images, masks)
                known = preprocess.binary_known(known)
                return {"z": self.encoder(preprocess.to_model_range(images) * known, known, training=False)}

            functions["encode"] = tf.function(
                encode, input_signature=[images_spec, tf.TensorSpec([None, res, res, 1], tf.float32)])
        return functions


class InpaintingModule(tf.Module):
    """What the SavedModel holds: a completer's variables and the contract's functions.

    Args:
        completer: the completion model (a SearchCompleter for a DCGAN).
        settings: the SearchSettings baked into `inpaint` and `inpaint_png` (and the
            defaults of the options `*_with_settings` does not take).
        limits: the contract.Limits every request is checked against.
    """

    def __init__(self, completer, settings=SearchSettings(), limits=None):
        super().__init__(name="semantic_inpainting")
        self.completer = completer
        self.model_variables = completer.variables
        self.settings = settings
        self.limits = limits or Limits.for_resolution(completer.resolution)
        res, ch = completer.resolution, completer.channels
        scalar = lambda dtype: tf.TensorSpec([], dtype)  # noqa: E731
        images_spec = tf.TensorSpec([None, res, res, ch], tf.float32)
        masks_spec = tf.TensorSpec([None, res, res, 1], tf.float32)
        pngs_spec = tf.TensorSpec([None], tf.string)
        # iterations, lam, learning_rate, restarts, seed; then samples, window, warm_start;
        # then refine_steps, refine_radius
        settings_spec = [scalar(tf.int32), scalar(tf.float32), scalar(tf.float32), scalar(tf.int32),
                         scalar(tf.int32)]
        options_spec = settings_spec + [scalar(tf.int32)] * 3
        all_spec = options_spec + [scalar(tf.int32), scalar(tf.float32)]

        def defaults(names):
            return {name: tf.constant(_setting(settings, name)) for name in names}

        # Argument names are the signatures' input names. The narrower signatures call
        # the options ones with the defaults, so each graph is traced once.
        def inpaint(images, masks):
            return self._inpaint(images, masks, **defaults(ALL_NAMES), with_samples=False)

        def inpaint_with_settings(images, masks, iterations, lam, learning_rate, restarts, seed):
            return self._inpaint(images, masks, iterations, lam, learning_rate, restarts, seed,
                                 **defaults(ALL_NAMES[5:]), with_samples=False)

        def inpaint_with_options(images, masks, iterations, lam, learning_rate, restarts, seed, samples, window,
                                 warm_start):
            return self._inpaint(images, masks, iterations, lam, learning_rate, restarts, seed, samples, window,
                                 warm_start, **defaults(REFINE_NAMES))

        def inpaint_png(image_png, mask_png):
            return self._inpaint_png(image_png, mask_png, **defaults(ALL_NAMES), with_samples=False)

        def inpaint_png_with_settings(image_png, mask_png, iterations, lam, learning_rate, restarts, seed):
            return self._inpaint_png(image_png, mask_png, iterations, lam, learning_rate, restarts, seed,
                                     **defaults(ALL_NAMES[5:]), with_samples=False)

        def inpaint_png_with_options(image_png, mask_png, iterations, lam, learning_rate, restarts, seed, samples,
                                     window, warm_start):
            return self._inpaint_png(image_png, mask_png, iterations, lam, learning_rate, restarts, seed, samples,
                                     window, warm_start, **defaults(REFINE_NAMES))

        self._search = tf.function(self._search_fn, input_signature=[images_spec, masks_spec, *all_spec])
        self.inpaint = tf.function(inpaint, input_signature=[images_spec, masks_spec])
        self.inpaint_with_settings = tf.function(
            inpaint_with_settings, input_signature=[images_spec, masks_spec, *settings_spec])
        self.inpaint_with_options = tf.function(
            inpaint_with_options, input_signature=[images_spec, masks_spec, *options_spec])
        self.inpaint_with_refinement = tf.function(self._inpaint, input_signature=[images_spec, masks_spec, *all_spec])
        self.inpaint_png = tf.function(inpaint_png, input_signature=[pngs_spec, pngs_spec])
        self.inpaint_png_with_settings = tf.function(
            inpaint_png_with_settings, input_signature=[pngs_spec, pngs_spec, *settings_spec])
        self.inpaint_png_with_options = tf.function(
            inpaint_png_with_options, input_signature=[pngs_spec, pngs_spec, *options_spec])
        self.inpaint_png_with_refinement = tf.function(
            self._inpaint_png, input_signature=[pngs_spec, pngs_spec, *all_spec])
        self.limits_function = tf.function(self._limits, input_signature=[])
        # PNG decoding and encoding, traced once and called by every PNG signature (traced per
        # signature they cost about 15% of an export).
        self._decode_pngs = tf.function(self._decode_pngs_fn, input_signature=[pngs_spec, pngs_spec])
        self._encode_pngs = tf.function(self._encode_pngs_fn, reduce_retracing=True)  # one trace per with_samples
        for name, fn in completer.extra_functions().items():
            setattr(self, name, fn)
        self._extra = sorted(completer.extra_functions())

        # The same search in pieces (carry in, carry out), for the library's progress bars.
        carry = completer.carry_spec()
        # lam, restarts, samples, refine_steps, refine_radius
        finish_spec = [scalar(tf.float32), scalar(tf.int32), scalar(tf.int32), scalar(tf.int32), scalar(tf.float32)]
        self.search_start = tf.function(self._search_start, input_signature=[images_spec, masks_spec, *all_spec])
        self.png_start = tf.function(self._png_start, input_signature=[pngs_spec, pngs_spec, *all_spec])
        self.search_steps = tf.function(
            self._search_steps, input_signature=[carry, scalar(tf.int32), scalar(tf.float32), scalar(tf.float32)])
        self.search_finish = tf.function(
            self._search_finish, input_signature=[carry, images_spec, masks_spec, *finish_spec])
        self.png_finish = tf.function(self._png_finish, input_signature=[carry, pngs_spec, pngs_spec, *finish_spec])

    # -- the pieces ----------------------------------------------------------------------

    def _checks(self, batch, options):
        """The asserts of the ALL_NAMES values `options` for a request of `batch` images."""
        o = dict(zip(ALL_NAMES, options))
        return check_settings(self.limits, batch, o["iterations"], o["lam"], o["learning_rate"], o["restarts"],
                              o["samples"], o["window"], o["warm_start"], self.completer, o["refine_steps"],
                              o["refine_radius"])

    def _checked_arrays(self, images, masks, options):
        """(images, known M, options), all made to wait for their checks."""
        checks = check_images(images, masks) + self._checks(tf.shape(images)[0], options)
        images, masks, *options = _gated(checks, images, masks, *options)
        return images, preprocess.binary_known(masks), options

    def _start(self, images, known, options):
        o = dict(zip(ALL_NAMES, options))
        return self.completer.start(preprocess.to_model_range(images), known, o["restarts"], o["seed"], o["window"],
                                    o["warm_start"])

    def _finish(self, carry, known, lam, restarts, samples, refine_steps, refine_radius):
        return self.completer.finish(carry, known, lam, restarts, samples, refine_steps, refine_radius)

    def _outputs(self, result, images, known, with_samples=True):
        """The completer's result in the contract's [0, 1], composited at the model's size."""
        generated = preprocess.to_unit_range(result["generated"])
        outputs = {"completed": known * images + (1.0 - known) * generated, "generated": generated,
                   "mean": preprocess.to_unit_range(result["mean"]),
                   **{key: result[key] for key in ("z", "context_loss", "prior_loss")}}
        if with_samples:
            outputs.update(samples=preprocess.to_unit_range(result["samples"]), sample_losses=result["sample_losses"])
        return outputs

    def _png_model_inputs(self, image_png, mask_png, options):
        """Checked PNGs -> the model's (images, known), at the model's size, and the checked PNGs
        and options (a lowered while loop may decode the PNGs again before the search ends)."""
        checks = check_pngs(self.limits, image_png, mask_png) + self._checks(tf.size(image_png), options)
        image_png, mask_png, *options = _gated(checks, image_png, mask_png, *options)
        images, known = self._png_to_model(image_png, mask_png)
        return images, known, image_png, mask_png, options

    def _png_to_model(self, image_png, mask_png):
        """Checked PNGs -> (images [b,R,R,C] in [0, 1], known M [b,R,R,1]) at the model's size."""
        return self._decode_pngs(image_png, mask_png)

    def _decode_pngs_fn(self, image_png, mask_png):
        res, ch = self.completer.resolution, self.completer.channels

        def one(pngs):
            image, known = preprocess.decode_png(pngs[0]), preprocess.decode_mask_png(pngs[1])
            small, small_known = preprocess.to_model_inputs(image[tf.newaxis], known[tf.newaxis], res, ch)
            return small[0], small_known[0]

        # One image decoded at a time: memory stays at one image's, whatever the batch.
        return tf.map_fn(
            one, (image_png, mask_png), parallel_iterations=1,
            fn_output_signature=(tf.TensorSpec([res, res, ch], tf.float32), tf.TensorSpec([res, res, 1], tf.float32)))

    def _png_outputs(self, result, image_png, mask_png, with_samples=True):
        """G's images back at each input's size, channels (alpha kept) and bit depth, as PNG bytes."""
        keys = ("generated", "mean", "z", "context_loss", "prior_loss") + (
            ("samples", "sample_losses") if with_samples else ())
        return self._encode_pngs({key: result[key] for key in keys}, image_png, mask_png, with_samples)

    def _encode_pngs_fn(self, result, image_png, mask_png, with_samples):
        depth = preprocess.png_header(image_png)["bit_depth"]
        fills = [result["generated"], result["mean"]]
        if with_samples:
            fills.append(result["samples"])
        fills = [preprocess.to_unit_range(x) for x in fills]

        def one(args):
            png, mask_bytes, bit_depth, generated, mean, *samples = args
            image, known = preprocess.decode_png(png), preprocess.decode_mask_png(mask_bytes)
            colour, alpha = preprocess.colour_channels(image)
            shape = tf.shape(colour)
            encode = lambda small: preprocess.encode_png(  # noqa: E731
                tf.concat([preprocess.from_model_output(small, shape[0], shape[1], shape[2]), alpha], -1), bit_depth)
            big = preprocess.from_model_output(generated, shape[0], shape[1], shape[2])
            completed = tf.concat([known * colour + (1.0 - known) * big, alpha], axis=-1)
            found = (preprocess.encode_png(completed, bit_depth), encode(generated), encode(mean))
            if samples:
                found += (tf.map_fn(encode, samples[0], fn_output_signature=tf.TensorSpec([], tf.string)),)
            return found

        strings = lambda shape: tf.TensorSpec(shape, tf.string)  # noqa: E731
        found = tf.map_fn(
            one, (image_png, mask_png, depth, *fills), parallel_iterations=1,
            fn_output_signature=(strings([]), strings([]), strings([])) + ((strings([None]),) if with_samples else ()))
        outputs = {"completed_png_bytes": found[0], "generated_png_bytes": found[1], "mean_png_bytes": found[2],
                   **{key: result[key] for key in ("z", "context_loss", "prior_loss")}}
        if with_samples:
            outputs.update(samples_png_bytes=found[3], sample_losses=result["sample_losses"])
        return outputs

    # -- the signatures ---------------------------------------------------------------------

    def _search_fn(self, images, known, *options):
        """The whole completion of checked inputs at the model's size (images in [0, 1], known M)."""
        o = dict(zip(ALL_NAMES, options))
        carry = self._start(images, known, options)
        carry = self.completer.steps(carry, o["iterations"], o["lam"], o["learning_rate"])
        return self._finish(carry, known, *(o[k] for k in ("lam", "restarts", "samples", *REFINE_NAMES)))

    def _inpaint(self, images, masks, iterations, lam, learning_rate, restarts, seed, samples, window, warm_start,
                 refine_steps, refine_radius, with_samples=True):
        options = (iterations, lam, learning_rate, restarts, seed, samples, window, warm_start, refine_steps,
                   refine_radius)
        images, known, options = self._checked_arrays(images, masks, options)
        return self._outputs(self._search(images, known, *options), images, known, with_samples)

    def _inpaint_png(self, image_png, mask_png, iterations, lam, learning_rate, restarts, seed, samples, window,
                     warm_start, refine_steps, refine_radius, with_samples=True):
        options = (iterations, lam, learning_rate, restarts, seed, samples, window, warm_start, refine_steps,
                   refine_radius)
        images, known, image_png, mask_png, options = self._png_model_inputs(image_png, mask_png, options)
        return self._png_outputs(self._search(images, known, *options), image_png, mask_png, with_samples)

    def _limits(self):
        values = dataclasses.asdict(self.limits)
        values.update({f"default_{k}": _setting(self.settings, k) for k in ALL_NAMES})
        return {k: tf.constant(v, tf.float32 if isinstance(v, float) else tf.int32) for k, v in values.items()}

    # -- in chunks, for the library ---------------------------------------------------------

    def _search_start(self, images, masks, *options):
        """Checks the whole planned search (all its iterations), then returns the carry."""
        images, known, options = self._checked_arrays(images, masks, options)
        return self._start(images, known, options)

    def _png_start(self, image_png, mask_png, *options):
        images, known, _, _, options = self._png_model_inputs(image_png, mask_png, options)
        return self._start(images, known, options)

    def _search_steps(self, carry, iterations, lam, learning_rate):
        """`iterations` more steps and their losses [iterations, candidates] (bounded by the limits)."""
        candidates = tf.shape(tf.nest.flatten(carry)[0])[0]
        checks = [_refuse_unless((iterations >= 0) & (iterations <= self.limits.max_iterations),
                                 f"iterations must be in 0..{self.limits.max_iterations}, got {{}}.", iterations),
                  _refuse_unless(candidates <= self.limits.max_candidates,
                                 over_limit("batch x restarts", "{}", self.limits.max_candidates), candidates)]
        (iterations,) = _gated(checks, iterations)
        return self.completer.steps(carry, iterations, lam, learning_rate, record_history=True)

    def _checked_refinement(self, carry, refine_steps, refine_radius):
        """The refinement's settings, made to wait for their checks (the carry's size is bounded
        by `search_steps`' checks only if it came through them)."""
        candidates = tf.cast(tf.shape(tf.nest.flatten(carry)[0])[0], tf.int64)
        checks = [*_refinement_checks(self.limits, refine_steps, refine_radius),
                  _refuse_unless(candidates * tf.cast(refine_steps, tf.int64) <= self.limits.max_candidate_steps,
                                 over_limit("candidates x refine_steps", "{}", self.limits.max_candidate_steps),
                                 candidates * tf.cast(refine_steps, tf.int64))]
        return _gated(checks, refine_steps, refine_radius)

    def _search_finish(self, carry, images, masks, lam, restarts, samples, refine_steps, refine_radius):
        known = preprocess.binary_known(masks)
        refine = self._checked_refinement(carry, refine_steps, refine_radius)
        return self._outputs(self._finish(carry, known, lam, restarts, samples, *refine), images, known)

    def _png_finish(self, carry, image_png, mask_png, lam, restarts, samples, refine_steps, refine_radius):
        image_png, mask_png = _gated(check_pngs(self.limits, image_png, mask_png), image_png, mask_png)
        _, known = self._png_to_model(image_png, mask_png)  # the masks the search conditioned on
        refine = self._checked_refinement(carry, refine_steps, refine_radius)
        return self._png_outputs(self._finish(carry, known, lam, restarts, samples, *refine), image_png, mask_png)

    def signatures(self):
        """The serving signatures; `inpaint` is also `serving_default`."""
        functions = {
            "serving_default": self.inpaint, "inpaint": self.inpaint,
            "inpaint_with_settings": self.inpaint_with_settings, "inpaint_with_options": self.inpaint_with_options,
            "inpaint_with_refinement": self.inpaint_with_refinement,
            "inpaint_png": self.inpaint_png, "inpaint_png_with_settings": self.inpaint_png_with_settings,
            "inpaint_png_with_options": self.inpaint_png_with_options,
            "inpaint_png_with_refinement": self.inpaint_png_with_refinement, "limits": self.limits_function,
            **{name: getattr(self, name) for name in self._extra},
        }
        return {name: fn.get_concrete_function() for name, fn in functions.items()}

    def card(self):
        """The contract part of the model card: shape, settings, limits, signatures."""
        return {
            "model": self.completer.kind,
            "resolution": self.completer.resolution,
            "channels": self.completer.channels,
            "z_dim": self.completer.z_dim,
            "search_defaults": dataclasses.asdict(self.settings),
            "search_fixed": self.completer.fixed,
            "limits": dataclasses.asdict(self.limits),
            "signatures": sorted(self.signatures()),
        }


def _setting(settings, name):
    """A setting as the graph takes it (warm_start as 0/1)."""
    value = getattr(settings, name)
    return int(value) if isinstance(value, bool) else value


# --- Export of a training run ---------------------------------------------------------------


def load_trained_models(run_dir, raw=False):
    """(generator, discriminator, run config) of a training run.

    Uses the final generator.keras / discriminator.keras, or the newest checkpoint
    when training stopped early. For a DCGAN run the generator is the moving average of
    G's weights when the run keeps one (the better sampler); raw=True gives the last
    iterate. For a context-encoder run the "generator" is F.
    """
    from tf_semantic_inpaint import context_encoder  # noqa: F401  (registers ContextEncoder)
    from tf_semantic_inpaint import train as training
    from tf_semantic_inpaint.models import Discriminator, Generator  # noqa: F401  (registers classes)

    config = training.load_run_config(run_dir)
    g_name = "raw_generator" if raw and config.ema_decay else "generator"
    final = [os.path.join(run_dir, f"{n}.keras") for n in (g_name, "discriminator")]
    if all(os.path.isfile(p) for p in final):
        generator, discriminator = (keras.saving.load_model(p) for p in final)
        epochs = config.epochs
    else:
        gan, config, epochs = training.restore_gan(run_dir)
        generator = gan.generator if raw else getattr(gan, "inference_generator", gan.generator)
        discriminator = gan.discriminator
    return generator, discriminator, dataclasses.replace(config, epochs=epochs)


def load_exported_networks(model_dir):
    """(G, D, encoder or None, model card) rebuilt from a DCGAN SavedModel of `export`.

    The SavedModel holds the networks' raw variables in the order G, D, E; the card
    gives their shapes. For exporting again (new settings, a newer contract) when the
    training run is gone.
    """
    from tf_semantic_inpaint.encoder import Encoder
    from tf_semantic_inpaint.models import Discriminator, Generator

    card = read_card(model_dir)
    if card.get("model") != "dcgan":
        raise InpaintError(f"{model_dir} is not a DCGAN export of tf-semantic-inpaint (its model card says "
                           f"model = {card.get('model')!r}); pass a training run or a DCGAN SavedModel.")
    shape = {k: card[k] for k in ("resolution", "channels")}
    generator = Generator(**shape, z_dim=card["z_dim"], width=card["width"], name="generator")
    discriminator = Discriminator(**shape, width=card["width"], name="discriminator")
    encoder = None
    if card["search_fixed"].get("encoder"):
        encoder = Encoder(**shape, z_dim=card["z_dim"], width=card["encoder"]["width"], name="encoder")
    networks = [generator, discriminator] + ([encoder] if encoder is not None else [])
    weights = [w for network in networks for w in network.weights]
    stored = tf.saved_model.load(model_dir).model_variables
    if [tuple(v.shape) for v in stored] != [tuple(w.shape) for w in weights]:
        raise InpaintError(f"the variables in {model_dir} do not match the networks its model card describes.")
    for w, v in zip(weights, stored):
        w.assign(v.numpy())
    return generator, discriminator, encoder, card


def exported_completer(model_dir, prior=None, mix=KEEP, encoder=None):
    """(SearchCompleter, model card) of a DCGAN export: its G, D and encoder with the fixed
    settings its card records (`prior` and `mix` replace the card's; a card from before the
    refinement gets this code's refinement, one from before the DepthMix none). `encoder`
    replaces the export's encoder (or gives it one, and with it the default DepthMix)."""
    generator, discriminator, exported_encoder, card = load_exported_networks(model_dir)
    fixed = card["search_fixed"]
    if mix is KEEP:
        mix = (DepthMix(**fixed["mean_mix"]) if fixed.get("mean_mix")
               else DepthMix() if encoder is not None and exported_encoder is None else None)
    encoder = encoder if encoder is not None else exported_encoder
    completer = SearchCompleter(generator, discriminator, prior or fixed["prior"], encoder,  # ValueError: bad prior
                                refine_layer=fixed.get("refine_layer", REFINE_LAYER),
                                refine_learning_rate=fixed.get("refine_learning_rate", REFINE_LEARNING_RATE), mix=mix)
    return completer, card


def earlier_defaults(path):
    """The search defaults of the SavedModel at `path` (those its card has; the rest keep
    SearchSettings' own), or None when `path` is not an export (a training run)."""
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        return None
    given = read_card(path).get("search_defaults", {})
    return SearchSettings(**{k: v for k, v in given.items() if k in SearchSettings.__dataclass_fields__})


def export(run_dir, base, version=None, force=False, settings=SearchSettings(), prior=None,
           limits=None, notes=None, encoder=None, mix=KEEP):
    """Export a training run (or export a DCGAN SavedModel again) as BASE/<version>/; return that path.

    A DCGAN run exports the latent search (SearchCompleter), a context-encoder run
    Pathak et al.'s network (context_encoder.ContextEncoderCompleter) behind the same
    contract; a judge run goes to judge.export_judge (its `classify` signature).

    Args:
        run_dir: a `tfinpaint train` run directory, or a version folder of an earlier
            DCGAN export (its networks, prior and training record are kept: a new
            version with new defaults or a newer contract when the run is gone).
        base: the model base directory (e.g. saved_models/fashion_mnist).
        version: integer version; default one more than the newest present.
        force: replace an existing version.
        settings: per-request search defaults baked into `inpaint` / `inpaint_png`
            (warm_start is turned on when there is an encoder).
        prior: the search's prior term, fixed (search.PRIORS); default "paper", or the
            earlier export's.
        encoder: optional `tfinpaint train-encoder` run directory: E(y ⊙ M, M) -> z,
            exported for warm starts (the `encode` signature).
        mix: the posterior mean's search.DepthMix, fixed (needs an encoder), or None for
            none; KEEP: DepthMix() with an encoder, an earlier export's own when exporting
            it again.
        limits: contract.Limits; default Limits.for_resolution(the model's).
        notes: extra fields for the model card (e.g. training time).

    The SavedModel is written to a temporary directory beside the target and
    renamed into place, so a failed export leaves nothing behind.
    """
    if not os.path.isdir(run_dir):
        raise InpaintError(f"{run_dir} is not a directory; pass the --out folder of `tfinpaint train`.")
    if earlier_defaults(run_dir) is not None:
        return _export_again(run_dir, base, version, force, settings, prior, limits, notes, encoder, mix)
    prior = prior or "paper"
    from tf_semantic_inpaint.train import load_run_config

    if load_run_config(run_dir).model == "judge":  # a classifier, with its own signature
        from tf_semantic_inpaint.judge import export_judge

        return export_judge(run_dir, base, version=version, force=force, notes=notes)
    settings.check()
    target = _target(base, version, force)
    try:
        check_fixed(settings.window, prior)  # before any model is loaded
    except ValueError as error:
        raise InpaintError(str(error)) from None
    generator, discriminator, config = load_trained_models(run_dir)
    from tf_semantic_inpaint.train import load_sessions

    sessions = load_sessions(run_dir)
    if config.model == "context-encoder":
        from tf_semantic_inpaint.context_encoder import ContextEncoderCompleter

        completer = ContextEncoderCompleter(generator)
        # No search: the defaults ask for none (other values are accepted and change nothing).
        settings = dataclasses.replace(settings, iterations=0, restarts=1, samples=1, warm_start=False)
        notes = {"training_settings": {k: getattr(config, k) for k in (
            "learning_rate", "known_weight", "adversarial_weight")}, **(notes or {})}
    else:
        network = None
        if encoder is not None:
            from tf_semantic_inpaint.encoder import load_encoder

            notes = {"encoder": _encoder_card(encoder, run_dir, config.epochs), **(notes or {})}
            network = load_encoder(encoder)
            settings = dataclasses.replace(settings, warm_start=True)
        mix = (DepthMix() if network is not None else None) if mix is KEEP else mix
        completer = _completer(SearchCompleter, generator, discriminator, prior, network, mix=mix)
    module = InpaintingModule(completer, settings, limits)
    card = {
        "format": CARD_FORMAT,
        "exported": _now(),
        **module.card(),
        "width": generator.width,
        "ema_decay": config.ema_decay,  # the exported G is the EMA of G's weights when > 0
        "dataset": config.dataset,
        "training_command": config.command,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "training_sessions": sessions,
        "training_seconds": round(sum(session["seconds"] for session in sessions), 1),
        **({"init_from": config.init_from} if config.init_from else {}),
        **(notes or {}),
    }
    write_savedmodel(module, target, card, force)
    return target


def _target(base, version, force):
    """BASE/<version> (default one more than the newest), refused when it exists without force."""
    existing = versions(base)
    version = version if version is not None else (existing[-1] + 1 if existing else 1)
    if version < 1:
        raise InpaintError(f"version must be a positive integer, got {version}.")
    target = os.path.join(base, str(version))
    if os.path.exists(target) and not force:
        raise InpaintError(f"{target} exists; pass --force to replace it or choose another --version.")
    return target


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _completer(make, *args, **kwargs):
    """make(*args, **kwargs), its ValueError (a setting that cannot be) an InpaintError."""
    try:
        return make(*args, **kwargs)
    except ValueError as error:
        raise InpaintError(str(error)) from None


def _export_again(model_dir, base, version, force, settings, prior, limits, notes, encoder, mix=KEEP):
    """`export` of an earlier DCGAN export's networks, with this code's contract and `settings`."""
    settings.check()
    target = _target(base, version, force)
    if os.path.realpath(target) == os.path.realpath(model_dir):
        raise InpaintError(f"{target} is the model being exported again; choose another --version.")
    network = None
    if encoder is not None:  # a new encoder for this export's G (train-encoder --generator MODEL_DIR)
        from tf_semantic_inpaint.encoder import load_encoder

        notes = {"encoder": _encoder_card(encoder, model_dir, read_card(model_dir).get("epochs", 0)),
                 **(notes or {})}
        network = load_encoder(encoder)
    completer, old = _completer(exported_completer, model_dir, prior, mix, network)
    _completer(check_fixed, settings.window, completer.fixed["prior"])
    if completer.encoder is not None:
        settings = dataclasses.replace(settings, warm_start=True)
    module = InpaintingModule(completer, settings, limits)
    contract = module.card()
    kept = {k: v for k, v in old.items() if k not in contract and k not in ("format", "exported")}
    card = {"format": CARD_FORMAT, "exported": _now(), **contract, **kept,
            # relative to the new version, so the card holds no path of this machine
            "exported_again_from": {"path": os.path.relpath(model_dir, target), "exported": old.get("exported")},
            **(notes or {})}
    write_savedmodel(module, target, card, force)
    return target


def _encoder_card(encoder_dir, run_dir, epochs):
    """The model card's record of an encoder run; InpaintError unless it serves this G."""
    from tf_semantic_inpaint.encoder import load_encoder_config
    from tf_semantic_inpaint.train import load_sessions

    config = load_encoder_config(encoder_dir)
    same_run = os.path.realpath(config.generator) == os.path.realpath(run_dir)
    if not same_run or config.generator_epoch not in (0, epochs):
        raise InpaintError(
            f"the encoder in {encoder_dir} was trained for the G of {config.generator} "
            f"(epoch {config.generator_epoch or 'final'}), not for the G exported here ({run_dir}, epoch "
            f"{epochs}); train one with `tfinpaint train-encoder --generator {run_dir}`.")
    sessions = load_sessions(encoder_dir)
    return {**dataclasses.asdict(config), "training_sessions": sessions,
            "training_seconds": round(sum(session["seconds"] for session in sessions), 1)}


# --- Writing, atomically ---------------------------------------------------------------------

_TMP_PREFIX = ".tmp-export-"
_OLD_PREFIX = ".old-export-"


def _scratch_prefix(prefix):
    """A scratch-folder prefix naming this host and process, so stale ones can be told apart."""
    return f"{prefix}{socket.gethostname()}-{os.getpid()}-"


def remove_stale_scratch(parent):
    """Delete scratch folders that exports on this host left when killed (their process is gone).

    A folder of a live process, or of another host (a shared file system), is left alone.
    """
    if not os.path.isdir(parent):
        return []
    removed = []
    host = socket.gethostname()
    for name in os.listdir(parent):
        for prefix in (_TMP_PREFIX, _OLD_PREFIX):
            rest = name[len(prefix):] if name.startswith(prefix) else None
            if rest is None or not rest.startswith(host + "-"):
                continue
            pid = rest[len(host) + 1:].split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
                removed.append(name)
    return removed


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_savedmodel(module, target, card, force=False):
    """Save `module` with its signatures and `card` to `target`, atomically.

    The version folder gets the permissions of any folder this process makes (mkdtemp
    makes 0700, which a serving process running as another user could not read).
    """
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    remove_stale_scratch(parent)
    tmp = tempfile.mkdtemp(dir=parent, prefix=_scratch_prefix(_TMP_PREFIX))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        tf.saved_model.save(module, tmp, signatures=module.signatures())
        with open(os.path.join(tmp, CARD_NAME), "w") as f:
            json.dump(card, f, indent=2)
        if os.path.exists(target):
            if not force:
                raise InpaintError(f"{target} exists; pass --force to replace it.")
            old = tempfile.mkdtemp(dir=parent, prefix=_scratch_prefix(_OLD_PREFIX))
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
