"""The encoder E(y ⊙ M, M) -> z: range, masking, serialization, training, a better start."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_semantic_inpaint import data
from tf_semantic_inpaint import encoder as encoding
from tf_semantic_inpaint import train as training
from tf_semantic_inpaint.masks import MASK_TYPES, importance_weights, make_mask
from tf_semantic_inpaint.search import WINDOW, LatentSearch


def _masks(n, seed=0):
    """n masks, the four kinds in turn, float32 [n, 28, 28, 1]."""
    return np.stack([make_mask(MASK_TYPES[i % 4], 28, 28, seed=seed + i) for i in range(n)])


@pytest.fixture(scope="module")
def validation_images():
    """The first 32 real Fashion-MNIST validation images, float32 [32, 28, 28, 1] in [-1, 1]."""
    data.prepare("fashion_mnist")
    ds, _ = data.load_images("fashion_mnist", "validation", 28)
    return np.stack(list(ds.take(32).as_numpy_iterator()))


def test_output_is_a_z_that_ignores_the_hole(fashion_mnist_test_images):
    encoder = encoding.Encoder(28, 1, z_dim=100, width=8)
    images = fashion_mnist_test_images[:8] * 2 - 1
    masks = _masks(8)
    z = encoder(images, masks).numpy()
    assert z.shape == (8, 100) and z.dtype == np.float32
    assert z.std() > 1e-3  # (in the box by its tanh)
    scribbled = np.where(masks == 0, np.random.default_rng(0).uniform(-1, 1, images.shape), images)
    np.testing.assert_array_equal(encoder(scribbled.astype(np.float32), masks).numpy(), z)
    other_masks = _masks(8, seed=100)
    assert not np.allclose(encoder(images, other_masks).numpy(), z)  # the mask itself is an input


def test_config_and_keras_file_round_trip(tmp_path, fashion_mnist_test_images):
    encoder = encoding.Encoder(28, 1, z_dim=100, width=8, name="encoder")
    clone = encoding.Encoder.from_config(encoder.get_config())
    assert clone.get_config() == encoder.get_config()
    images, masks = fashion_mnist_test_images[:4] * 2 - 1, _masks(4)
    encoder.save(tmp_path / "e.keras")
    loaded = keras.saving.load_model(tmp_path / "e.keras")
    np.testing.assert_array_equal(loaded(images, masks).numpy(), encoder(images, masks).numpy())


def test_mask_bank_holds_every_kind_equally():
    bank = encoding.mask_bank(28, per_kind=5, seed=1)
    assert bank.shape == (20, 28, 28, 1)
    missing = 1 - bank.mean(axis=(1, 2, 3))
    np.testing.assert_allclose(missing[:5], 0.25)  # center
    np.testing.assert_allclose(missing[5:10], round(0.25 * 784) / 784)  # pattern
    np.testing.assert_allclose(missing[10:15], round(0.8 * 784) / 784)  # random
    np.testing.assert_allclose(missing[15:], 0.5)  # half


def test_a_training_step_moves_e_and_leaves_g_frozen(tiny_models, fashion_mnist_train_images):
    generator, _ = tiny_models
    g_before = [w.numpy().copy() for w in generator.weights]
    model = encoding.EncoderTraining(encoding.Encoder(28, 1, width=8), generator, seed=0, masks_per_kind=8)
    model.compile()
    e_before = [w.numpy().copy() for w in model.encoder.weights]
    real = tf.data.Dataset.from_tensors(fashion_mnist_train_images[:16] * 2 - 1)
    history = model.fit(real, epochs=1, verbose=0).history
    assert set(history) == {"loss", "real_l1", "sample_l1", "latent_mse", "hole_l1"}
    assert all(np.isfinite(v[0]) for v in history.values())
    assert all(not np.array_equal(a, w.numpy()) for a, w in zip(e_before, model.encoder.weights))
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(g_before, generator.weights))
    assert int(model.optimizer.iterations.numpy()) == 1


def test_draws_loss_is_the_holes_squared_error_of_the_draws_mean(tiny_models, validation_images):
    """draws_mse against NumPy on G's own outputs: mean over K clipped draws, squared error over the hole."""
    generator, _ = tiny_models
    model = encoding.EncoderTraining(encoding.Encoder(28, 1, width=8), generator, seed=0, masks_per_kind=8,
                                     draws_weight=1.0, draws=3, spread=0.5)
    rng = np.random.default_rng(0)
    real, masks = validation_images[:4], _masks(4)
    z_hat = rng.uniform(-0.9, 0.9, (4, 100)).astype("float32")
    noise = rng.normal(size=(3, 4, 100)).astype("float32")
    got = model.draws_mse(tf.constant(z_hat), tf.constant(real), tf.constant(masks), tf.constant(noise)).numpy()
    fills = np.stack([generator(np.clip(z_hat + 0.5 * n, -1, 1), training=False).numpy() for n in noise])
    hole = 1.0 - masks
    want = (hole * (fills.mean(axis=0) - real) ** 2).sum(axis=(1, 2, 3)) / hole.sum(axis=(1, 2, 3))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert np.all(got > 0)


def test_a_draws_weight_adds_the_draws_loss_to_a_step(tiny_models, fashion_mnist_train_images):
    generator, _ = tiny_models
    real = tf.data.Dataset.from_tensors(fashion_mnist_train_images[:16] * 2 - 1)
    logs = {}
    for weight in (0.0, 1.0):
        keras.utils.set_random_seed(0)
        model = encoding.EncoderTraining(encoding.Encoder(28, 1, width=8), generator, seed=0, masks_per_kind=8,
                                         draws_weight=weight)
        model.compile()
        logs[weight] = {k: v[0] for k, v in model.fit(real, epochs=1, verbose=0).history.items()}
    assert "draws_mse" not in logs[0.0] and logs[1.0]["draws_mse"] > 0
    # Same seed, same first forward pass: the loss differs by exactly the draws' term.
    np.testing.assert_allclose(logs[1.0]["loss"], logs[0.0]["loss"] + logs[1.0]["draws_mse"], rtol=1e-5)
    with pytest.raises(ValueError, match="draws_weight"):
        encoding.EncoderTraining(encoding.Encoder(28, 1, width=8), generator, draws_weight=-1.0)


@pytest.mark.slow
def test_the_draws_loss_lowers_the_draws_error_on_held_out_images(tiny_models, fashion_mnist_train_images,
                                                                   validation_images):
    """Same start, same data, 200 steps: with the draws' loss the draws' mean errs less on the hole of
    real validation images (all four masks) than when E is trained for G(E) alone."""
    generator, _ = tiny_models
    real = fashion_mnist_train_images[:9600] * 2 - 1
    masks = tf.constant(_masks(len(validation_images), seed=900))
    noise = tf.constant(np.random.default_rng(3).normal(size=(8, len(validation_images), 100)).astype("float32"))
    errors = {}
    for weight in (0.0, 4.0):
        keras.utils.set_random_seed(4)
        model = encoding.EncoderTraining(encoding.Encoder(28, 1, width=16), generator, seed=4, masks_per_kind=64,
                                         draws_weight=weight)
        model.compile(keras.optimizers.Adam(1e-3))
        ds = tf.data.Dataset.from_tensor_slices(real).shuffle(9600, seed=4).batch(32).repeat()
        model.fit(ds, epochs=1, steps_per_epoch=200, verbose=0)
        z_hat = model.encoder(tf.constant(validation_images), masks)
        errors[weight] = model.draws_mse(z_hat, tf.constant(validation_images), masks, noise).numpy().mean()
    assert errors[4.0] < 0.95 * errors[0.0], errors  # measured: 0.209 against 0.241


@pytest.fixture(scope="module")
def trained_encoder(tiny_models, fashion_mnist_train_images):
    """E (width 16) trained 400 steps against the tiny G on real training images."""
    generator, _ = tiny_models
    keras.utils.set_random_seed(2)
    model = encoding.EncoderTraining(encoding.Encoder(28, 1, width=16), generator, seed=2, masks_per_kind=64)
    model.compile(keras.optimizers.Adam(1e-3))
    real = fashion_mnist_train_images[:9600] * 2 - 1
    ds = tf.data.Dataset.from_tensor_slices(real).shuffle(9600, seed=2).batch(32).repeat()
    model.fit(ds, epochs=1, steps_per_epoch=400, verbose=0)
    return model.encoder


@pytest.mark.slow
def test_encoders_z_is_a_better_start_than_a_random_z(tiny_models, trained_encoder, validation_images):
    """On real validation images, all four masks: lower context loss at 0 and after 20 search steps."""
    search = LatentSearch(*tiny_models)
    masks = _masks(len(validation_images), seed=500)
    images = tf.constant(validation_images)
    encoded = trained_encoder(images, tf.constant(masks))
    weights = importance_weights(masks, WINDOW)

    def context_loss(steps, guess):  # one start: the encoder's z, or uniform random (seed 7)
        tiled, w, state = search.prepare(images, tf.constant(masks), tf.constant(1), tf.constant(7), guess=guess)
        state = search.adam_steps(state, tiled, w, tf.constant(steps), tf.constant(0.0), tf.constant(0.03))
        return search.select_best(state, tiled, w, tf.constant(0.0), tf.constant(1))["context_loss"].numpy()

    for steps in (0, 20):
        losses = {"encoder": context_loss(steps, encoded), "random": context_loss(steps, None)}
        if steps == 0:  # the search's loss at z_0 is the weighted L1 of G(z_0)
            generated = search.generator(encoded, training=False)
            direct = tf.reduce_sum(weights * tf.abs(generated - images), axis=[1, 2, 3]).numpy()
            np.testing.assert_allclose(losses["encoder"], direct, rtol=1e-5)
        for k, kind in enumerate(MASK_TYPES):
            rows = slice(k, None, 4)
            assert losses["encoder"][rows].mean() < losses["random"][rows].mean(), (steps, kind, losses)
        assert losses["encoder"].mean() < 0.8 * losses["random"].mean(), (steps, losses)


TINY_GAN = training.TrainConfig(width=8, batch_size=16, epochs=1, steps_per_epoch=2, seed=3)


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("gan") / "run")
    training.train(dataclasses.replace(TINY_GAN, keep_checkpoints=0), out, verbose=0)
    return out


@pytest.mark.slow
def test_encoder_run_checkpoints_samples_final_model_and_resume(gan_run, tmp_path):
    out = str(tmp_path / "enc")
    config = encoding.EncoderConfig(generator=gan_run, width=8, batch_size=16, epochs=1, steps_per_epoch=2,
                                    validation_images=16, seed=1)
    first = encoding.train_encoder(config, out, verbose=0)
    assert sorted(os.listdir(out)) == ["checkpoints", "encoder.keras", "logs", "run.json", "samples",
                                       "sessions.json"]
    assert os.listdir(os.path.join(out, "samples")) == ["epoch_001.png"]
    images, masks = np.zeros((2, 28, 28, 1), np.float32), _masks(2)
    np.testing.assert_array_equal(encoding.load_encoder(out)(images, masks).numpy(),
                                  first.encoder(images, masks).numpy())
    with pytest.raises(training.TrainingError, match="--resume"):
        encoding.train_encoder(config, out, verbose=0)
    resumed = encoding.train_encoder(dataclasses.replace(config, epochs=2), out, resume=True, verbose=0)
    assert int(resumed.optimizer.iterations.numpy()) == 4  # 2 restored + 2 new
    assert [s["epochs"] for s in training.load_sessions(out)] == [[0, 1], [1, 2]]
    from_checkpoint = encoding.load_encoder(out, epoch=1)
    assert not np.array_equal(from_checkpoint(images, masks).numpy(), resumed.encoder(images, masks).numpy())


def test_bad_generator_is_a_clear_error(tmp_path, gan_run):
    with pytest.raises(training.TrainingError, match="neither a GAN run .* nor a DCGAN export"):
        encoding.train_encoder(encoding.EncoderConfig(generator=str(tmp_path)), str(tmp_path / "e"), verbose=0)
    with pytest.raises(training.TrainingError, match="no checkpoint of epoch 7"):
        encoding.train_encoder(encoding.EncoderConfig(generator=gan_run, generator_epoch=7),
                               str(tmp_path / "e2"), verbose=0)
    assert not os.path.exists(tmp_path / "e") and not os.path.exists(tmp_path / "e2")


def test_export_takes_only_an_encoder_of_the_exported_generator(gan_run, tmp_path):
    from tf_semantic_inpaint.errors import InpaintError
    from tf_semantic_inpaint.export import export

    other = tmp_path / "enc"
    os.makedirs(other)
    (other / "run.json").write_text(json.dumps(dataclasses.asdict(
        encoding.EncoderConfig(generator=str(tmp_path / "another_gan")))))
    with pytest.raises(InpaintError, match="was trained for the G of .*another_gan.*train-encoder --generator"):
        export(gan_run, str(tmp_path / "m"), encoder=str(other))
    assert not os.path.exists(tmp_path / "m")


@pytest.mark.slow
def test_an_encoder_for_a_shipped_model_whose_run_is_gone(gan_run, tmp_path):
    """train-encoder --generator EXPORT, then export EXPORT --encoder RUN: the new version serves
    the new encoder beside the export's own G and D, with the default DepthMix."""
    from tf_semantic_inpaint.errors import InpaintError
    from tf_semantic_inpaint.export import export, read_card
    from tf_semantic_inpaint.search import DepthMix

    plain = export(gan_run, str(tmp_path / "models"), version=1)  # no encoder
    out = str(tmp_path / "enc")
    config = encoding.EncoderConfig(generator=plain, width=8, batch_size=16, epochs=1, steps_per_epoch=2,
                                    validation_images=16, seed=1)
    trained = encoding.train_encoder(config, out, verbose=0)
    with pytest.raises(training.TrainingError, match="drop --generator-epoch"):
        encoding.train_encoder(dataclasses.replace(config, generator_epoch=1), str(tmp_path / "e2"), verbose=0)
    assert not os.path.exists(tmp_path / "e2")

    again = export(plain, str(tmp_path / "models"), version=2, encoder=out)
    card = read_card(again)
    assert card["encoder"]["generator"] == plain and card["encoder"]["training_sessions"][0]["epochs"] == [0, 1]
    assert card["search_fixed"]["encoder"] and card["search_fixed"]["mean_mix"] == dataclasses.asdict(DepthMix())
    assert card["search_defaults"]["warm_start"]
    images = np.random.default_rng(0).uniform(0, 1, (3, 28, 28, 1)).astype("float32")
    masks = _masks(3)
    old, new = tf.saved_model.load(plain), tf.saved_model.load(again)
    served = new.signatures["encode"](images=tf.constant(images), masks=tf.constant(masks))["z"].numpy()
    direct = trained.encoder(tf.constant(images * 2 - 1) * masks, tf.constant(masks)).numpy()
    np.testing.assert_allclose(served, direct, atol=1e-5)
    z = tf.constant(np.random.default_rng(1).uniform(-1, 1, (2, 100)).astype("float32"))
    np.testing.assert_array_equal(new.signatures["generate"](z=z)["images"].numpy(),
                                  old.signatures["generate"](z=z)["images"].numpy())

    # An encoder of another G (here: of the run the export came from) is refused, and nothing is written.
    other = tmp_path / "enc_of_run"
    os.makedirs(other)
    (other / "run.json").write_text(json.dumps(dataclasses.asdict(encoding.EncoderConfig(generator=gan_run))))
    with pytest.raises(InpaintError, match="was trained for the G of .*train-encoder --generator .*models/1"):
        export(plain, str(tmp_path / "models"), version=3, encoder=str(other))
    assert not os.path.exists(tmp_path / "models" / "3")


def test_a_negative_draws_weight_is_refused_before_anything_is_written(gan_run, tmp_path):
    config = encoding.EncoderConfig(generator=gan_run, draws_weight=-0.5)
    with pytest.raises(training.TrainingError, match="--draws-weight must be >= 0"):
        encoding.train_encoder(config, str(tmp_path / "e"), verbose=0)
    assert not os.path.exists(tmp_path / "e")
