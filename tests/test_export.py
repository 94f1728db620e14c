"""The SavedModel for TF Serving: layout, versions, every signature, both loaders."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tf_semantic_inpaint import export as exporting
from tf_semantic_inpaint.images import decode_image, encode_png
from tf_semantic_inpaint.masks import make_mask
from tf_semantic_inpaint.search import SearchSettings
from tf_semantic_inpaint.train import TrainConfig

SETTINGS = SearchSettings(iterations=25, restarts=2, learning_rate=0.05, seed=5)
SIGNATURES = ["discriminate", "generate", "inpaint", "inpaint_png", "inpaint_with_settings", "serving_default"]


@pytest.fixture(scope="module")
def run_dir(tiny_models, tmp_path_factory):
    """A training run directory as `tfinpaint train` leaves it (final models + run.json)."""
    run = tmp_path_factory.mktemp("run")
    generator, discriminator = tiny_models
    generator.save(run / "generator.keras")
    discriminator.save(run / "discriminator.keras")
    config = TrainConfig(width=8, epochs=3, command="tfinpaint train --width 8 --epochs 3 --out run")
    (run / "run.json").write_text(json.dumps(dataclasses.asdict(config)))
    return str(run)


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("models") / "fmnist")
    path = exporting.export(run_dir, base, settings=SETTINGS, notes={"training_time_s": 12.5})
    return base, path


def _images_and_masks(images, kind="center"):
    masks = np.stack([make_mask(kind, 28, 28, seed=i) for i in range(len(images))])
    return images.astype(np.float32), masks


def test_layout_and_model_card(exported):
    base, path = exported
    assert path == os.path.join(base, "1")
    assert sorted(os.listdir(base)) == ["1"]  # no temporary directories left behind
    assert {"saved_model.pb", "variables", "model_card.json"} <= set(os.listdir(path))
    card = exporting.read_card(path)
    assert card["resolution"] == 28 and card["channels"] == 1 and card["z_dim"] == 100
    assert card["dataset"] == "fashion_mnist" and card["epochs"] == 3
    assert card["training_command"].startswith("tfinpaint train")
    assert card["search_defaults"] == dataclasses.asdict(SETTINGS)
    assert card["training_time_s"] == 12.5
    assert card["signatures"] == SIGNATURES


def test_versions_are_never_overwritten_without_force(run_dir, tmp_path):
    base = str(tmp_path / "m")
    assert exporting.export(run_dir, base, settings=SETTINGS).endswith("/1")
    assert exporting.export(run_dir, base, settings=SETTINGS).endswith("/2")
    before = os.path.getmtime(os.path.join(base, "1", "saved_model.pb"))
    with pytest.raises(exporting.ExportError, match="--force"):
        exporting.export(run_dir, base, version=1, settings=SETTINGS)
    assert os.path.getmtime(os.path.join(base, "1", "saved_model.pb")) == before
    exporting.export(run_dir, base, version=1, force=True, settings=dataclasses.replace(SETTINGS, seed=9))
    assert exporting.read_card(os.path.join(base, "1"))["search_defaults"]["seed"] == 9
    assert sorted(os.listdir(base)) == ["1", "2"]


def test_run_without_final_models_exports_its_newest_checkpoint(tmp_path):
    from tf_semantic_inpaint import train as training

    out = str(tmp_path / "run")
    config = TrainConfig(width=8, batch_size=16, epochs=1, steps_per_epoch=2)
    gan = training.train(config, out, verbose=0)
    os.remove(os.path.join(out, "generator.keras"))  # as if interrupted before the end
    path = exporting.export(out, str(tmp_path / "m"), settings=SETTINGS)
    card = exporting.read_card(path)
    assert [s["epochs"] for s in card["training_sessions"]] == [[0, 1]]
    assert card["training_seconds"] == card["training_sessions"][0]["seconds"] >= 0
    loaded = tf.saved_model.load(path)
    z = np.random.default_rng(0).uniform(-1, 1, (2, 100)).astype(np.float32)
    np.testing.assert_allclose(
        loaded.signatures["generate"](z=tf.constant(z))["images"].numpy(),
        np.clip(gan.ema_generator(z).numpy() * 0.5 + 0.5, 0, 1), atol=1e-6,
    )  # the moving average of G is what is exported
    assert card["ema_decay"] == 0.999
    raw, _, _ = exporting.load_trained_models(out, raw=True)  # the last iterate stays reachable
    np.testing.assert_array_equal(raw(z).numpy(), gan.generator(z).numpy())


def test_not_a_run_directory_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match="run.json"):
        exporting.export(str(tmp_path), str(tmp_path / "m"))


def test_every_signature_in_process(exported, tiny_models, fashion_mnist_test_images):
    _, path = exported
    generator, discriminator = tiny_models
    loaded = tf.saved_model.load(path)
    assert sorted(loaded.signatures.keys()) == SIGNATURES
    images, masks = _images_and_masks(fashion_mnist_test_images[:3])
    out = loaded.signatures["inpaint"](images=tf.constant(images), masks=tf.constant(masks))
    assert sorted(out) == ["completed", "context_loss", "generated", "prior_loss", "z"]
    completed, generated = out["completed"].numpy(), out["generated"].numpy()
    assert completed.shape == generated.shape == (3, 28, 28, 1)
    assert generated.min() >= 0 and generated.max() <= 1
    np.testing.assert_array_equal(completed[masks == 1], images[masks == 1])
    np.testing.assert_array_equal(completed[masks == 0], generated[masks == 0])
    # serving_default is inpaint; inpaint_with_settings with the baked defaults is too.
    default = loaded.signatures["serving_default"](images=tf.constant(images), masks=tf.constant(masks))
    np.testing.assert_array_equal(default["z"].numpy(), out["z"].numpy())
    explicit = loaded.signatures["inpaint_with_settings"](
        images=tf.constant(images), masks=tf.constant(masks), iterations=tf.constant(25),
        lam=tf.constant(0.003), learning_rate=tf.constant(0.05), restarts=tf.constant(2), seed=tf.constant(5),
    )
    np.testing.assert_array_equal(explicit["z"].numpy(), out["z"].numpy())
    # generate and discriminate are G and D in [0, 1] image space.
    z = out["z"]
    np.testing.assert_allclose(
        loaded.signatures["generate"](z=z)["images"].numpy(), generated, atol=1e-6
    )
    logits = loaded.signatures["discriminate"](images=tf.constant(images))["logits"].numpy()
    np.testing.assert_allclose(logits, discriminator(images * 2 - 1).numpy()[:, 0], rtol=1e-4, atol=1e-5)


def test_png_signature_on_a_real_image_of_another_size(exported, fashion_mnist_test_images):
    _, path = exported
    loaded = tf.saved_model.load(path)
    import cv2

    image = cv2.resize(fashion_mnist_test_images[0], (45, 60), interpolation=cv2.INTER_CUBIC)[..., None]
    image = np.clip(image, 0, 1)
    mask = make_mask("center", 60, 45, seed=0)
    mask_png = cv2.imencode(".png", ((1 - mask[..., 0]) * 255).astype(np.uint8))[1].tobytes()
    out = loaded.signatures["inpaint_png"](
        image_png=tf.constant([encode_png(image)]), mask_png=tf.constant([mask_png])
    )
    completed = decode_image(out["completed_png_bytes"].numpy()[0])
    generated = decode_image(out["generated_png_bytes"].numpy()[0])
    assert completed.shape == generated.shape == (60, 45, 1)
    known = mask[..., 0] == 1
    np.testing.assert_array_equal(
        np.round(completed[known] * 255), np.round(image[known] * 255)
    )
    assert np.abs(completed[~known] - image[~known]).mean() > 0  # the hole was filled anew


def test_wrong_input_is_an_invalid_argument(exported):
    _, path = exported
    loaded = tf.saved_model.load(path)
    fn = loaded.signatures["inpaint"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="same batch size"):
        fn(images=tf.zeros((2, 28, 28, 1)), masks=tf.ones((3, 28, 28, 1)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="no context"):
        fn(images=tf.zeros((1, 28, 28, 1)), masks=tf.zeros((1, 28, 28, 1)))
    png = loaded.signatures["inpaint_png"]
    with pytest.raises(tf.errors.InvalidArgumentError):
        png(image_png=tf.constant([b"not a png"]), mask_png=tf.constant([b"nor this"]))
    small = encode_png(np.zeros((10, 10, 1), np.float32))
    big = encode_png(np.zeros((12, 10, 1), np.float32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="differ in size"):
        png(image_png=tf.constant([small]), mask_png=tf.constant([big]))


STANDALONE = textwrap.dedent(
    """
    import sys
    sys.modules["tf_semantic_inpaint"] = None  # this package must not be needed
    import numpy as np, tensorflow as tf
    path = sys.argv[1]
    try:
        import tf_semantic_inpaint  # noqa
        raise SystemExit("the package was importable")
    except ImportError:
        pass
    images = np.random.default_rng(0).uniform(0, 1, (2, 28, 28, 1)).astype(np.float32)
    masks = np.ones((2, 28, 28, 1), np.float32); masks[:, 7:21, 7:21] = 0

    # TF2 loading
    loaded = tf.saved_model.load(path)
    out2 = loaded.signatures["inpaint"](images=tf.constant(images), masks=tf.constant(masks))
    print("tf2", sorted(loaded.signatures.keys()))

    # The TF1 session loader, which TensorFlow Serving uses.
    tf.compat.v1.disable_eager_execution()
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        meta = tf.compat.v1.saved_model.load(sess, ["serve"], path)
        sig = meta.signature_def["inpaint"]
        fetch = {k: v.name for k, v in sig.outputs.items()}
        feed = {sig.inputs["images"].name: images, sig.inputs["masks"].name: masks}
        out1 = sess.run(fetch, feed)
        for name in ("generate", "discriminate", "inpaint_with_settings", "inpaint_png"):
            assert name in meta.signature_def, name
        bad = {sig.inputs["images"].name: images, sig.inputs["masks"].name: np.zeros_like(masks)}
        try:
            sess.run(fetch, bad)
            raise SystemExit("an all-missing mask was accepted")
        except tf.errors.InvalidArgumentError as error:
            assert "no context to condition on" in error.message
    assert np.array_equal(out1["z"], out2["z"].numpy()), "TF1 and TF2 loaders disagree"
    print("tf1 ok", out1["completed"].shape)
    """
)


def test_loads_and_runs_without_this_package_under_both_loaders(exported):
    _, path = exported
    result = subprocess.run([sys.executable, "-c", STANDALONE, path], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tf1 ok (2, 28, 28, 1)" in result.stdout


def _saved_model_cli():
    return os.path.join(os.path.dirname(sys.executable), "saved_model_cli")


def test_saved_model_cli_show_and_run(exported, tmp_path, fashion_mnist_test_images):
    _, path = exported
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    show = subprocess.run([_saved_model_cli(), "show", "--dir", path, "--all"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert show.returncode == 0, show.stderr[-2000:]
    for name in SIGNATURES:
        assert f"signature_def['{name}']" in show.stdout
    assert "inputs['image_png'] tensor_info:\n        dtype: DT_STRING" in show.stdout
    images, masks = _images_and_masks(fashion_mnist_test_images[:2])
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "masks.npy", masks)
    run = subprocess.run(
        [_saved_model_cli(), "run", "--dir", path, "--tag_set", "serve", "--signature_def", "inpaint",
         "--inputs", f"images={tmp_path / 'images.npy'};masks={tmp_path / 'masks.npy'}",
         "--outdir", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    completed = np.load(tmp_path / "out" / "completed.npy")
    assert completed.shape == (2, 28, 28, 1)
    np.testing.assert_array_equal(completed[masks == 1], images[masks == 1])
