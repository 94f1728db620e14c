"""Training runs: checkpoints every epoch, exact resume, sample grids, refusals, NaN stop."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_semantic_inpaint import train as training
from tf_semantic_inpaint.gan import build_gan
from tf_semantic_inpaint.images import read_image

TINY_RUN = training.TrainConfig(
    dataset="fashion_mnist", resolution=28, width=8, batch_size=16, epochs=2, steps_per_epoch=3, seed=3
)


def _weights(gan):
    models = (gan.generator, gan.discriminator, gan.ema_generator)
    return [w.numpy() for m in models for w in m.weights] + [
        v.numpy() for opt in (gan.g_optimizer, gan.d_optimizer) for v in opt.variables
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("runs") / "tiny")
    gan = training.train(TINY_RUN, out, verbose=0)
    return out, gan


def test_run_directory_has_checkpoints_samples_logs_and_models(run):
    out, _ = run
    assert sorted(os.listdir(out)) == [
        "checkpoints", "discriminator.keras", "generator.keras", "logs", "raw_generator.keras", "run.json",
        "samples", "sessions.json",
    ]
    (session,) = training.load_sessions(out)
    assert session["epochs"] == [0, 2] and session["seconds"] >= 0
    assert tf.train.latest_checkpoint(os.path.join(out, "checkpoints")).endswith("ckpt-2")
    samples = sorted(os.listdir(os.path.join(out, "samples")))
    assert samples == ["epoch_001.png", "epoch_002.png"]
    grid = read_image(os.path.join(out, "samples", "epoch_002.png"))
    assert grid.shape[0] > 8 * 28 and grid.std() > 0.01  # an 8x8 grid of non-blank samples
    assert any(f.startswith("events.out.tfevents") for _, _, fs in os.walk(os.path.join(out, "logs")) for f in fs)


def test_checkpoint_restores_identical_weights_and_optimizer_state(run):
    """The Keras 3 list-of-layers trap would restore random weights here."""
    out, gan = run
    restored, config, epoch = training.restore_gan(out)
    assert epoch == 2 and config.width == 8
    for a, b in zip(_weights(gan), _weights(restored)):
        np.testing.assert_array_equal(a, b)
    assert int(restored.g_optimizer.iterations.numpy()) == 6


def test_final_keras_files_equal_the_trained_models(run):
    """generator.keras is the EMA G (what is exported); the raw G stays reachable."""
    out, gan = run
    g = keras.saving.load_model(os.path.join(out, "generator.keras"))
    raw = keras.saving.load_model(os.path.join(out, "raw_generator.keras"))
    z = np.random.default_rng(0).uniform(-1, 1, (4, 100)).astype("float32")
    np.testing.assert_array_equal(g(z).numpy(), gan.ema_generator(z).numpy())
    np.testing.assert_array_equal(raw(z).numpy(), gan.generator(z).numpy())
    assert np.abs(g(z).numpy() - raw(z).numpy()).max() > 1e-4  # two different generators


def test_sample_grid_shows_the_ema_generator(run):
    out, gan = run
    fixed_z = np.random.default_rng(TINY_RUN.seed).uniform(-1, 1, (64, 100)).astype("float32")
    grid = read_image(os.path.join(out, "samples", "epoch_002.png"))
    tile = grid[2 : 2 + 2 * 28 : 2, 2 : 2 + 2 * 28 : 2]  # the first sample: 2 px pad, upscaled x2
    error = {name: np.abs(tile - (model(fixed_z[:1]).numpy()[0] * 0.5 + 0.5)).max()
             for name, model in (("ema", gan.ema_generator), ("raw", gan.generator))}
    assert error["ema"] <= 0.5 / 255 + 1e-6 < error["raw"]  # 8-bit rounding only


def test_checkpoints_kept_as_asked_and_any_epoch_restores(tmp_path):
    out = str(tmp_path / "all")
    config = dataclasses.replace(TINY_RUN, epochs=4, steps_per_epoch=1, keep_checkpoints=0)
    training.train(config, out, verbose=0)
    kept = tf.train.get_checkpoint_state(os.path.join(out, "checkpoints")).all_model_checkpoint_paths
    assert [os.path.basename(p) for p in kept] == ["ckpt-1", "ckpt-2", "ckpt-3", "ckpt-4"]
    gan, _, epoch = training.restore_gan(out, kept[1])
    assert epoch == 2 and int(gan.g_optimizer.iterations.numpy()) == 2


def test_runs_from_before_the_ema_keep_no_ema(tmp_path):
    """A run.json without ema_decay is a run without an EMA G: it restores as one."""
    out = str(tmp_path / "old")
    training.train(dataclasses.replace(TINY_RUN, epochs=1, ema_decay=0.0), out, verbose=0)
    with open(os.path.join(out, "run.json")) as f:
        fields = json.load(f)
    del fields["ema_decay"], fields["keep_checkpoints"]
    with open(os.path.join(out, "run.json"), "w") as f:
        json.dump(fields, f)
    gan, config, _ = training.restore_gan(out)
    assert config.ema_decay == 0.0 and gan.ema_generator is None
    assert "raw_generator.keras" not in os.listdir(out)


def test_interrupted_run_resumes_from_its_last_checkpoint(tmp_path):
    """Stop after epoch 1 (as an interrupt would), resume to 2: same state as epoch 1 + one more."""
    out = str(tmp_path / "run")
    config = dataclasses.replace(TINY_RUN, epochs=1)
    first = training.train(config, out, verbose=0)
    after_one = _weights(first)
    resumed = training.train(dataclasses.replace(config, epochs=2), out, resume=True, verbose=0)
    assert int(resumed.g_optimizer.iterations.numpy()) == 6  # 3 steps restored + 3 new
    checkpoints = tf.train.get_checkpoint_state(os.path.join(out, "checkpoints")).all_model_checkpoint_paths
    assert [os.path.basename(p) for p in checkpoints] == ["ckpt-1", "ckpt-2"]
    # The resumed run started from epoch 1's weights, not from scratch.
    gan = build_gan(28, 1, width=8, seed=3)
    epoch = tf.Variable(0, dtype=tf.int64)
    training.checkpoint_for(gan, epoch).restore(checkpoints[0]).assert_existing_objects_matched()
    for a, b in zip(after_one, _weights(gan)):
        np.testing.assert_array_equal(a, b)
    assert sorted(os.listdir(os.path.join(out, "samples"))) == ["epoch_001.png", "epoch_002.png"]
    assert [s["epochs"] for s in training.load_sessions(out)] == [[0, 1], [1, 2]]


def _snapshot(folder):
    return {
        os.path.join(root, f): os.path.getmtime(os.path.join(root, f))
        for root, _, files in os.walk(folder) for f in files
    }


def test_out_holding_a_run_is_refused_without_resume(run):
    out, _ = run
    before = _snapshot(out)
    with pytest.raises(training.TrainingError, match="--resume"):
        training.train(TINY_RUN, out, verbose=0)
    assert _snapshot(out) == before


def test_resume_with_a_different_model_is_refused(run):
    out, _ = run
    before = _snapshot(out)
    with pytest.raises(training.TrainingError, match="width: 8 there, 16 here"):
        training.train(dataclasses.replace(TINY_RUN, width=16), out, resume=True, verbose=0)
    assert _snapshot(out) == before


def test_nothing_to_resume_and_non_empty_out(tmp_path):
    with pytest.raises(training.TrainingError, match="nothing to resume"):
        training.train(TINY_RUN, str(tmp_path / "new"), resume=True, verbose=0)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(training.TrainingError, match="not empty"):
        training.train(TINY_RUN, str(tmp_path / "busy"), verbose=0)
    assert os.listdir(tmp_path / "busy") == ["notes.txt"]


def test_bad_resolution_fails_before_touching_out(tmp_path):
    with pytest.raises(training.TrainingError, match="4, 5, 6 or 7 times a power of two"):
        training.train(dataclasses.replace(TINY_RUN, resolution=30), str(tmp_path / "r"), verbose=0)
    assert not os.path.exists(tmp_path / "r")


@pytest.fixture(scope="module")
def exported_run(run, tmp_path_factory):
    """The tiny run (2 epochs) exported as version 1, as a shipped model whose run is gone."""
    from tf_semantic_inpaint.contract import SearchSettings
    from tf_semantic_inpaint.export import export

    return export(run[0], str(tmp_path_factory.mktemp("models") / "tiny"), settings=SearchSettings(iterations=5))


def test_a_run_starts_from_an_export_and_counts_its_epochs_on(exported_run, tmp_path):
    """--init-from: G, its moving average and D start as the export's; epochs, sessions and
    the next export's training time count on from the export's."""
    from tf_semantic_inpaint.export import export, load_exported_networks, read_card

    generator, discriminator, _, card = load_exported_networks(exported_run)
    fresh = build_gan(28, 1, width=8, seed=3)
    training._start_from_export(fresh, tf.Variable(0, dtype=tf.int64), exported_run, None)
    for model, source in ((fresh.generator, generator), (fresh.ema_generator, generator),
                          (fresh.discriminator, discriminator)):
        for a, b in zip(model.weights, source.weights, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())

    out = str(tmp_path / "more")
    # Another seed than the exported run's: a D started from scratch would not be near the export's.
    gan = training.train(dataclasses.replace(TINY_RUN, epochs=3, seed=4, init_from=exported_run), out, verbose=0)
    assert int(gan.g_optimizer.iterations.numpy()) == 3  # one epoch of 3 steps: epochs 1-2 are the export's
    kept = tf.train.get_checkpoint_state(os.path.join(out, "checkpoints")).all_model_checkpoint_paths
    assert [os.path.basename(p) for p in kept] == ["ckpt-3"]
    # Three Adam steps at 2e-4 move each weight of D by about 6e-4 at most: still the export's D.
    for a, b in zip(gan.discriminator.trainable_weights, discriminator.trainable_weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-3)
    earlier, session = training.load_sessions(out)
    assert earlier["from"] == exported_run and earlier["epochs"] == [0, 2] and session["epochs"] == [2, 3]
    import shutil

    other = shutil.copytree(exported_run, tmp_path / "other" / "1")
    with pytest.raises(training.TrainingError, match="began from .*, not from"):
        training.train(dataclasses.replace(TINY_RUN, epochs=4, seed=4, init_from=str(other)), out, resume=True,
                       verbose=0)
    again = read_card(export(out, str(tmp_path / "models")))
    assert again["init_from"] == exported_run and again["epochs"] == 3
    assert again["training_seconds"] == round(card["training_seconds"] + session["seconds"], 1)


def test_init_from_refuses_what_it_cannot_continue_before_writing(exported_run, tmp_path):
    out = tmp_path / "x"
    for change, message in [
        (dict(width=16), r"not a DCGAN of this run's .*'width': 16.*set --resolution"),
        (dict(epochs=2), "was trained 2 epochs; --epochs counts on from there"),
        (dict(model="context-encoder"), "--init-from starts a DCGAN"),
    ]:
        config = dataclasses.replace(TINY_RUN, **{"epochs": 3, "init_from": exported_run, **change})
        with pytest.raises(training.TrainingError, match=message):
            training.train(config, str(out), verbose=0)
    with pytest.raises(training.TrainingError, match="is not a SavedModel version folder"):
        training.train(dataclasses.replace(TINY_RUN, init_from=str(tmp_path)), str(out), verbose=0)
    assert not out.exists()


def test_nan_losses_stop_training_and_keep_the_last_good_checkpoint(tmp_path):
    """Non-finite data makes the losses NaN at the first step of epoch 2."""
    gan = build_gan(28, 1, width=8, seed=0)
    epoch = tf.Variable(0, dtype=tf.int64)
    manager = tf.train.CheckpointManager(training.checkpoint_for(gan, epoch), str(tmp_path), max_to_keep=3)
    good = np.zeros((8, 28, 28, 1), np.float32)
    bad = np.full((8, 28, 28, 1), np.nan, np.float32)
    data = tf.data.Dataset.from_tensor_slices(np.stack([good, good, bad, bad]))
    guard = training._StopOnNaN()
    gan.fit(data, epochs=2, steps_per_epoch=2, verbose=0,
            callbacks=[guard, training._Checkpoint(manager, epoch, guard)])
    assert guard.failed_at is not None and guard.failed_at[1] == 0  # first batch of epoch 2
    assert [os.path.basename(p) for p in manager.checkpoints] == ["ckpt-1"]
    restored = build_gan(28, 1, width=8, seed=0)
    training.checkpoint_for(restored).restore(manager.latest_checkpoint)
    assert all(np.all(np.isfinite(w.numpy())) for w in restored.generator.weights)


def _latest_epoch(run_dir):
    latest = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


@pytest.mark.slow
def test_a_session_killed_with_sigkill_keeps_its_record(fashion_mnist_folder, tmp_path):
    """The session is recorded when it starts and updated every epoch, so `kill -9` (no
    `finally`, no atexit) loses at most the epoch in progress, and the model card's
    training time stays true."""
    out = str(tmp_path / "run")
    command = [os.path.join(os.path.dirname(sys.executable), "tfinpaint"), "train", "--dataset",
               fashion_mnist_folder, "--width", "8", "--batch-size", "16", "--steps-per-epoch", "3",
               "--epochs", "10000", "--out", out]
    log = tmp_path / "train.log"
    with open(log, "w") as f:
        process = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT,
                                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        deadline, first_seen = time.time() + 600, None
        while True:
            assert time.time() < deadline and process.poll() is None, log.read_text()[-3000:]
            sessions = training.load_sessions(out) if os.path.isfile(os.path.join(out, "sessions.json")) else []
            first_seen = first_seen or sessions
            if (sessions and sessions[0]["epochs"][1] >= 2) or _latest_epoch(out) >= 3:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    assert first_seen, "no session was recorded while training ran"
    assert first_seen[0]["epochs"][0] == 0 and first_seen[0]["command"].startswith("tfinpaint train")
    (session,) = training.load_sessions(out)  # still there, and valid JSON (written atomically)
    done = session["epochs"][1]
    assert session["epochs"][0] == 0 and done >= 2 and session["seconds"] > 0
    checkpointed = _latest_epoch(out)
    assert checkpointed in (done, done + 1)  # killed after the checkpoint, maybe before the record
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]  # no half-written file

    # A resumed session is added after it; export sums both into the model card.
    config = dataclasses.replace(training.load_run_config(out), epochs=checkpointed + 1)
    training.train(config, out, resume=True, verbose=0)
    sessions = training.load_sessions(out)
    assert [s["epochs"] for s in sessions] == [[0, done], [checkpointed, checkpointed + 1]]
    assert sessions[0] == session
