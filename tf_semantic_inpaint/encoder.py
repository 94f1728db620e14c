"""An encoder E(y ⊙ M, M) -> z that starts the latent search near its answer.

Amortised inversion (Zhu et al., "In-Domain GAN Inversion for Real Image Editing",
ECCV 2020): a feed-forward network learns to map a masked image to a latent z of a
trained, frozen generator G, so that G(E(y ⊙ M, M)) is already a plausible completion
and the search (search.py) needs far fewer steps and restarts from there.

E is trained on two kinds of examples, each with a random mask of the paper's four
kinds (center, pattern, random, half):
- G's own samples x = G(z), z ~ U[-1, 1]: the known answer z gives a latent loss
  ||E - z||², and G(E) is pulled towards x on every pixel;
- real training images x: only the image loss ||G(E) - x||_1 over EVERY pixel,
  known and missing, so E learns the conditional guess of the hole that G can draw;
  optionally (draws_weight w > 0) plus w times the squared error on the hole of the
  mean of K draws G(clip(E + σ ε_k)) (ε_0 = 0): the posterior mean leans on such draws
  deep in the hole (search.DepthMix), and the squared error is what PSNR scores.
G stays frozen and in inference mode (as in the search). E's output passes through
tanh, so z stays in the search's box (-1, 1).

An encoder run directory (`train_encoder`) holds:
    run.json        the EncoderConfig
    sessions.json   every training session, as for a GAN run
    checkpoints/    E, its optimizer, the noise state and the epoch, every epoch
    samples/        epoch_001.png, ...: masked inputs and G(E(.)) of fixed validation images
    logs/           TensorBoard
    encoder.keras   the final encoder
"""

import dataclasses
import json
import os
import sys

import keras
import numpy as np
import tensorflow as tf

from tf_semantic_inpaint import data
from tf_semantic_inpaint.errors import InpaintError
from tf_semantic_inpaint.masks import MASK_TYPES, make_mask
from tf_semantic_inpaint.models import LeakyReLU, upsampling_plan
from tf_semantic_inpaint.search import DepthMix
from tf_semantic_inpaint.train import (
    TrainingError,
    _Checkpoint,
    _SessionRecord,
    _StopOnNaN,
    read_run_fields,
)

# Masks per kind in the bank drawn from during training (center has one; the others vary).
MASKS_PER_KIND = 1000
# The draws' loss (draws_weight > 0): K = 8 draws per real image (a step costs ~1.5x one without),
# at the spread of the posterior mean's draws (search.DepthMix), which the loss stands in for.
TRAINING_DRAWS = 8
DRAWS_SPREAD = DepthMix.spread


@keras.saving.register_keras_serializable(package="tf_semantic_inpaint")
class Encoder(keras.Model):
    """E: a masked image and its mask -> a latent z of G, in (-1, 1).

    The mirror of the discriminator (stride-2 5x5 convolutions with LeakyReLU(0.2),
    channels doubling), one more 3x3 convolution at the smallest scale, then a dense
    layer and tanh. No batch norm: one image at a time must encode the same as in a batch.

    Args:
        resolution, channels, z_dim: those of the generator E serves.
        width: channels of the first convolution.

    Call:
        images: float32 [batch, resolution, resolution, channels] in [-1, 1] (y);
            pixels where the mask is 0 are ignored (set to 0 before E sees them).
        masks: float32 [batch, resolution, resolution, 1], 1 = known (M).
        returns: z, float32 [batch, z_dim] in (-1, 1).

    Example:
        >>> e = Encoder(resolution=28, channels=1)
        >>> e(images, masks).shape
        TensorShape([2, 100])
    """

    def __init__(self, resolution=64, channels=3, z_dim=100, width=64, **kwargs):
        super().__init__(**kwargs)
        self.resolution = resolution
        self.channels = channels
        self.z_dim = z_dim
        self.width = width
        _, doublings = upsampling_plan(resolution)
        layers = []
        for i in range(doublings):
            layers += [
                keras.layers.Conv2D(width * 2**i, 5, strides=2, padding="same"),
                LeakyReLU(negative_slope=0.2),
            ]
        layers += [
            keras.layers.Conv2D(width * 2**doublings, 3, padding="same"),
            LeakyReLU(negative_slope=0.2),
            keras.layers.Flatten(),
            keras.layers.Dense(z_dim, activation="tanh"),
        ]
        # A Sequential, not a Python list, so tf.train.Checkpoint sees every variable.
        self.body = keras.Sequential(layers, name="body")
        self.build((None, resolution, resolution, channels), (None, resolution, resolution, 1))

    def build(self, images_shape, masks_shape=None):
        self.body.build((*images_shape[:-1], images_shape[-1] + 1))
        self.built = True

    def call(self, images, masks, training=False):
        masks = tf.cast(masks, images.dtype)
        # y ⊙ M: the hole reads as 0 (mid-grey), and the mask channel says where it is.
        return self.body(tf.concat([images * masks, masks], axis=-1), training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            resolution=self.resolution, channels=self.channels, z_dim=self.z_dim, width=self.width
        )
        return config


def mask_bank(resolution, per_kind=MASKS_PER_KIND, seed=0):
    """Masks of the four kinds, float32 [4 * per_kind, resolution, resolution, 1], 1 = known.

    Rows k * per_kind ... (k + 1) * per_kind - 1 are of kind MASK_TYPES[k]; half masks
    miss each of the four sides about equally often.
    """
    return np.stack([
        make_mask(kind, resolution, resolution, seed=seed * 1_000_003 + k * per_kind + i)
        for k, kind in enumerate(MASK_TYPES) for i in range(per_kind)
    ])


class EncoderTraining(keras.Model):
    """Trains an Encoder against a frozen generator with `fit`.

    Args:
        encoder: the `Encoder` to train.
        generator: the trained `Generator` G (frozen, inference mode).
        latent_weight: weight of the latent loss ||E(G(z) ⊙ M, M) - z||² on G's samples.
        seed: seed of the latent noise and the mask choice.
        masks_per_kind: size of the mask bank per kind.
        draws_weight: weight w of the draws' loss on real images: the mean squared error over
            the hole of mean_k G(clip(E + spread ε_k)), k < draws, ε_0 = 0, ε ~ N(0, 1); 0: none.
        draws: K, the draws per image of that loss (K G passes per real image: the step's cost).
        spread: σ of the draws; the export's search.DepthMix spread is what the mean uses.

    `fit` data: batches of real training images, float32 [batch, H, W, C] in [-1, 1];
    each step adds as many samples of G. `evaluate` data: (images, masks) pairs,
    scored by the image loss on real images.
    """

    def __init__(self, encoder, generator, latent_weight=0.1, seed=None,
                 masks_per_kind=MASKS_PER_KIND, draws_weight=0.0, draws=TRAINING_DRAWS,
                 spread=DRAWS_SPREAD, **kwargs):
        super().__init__(**kwargs)
        if (encoder.resolution, encoder.channels, encoder.z_dim) != (
            generator.resolution, generator.channels, generator.z_dim
        ):
            raise ValueError("the encoder's resolution, channels and z_dim must be the generator's.")
        self.encoder = encoder
        self.generator = generator
        self.generator.trainable = False
        self.latent_weight = latent_weight
        if draws_weight < 0 or draws < 1 or spread < 0:
            raise ValueError(f"draws_weight and spread must be >= 0 and draws >= 1, got {draws_weight}, "
                             f"{spread}, {draws}.")
        self.draws_weight, self.draws, self.spread = float(draws_weight), int(draws), float(spread)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.masks = tf.constant(mask_bank(encoder.resolution, masks_per_kind, seed or 0))
        names = ("loss", "real_l1", "sample_l1", "latent_mse", "hole_l1") + (("draws_mse",) if draws_weight else ())
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    def compile(self, optimizer=None, **kwargs):
        """Adam(5e-4) by default; its slots are made now so checkpoints match at any step."""
        super().compile(optimizer=optimizer or keras.optimizers.Adam(5e-4), **kwargs)
        self.optimizer.build(self.encoder.trainable_variables)

    def sample_masks(self, n):
        """n masks from the bank, float32 [n, H, W, 1], kinds uniformly at random."""
        size = tf.shape(self.masks)[0]
        rows = keras.random.randint((n,), 0, size, seed=self.seed_generator)
        return tf.gather(self.masks, rows)

    def losses_of(self, images, masks, z=None, training=False):
        """Per-example image loss [n] (mean |G(E) - x| over all pixels), hole loss [n], E's z."""
        z_hat = self.encoder(images, masks, training=training)
        error = tf.abs(self.generator(z_hat, training=False) - images)
        hole = tf.reduce_sum((1.0 - masks) * error, axis=[1, 2, 3]) / tf.maximum(
            tf.reduce_sum(1.0 - masks, axis=[1, 2, 3]) * images.shape[-1], 1.0
        )
        return tf.reduce_mean(error, axis=[1, 2, 3]), hole, z_hat

    def draws_mse(self, z_hat, real, masks, noise):
        """Per-example mean squared error over the hole of mean_k G(clip(z_hat + spread noise_k)):
        z_hat [n, z_dim], real [n, H, W, C] in [-1, 1], masks [n, H, W, 1], noise [K, n, z_dim]."""
        drawn = tf.clip_by_value(z_hat[None] + self.spread * noise, -1.0, 1.0)
        fills = self.generator(tf.reshape(drawn, [-1, self.generator.z_dim]), training=False)
        mean = tf.reduce_mean(tf.reshape(fills, tf.concat([tf.shape(noise)[:2], tf.shape(real)[1:]], 0)), 0)
        hole = 1.0 - masks
        return tf.reduce_sum(hole * tf.square(mean - real), axis=[1, 2, 3]) / tf.maximum(
            tf.reduce_sum(hole, axis=[1, 2, 3]) * real.shape[-1], 1.0)

    def train_step(self, real):
        batch = tf.shape(real)[0]
        z = keras.random.uniform((batch, self.generator.z_dim), -1.0, 1.0, seed=self.seed_generator)
        images = tf.concat([real, self.generator(z, training=False)], axis=0)
        masks = self.sample_masks(2 * batch)
        if self.draws_weight:
            noise = keras.random.normal((self.draws - 1, batch, self.generator.z_dim), seed=self.seed_generator)
            noise = tf.concat([tf.zeros_like(noise[:1]), noise], axis=0)  # draw 0 is E's guess itself
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            image_loss, hole, z_hat = self.losses_of(images, masks, training=True)
            real_l1 = tf.reduce_mean(image_loss[:batch])
            sample_l1 = tf.reduce_mean(image_loss[batch:])
            latent = tf.reduce_mean(tf.square(z_hat[batch:] - z))
            loss = real_l1 + sample_l1 + self.latent_weight * latent
            if self.draws_weight:
                draws = tf.reduce_mean(self.draws_mse(z_hat[:batch], real, masks[:batch], noise))
                loss += self.draws_weight * draws
            scaled = loss / replicas  # gradients are summed across replicas
        grads = tape.gradient(scaled, self.encoder.trainable_variables)
        self.optimizer.apply(grads, self.encoder.trainable_variables)
        for name, value in (("loss", loss), ("real_l1", real_l1), ("sample_l1", sample_l1),
                            ("latent_mse", latent), ("hole_l1", tf.reduce_mean(hole[:batch]))):
            self.trackers[name].update_state(value)
        if self.draws_weight:
            self.trackers["draws_mse"].update_state(draws)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        images, masks = data
        image_loss, hole, _ = self.losses_of(images, masks)
        self.trackers["real_l1"].update_state(tf.reduce_mean(image_loss))
        self.trackers["hole_l1"].update_state(tf.reduce_mean(hole))
        return {name: self.trackers[name].result() for name in ("real_l1", "hole_l1")}


# --- Training runs -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Everything that defines an encoder run (saved as run.json).

    Defaults: batch 64 as for the GAN; Adam 5e-4; latent weight 0.1 (the image
    losses, mean L1 in [-1, 1], are about 0.1-0.3; the latent MSE starts at 1/3).
    """

    generator: str = ""  # the GAN run directory whose (EMA) G the encoder serves
    generator_epoch: int = 0  # 0: the run's final G; N: its checkpoint of epoch N
    width: int = 64
    batch_size: int = 64
    epochs: int = 10
    steps_per_epoch: int = 0  # 0: one pass over the training split
    learning_rate: float = 5e-4
    latent_weight: float = 0.1
    draws_weight: float = 0.0  # 0: no draws' loss (runs from before it existed)
    training_draws: int = TRAINING_DRAWS
    draws_spread: float = DRAWS_SPREAD
    seed: int = 0
    keep_checkpoints: int = 3
    validation_images: int = 256  # scored after every epoch with fixed masks
    data_dir: str = ""
    command: str = ""


def _checkpoint_for(training, epoch_var):
    return tf.train.Checkpoint(
        encoder=training.encoder, optimizer=training.optimizer,
        noise_state=training.seed_generator.state, epoch=epoch_var,
    )


def _validation_pairs(gan_config, n, data_dir):
    """The first n validation images, each with a fixed mask (kinds in turn): ([n,H,W,C], [n,H,W,1])."""
    images, _ = data.load_images(gan_config.dataset, "validation", gan_config.resolution,
                                 gan_config.channels, data_dir)
    images = np.stack(list(images.take(n).as_numpy_iterator()))
    res = gan_config.resolution
    masks = np.stack([make_mask(MASK_TYPES[i % 4], res, res, seed=20_000 + i) for i in range(n)])
    return images.astype(np.float32), masks


class _SampleGrid(keras.callbacks.Callback):
    """Per epoch: rows of 8 masked validation images and G(E(.)) under each mask kind, then the truth."""

    def __init__(self, folder, images):
        super().__init__()
        self.folder, self.images = folder, images[:8]
        res = images.shape[1]
        self.masks = [np.stack([make_mask(k, res, res, seed=30_000 + i) for i in range(8)]) for k in MASK_TYPES]

    def on_epoch_end(self, epoch, logs=None):
        from tf_semantic_inpaint.images import grid, write_image

        training = self.model
        rows = []
        for masks in self.masks:
            z = training.encoder(self.images, masks)
            rows += [self.images * masks, training.generator(z).numpy()]  # the hole shows mid-grey
        rows.append(self.images)
        tiles = np.clip(np.concatenate(rows) * 0.5 + 0.5, 0.0, 1.0)
        write_image(os.path.join(self.folder, f"epoch_{epoch + 1:03d}.png"), grid(tiles, scale=2))


def load_encoder_config(run_dir):
    """The EncoderConfig saved in `run_dir`/run.json."""
    fields = read_run_fields(run_dir, "an encoder run")
    if "generator" not in fields:
        raise TrainingError(f"{run_dir} is a GAN run, not an encoder run.")
    return EncoderConfig(**fields)


def load_generator(run_dir, epoch=0):
    """(G, GAN run config) of a GAN run: its final (EMA) G, or that of checkpoint `epoch`.

    `run_dir` may also be a version folder of a DCGAN export (its G; `epoch` must be 0), so
    a new encoder can be trained for a shipped model whose training run is gone.
    """
    from tf_semantic_inpaint import train as training
    from tf_semantic_inpaint.export import load_exported_networks

    if os.path.isfile(os.path.join(run_dir, "saved_model.pb")):
        if epoch:
            raise TrainingError(f"--generator {run_dir} is an export, which holds one G; drop --generator-epoch.")
        try:
            generator, _, _, card = load_exported_networks(run_dir)
        except InpaintError as error:
            raise TrainingError(str(error)) from None
        fields = {k: card[k] for k in ("dataset", "resolution", "channels", "z_dim", "width") if k in card}
        return generator, training.TrainConfig(**fields, epochs=card.get("epochs", 0))
    from tf_semantic_inpaint.export import load_trained_models

    if not os.path.isfile(os.path.join(run_dir, "run.json")):
        raise TrainingError(f"--generator {run_dir} is neither a GAN run (no run.json) nor a DCGAN export "
                            "(no saved_model.pb); pass the --out folder of `tfinpaint train` or a version folder.")
    if epoch:
        checkpoint = os.path.join(run_dir, "checkpoints", f"ckpt-{epoch}")
        if not tf.io.gfile.exists(checkpoint + ".index"):
            raise TrainingError(f"{run_dir} has no checkpoint of epoch {epoch}.")
        gan, config, _ = training.restore_gan(run_dir, checkpoint)
        return gan.inference_generator, config
    generator, _, config = load_trained_models(run_dir)
    return generator, config


def _check_run(config, out, resume):
    """The run.json path of `out`; TrainingError for bad settings or an `out` that does not fit."""
    if config.batch_size < 1 or config.epochs < 1 or config.steps_per_epoch < 0 or config.keep_checkpoints < 0:
        raise TrainingError("--batch-size and --epochs must be positive, --steps-per-epoch and "
                            "--keep-checkpoints >= 0.")
    if not (config.draws_weight >= 0 and config.training_draws >= 1 and config.draws_spread >= 0):
        raise TrainingError(f"--draws-weight must be >= 0 (0: no draws' loss), got {config.draws_weight}; "
                            f"training_draws >= 1 and draws_spread >= 0 in run.json, got "
                            f"{config.training_draws} and {config.draws_spread}.")
    run_file = os.path.join(out, "run.json")
    if os.path.exists(run_file):
        if not resume:
            raise TrainingError(f"{out} already holds a run; pass --resume to continue it or choose another --out.")
        previous = load_encoder_config(out)
        if (previous.generator, previous.generator_epoch, previous.width) != (
            config.generator, config.generator_epoch, config.width
        ):
            raise TrainingError(f"{out} holds an encoder of another generator or width; "
                                "resume with the same settings or choose another --out.")
    elif resume:
        raise TrainingError(f"nothing to resume: {out} holds no encoder run (no run.json).")
    elif os.path.isdir(out) and os.listdir(out):
        raise TrainingError(f"{out} exists and is not empty; choose a new or empty --out.")
    return run_file


def train_encoder(config, out, resume=False, verbose="auto"):
    """Train (or resume) an encoder for the G of `config.generator` into `out`; return the EncoderTraining.

    Raises:
        TrainingError / data.DataError: bad settings, generator or run directory;
            nothing in `out` is overwritten.
    """
    run_file = _check_run(config, out, resume)
    generator, gan_config = load_generator(config.generator, config.generator_epoch)
    data_dir = config.data_dir or None
    keras.utils.set_random_seed(config.seed)
    dataset, steps = data.training_dataset(gan_config.dataset, gan_config.resolution, config.batch_size,
                                           gan_config.channels, data_dir, seed=config.seed)
    steps = config.steps_per_epoch or steps
    validation = _validation_pairs(gan_config, config.validation_images, data_dir)

    from tf_semantic_inpaint.images import write_bytes_atomic

    os.makedirs(out, exist_ok=True)
    write_bytes_atomic(run_file, json.dumps(dataclasses.asdict(config), indent=2).encode())
    encoder = Encoder(generator.resolution, generator.channels, generator.z_dim, config.width, name="encoder")
    training = EncoderTraining(encoder, generator, config.latent_weight, seed=config.seed,
                               draws_weight=config.draws_weight, draws=config.training_draws,
                               spread=config.draws_spread)
    training.compile(keras.optimizers.Adam(config.learning_rate))
    epoch_var = tf.Variable(0, dtype=tf.int64)
    checkpoint = _checkpoint_for(training, epoch_var)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(out, "checkpoints"),
                                         max_to_keep=config.keep_checkpoints or None)
    if resume and manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    initial_epoch = int(epoch_var.numpy())
    if initial_epoch >= config.epochs:
        print(f"{out} already trained {initial_epoch} of {config.epochs} epochs; nothing to do.", file=sys.stderr)
        return training
    if initial_epoch:  # a new shuffle rather than epoch 1's order again
        dataset, _ = data.training_dataset(gan_config.dataset, gan_config.resolution, config.batch_size,
                                           gan_config.channels, data_dir, seed=config.seed + initial_epoch)
    nan_guard = _StopOnNaN()
    session = _SessionRecord(out, config.command, epoch_var)
    callbacks = [
        nan_guard,
        _Checkpoint(manager, epoch_var, nan_guard),
        session,
        _SampleGrid(os.path.join(out, "samples"), validation[0]),
        keras.callbacks.TensorBoard(os.path.join(out, "logs"), write_graph=False),
    ]
    session.write()  # recorded now: a session killed later keeps its entry
    try:
        training.fit(
            dataset.repeat(), epochs=config.epochs, steps_per_epoch=steps, initial_epoch=initial_epoch,
            validation_data=tf.data.Dataset.from_tensor_slices(validation).batch(64),
            callbacks=callbacks, shuffle=False, verbose=verbose,
        )
    finally:
        session.write()
    if nan_guard.failed_at is not None:
        raise TrainingError(f"encoder training diverged; the last good checkpoint "
                            f"({manager.latest_checkpoint or 'none'}) is kept. Resume with --resume.")
    tmp = os.path.join(out, ".tmp-encoder.keras")
    encoder.save(tmp)
    os.replace(tmp, os.path.join(out, "encoder.keras"))
    return training


def load_encoder(run_dir, epoch=0):
    """The trained Encoder of an encoder run: encoder.keras, or its checkpoint of `epoch`."""
    config = load_encoder_config(run_dir)
    final = os.path.join(run_dir, "encoder.keras")
    if not epoch and os.path.isfile(final):
        return keras.saving.load_model(final)
    generator, _ = load_generator(config.generator, config.generator_epoch)
    encoder = Encoder(generator.resolution, generator.channels, generator.z_dim, config.width, name="encoder")
    path = (os.path.join(run_dir, "checkpoints", f"ckpt-{epoch}") if epoch
            else tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints")))
    if path is None:
        raise TrainingError(f"{run_dir} has no checkpoint yet.")
    tf.train.Checkpoint(encoder=encoder).restore(path).expect_partial().assert_existing_objects_matched()
    return encoder
