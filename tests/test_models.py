"""G and D: shapes, value ranges, the DCGAN layout, config round trips."""

import keras
import numpy as np
import pytest

from tf_semantic_inpaint.models import Discriminator, Generator, upsampling_plan


@pytest.mark.parametrize(
    "resolution, channels, width",
    [(28, 1, 8), (32, 1, 8), (32, 3, 8), (64, 3, 8), (128, 3, 4)],
)
def test_shapes_and_ranges(resolution, channels, width):
    g = Generator(resolution, channels, width=width)
    d = Discriminator(resolution, channels, width=width)
    z = np.random.default_rng(0).uniform(-1, 1, (3, 100)).astype("float32")
    images = g(z).numpy()
    assert images.shape == (3, resolution, resolution, channels)
    assert images.dtype == np.float32
    assert images.std() > 0  # not a constant image
    logits = d(images).numpy()
    assert logits.shape == (3, 1)
    assert np.all(np.isfinite(logits))


def test_paper_64x64_generator_layout():
    """width 64 at 64x64 is the paper's 4x4x512 -> 8x8x256 -> 16x16x128 -> 32x32x64 -> 64x64x3."""
    g = Generator(64, 3, width=64)
    x = keras.ops.convert_to_tensor(np.zeros((1, 100), "float32"))
    shapes = [tuple(g.project(x).shape[1:])]
    h = g.project(x)
    for layer in g.upsample.layers:
        h = layer(h)
        if isinstance(layer, keras.layers.Conv2DTranspose):
            shapes.append(tuple(h.shape[1:]))
    assert shapes == [(4, 4, 512), (8, 8, 256), (16, 16, 128), (32, 32, 64), (64, 64, 3)]
    d = Discriminator(64, 3, width=64)
    convs = [layer.filters for layer in d.body.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs == [64, 128, 256, 512]
    # Batch norm after every convolution but the first, as in DCGAN.
    kinds = [type(layer).__name__ for layer in d.body.layers]
    assert kinds[:2] == ["Conv2D", "LeakyReLU"]
    assert kinds.count("BatchNormalization") == 3


@pytest.mark.parametrize(
    "resolution, plan", [(28, (7, 2)), (32, (4, 3)), (48, (6, 3)), (64, (4, 4)), (128, (4, 5))]
)
def test_upsampling_plan(resolution, plan):
    assert upsampling_plan(resolution) == plan


@pytest.mark.parametrize("resolution", [30, 100, 7, 3, 36 * 3])
def test_impossible_resolution_is_a_clear_error(resolution):
    with pytest.raises(ValueError, match="resolution"):
        Generator(resolution, 1)


def test_config_round_trip_keeps_architecture():
    g = Generator(32, 3, z_dim=16, width=8, name="g")
    config = g.get_config()
    assert {k: config[k] for k in ("resolution", "channels", "z_dim", "width")} == dict(
        resolution=32, channels=3, z_dim=16, width=8
    )
    clone = Generator.from_config(config)
    assert [w.shape for w in clone.weights] == [w.shape for w in g.weights]
    d = Discriminator(32, 3, width=8)
    assert Discriminator.from_config(d.get_config()).count_params() == d.count_params()


def test_keras_file_round_trip_gives_identical_outputs(tmp_path):
    g = Generator(28, 1, width=8)
    g.save(tmp_path / "g.keras")
    loaded = keras.saving.load_model(tmp_path / "g.keras")
    z = np.random.default_rng(1).uniform(-1, 1, (2, 100)).astype("float32")
    np.testing.assert_array_equal(loaded(z).numpy(), g(z).numpy())
