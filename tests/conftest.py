"""Shared fixtures: tiny real models and a tiny real export, built once per session."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

TINY = dict(resolution=28, channels=1, width=8)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~20 s; CI runs it too")


@pytest.fixture(scope="session")
def tiny_models():
    """An untrained (G, D) pair at 28x28x1 with 8 base channels, seeded."""
    import keras

    from tf_semantic_inpaint.models import Discriminator, Generator

    keras.utils.set_random_seed(1)
    return (
        Generator(TINY["resolution"], TINY["channels"], width=TINY["width"]),
        Discriminator(TINY["resolution"], TINY["channels"], width=TINY["width"]),
    )


@pytest.fixture(scope="session")
def tiny_export(tiny_models, tmp_path_factory):
    """A TF Serving model base holding version 1 of the tiny models, with short search defaults."""
    from tf_semantic_inpaint.export import InpaintingModule, write_savedmodel
    from tf_semantic_inpaint.search import SearchSettings

    base = tmp_path_factory.mktemp("export") / "tiny"
    settings = SearchSettings(iterations=30, restarts=2, learning_rate=0.05)
    module = InpaintingModule(*tiny_models, settings)
    import dataclasses

    write_savedmodel(module, str(base / "1"), {"search_defaults": dataclasses.asdict(settings),
                                               "resolution": 28, "channels": 1})
    return str(base)


@pytest.fixture(scope="session")
def fashion_mnist_test_images():
    """The first 16 real Fashion-MNIST test images, float32 [16, 28, 28, 1] in [0, 1]."""
    from tf_semantic_inpaint.data import DEBIAN_FASHION_MNIST, read_idx

    path = DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz"
    if not path.is_file():
        pytest.fail("Fashion-MNIST is missing: apt-get install dataset-fashion-mnist (.ci/run does)")
    return read_idx(path)[:16, :, :, np.newaxis].astype(np.float32) / 255.0
