"""The judge: a classifier trained by the package, exported for the semantic metrics."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from tf_semantic_inpaint import judge as judging
from tf_semantic_inpaint import train as training


def test_network_gives_logits_and_penultimate_features_at_any_resolution():
    for resolution, channels in ((28, 1), (32, 3), (10, 1)):
        judge = judging.Judge(resolution, channels, classes=7)
        images = np.zeros((3, resolution, resolution, channels), np.float32)
        assert judge(images).shape == (3, 7)
        assert judge.features(images).shape == (3, judging.FEATURES)
    clone = judging.Judge.from_config(judge.get_config())
    assert (clone.resolution, clone.channels, clone.classes) == (10, 1, 7)


def test_training_run_reaches_far_above_chance_on_real_test_images(tiny_judge_run, fashion_mnist_test_images):
    """150 steps (9,600 images): the held-out accuracy is far above the 10% of guessing."""
    out, judge = tiny_judge_run
    assert sorted(os.listdir(out)) == ["checkpoints", "judge.keras", "logs", "run.json", "sessions.json"]
    accuracy = judging.accuracy(judge, "fashion_mnist", "test")
    assert accuracy > 0.6, accuracy
    # judge.keras and the newest checkpoint are the trained judge.
    loaded, config, epochs = judging.load_trained_judge(out)
    restored, _, _ = training.restore_gan(out)
    x = fashion_mnist_test_images * 2 - 1
    np.testing.assert_allclose(loaded(x).numpy(), judge(x).numpy(), atol=1e-5)
    np.testing.assert_allclose(restored(x).numpy(), judge(x).numpy(), atol=1e-5)
    assert int(restored.optimizer.iterations.numpy()) == 150 and config.model == "judge" and epochs == 1


def test_a_dataset_without_labels_is_refused_before_anything_is_written(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    keras.utils.save_img(folder / "a.png", np.zeros((8, 8, 3)))
    with pytest.raises(training.TrainingError, match="no class labels"):
        training.train(training.TrainConfig(model="judge", dataset=str(folder)), str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")


def test_export_has_a_card_and_the_classify_signature(tiny_judge_run, tiny_judge_export, fashion_mnist_test_images):
    _, judge = tiny_judge_run
    path = os.path.join(tiny_judge_export, "1")
    with open(os.path.join(path, "model_card.json")) as f:
        card = json.load(f)
    assert card["kind"] == "judge" and card["class_names"][0] == "T-shirt/top" and len(card["class_names"]) == 10
    assert card["training_command"].startswith("tfinpaint train --model judge")
    assert card["accuracy"]["test"] == pytest.approx(judging.accuracy(judge, "fashion_mnist", "test"), abs=1e-4)
    assert card["signatures"] == ["classify", "serving_default"]
    loaded = judging.LoadedJudge(tiny_judge_export)
    logits, features = loaded.classify(fashion_mnist_test_images)
    x = fashion_mnist_test_images * 2 - 1
    np.testing.assert_allclose(logits, judge(x).numpy(), atol=1e-4)
    np.testing.assert_allclose(features, judge.features(x).numpy(), atol=1e-4)


def test_a_model_that_is_not_a_judge_is_refused(tiny_export):
    from tf_semantic_inpaint.errors import InpaintError

    with pytest.raises(InpaintError, match="not a judge"):
        judging.LoadedJudge(tiny_export)


STANDALONE = textwrap.dedent(
    """
    import sys
    sys.modules["tf_semantic_inpaint"] = None  # the judge must load without this package
    import numpy as np, tensorflow as tf
    path = sys.argv[1]
    images = np.load(sys.argv[2])
    loaded = tf.saved_model.load(path)
    out2 = loaded.signatures["classify"](images=tf.constant(images))
    assert out2["features"].shape == (len(images), 128)
    tf.compat.v1.disable_eager_execution()
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        meta = tf.compat.v1.saved_model.load(sess, ["serve"], path)
        sig = meta.signature_def["serving_default"]
        out1 = sess.run({k: v.name for k, v in sig.outputs.items()}, {sig.inputs["images"].name: images})
    assert np.allclose(out1["logits"], out2["logits"].numpy(), atol=1e-5), "TF1 and TF2 loaders disagree"
    print("classes", out1["classes"].tolist())
    """
)


def test_judge_loads_without_this_package_under_both_loaders(tiny_judge_export, fashion_mnist_test_images, tmp_path):
    np.save(tmp_path / "images.npy", fashion_mnist_test_images[:8])
    result = subprocess.run(
        [sys.executable, "-c", STANDALONE, os.path.join(tiny_judge_export, "1"), str(tmp_path / "images.npy")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = judging.LoadedJudge(tiny_judge_export)
    expected = np.argmax(loaded.classify(fashion_mnist_test_images[:8])[0], axis=-1).tolist()
    assert f"classes {expected}" in result.stdout


@pytest.mark.slow
def test_cli_trains_and_exports_a_judge(tmp_path):
    from click.testing import CliRunner

    from tf_semantic_inpaint.cli import main

    run, base = str(tmp_path / "run"), str(tmp_path / "judge")
    result = CliRunner().invoke(main, ["train", "--model", "judge", "--epochs", "1", "--steps-per-epoch", "2",
                                       "--out", run])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["export", run, "--out", base])
    assert result.exit_code == 0, result.output
    assert "judge" in result.output and judging.LoadedJudge(base).card["epochs"] == 1
