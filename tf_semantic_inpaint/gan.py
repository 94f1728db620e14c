"""The DCGAN as one `keras.Model` with a custom `train_step`, trained with `fit`.

Each step computes G(z), D(x) and D(G(z)) once and updates D (real vs generated)
and G (the non-saturating loss -log D(G(z)), Goodfellow et al., 2014) from that one
pass, with the DCGAN optimiser settings (Adam, lr 2e-4, beta1 0.5).

After every step an exponential moving average of all of G's weights (batch-norm
moving statistics included) is updated in a second Generator, `ema_generator`:
averaged weights draw better samples than the last iterate of a GAN's oscillating
game (Yazici et al., ICLR 2019; Karras et al., 2018), at no extra training cost.
The EMA G is what the sample grids show, what is saved as the final generator and
what is exported; the raw G keeps training.
"""

import keras
import tensorflow as tf

from tf_semantic_inpaint.models import Discriminator, Generator

# Decay of the EMA of G's weights: a half-life of ln 2 / 0.001 = 693 steps, 0.8 of an epoch
# of Fashion-MNIST at batch 64 (890 steps), long enough to smooth the step-to-step
# oscillation, short enough to follow G through 20+ epochs (ProGAN's value).
EMA_DECAY = 0.999
# Warm-up as tf.train.ExponentialMovingAverage's num_updates: the decay after n updates
# is min(decay, (1 + n) / (10 + n)), so the average forgets G's random start within
# the first epochs instead of carrying 0.999^890 = 41% of it after the first.
_EMA_WARMUP = 10.0


@keras.saving.register_keras_serializable(package="tf_semantic_inpaint")
class DCGAN(keras.Model):
    """Generator and discriminator trained together.

    Args:
        generator: a `Generator`.
        discriminator: a `Discriminator` of the same resolution and channels.
        seed: seed of the latent noise drawn inside `train_step`.
        ema_decay: decay d of the exponential moving average of G's weights, in [0, 1);
            0 keeps no average (`ema_generator` is None).

    `fit` data: batches of real images, float32 [batch, H, W, C] in [-1, 1], or
    `(images, z)` pairs with z float32 [batch, z_dim] in [-1, 1] when the caller
    supplies the noise (used to make distributed and single-device steps comparable).

    Example:
        >>> gan = DCGAN(Generator(28, 1), Discriminator(28, 1))
        >>> gan.compile()
        >>> gan.fit(images_dataset, epochs=1)
    """

    def __init__(self, generator, discriminator, seed=None, ema_decay=EMA_DECAY, **kwargs):
        super().__init__(**kwargs)
        if (generator.resolution, generator.channels) != (
            discriminator.resolution, discriminator.channels,
        ):
            raise ValueError(
                "generator and discriminator disagree on image shape: "
                f"{generator.resolution}x{generator.resolution}x{generator.channels} vs "
                f"{discriminator.resolution}x{discriminator.resolution}x{discriminator.channels}."
            )
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0 = no average), got {ema_decay}.")
        self.generator = generator
        self.discriminator = discriminator
        self.seed = seed
        self.ema_decay = float(ema_decay)
        # An attribute, not a list entry, so tf.train.Checkpoint saves its variables.
        self.ema_generator = _copy_of(generator) if ema_decay else None
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.d_real_tracker = keras.metrics.Mean(name="d_real")
        self.d_fake_tracker = keras.metrics.Mean(name="d_fake")
        # G and D build themselves; fit must not try to build the GAN by calling it on data.
        self.built = True

    @property
    def z_dim(self):
        return self.generator.z_dim

    def compile(self, d_optimizer=None, g_optimizer=None, **kwargs):
        """Attach the two optimizers; defaults are DCGAN's Adam(2e-4, beta_1=0.5)."""
        super().compile(**kwargs)
        self.d_optimizer = d_optimizer or keras.optimizers.Adam(2e-4, beta_1=0.5)
        self.g_optimizer = g_optimizer or keras.optimizers.Adam(2e-4, beta_1=0.5)
        # Create the slot variables now, so checkpoints written before the first
        # step and restored after it hold the same variables.
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)
        # Keras' own `optimizer` is unused; built empty, so `fit` under a distribution
        # strategy does not give it slots for every weight (doubling each checkpoint).
        self.optimizer.build([])

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker, self.d_real_tracker, self.d_fake_tracker]

    @property
    def inference_generator(self):
        """The G to sample, save and export: the EMA G when there is one, else the raw G."""
        return self.ema_generator if self.ema_generator is not None else self.generator

    def call(self, z, training=False):
        """G(z): float32 [batch, z_dim] -> images [batch, H, W, C] in [-1, 1]."""
        return self.generator(z, training=training)

    def sample_z(self, batch_size):
        """Latent noise, float32 [batch_size, z_dim], uniform in [-1, 1].

        Under a distribution strategy `batch_size` is this replica's share: every replica
        draws the noise of the whole global batch (the same draws, from the same seed
        state) and keeps its own slice, so replicas never share a z and N replicas see
        the z one device would see with the global batch.
        """
        context = tf.distribute.get_replica_context()
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if context is None or replicas == 1:
            return keras.random.uniform((batch_size, self.z_dim), -1.0, 1.0, seed=self.seed_generator)
        z = keras.random.uniform((batch_size * replicas, self.z_dim), -1.0, 1.0, seed=self.seed_generator)
        start = tf.cast(context.replica_id_in_sync_group, tf.int32) * batch_size
        return tf.slice(z, [start, 0], [batch_size, self.z_dim])

    def train_step(self, data):
        if isinstance(data, (tuple, list)):
            real, z = data
        else:
            real = data
            z = self.sample_z(tf.shape(real)[0])
        # Losses are per-replica means; gradients are summed across replicas, so scale.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        bce = lambda labels, logits: tf.reduce_mean(  # noqa: E731
            tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
        )

        # One forward pass serves both updates (as in the TensorFlow DCGAN tutorial);
        # D sees the real and the generated batch separately so batch norm never mixes them.
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = self.generator(z, training=True)
            real_logits = self.discriminator(real, training=True)
            fake_logits = self.discriminator(fake, training=True)
            d_loss = bce(tf.ones_like(real_logits), real_logits) + bce(
                tf.zeros_like(fake_logits), fake_logits
            )
            g_loss = bce(tf.ones_like(fake_logits), fake_logits)  # non-saturating -log D(G(z))
            d_scaled, g_scaled = d_loss / replicas, g_loss / replicas
        d_grads = d_tape.gradient(d_scaled, self.discriminator.trainable_variables)
        g_grads = g_tape.gradient(g_scaled, self.generator.trainable_variables)
        self.d_optimizer.apply(d_grads, self.discriminator.trainable_variables)
        self.g_optimizer.apply(g_grads, self.generator.trainable_variables)
        if self.ema_generator is not None:
            self.update_ema()

        self.d_real_tracker.update_state(tf.reduce_mean(tf.sigmoid(real_logits)))
        self.d_fake_tracker.update_state(tf.reduce_mean(tf.sigmoid(fake_logits)))
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        logs = {m.name: m.result() for m in self.metrics}
        if _multi_worker(tf.distribute.get_strategy()):
            # Keras averages the logs over workers along axis 0, which fails on scalars
            # (tensorflow/tensorflow#72388); as [1] vectors they average to the global mean.
            logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

    def ema_decay_after(self, updates):
        """The EMA decay used for G update number `updates` + 1 (float32 scalar)."""
        updates = tf.cast(updates, tf.float32)
        return tf.minimum(self.ema_decay, (1.0 + updates) / (_EMA_WARMUP + updates))

    def update_ema(self):
        """ema <- d ema + (1 - d) G for every weight of G, moving statistics included.

        Call right after G's optimizer step; d is `ema_decay_after(updates before it)`.
        Under a distribution strategy the update runs once per variable copy, in the
        cross-replica context (as Keras' optimizers update their variables).
        """
        decay = self.ema_decay_after(self.g_optimizer.iterations - 1)
        pairs = [(e.value, w.value) for e, w in zip(self.ema_generator.weights, self.generator.weights)]

        def update(distribution, pairs):
            for average, weight in pairs:
                distribution.extended.update(
                    average, lambda a, w: a.assign(decay * a + (1.0 - decay) * w),
                    args=(weight,), group=False,
                )

        tf.__internal__.distribute.interim.maybe_merge_call(
            update, tf.distribute.get_strategy(), pairs
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            generator=keras.saving.serialize_keras_object(self.generator),
            discriminator=keras.saving.serialize_keras_object(self.discriminator),
            seed=self.seed,
            ema_decay=self.ema_decay,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        config["discriminator"] = keras.saving.deserialize_keras_object(config["discriminator"])
        return cls(**config)


def _multi_worker(strategy):
    """True for a MultiWorkerMirroredStrategy over a cluster of several workers."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and bool(
        strategy.cluster_resolver.cluster_spec().as_dict()
    )


def _copy_of(generator):
    """A frozen Generator with the same architecture and weights, named ema_generator."""
    config = {**generator.get_config(), "name": "ema_generator"}
    copy = Generator.from_config(config)
    for target, source in zip(copy.weights, generator.weights):
        target.assign(source)
    copy.trainable = False  # updated by update_ema, never by an optimizer
    return copy


def build_gan(resolution, channels, z_dim=100, width=64, seed=None, ema_decay=EMA_DECAY):
    """A compiled DCGAN with matching G and D (call inside a strategy scope to distribute)."""
    gan = DCGAN(
        Generator(resolution, channels, z_dim=z_dim, width=width, name="generator"),
        Discriminator(resolution, channels, width=width, name="discriminator"),
        seed=seed,
        ema_decay=ema_decay,
    )
    gan.compile()
    return gan
