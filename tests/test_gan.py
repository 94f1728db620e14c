"""The GAN's custom train_step under fit, and a distributed step equal to a local one."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tf_semantic_inpaint.gan import build_gan


def _dataset(n=32, batch=8, resolution=28):
    images = np.random.default_rng(0).uniform(-1, 1, (n, resolution, resolution, 1)).astype("float32")
    return tf.data.Dataset.from_tensor_slices(images).batch(batch)


def test_one_fit_step_changes_both_g_and_d():
    gan = build_gan(28, 1, width=8, seed=0)
    before_g = [w.numpy().copy() for w in gan.generator.trainable_weights]
    before_d = [w.numpy().copy() for w in gan.discriminator.trainable_weights]
    history = gan.fit(_dataset(), epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
    assert set(history.history) == {"d_loss", "g_loss", "d_real", "d_fake"}
    for name, values in history.history.items():
        assert np.isfinite(values[0]), name
    changed_g = [not np.array_equal(a, w.numpy()) for a, w in zip(before_g, gan.generator.trainable_weights)]
    changed_d = [not np.array_equal(a, w.numpy()) for a, w in zip(before_d, gan.discriminator.trainable_weights)]
    assert all(changed_g) and all(changed_d)
    assert int(gan.g_optimizer.iterations.numpy()) == 1
    assert int(gan.d_optimizer.iterations.numpy()) == 1


def _values(model):
    return [w.numpy().copy() for w in model.weights]


def test_ema_generator_is_the_moving_average_of_every_weight_of_g():
    """After a step: ema = d ema_before + (1 - d) G_after, batch-norm statistics included."""
    gan = build_gan(28, 1, width=8, seed=0, ema_decay=0.999)
    assert gan.inference_generator is gan.ema_generator
    assert not gan.ema_generator.trainable_weights  # only the average moves it
    for a, b in zip(_values(gan.ema_generator), _values(gan.generator)):
        np.testing.assert_array_equal(a, b)  # it starts as a copy of G

    def step_and_check(expected_decay):
        before = _values(gan.ema_generator)
        gan.fit(_dataset(), epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
        after_g, after_ema = _values(gan.generator), _values(gan.ema_generator)
        names = [w.path for w in gan.generator.weights]
        assert any("moving_mean" in n for n in names) and any("moving_variance" in n for n in names)
        for name, old, new, ema in zip(names, before, after_g, after_ema):
            assert not np.array_equal(old, new), f"{name} did not move, the check would be vacuous"
            np.testing.assert_allclose(
                ema, expected_decay * old + (1 - expected_decay) * new, rtol=1e-5, atol=1e-7, err_msg=name
            )

    step_and_check(0.1)  # the first update: warm-up decay (1 + 0) / (10 + 0)
    assert float(gan.ema_decay_after(4)) == pytest.approx(5 / 14)
    gan.g_optimizer.iterations.assign(100_000)  # long after the warm-up: the decay itself
    step_and_check(0.999)


def test_no_ema_means_the_raw_generator_is_the_inference_generator():
    gan = build_gan(28, 1, width=8, seed=0, ema_decay=0.0)
    assert gan.ema_generator is None and gan.inference_generator is gan.generator
    gan.fit(_dataset(), epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
    with pytest.raises(ValueError, match="ema_decay"):
        build_gan(28, 1, width=8, ema_decay=1.0)


def test_discriminator_learns_to_separate_real_from_generated():
    """A few steps on a fixed real batch: D(x) rises above D(G(z))."""
    gan = build_gan(28, 1, width=8, seed=0)
    real = np.zeros((16, 28, 28, 1), "float32")
    real[:, 7:21, 7:21] = 1.0  # a white square on black: easy to tell from G's noise
    history = gan.fit(tf.data.Dataset.from_tensors(real).repeat(), epochs=1, steps_per_epoch=15, verbose=0)
    assert history.history["d_real"][0] > history.history["d_fake"][0]


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tf_semantic_inpaint.gan import build_gan

    rng = np.random.default_rng(0)
    real = rng.uniform(-1, 1, (8, 28, 28, 1)).astype("float32")
    z = rng.uniform(-1, 1, (8, 100)).astype("float32")
    data = tf.data.Dataset.from_tensors((real, z))

    def one_step(strategy, data=data):
        with strategy.scope():
            gan = build_gan(28, 1, width=8, seed=0)
        init = np.load("init.npz")
        for i, w in enumerate(gan.generator.weights + gan.discriminator.weights):
            w.assign(init[f"w{i}"])
        for average, w in zip(gan.ema_generator.weights, gan.generator.weights):
            average.assign(w)  # the EMA starts from the same G as well
        gan.fit(data, epochs=1, verbose=0, shuffle=False)
        models = (gan.generator, gan.discriminator, gan.ema_generator)
        return [w.numpy() for m in models for w in m.weights]

    seed_gan = build_gan(28, 1, width=8, seed=0)
    np.savez("init.npz", **{f"w{i}": w.numpy() for i, w in
                            enumerate(seed_gan.generator.weights + seed_gan.discriminator.weights)})
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    a = one_step(tf.distribute.get_strategy())
    b = one_step(mirrored)
    init = np.load("init.npz")
    worst = max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))
    moved = max(float(np.max(np.abs(x - init[f"w{i}"]))) for i, x in enumerate(a[: len(init.files)]))
    print(f"max difference {worst:.3g}, max change {moved:.3g}")
    assert moved > 1e-4, "the step did not change the weights"
    assert worst < 1e-5, worst

    # With the noise drawn inside train_step: each replica takes its own slice of the
    # global batch's z, so the replicas see different z and the step is still the same.
    images_only = tf.data.Dataset.from_tensors(real)
    a = one_step(tf.distribute.get_strategy(), images_only)
    b = one_step(mirrored, images_only)
    worst = max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))
    print(f"max difference with internal noise {worst:.3g}")
    assert worst < 1e-5, worst
    """
)


def test_mirrored_strategy_step_equals_default_strategy(tmp_path):
    """Two logical CPU devices under MirroredStrategy: same weights as one device, with the
    noise given and with the noise drawn in train_step.

    Needs a fresh process: logical devices must be set before TensorFlow starts.
    """
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "max difference" in result.stdout
