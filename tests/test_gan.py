"""The GAN's custom train_step under fit, and a distributed step equal to a local one."""

import os
import subprocess
import sys
import textwrap

import numpy as np
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
    assert 0.0 <= history.history["d_real"][0] <= 1.0
    changed_g = [not np.array_equal(a, w.numpy()) for a, w in zip(before_g, gan.generator.trainable_weights)]
    changed_d = [not np.array_equal(a, w.numpy()) for a, w in zip(before_d, gan.discriminator.trainable_weights)]
    assert all(changed_g) and all(changed_d)
    assert int(gan.g_optimizer.iterations.numpy()) == 1
    assert int(gan.d_optimizer.iterations.numpy()) == 1


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
        gan.fit(data, epochs=1, verbose=0, shuffle=False)
        return [w.numpy() for w in gan.generator.weights + gan.discriminator.weights]

    seed_gan = build_gan(28, 1, width=8, seed=0)
    np.savez("init.npz", **{f"w{i}": w.numpy() for i, w in
                            enumerate(seed_gan.generator.weights + seed_gan.discriminator.weights)})
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    a = one_step(tf.distribute.get_strategy())
    b = one_step(mirrored)
    init = np.load("init.npz")
    worst = max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))
    moved = max(float(np.max(np.abs(x - init[f"w{i}"]))) for i, x in enumerate(a))
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
