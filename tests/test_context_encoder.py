"""The Context Encoder: network, channel-wise bottleneck, masks of every kind, training, runs."""

import dataclasses
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_semantic_inpaint import context_encoder as ce
from tf_semantic_inpaint import train as training
from tf_semantic_inpaint.images import read_image
from tf_semantic_inpaint.masks import MASK_TYPES, make_mask, missing_fraction

TINY_RUN = training.TrainConfig(model="context-encoder", resolution=28, channels=1, width=8, batch_size=16,
                                epochs=2, steps_per_epoch=3, seed=3)


@pytest.mark.parametrize("resolution, channels, bottleneck", [(28, 1, 7), (32, 3, 4), (48, 1, 6)])
def test_network_fills_any_dcgan_resolution(resolution, channels, bottleneck):
    network = ce.ContextEncoder(resolution, channels, width=8)
    assert network.encoder.compute_output_shape((None, resolution, resolution, channels + 1))[1] == bottleneck
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (2, resolution, resolution, channels)).astype(np.float32)
    masks = np.stack([make_mask("center", resolution, resolution)] * 2)
    generated = ce.fill(network, images, masks).numpy()
    assert generated.shape == images.shape


def test_config_round_trip_and_keras_file(tmp_path):
    network = ce.ContextEncoder(28, 1, width=8)
    clone = ce.ContextEncoder.from_config(network.get_config())
    assert (clone.resolution, clone.channels, clone.width) == (28, 1, 8)
    network.save(tmp_path / "f.keras")
    loaded = keras.saving.load_model(tmp_path / "f.keras")
    x = np.random.default_rng(1).uniform(-1, 1, (2, 28, 28, 2)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x).numpy(), network(x).numpy())


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="4, 5, 6 or 7 times a power of two"):
        ce.ContextEncoder(30, 1)
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        ce.ContextEncoder(28, 2)
    with pytest.raises(ValueError, match="disagree on image shape"):
        ce.build_context_encoder(28, 1, width=8).__class__(
            ce.ContextEncoder(28, 1, width=8), ce.Discriminator(32, 1, width=8))


def test_channelwise_dense_connects_every_position_within_a_channel_only():
    layer = ce.ChannelwiseDense()
    x = np.random.default_rng(0).normal(size=(1, 7, 7, 3)).astype(np.float32)
    base = layer(x).numpy()
    assert layer.kernel.shape == (3, 49, 49)  # C (HW)^2 weights, not (CHW)^2
    poked = x.copy()
    poked[0, 0, 0, 1] += 1.0  # one position of channel 1
    changed = np.abs(layer(poked).numpy() - base) > 1e-6
    assert changed[..., 1].all()  # every position of that channel sees it
    assert not changed[..., 0].any() and not changed[..., 2].any()  # no other channel does


def test_fill_never_reads_the_missing_pixels():
    network = ce.ContextEncoder(28, 1, width=8)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (3, 28, 28, 1)).astype(np.float32)
    masks = np.stack([make_mask(kind, 28, 28, seed=i) for i, kind in enumerate(("center", "random", "half"))])
    other = np.where(masks > 0.5, images, rng.uniform(-1, 1, images.shape)).astype(np.float32)
    np.testing.assert_array_equal(ce.fill(network, images, masks).numpy(), ce.fill(network, other, masks).numpy())
    # The mask is an input: the same pixels under another mask give another prediction.
    moved = np.stack([make_mask("pattern", 28, 28, seed=9)] * 3)
    assert not np.allclose(ce.fill(network, images * moved, moved).numpy(),
                           ce.fill(network, images * moved, masks * moved).numpy())


def test_fill_traces_in_a_graph_of_unknown_batch():
    network = ce.ContextEncoder(28, 1, width=8)
    spec = tf.TensorSpec([None, 28, 28, 1], tf.float32), tf.TensorSpec([None, 28, 28, 1], tf.float32)
    traced = tf.function(lambda images, masks: ce.fill(network, images, masks), input_signature=spec)
    images = np.zeros((5, 28, 28, 1), np.float32)
    assert traced(images, np.ones_like(images)).shape == (5, 28, 28, 1)


def test_training_masks_are_the_four_kinds_in_equal_shares_and_reproducible():
    masks = np.concatenate([ce.random_masks(0, b, 50, 28) for b in range(8)])
    assert masks.shape == (400, 28, 28, 1) and set(np.unique(masks)) == {0.0, 1.0}
    center = make_mask("center", 28, 28)
    kinds = []
    for m in masks:
        fraction = missing_fraction(m)
        if np.array_equal(m, center):
            kinds.append("center")
        elif fraction == pytest.approx(0.25, abs=1e-3):
            kinds.append("pattern")
        elif fraction == pytest.approx(0.8, abs=1e-3):
            kinds.append("random")
        else:
            assert fraction == 0.5 and (m[:, :14].min() == m[:, :14].max() or m[:14].min() == m[:14].max())
            kinds.append("half")
    shares = {k: kinds.count(k) / len(kinds) for k in MASK_TYPES}
    assert all(0.18 < share < 0.32 for share in shares.values()), shares  # 1/4 each, 400 draws
    # Fresh per image and per step, yet the same (seed, step) gives the same masks.
    drawn = [m.tobytes() for m, kind in zip(masks, kinds) if kind in ("pattern", "random")]
    assert len(set(drawn)) == len(drawn)
    halves = {m.tobytes() for m, kind in zip(masks, kinds) if kind == "half"}
    assert len(halves) == 4  # every side
    np.testing.assert_array_equal(ce.random_masks(0, 3, 50, 28), masks[150:200])
    assert not np.array_equal(ce.random_masks(1, 3, 50, 28), masks[150:200])


def test_mask_batches_pair_every_batch_with_new_masks_and_resume_in_step():
    images = tf.data.Dataset.from_tensor_slices(np.zeros((40, 28, 28, 1), np.float32)).batch(8, drop_remainder=True)
    batches = list(ce.mask_batches(images, seed=2).as_numpy_iterator())
    assert len(batches) == 5
    assert all(x.shape == (8, 28, 28, 1) and m.shape == (8, 28, 28, 1) for x, m in batches)
    assert not np.array_equal(batches[0][1], batches[1][1])
    resumed = list(ce.mask_batches(images, seed=2, first_batch=3).as_numpy_iterator())
    np.testing.assert_array_equal(resumed[0][1], batches[3][1])


def _real_batches(images, batch=32):
    data = tf.data.Dataset.from_tensor_slices(images * 2.0 - 1.0).shuffle(len(images), seed=0)
    return ce.mask_batches(data.batch(batch, drop_remainder=True).repeat(), seed=0)


def test_one_step_updates_f_and_d_and_reports_the_losses(fashion_mnist_train_images):
    model = ce.build_context_encoder(28, 1, width=8)
    before_f = [w.numpy().copy() for w in model.generator.trainable_weights]
    before_d = [w.numpy().copy() for w in model.discriminator.trainable_weights]
    history = model.fit(_real_batches(fashion_mnist_train_images[:64]), epochs=1, steps_per_epoch=1, verbose=0)
    assert set(history.history) == {"rec_loss", "adv_loss", "d_loss", "hole_mse"}
    assert all(np.isfinite(v[0]) for v in history.history.values())
    assert all(not np.array_equal(a, w.numpy()) for a, w in zip(before_f, model.generator.trainable_weights))
    assert all(not np.array_equal(a, w.numpy()) for a, w in zip(before_d, model.discriminator.trainable_weights))


def test_reconstruction_loss_weighs_missing_pixels_one_and_known_pixels_less():
    model = ce.build_context_encoder(28, 1, width=8, known_weight=0.1)
    images = np.zeros((1, 28, 28, 1), np.float32)
    masks = make_mask("center", 28, 28)[np.newaxis]
    error_in_hole = np.where(masks == 0, 1.0, 0.0).astype(np.float32)
    error_outside = np.where(masks == 1, 1.0, 0.0).astype(np.float32)
    assert float(model.reconstruction_loss(images, masks, error_in_hole)[0]) == pytest.approx(1.0)
    assert float(model.reconstruction_loss(images, masks, error_outside)[0]) == pytest.approx(0.1)


@pytest.mark.slow
def test_training_on_real_images_fills_holes_better_than_the_start(fashion_mnist_train_images,
                                                                   fashion_mnist_test_images):
    """200 steps of the tiny network: held-out holes get closer to the truth than at the start."""
    keras.utils.set_random_seed(0)
    model = ce.build_context_encoder(28, 1, width=8, learning_rate=1e-3)
    truth = fashion_mnist_test_images * 2.0 - 1.0
    masks = np.stack([make_mask(MASK_TYPES[i % 4], 28, 28, seed=i) for i in range(len(truth))])

    def hole_error():
        generated = ce.fill(model.generator, truth, masks).numpy()
        return float(np.sum((1 - masks) * (generated - truth) ** 2) / np.sum(1 - masks))

    before = hole_error()
    model.fit(_real_batches(fashion_mnist_train_images[:9600]), epochs=1, steps_per_epoch=200, verbose=0)
    assert hole_error() < 0.5 * before


# --- Runs through `train` ------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("runs") / "ce")
    return out, training.train(TINY_RUN, out, verbose=0)


def _state(model):
    return [w.numpy() for m in (model.generator, model.discriminator) for w in m.weights] + [
        v.numpy() for opt in (model.g_optimizer, model.d_optimizer) for v in opt.variables]


def test_run_directory_like_the_dcgans(run):
    out, model = run
    assert isinstance(model, ce.ContextEncoderGAN)
    assert sorted(os.listdir(out)) == [
        "checkpoints", "discriminator.keras", "generator.keras", "logs", "run.json", "samples", "sessions.json"
    ]
    config = training.load_run_config(out)
    assert config.model == "context-encoder"  # and the defaults it trained with, written out:
    assert (config.learning_rate, config.known_weight, config.adversarial_weight) == (
        ce.LEARNING_RATE, ce.KNOWN_WEIGHT, ce.ADVERSARIAL_WEIGHT)
    assert isinstance(keras.saving.load_model(os.path.join(out, "generator.keras")), ce.ContextEncoder)
    assert sorted(os.listdir(os.path.join(out, "samples"))) == ["epoch_001.png", "epoch_002.png"]
    grid = read_image(os.path.join(out, "samples", "epoch_002.png"))
    # 16 validation images as masked | completed | truth, two triples a row, enlarged x2.
    assert grid.shape[:2] == (8 * (56 + 2) + 2, 6 * (56 + 2) + 2) and grid.std() > 0.05
    assert any(f.startswith("events.out.tfevents") for _, _, fs in os.walk(os.path.join(out, "logs")) for f in fs)


def test_checkpoint_restores_every_weight_and_optimizer_slot(run):
    out, model = run
    restored, config, epoch = training.restore_gan(out)
    assert epoch == 2 and config.model == "context-encoder"
    for a, b in zip(_state(model), _state(restored)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(tmp_path):
    out = str(tmp_path / "run")
    first = training.train(dataclasses.replace(TINY_RUN, epochs=1), out, verbose=0)
    after_one = _state(first)
    resumed = training.train(TINY_RUN, out, resume=True, verbose=0)
    assert int(resumed.g_optimizer.iterations.numpy()) == 6  # 3 restored + 3 new
    checkpoints = tf.train.get_checkpoint_state(os.path.join(out, "checkpoints")).all_model_checkpoint_paths
    again = training.build_model(TINY_RUN)
    training.checkpoint_for(again).restore(checkpoints[0]).assert_existing_objects_matched()
    for a, b in zip(after_one, _state(again)):
        np.testing.assert_array_equal(a, b)
    assert [s["epochs"] for s in training.load_sessions(out)] == [[0, 1], [1, 2]]


def test_resume_as_another_model_and_misplaced_settings_are_refused(run, tmp_path):
    out, _ = run
    with pytest.raises(training.TrainingError, match="model: context-encoder there, dcgan here"):
        training.train(dataclasses.replace(TINY_RUN, model="dcgan"), out, resume=True, verbose=0)
    with pytest.raises(training.TrainingError, match="--known-weight.*--model context-encoder"):
        training.train(training.TrainConfig(known_weight=0.5), str(tmp_path / "x"), verbose=0)
    with pytest.raises(training.TrainingError, match="unknown --model 'vae'"):
        training.train(training.TrainConfig(model="vae"), str(tmp_path / "x"), verbose=0)
    assert not os.path.exists(tmp_path / "x")


def test_cli_refuses_context_encoder_settings_for_a_dcgan(tmp_path):
    from click.testing import CliRunner

    from tf_semantic_inpaint.cli import main

    result = CliRunner().invoke(main, ["train", "--known-weight", "2", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "Error: --known-weight set(s) the context encoder's training; add --model context-encoder." in result.output
    assert not os.path.exists(tmp_path / "run")


# --- Export: the DCGAN model's contract --------------------------------------------------


CE_SIGNATURES = ["inpaint", "inpaint_png", "inpaint_png_with_options", "inpaint_png_with_refinement",
                 "inpaint_png_with_settings", "inpaint_with_options", "inpaint_with_refinement",
                 "inpaint_with_settings", "limits", "serving_default"]


def test_export_card_says_what_it_is_and_that_it_does_not_search(tiny_context_encoder_export):
    from tf_semantic_inpaint.export import read_card

    base, _ = tiny_context_encoder_export
    card = read_card(os.path.join(base, "1"))
    assert card["model"] == "context-encoder" and card["z_dim"] == 0 and card["width"] == 8
    assert card["search_defaults"]["iterations"] == 0 and card["search_defaults"]["restarts"] == 1
    assert card["training_settings"] == {"learning_rate": 1e-3, "known_weight": 1.0, "adversarial_weight": 0.001}
    assert card["signatures"] == CE_SIGNATURES  # no generate / discriminate: no z, no D served


def test_inpaint_signature_is_f_pasted_into_the_hole(tiny_context_encoder, tiny_context_encoder_export,
                                                     fashion_mnist_test_images):
    from tf_semantic_inpaint.masks import importance_weights
    from tf_semantic_inpaint.search import WINDOW

    base, _ = tiny_context_encoder_export
    loaded = tf.saved_model.load(os.path.join(base, "1"))
    images = fashion_mnist_test_images[:4]
    masks = np.stack([make_mask(kind, 28, 28, seed=i) for i, kind in enumerate(MASK_TYPES)])
    out = loaded.signatures["inpaint"](images=tf.constant(images), masks=tf.constant(masks))
    assert sorted(out) == ["completed", "context_loss", "generated", "mean", "prior_loss", "z"]
    expected = ce.fill(tiny_context_encoder.generator, images * 2 - 1, masks).numpy()
    np.testing.assert_allclose(out["generated"].numpy(), np.clip(expected * 0.5 + 0.5, 0, 1), atol=1e-5)
    np.testing.assert_array_equal(out["mean"].numpy(), out["generated"].numpy())  # F predicts the mean
    completed = out["completed"].numpy()
    np.testing.assert_array_equal(completed[masks == 1], images[masks == 1])
    np.testing.assert_array_equal(completed[masks == 0], out["generated"].numpy()[masks == 0])
    assert out["z"].shape == (4, 0)
    np.testing.assert_array_equal(out["prior_loss"].numpy(), np.zeros(4))
    weights = importance_weights(masks, WINDOW).numpy()
    context = np.sum(weights * np.abs(expected - (images * 2 - 1)), axis=(1, 2, 3))
    np.testing.assert_allclose(out["context_loss"].numpy(), context, rtol=1e-4)
    # Search settings are accepted, checked and change nothing.
    other = loaded.signatures["inpaint_with_settings"](
        images=tf.constant(images), masks=tf.constant(masks), iterations=tf.constant(50), lam=tf.constant(0.1),
        learning_rate=tf.constant(0.5), restarts=tf.constant(3), seed=tf.constant(7))
    np.testing.assert_array_equal(other["completed"].numpy(), completed)


def test_library_paths_run_it_like_the_dcgan_model(tiny_context_encoder_export, fashion_mnist_test_images):
    """tfinpaint inpaint's path (PNGs of any size through LocalModel), and the array search."""
    import cv2

    from tf_semantic_inpaint.inpaint import inpaint_batch
    from tf_semantic_inpaint.local import LocalModel

    base, _ = tiny_context_encoder_export
    model = LocalModel(base)
    assert (model.resolution, model.channels, model.z_dim) == (28, 1, 0)
    assert (model.defaults.iterations, model.defaults.restarts) == (0, 1)
    big = np.clip(cv2.resize(fashion_mnist_test_images[6], (45, 60), interpolation=cv2.INTER_CUBIC), 0, 1)[..., None]
    mask = make_mask("center", 60, 45, seed=0)
    (result,) = inpaint_batch([big], [mask], model=model)
    assert result.output.shape == (60, 45, 1) and result.z.shape == (0,)
    known = mask[..., 0] == 1
    np.testing.assert_allclose(result.output[known], big[known], atol=1 / 255)
    assert np.abs(result.generated - big)[~known].mean() < 0.3  # a garment, not noise
    found = model.search(fashion_mnist_test_images[:2], np.stack([make_mask("half", 28, 28, seed=1)] * 2))
    assert found["completed"].shape == (2, 28, 28, 1) and found["z"].shape == (2, 0)


def test_it_gives_one_completion_and_refuses_more_or_a_warm_start(tiny_context_encoder_export,
                                                                   fashion_mnist_test_images):
    base, _ = tiny_context_encoder_export
    fn = tf.saved_model.load(os.path.join(base, "1")).signatures["inpaint_with_options"]
    images = tf.constant(fashion_mnist_test_images[:2])
    masks = tf.constant(np.stack([make_mask("center", 28, 28)] * 2))
    ok = dict(iterations=tf.constant(0), lam=tf.constant(0.0), learning_rate=tf.constant(0.1), restarts=tf.constant(4),
              seed=tf.constant(0), samples=tf.constant(1), window=tf.constant(15), warm_start=tf.constant(0))
    out = fn(images=images, masks=masks, **ok)
    assert out["samples"].shape == (2, 1, 28, 28, 1)
    np.testing.assert_array_equal(out["samples"].numpy()[:, 0], out["generated"].numpy())
    with pytest.raises(tf.errors.InvalidArgumentError, match="got 2; this model gives one completion per image"):
        fn(images=images, masks=masks, **{**ok, "samples": tf.constant(2)})
    with pytest.raises(tf.errors.InvalidArgumentError, match="warm_start = 1 needs an encoder"):
        fn(images=images, masks=masks, **{**ok, "warm_start": tf.constant(1)})


def test_served_over_rest_like_the_dcgan_model(tiny_context_encoder_export, fashion_mnist_test_images):
    from tf_semantic_inpaint import client, devserver
    from tf_semantic_inpaint.local import LocalModel

    base, _ = tiny_context_encoder_export
    server = devserver.make_server(base, port=0, quiet=True).start()
    try:
        rest = client.RestModel(server.url, "ce")
        images = fashion_mnist_test_images[:3]
        masks = np.stack([make_mask(kind, 28, 28, seed=2) for kind in ("center", "pattern", "random")])
        remote, here = rest.search(images, masks), LocalModel(base).search(images, masks)
        assert set(remote) == set(here) and remote["z"].shape == (3, 0)
        for key in here:
            np.testing.assert_allclose(remote[key], here[key], rtol=0, atol=1e-6)
    finally:
        server.stop()


STANDALONE = """
import sys
sys.modules["tf_semantic_inpaint"] = None  # this package must not be needed
import numpy as np, tensorflow as tf
path, png = sys.argv[1], open(sys.argv[2], "rb").read()
mask_png = open(sys.argv[3], "rb").read()
images = np.random.default_rng(0).uniform(0, 1, (2, 28, 28, 1)).astype(np.float32)
masks = np.ones((2, 28, 28, 1), np.float32); masks[:, 7:21, 7:21] = 0
out2 = tf.saved_model.load(path).signatures["inpaint"](images=tf.constant(images), masks=tf.constant(masks))
tf.compat.v1.disable_eager_execution()
with tf.compat.v1.Session(graph=tf.Graph()) as sess:  # the TF1 loader, as TensorFlow Serving's
    meta = tf.compat.v1.saved_model.load(sess, ["serve"], path)
    sig = meta.signature_def["serving_default"]
    fetch = {k: v.name for k, v in sig.outputs.items()}
    out1 = sess.run(fetch, {sig.inputs["images"].name: images, sig.inputs["masks"].name: masks})
    try:
        sess.run(fetch, {sig.inputs["images"].name: images, sig.inputs["masks"].name: 0 * masks})
        raise SystemExit("an all-missing mask was accepted")
    except tf.errors.InvalidArgumentError as error:
        assert "no context to condition on" in error.message
    sig = meta.signature_def["inpaint_png"]
    out_png = sess.run({k: v.name for k, v in sig.outputs.items()},
                       {sig.inputs["image_png"].name: [png], sig.inputs["mask_png"].name: [mask_png]})
assert np.allclose(out1["completed"], out2["completed"].numpy(), atol=1e-6), "TF1 and TF2 loaders disagree"
assert out1["z"].shape == (2, 0) and not out1["prior_loss"].any()
completed_png = out_png["completed_png_bytes"][0]
assert completed_png.startswith(b"\\x89PNG")
print("ok", out1["completed"].shape, int.from_bytes(completed_png[16:20], "big"),  # IHDR width, height
      int.from_bytes(completed_png[20:24], "big"))
"""


def test_loads_and_runs_without_this_package_under_both_loaders(tiny_context_encoder_export, tmp_path,
                                                                fashion_mnist_test_images):
    import subprocess
    import sys

    from tf_semantic_inpaint.images import encode_png
    from tf_semantic_inpaint.masks import write_mask

    base, _ = tiny_context_encoder_export
    (tmp_path / "image.png").write_bytes(encode_png(fashion_mnist_test_images[0]))
    write_mask(str(tmp_path / "mask.png"), make_mask("center", 28, 28))
    result = subprocess.run(
        [sys.executable, "-c", STANDALONE, os.path.join(base, "1"), str(tmp_path / "image.png"),
         str(tmp_path / "mask.png")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ok (2, 28, 28, 1) 28 28" in result.stdout
