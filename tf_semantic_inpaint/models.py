"""The DCGAN generator G and discriminator D (Radford et al., 2016).

G maps a latent vector z, uniform in [-1, 1]^z_dim, to an image in [-1, 1]:
project and reshape to s x s (s in 4..7), then stride-2 transposed convolutions
with batch norm and ReLU that halve the channels while doubling the size, and a
tanh output. D is the mirror image: stride-2 convolutions with LeakyReLU(0.2),
batch norm on every convolution after the first, and one logit out.

The same code makes the small CPU model (28x28x1, width 64) and the paper's
64x64x3 model (width 64: 4x4x512 -> 8x8x256 -> 16x16x128 -> 32x32x64 -> 64x64x3).
"""

import keras

# DCGAN's weight initialisation: N(0, 0.02) for all convolution and dense kernels.
_INIT_STDDEV = 0.02
_KERNEL_SIZE = 5


def upsampling_plan(resolution):
    """Split `resolution` into a start size s (4 to 7) and a number of doublings n.

    resolution = s * 2**n with n >= 1, e.g. 28 -> (7, 2), 32 -> (4, 3), 64 -> (4, 4).

    Raises:
        ValueError: if no such split exists (e.g. 30 or 100), naming the sizes that work.
    """
    if not isinstance(resolution, int) or resolution < 8:
        raise ValueError(
            f"resolution {resolution!r} is too small: use at least 8 "
            "(e.g. 28 or 32 for Fashion-MNIST, 64 as in the paper, 128)."
        )
    start, doublings = resolution, 0
    while start > 7 and start % 2 == 0:
        start, doublings = start // 2, doublings + 1
    if not 4 <= start <= 7 or doublings < 1:
        raise ValueError(
            f"resolution {resolution} cannot be made by DCGAN's stride-2 layers: it must be "
            "4, 5, 6 or 7 times a power of two (e.g. 28, 32, 48, 64, 96, 128)."
        )
    return start, doublings


def _init():
    return keras.initializers.RandomNormal(stddev=_INIT_STDDEV)


def _batch_norm():
    # synchronized: under MirroredStrategy the statistics are those of the global batch,
    # so a distributed step equals a single-device step.
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, synchronized=True)


@keras.saving.register_keras_serializable(package="tf_semantic_inpaint")
class LeakyReLU(keras.layers.Layer):
    """max(x, slope * x): DCGAN's leaky ReLU, written without TensorFlow's LeakyRelu op.

    Grappler's remapper fuses Conv2D + BiasAdd + LeakyRelu in D's first layer and then
    fails on the search's gradient (LeakyReluGrad needs the BiasAdd it removed), printing
    an E-level "remapper failed" line on every search. The values are the same.

    Args:
        negative_slope: the slope for x < 0, in [0, 1).
    """

    def __init__(self, negative_slope=0.2, **kwargs):
        super().__init__(**kwargs)
        self.negative_slope = negative_slope

    def call(self, x):
        return keras.ops.maximum(x, self.negative_slope * x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


@keras.saving.register_keras_serializable(package="tf_semantic_inpaint")
class Generator(keras.Model):
    """DCGAN generator G: z -> image.

    Args:
        resolution: output height and width; 4..7 times a power of two (28, 32, 64, 128).
        channels: 1 (grayscale) or 3 (RGB).
        z_dim: size of the latent vector z.
        width: channels of the last hidden layer; they double at each smaller scale,
            so width=64 at 64x64 gives the paper's 512-256-128-64.

    Call:
        z: float32 [batch, z_dim], uniform in [-1, 1].
        returns: float32 [batch, resolution, resolution, channels] in [-1, 1].

    Example:
        >>> g = Generator(resolution=28, channels=1)
        >>> g(keras.random.uniform((2, 100), -1, 1)).shape
        TensorShape([2, 28, 28, 1])
    """

    def __init__(self, resolution=64, channels=3, z_dim=100, width=64, **kwargs):
        super().__init__(**kwargs)
        self.resolution = resolution
        self.channels = channels
        self.z_dim = z_dim
        self.width = width
        start, doublings = upsampling_plan(resolution)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}.")
        top = width * 2 ** (doublings - 1)
        # Held in a Sequential, not a Python list, so tf.train.Checkpoint sees every variable.
        self.project = keras.Sequential(
            [
                keras.layers.Dense(start * start * top, use_bias=False, kernel_initializer=_init()),
                _batch_norm(),
                keras.layers.ReLU(),
                keras.layers.Reshape((start, start, top)),
            ],
            name="project",
        )
        upsample = []
        for i in range(doublings - 1):
            upsample += [
                keras.layers.Conv2DTranspose(
                    top // 2 ** (i + 1), _KERNEL_SIZE, strides=2, padding="same",
                    use_bias=False, kernel_initializer=_init(),
                ),
                _batch_norm(),
                keras.layers.ReLU(),
            ]
        upsample.append(
            keras.layers.Conv2DTranspose(
                channels, _KERNEL_SIZE, strides=2, padding="same",
                kernel_initializer=_init(), activation="tanh",
            )
        )
        self.upsample = keras.Sequential(upsample, name="upsample")
        self.build((None, z_dim))

    def build(self, input_shape):
        self.project.build(input_shape)
        self.upsample.build(self.project.compute_output_shape(input_shape))
        self.built = True

    def call(self, z, training=False):
        return self.upsample(self.project(z, training=training), training=training)

    @property
    def feature_layers(self):
        """How many feature maps `features` can stop at: 0 (after the projection) to n - 1
        for n upsampling blocks (28x28: 0 = 7x7x2w, 1 = 14x14xw)."""
        return (len(self.upsample.layers) - 1) // 3 + 1

    def features(self, z, layer=0, training=False):
        """G's feature map h after the projection and `layer` upsampling blocks (post-ReLU,
        so h >= 0): float32 [batch, s * 2**layer, s * 2**layer, top / 2**layer]."""
        h = self.project(z, training=training)
        for block in self.upsample.layers[:3 * layer]:
            h = block(h, training=training)
        return h

    def from_features(self, h, layer=0, training=False):
        """The rest of G from `features`: G(z) = from_features(features(z, l), l), in [-1, 1]."""
        for block in self.upsample.layers[3 * layer:]:
            h = block(h, training=training)
        return h

    def get_config(self):
        config = super().get_config()
        config.update(
            resolution=self.resolution, channels=self.channels, z_dim=self.z_dim, width=self.width
        )
        return config


@keras.saving.register_keras_serializable(package="tf_semantic_inpaint")
class Discriminator(keras.Model):
    """DCGAN discriminator D: image -> logit (D(x) = sigmoid(logit) is P(x is real)).

    Args:
        resolution, channels, width: as for `Generator`; width is the channels of the
            first convolution, doubling at each stride-2 layer.

    Call:
        images: float32 [batch, resolution, resolution, channels] in [-1, 1].
        returns: float32 [batch, 1], unbounded logits.
    """

    def __init__(self, resolution=64, channels=3, width=64, **kwargs):
        super().__init__(**kwargs)
        self.resolution = resolution
        self.channels = channels
        self.width = width
        _, doublings = upsampling_plan(resolution)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}.")
        layers = []
        for i in range(doublings):
            layers.append(
                keras.layers.Conv2D(
                    width * 2**i, _KERNEL_SIZE, strides=2, padding="same",
                    use_bias=i == 0, kernel_initializer=_init(),
                )
            )
            if i > 0:  # DCGAN: no batch norm on the discriminator's input layer.
                layers.append(_batch_norm())
            layers.append(LeakyReLU(negative_slope=0.2))
        layers += [keras.layers.Flatten(), keras.layers.Dense(1, kernel_initializer=_init())]
        self.body = keras.Sequential(layers, name="body")
        self.build((None, resolution, resolution, channels))

    def build(self, input_shape):
        self.body.build(input_shape)
        self.built = True

    def call(self, images, training=False):
        return self.body(images, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(resolution=self.resolution, channels=self.channels, width=self.width)
        return config
