"""The DCGAN as one `keras.Model` with a custom `train_step`, trained with `fit`.

Each step computes G(z), D(x) and D(G(z)) once and updates D (real vs generated)
and G (the non-saturating loss -log D(G(z)), Goodfellow et al., 2014) from that one
pass, with the DCGAN optimiser settings (Adam, lr 2e-4, beta1 0.5).
"""

import keras
import tensorflow as tf

from tf_semantic_inpaint.models import Discriminator, Generator


@keras.saving.register_keras_serializable(package="tf_semantic_inpaint")
class DCGAN(keras.Model):
    """Generator and discriminator trained together.

    Args:
        generator: a `Generator`.
        discriminator: a `Discriminator` of the same resolution and channels.
        seed: seed of the latent noise drawn inside `train_step`.

    `fit` data: batches of real images, float32 [batch, H, W, C] in [-1, 1], or
    `(images, z)` pairs with z float32 [batch, z_dim] in [-1, 1] when the caller
    supplies the noise (used to make distributed and single-device steps comparable).

    Example:
        >>> gan = DCGAN(Generator(28, 1), Discriminator(28, 1))
        >>> gan.compile()
        >>> gan.fit(images_dataset, epochs=1)
    """

    def __init__(self, generator, discriminator, seed=None, **kwargs):
        super().__init__(**kwargs)
        if (generator.resolution, generator.channels) != (
            discriminator.resolution, discriminator.channels,
        ):
            raise ValueError(
                "generator and discriminator disagree on image shape: "
                f"{generator.resolution}x{generator.resolution}x{generator.channels} vs "
                f"{discriminator.resolution}x{discriminator.resolution}x{discriminator.channels}."
            )
        self.generator = generator
        self.discriminator = discriminator
        self.seed = seed
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

    def get_config(self):
        config = super().get_config()
        config.update(
            generator=keras.saving.serialize_keras_object(self.generator),
            discriminator=keras.saving.serialize_keras_object(self.discriminator),
            seed=self.seed,
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


def build_gan(resolution, channels, z_dim=100, width=64, seed=None):
    """A compiled DCGAN with matching G and D (call inside a strategy scope to distribute)."""
    gan = DCGAN(
        Generator(resolution, channels, z_dim=z_dim, width=width, name="generator"),
        Discriminator(resolution, channels, width=width, name="discriminator"),
        seed=seed,
    )
    gan.compile()
    return gan
