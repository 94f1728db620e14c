"""The Context Encoder (Pathak et al., CVPR 2016): the rival of the latent search.

An encoder-decoder F fills the hole in one forward pass. Its input is the image
with the hole zeroed, x ⊙ M, and the mask M itself as one more channel, so one
network serves every kind of mask (the paper trains one network per hole shape).

    encoder      stride-2 4x4 convolutions down to s x s (s in 4..7), batch norm
                 after the first, LeakyReLU(0.2)
    bottleneck   the channel-wise fully connected layer (each feature map gets
                 its own dense layer over its s*s positions, no cross-channel
                 weights), then a 1x1 convolution that mixes the channels
    decoder      stride-2 4x4 transposed convolutions with batch norm and ReLU,
                 tanh output in [-1, 1]

Training (`ContextEncoderGAN.train_step`) minimises Pathak's joint loss

    L = (1 - λ_adv) L_rec + λ_adv L_adv,   λ_adv = 0.001,
    L_rec = mean over missing pixels of (F(x) - x)^2
            + known_weight * mean over known pixels of (F(x) - x)^2   (per image),
    L_adv = -log D(M ⊙ x + (1 - M) ⊙ F(x))  (non-saturating),

with its own DCGAN discriminator D (models.Discriminator) telling real images from
completed ones. Masks are drawn fresh for every image of every step from all four
of the paper's kinds (`mask_batches`), so the network faces the latent search's task.

Inference and export call `fill(network, images, masks)`; `ContextEncoderCompleter`
plugs F into the export contract of the DCGAN model (export.py), so `tfinpaint
inpaint --model`, `tfinpaint serve`, the REST client and TF Serving run it unchanged.

Reference: Pathak, Krähenbühl, Donahue, Darrell, Efros, "Context Encoders: Feature
Learning by Inpainting", CVPR 2016.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from tf_semantic_inpaint.masks import MASK_TYPES, make_mask
from tf_semantic_inpaint.models import Discriminator, upsampling_plan
from tf_semantic_inpaint.search import context_loss

_INIT_STDDEV = 0.02  # DCGAN's initialisation, which Pathak et al. use as well
_KERNEL_SIZE = 4  # Pathak et al.'s 4x4 kernels; a multiple of the stride, so no checkerboard
ADVERSARIAL_WEIGHT = 0.001  # λ_adv of the paper (λ_rec = 0.999)
# Tuned on 500 validation images after 3 epochs (benchmarks/context_encoder_tuning.py ->
# results/context_encoder_tuning.json), mean PSNR over the four masks:
# weight of the known pixels' mean in L_rec (the missing pixels' mean weighs 1):
# 0 / 0.1 / 1: 21.61 / 21.71 / 22.00 dB. At 1 the known pixels count as much as the
# missing ones in all; per pixel that is less for center and pattern holes (1/3), equal
# for half and more for 80% random ones, where the few known pixels are all there is.
KNOWN_WEIGHT = 1.0
# Adam (beta1 0.5) learning rate: Pathak et al.'s and DCGAN's 2e-4 / 1e-3: 21.12 / 21.71 dB.
LEARNING_RATE = 1e-3


def _init():
    return keras.initializers.RandomNormal(stddev=_INIT_STDDEV)


def _batch_norm():
    # synchronized, as in models.py: a mirrored step equals a single-device step.
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, synchronized=True)


@keras.saving.register_keras_serializable(package="tf_semantic_inpaint")
class ChannelwiseDense(keras.layers.Layer):
    """Pathak et al.'s channel-wise fully connected layer.

    Each of the C feature maps of size H x W gets its own dense layer over its H*W
    positions: C * (HW)^2 weights instead of a full layer's (CHW)^2, and no
    information crosses channels (a 1x1 convolution after it does that).

    Call:
        inputs: float32 [batch, H, W, C].
        returns: float32 [batch, H, W, C].
    """

    def build(self, input_shape):
        _, height, width, channels = input_shape
        positions = height * width
        self.kernel = self.add_weight(
            name="kernel", shape=(channels, positions, positions),
            initializer=keras.initializers.RandomNormal(stddev=1.0 / np.sqrt(positions)),
        )
        self.bias = self.add_weight(name="bias", shape=(channels, positions), initializer="zeros")

    def call(self, inputs):
        shape = tf.shape(inputs)
        channels = inputs.shape[-1]
        maps = tf.reshape(tf.transpose(inputs, (0, 3, 1, 2)), (shape[0], channels, -1))
        mixed = tf.einsum("bci,cij->bcj", maps, self.kernel) + self.bias
        return tf.transpose(tf.reshape(mixed, (shape[0], channels, shape[1], shape[2])), (0, 2, 3, 1))

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="tf_semantic_inpaint")
class ContextEncoder(keras.Model):
    """Pathak's encoder-decoder F: masked image and mask -> a whole image.

    Args:
        resolution: image height and width; 4..7 times a power of two (28, 32, 64, 128),
            as for the DCGAN.
        channels: 1 (grayscale) or 3 (RGB).
        width: channels of the first convolution; they double at each stride-2 layer.

    Call:
        inputs: float32 [batch, resolution, resolution, channels + 1]: the image in
            [-1, 1] with its hole zeroed, then the mask M (1 = known). Build it with
            `context_input`, or call `fill`.
        returns: float32 [batch, resolution, resolution, channels] in [-1, 1].

    Example:
        >>> network = ContextEncoder(resolution=28, channels=1)
        >>> fill(network, images, masks).shape  # images [2, 28, 28, 1] in [-1, 1]
        TensorShape([2, 28, 28, 1])
    """

    def __init__(self, resolution=64, channels=3, width=64, **kwargs):
        super().__init__(**kwargs)
        self.resolution = resolution
        self.channels = channels
        self.width = width
        start, doublings = upsampling_plan(resolution)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}.")
        widths = [width * 2**i for i in range(doublings)]
        encoder = []
        for i, filters in enumerate(widths):
            encoder.append(keras.layers.Conv2D(
                filters, _KERNEL_SIZE, strides=2, padding="same", use_bias=i == 0,
                kernel_initializer=_init(),
            ))
            if i > 0:  # as in DCGAN's D: no batch norm right after the input
                encoder.append(_batch_norm())
            encoder.append(keras.layers.LeakyReLU(negative_slope=0.2))
        # Held in Sequentials, not Python lists, so tf.train.Checkpoint sees every variable.
        self.encoder = keras.Sequential(encoder, name="encoder")
        self.bottleneck = keras.Sequential([
            ChannelwiseDense(name="channelwise_dense"),
            _batch_norm(),
            keras.layers.ReLU(),
            keras.layers.Conv2D(widths[-1], 1, use_bias=False, kernel_initializer=_init()),
            _batch_norm(),
            keras.layers.ReLU(),
        ], name="bottleneck")
        decoder = []
        for filters in reversed(widths[:-1]):
            decoder += [
                keras.layers.Conv2DTranspose(
                    filters, _KERNEL_SIZE, strides=2, padding="same", use_bias=False,
                    kernel_initializer=_init(),
                ),
                _batch_norm(),
                keras.layers.ReLU(),
            ]
        decoder.append(keras.layers.Conv2DTranspose(
            channels, _KERNEL_SIZE, strides=2, padding="same", kernel_initializer=_init(),
            activation="tanh",
        ))
        self.decoder = keras.Sequential(decoder, name="decoder")
        self.bottleneck_size = start
        self.build((None, resolution, resolution, channels + 1))

    def build(self, input_shape):
        self.encoder.build(input_shape)
        code = self.encoder.compute_output_shape(input_shape)
        self.bottleneck.build(code)
        self.decoder.build(self.bottleneck.compute_output_shape(code))
        self.built = True

    def call(self, inputs, training=False):
        code = self.bottleneck(self.encoder(inputs, training=training), training=training)
        return self.decoder(code, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(resolution=self.resolution, channels=self.channels, width=self.width)
        return config


def context_input(images, masks):
    """The network's input: the image with its hole zeroed, and the mask as a channel.

    Args:
        images: float32 [b, H, W, C] in [-1, 1].
        masks: float32 [b, H, W, 1], 1 = known, 0 = missing.

    Returns:
        float32 [b, H, W, C + 1]; the missing pixels of the image channels are 0.
    """
    return tf.concat([images * masks, masks], axis=-1)


def fill(network, images, masks):
    """F's prediction of the whole image from its known pixels (graph-traceable).

    What inference and export call; the caller pastes it into the hole.

    Args:
        network: a `ContextEncoder`.
        images: float32 [b, H, W, C] in [-1, 1]; missing pixels may hold anything.
        masks: float32 [b, H, W, 1], 1 = known, 0 = missing.

    Returns:
        generated: float32 [b, H, W, C] in [-1, 1].
    """
    images = tf.convert_to_tensor(images, tf.float32)
    masks = tf.convert_to_tensor(masks, tf.float32)
    return network(context_input(images, masks), training=False)


# --- The export contract's completion model ----------------------------------------


class ContextEncoderCompleter:
    """F as the completion model that export.InpaintingModule wraps in the public contract.

    The contract is the DCGAN export's (`inpaint` = `serving_default`, `inpaint_png`,
    the `*_with_settings` and `*_with_options` variants, `limits`), so every client runs
    a context encoder unchanged. There is no search: `start` fills every hole in one
    forward pass, `steps` passes the result through, and the per-request settings
    (iterations, restarts, λ, learning rate, seed) are checked against the limits as for
    any model but change nothing; samples must be 1 and warm_start 0. The outputs that
    do not apply keep their shapes:

        generated     [b, R, R, C] in [-1, 1]  F's prediction (the contract pastes it into the hole)
        mean          [b, R, R, C]             the same: an L2-trained F predicts the mean
        samples       [b, 1, R, R, C]          the same, the one sample
        z             [b, 0]                   no latent vector: an empty one per image
        context_loss  [b]                      ||W ⊙ (F(x) - y)||_1, the latent search's context
                                               loss (same W, same window) of F's prediction
        prior_loss    [b]                      0: there is no prior

    A context encoder export has no `generate` or `discriminate` signature. A mask
    without a known pixel is refused, as by the latent search.

    Args:
        network: a trained `ContextEncoder`.
        window: side of the importance-weight window of the reported context loss.
    """

    kind = "context-encoder"
    z_dim = 0

    encoder = None  # no warm start: there is no search

    def __init__(self, network):
        self.network = network
        self.resolution, self.channels = network.resolution, network.channels
        # Raw tf.Variables: what both the TF2 and the TF1 (TF Serving) loaders restore.
        self.variables = [v.value for v in network.weights]
        self.fixed = {}

    def carry_spec(self):
        res, ch = self.resolution, self.channels
        return (tf.TensorSpec([None, res, res, ch], tf.float32), tf.TensorSpec([None], tf.float32))

    def start(self, images, masks, restarts, seed, window, warm_start):
        """(generated [b, R, R, C] in [-1, 1], context_loss [b]); restarts, seed and
        warm_start change nothing, window only the reported context loss."""
        from tf_semantic_inpaint.masks import importance_weights

        no_context = tf.debugging.assert_greater(
            tf.reduce_sum(masks, axis=[1, 2, 3]), 0.0,
            message="a mask has no known pixel: there is no context to condition on",
        )
        with tf.control_dependencies([no_context]):
            generated = fill(self.network, images, masks)
        weights = importance_weights(masks, window)
        return generated, context_loss(generated, images, weights)

    def steps(self, carry, iterations, lam, learning_rate, record_history=False):
        """The carry unchanged; with record_history also the loss at every "step" [iterations, b]."""
        if record_history:
            return carry, tf.tile(carry[1][tf.newaxis], [iterations, 1])
        return carry

    def finish(self, carry, masks, lam, restarts, samples, refine_steps, refine_radius):
        """F's prediction is the mean and the one sample (samples = 1 is checked); there is
        nothing to refine."""
        generated, context_loss = carry
        return {"generated": generated, "mean": generated, "samples": generated[:, tf.newaxis],
                "z": tf.zeros([tf.shape(generated)[0], 0]), "context_loss": context_loss,
                "prior_loss": tf.zeros_like(context_loss), "sample_losses": context_loss[:, tf.newaxis]}

    def extra_functions(self):
        return {}


# --- Masks for training ------------------------------------------------------------


def random_masks(seed, batch_index, batch_size, resolution):
    """One mask per image, each of a kind drawn uniformly from the paper's four.

    Image j of batch b gets the kind and the mask of the NumPy generator seeded by
    (seed, b, j), so a resumed run draws the masks it would have drawn.

    Returns:
        float32 [batch_size, resolution, resolution, 1], 1 = known.
    """
    masks = np.empty((batch_size, resolution, resolution, 1), np.float32)
    for j in range(batch_size):
        rng = np.random.default_rng((int(seed), int(batch_index), j))
        kind = MASK_TYPES[rng.integers(len(MASK_TYPES))]
        masks[j] = make_mask(kind, resolution, resolution, int(rng.integers(2**63)))
    return masks


def mask_batches(image_batches, seed, first_batch=0):
    """Pair each batch of images with fresh masks: (images, masks) batches for `fit`.

    Args:
        image_batches: a tf.data.Dataset of float32 [batch, R, R, C] in [-1, 1] with a
            static batch size (data.training_dataset drops the remainder).
        seed: the run's seed.
        first_batch: index of the first batch (steps already trained, on resume).

    Returns:
        a tf.data.Dataset of (images, masks float32 [batch, R, R, 1], 1 = known).
    """
    batch, resolution = image_batches.element_spec.shape[0], image_batches.element_spec.shape[1]
    if batch is None:
        raise ValueError("mask_batches needs batches of a static size (batch(..., drop_remainder=True)).")

    def with_masks(images, index):
        masks = tf.numpy_function(
            lambda i: random_masks(seed, i, batch, resolution), [index], tf.float32, stateful=False
        )
        return images, tf.ensure_shape(masks, (batch, resolution, resolution, 1))

    counter = tf.data.Dataset.counter(first_batch)
    return tf.data.Dataset.zip(image_batches, counter).map(
        with_masks, num_parallel_calls=tf.data.AUTOTUNE
    )


# --- Training ------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="tf_semantic_inpaint")
class ContextEncoderGAN(keras.Model):
    """The context encoder F (as `generator`) and its discriminator D, trained together.

    Args:
        generator: a `ContextEncoder` (Pathak et al. call F the generator of the
            adversarial loss).
        discriminator: a `models.Discriminator` of the same resolution and channels.
        known_weight: weight of the known pixels in L_rec (missing pixels weigh 1).
        adversarial_weight: λ_adv; L_rec gets 1 - λ_adv.

    `fit` data: (images, masks) batches, images float32 [batch, H, W, C] in [-1, 1],
    masks float32 [batch, H, W, 1] with 1 = known (see `mask_batches`).

    Example:
        >>> model = build_context_encoder(28, 1)
        >>> model.fit(mask_batches(image_batches, seed=0), epochs=1)
    """

    def __init__(self, generator, discriminator, known_weight=KNOWN_WEIGHT,
                 adversarial_weight=ADVERSARIAL_WEIGHT, **kwargs):
        super().__init__(**kwargs)
        if (generator.resolution, generator.channels) != (
            discriminator.resolution, discriminator.channels,
        ):
            raise ValueError(
                "context encoder and discriminator disagree on image shape: "
                f"{generator.resolution}x{generator.resolution}x{generator.channels} vs "
                f"{discriminator.resolution}x{discriminator.resolution}x{discriminator.channels}."
            )
        self.generator = generator
        self.discriminator = discriminator
        self.known_weight = known_weight
        self.adversarial_weight = adversarial_weight
        self.rec_loss_tracker = keras.metrics.Mean(name="rec_loss")
        self.adv_loss_tracker = keras.metrics.Mean(name="adv_loss")
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.hole_mse_tracker = keras.metrics.Mean(name="hole_mse")
        self.built = True  # F and D build themselves

    def compile(self, g_optimizer=None, d_optimizer=None, learning_rate=LEARNING_RATE, **kwargs):
        """Attach the two optimizers; defaults Adam(learning_rate, beta_1=0.5)."""
        super().compile(**kwargs)
        self.g_optimizer = g_optimizer or keras.optimizers.Adam(learning_rate, beta_1=0.5)
        self.d_optimizer = d_optimizer or keras.optimizers.Adam(learning_rate, beta_1=0.5)
        # Slot variables now, so checkpoints before and after the first step match.
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)

    @property
    def metrics(self):
        return [self.rec_loss_tracker, self.adv_loss_tracker, self.d_loss_tracker, self.hole_mse_tracker]

    def call(self, inputs, training=False):
        """F(context_input(images, masks)), as ContextEncoder.call."""
        return self.generator(inputs, training=training)

    def reconstruction_loss(self, images, masks, generated):
        """L_rec per image, float32 [b]: mean squared error over the missing pixels plus
        known_weight times that over the known ones (images in [-1, 1])."""
        squared = tf.reduce_mean(tf.square(generated - images), axis=-1, keepdims=True)
        missing = 1.0 - masks
        per_image = lambda weights: tf.math.divide_no_nan(  # noqa: E731
            tf.reduce_sum(weights * squared, axis=(1, 2, 3)), tf.reduce_sum(weights, axis=(1, 2, 3))
        )
        return per_image(missing) + self.known_weight * per_image(masks)

    def train_step(self, data):
        images, masks = data
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        bce = lambda labels, logits: tf.reduce_mean(  # noqa: E731
            tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
        )
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            generated = self.generator(context_input(images, masks), training=True)
            completed = masks * images + (1.0 - masks) * generated
            # D judges whole completed images; real and completed batches go through
            # separately so batch norm never mixes them.
            real_logits = self.discriminator(images, training=True)
            fake_logits = self.discriminator(completed, training=True)
            d_loss = bce(tf.ones_like(real_logits), real_logits) + bce(
                tf.zeros_like(fake_logits), fake_logits
            )
            rec_loss = tf.reduce_mean(self.reconstruction_loss(images, masks, generated))
            adv_loss = bce(tf.ones_like(fake_logits), fake_logits)
            g_loss = (1.0 - self.adversarial_weight) * rec_loss + self.adversarial_weight * adv_loss
            # Per-replica means; gradients are summed across replicas.
            g_scaled, d_scaled = g_loss / replicas, d_loss / replicas
        g_grads = g_tape.gradient(g_scaled, self.generator.trainable_variables)
        d_grads = d_tape.gradient(d_scaled, self.discriminator.trainable_variables)
        self.g_optimizer.apply(g_grads, self.generator.trainable_variables)
        self.d_optimizer.apply(d_grads, self.discriminator.trainable_variables)

        # Whole-image MSE of the completed image in [0, 1]: what PSNR measures.
        hole_mse = tf.reduce_mean(tf.square(completed - images)) / 4.0
        self.rec_loss_tracker.update_state(rec_loss)
        self.adv_loss_tracker.update_state(adv_loss)
        self.d_loss_tracker.update_state(d_loss)
        self.hole_mse_tracker.update_state(hole_mse)
        return {m.name: m.result() for m in self.metrics}

    def get_config(self):
        config = super().get_config()
        config.update(
            generator=keras.saving.serialize_keras_object(self.generator),
            discriminator=keras.saving.serialize_keras_object(self.discriminator),
            known_weight=self.known_weight,
            adversarial_weight=self.adversarial_weight,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        config["discriminator"] = keras.saving.deserialize_keras_object(config["discriminator"])
        return cls(**config)


def build_context_encoder(resolution, channels, width=64, learning_rate=LEARNING_RATE,
                          known_weight=KNOWN_WEIGHT, adversarial_weight=ADVERSARIAL_WEIGHT):
    """A compiled ContextEncoderGAN (call inside a strategy scope to distribute).

    D is the DCGAN discriminator of the same width, as Pathak et al. use.
    """
    model = ContextEncoderGAN(
        ContextEncoder(resolution, channels, width=width, name="context_encoder"),
        Discriminator(resolution, channels, width=width, name="discriminator"),
        known_weight=known_weight, adversarial_weight=adversarial_weight,
    )
    model.compile(learning_rate=learning_rate)
    return model


# --- Sample grids ----------------------------------------------------------------------

SAMPLES_PER_KIND = 4  # validation images per mask kind in each epoch's grid


def sample_inputs(dataset, resolution, channels, data_dir=None):
    """Fixed inputs of the epoch grids: the first validation images, each kind of mask.

    Returns:
        (images float32 [4k, R, R, C] in [-1, 1], masks float32 [4k, R, R, 1]), k images
        per mask kind in MASK_TYPES order.
    """
    from tf_semantic_inpaint import data

    count = SAMPLES_PER_KIND * len(MASK_TYPES)
    images, _ = data.load_images(dataset, "validation", resolution, channels, data_dir)
    images = np.stack(list(images.take(count).as_numpy_iterator()))
    masks = np.stack([make_mask(kind, resolution, resolution, seed=i)
                      for kind in MASK_TYPES for i in range(SAMPLES_PER_KIND)])
    return images, masks


class SampleCompletions(keras.callbacks.Callback):
    """Save masked input | completion | truth of fixed images, in inference mode, per epoch.

    Args:
        folder: where epoch_001.png, ... go.
        images: float32 [n, R, R, C] in [-1, 1]; masks: float32 [n, R, R, 1], 1 = known.
    """

    def __init__(self, folder, images, masks):
        super().__init__()
        self.folder, self.images, self.masks = folder, images, masks

    def on_epoch_end(self, epoch, logs=None):
        from tf_semantic_inpaint.images import grid, write_image

        generated = fill(self.model.generator, self.images, self.masks).numpy()
        completed = self.masks * self.images + (1.0 - self.masks) * generated
        masked = np.where(self.masks > 0.5, self.images, 0.0)  # the hole in mid grey
        # Columns: masked, completed, truth, twice side by side.
        triples = np.stack([masked, completed, self.images], axis=1).reshape((-1,) + self.images.shape[1:])
        scale = max(1, 64 // self.images.shape[1])
        write_image(os.path.join(self.folder, f"epoch_{epoch + 1:03d}.png"),
                    grid(triples * 0.5 + 0.5, columns=6, scale=scale))
