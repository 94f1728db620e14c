"""Shared fixtures: tiny real models and a tiny real export, built once per session."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

TINY = dict(resolution=28, channels=1, width=8)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~20 s; CI runs it too")


@pytest.fixture(scope="session")
def tiny_models(fashion_mnist_train_images):
    """A (G, D) pair at 28x28x1, 8 base channels, trained for 300 steps on real Fashion-MNIST.

    Briefly trained rather than fresh: an untrained G in inference mode is nearly
    constant in z, which would make every search test vacuous.
    """
    import keras
    import tensorflow as tf

    from tf_semantic_inpaint.gan import build_gan

    keras.utils.set_random_seed(1)
    gan = build_gan(TINY["resolution"], TINY["channels"], width=TINY["width"], seed=1)
    images = fashion_mnist_train_images[:9600] * 2.0 - 1.0
    data = tf.data.Dataset.from_tensor_slices(images).shuffle(9600, seed=1).batch(32).repeat()
    gan.fit(data, epochs=1, steps_per_epoch=300, verbose=0)
    return gan.generator, gan.discriminator


@pytest.fixture(scope="session")
def fashion_mnist_train_images():
    """The real Fashion-MNIST training images, float32 [60000, 28, 28, 1] in [0, 1]."""
    return _debian_images("train")


@pytest.fixture(scope="session")
def tiny_export(tiny_models, tmp_path_factory):
    """A TF Serving model base holding version 1 of the tiny models, with short search defaults."""
    from tf_semantic_inpaint.contract import SearchSettings
    from tf_semantic_inpaint.export import InpaintingModule, SearchCompleter, write_savedmodel

    base = tmp_path_factory.mktemp("export") / "tiny"
    module = InpaintingModule(SearchCompleter(*tiny_models), SearchSettings(iterations=30, restarts=2,
                                                                            learning_rate=0.05))
    write_savedmodel(module, str(base / "1"), module.card())
    return str(base)


@pytest.fixture(scope="session")
def tiny_run_dir(tiny_models, tmp_path_factory):
    """A DCGAN training run directory of the tiny models as `tfinpaint train` leaves it (final models + run.json)."""
    import dataclasses
    import json

    from tf_semantic_inpaint.train import TrainConfig

    run = tmp_path_factory.mktemp("run")
    generator, discriminator = tiny_models
    generator.save(run / "generator.keras")
    discriminator.save(run / "discriminator.keras")
    config = TrainConfig(width=8, epochs=3, command="tfinpaint train --width 8 --epochs 3 --out run")
    (run / "run.json").write_text(json.dumps(dataclasses.asdict(config)))
    return str(run)


@pytest.fixture(scope="session")
def fashion_mnist_folder(fashion_mnist_train_images, tmp_path_factory):
    """A folder of 256 real Fashion-MNIST training images as PNG files (a `--dataset` folder)."""
    from tf_semantic_inpaint.images import write_image

    folder = tmp_path_factory.mktemp("fashion_mnist_png")
    for i, image in enumerate(fashion_mnist_train_images[:256]):
        write_image(str(folder / f"{i:04d}.png"), image)
    return str(folder)


@pytest.fixture(scope="session")
def fashion_mnist_test_images():
    """The first 16 real Fashion-MNIST test images, float32 [16, 28, 28, 1] in [0, 1]."""
    return _debian_images("t10k")[:16]


def _debian_images(prefix):
    from tf_semantic_inpaint.data import DEBIAN_FASHION_MNIST, read_idx

    path = DEBIAN_FASHION_MNIST / f"{prefix}-images-idx3-ubyte.gz"
    if not path.is_file():
        pytest.fail("Fashion-MNIST is missing: apt-get install dataset-fashion-mnist (.ci/run does)")
    return read_idx(path)[..., np.newaxis].astype(np.float32) / 255.0


@pytest.fixture(scope="session")
def tiny_judge_run(tmp_path_factory):
    """A judge run (`train --model judge`) of 150 steps on real Fashion-MNIST: (run dir, judge)."""
    from tf_semantic_inpaint import train as training

    out = str(tmp_path_factory.mktemp("judge") / "run")
    config = training.TrainConfig(model="judge", epochs=1, steps_per_epoch=150, batch_size=64, seed=1,
                                  command="tfinpaint train --model judge --epochs 1 --steps-per-epoch 150")
    return out, training.train(config, out, verbose=0)


@pytest.fixture(scope="session")
def tiny_judge_export(tiny_judge_run, tmp_path_factory):
    """The tiny judge exported as a model base with version 1."""
    from tf_semantic_inpaint.judge import export_judge

    base = str(tmp_path_factory.mktemp("judge_export") / "judge")
    export_judge(tiny_judge_run[0], base)
    return base


@pytest.fixture(scope="session")
def tiny_context_encoder(fashion_mnist_train_images):
    """A ContextEncoderGAN at 28x28x1, width 8, trained 200 steps on real Fashion-MNIST.

    Briefly trained so that its completions are real ones (an untrained network fills grey).
    """
    import keras
    import tensorflow as tf

    from tf_semantic_inpaint.context_encoder import build_context_encoder, mask_batches

    keras.utils.set_random_seed(2)
    model = build_context_encoder(28, 1, width=8, learning_rate=1e-3)
    images = fashion_mnist_train_images[:9600] * 2.0 - 1.0
    batches = tf.data.Dataset.from_tensor_slices(images).shuffle(9600, seed=2).batch(32, drop_remainder=True)
    model.fit(mask_batches(batches.repeat(), seed=2), epochs=1, steps_per_epoch=200, verbose=0)
    return model


@pytest.fixture(scope="module")
def server(tiny_export):
    """`tfinpaint serve` of the tiny export on a loopback ephemeral port, for one test module."""
    from tf_semantic_inpaint import devserver

    server = devserver.make_server(tiny_export, port=0, quiet=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def batch(fashion_mnist_test_images):
    """Three real images [3, 28, 28, 1] with center, pattern and random masks [3, 28, 28, 1]."""
    from tf_semantic_inpaint.masks import make_mask

    images = fashion_mnist_test_images[:3]
    masks = np.stack([make_mask(kind, 28, 28, seed=i) for i, kind in enumerate(["center", "pattern", "random"])])
    return images, masks


@pytest.fixture(scope="session")
def tiny_context_encoder_export(tiny_context_encoder, tmp_path_factory):
    """The tiny context encoder as `tfinpaint train` leaves a run, exported: (model base, run dir)."""
    import dataclasses
    import json

    from tf_semantic_inpaint.export import export
    from tf_semantic_inpaint.train import TrainConfig

    run = tmp_path_factory.mktemp("ce_run")
    tiny_context_encoder.generator.save(run / "generator.keras")
    tiny_context_encoder.discriminator.save(run / "discriminator.keras")
    config = TrainConfig(model="context-encoder", width=8, epochs=1, learning_rate=1e-3, known_weight=1.0,
                         adversarial_weight=0.001, command="tfinpaint train --model context-encoder --width 8")
    (run / "run.json").write_text(json.dumps(dataclasses.asdict(config)))
    base = str(tmp_path_factory.mktemp("ce_export") / "ce")
    export(str(run), base)
    return base, str(run)
