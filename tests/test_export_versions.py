"""Versions of an export on disk: never overwritten without --force, written atomically
(a killed export leaves nothing a later one keeps), exported from a run's newest
checkpoint, and refused early for what cannot be exported."""

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tf_semantic_inpaint import export as exporting
from tf_semantic_inpaint.contract import SearchSettings
from tf_semantic_inpaint.errors import InpaintError
from tf_semantic_inpaint.train import TrainConfig

SETTINGS = SearchSettings(iterations=25, restarts=2, learning_rate=0.05, seed=5)


def test_versions_are_never_overwritten_without_force(tiny_run_dir, tmp_path):
    base = str(tmp_path / "m")
    assert exporting.export(tiny_run_dir, base, settings=SETTINGS).endswith("/1")
    assert exporting.export(tiny_run_dir, base, settings=SETTINGS).endswith("/2")
    before = os.path.getmtime(os.path.join(base, "1", "saved_model.pb"))
    with pytest.raises(InpaintError, match="--force"):
        exporting.export(tiny_run_dir, base, version=1, settings=SETTINGS)
    assert os.path.getmtime(os.path.join(base, "1", "saved_model.pb")) == before
    exporting.export(tiny_run_dir, base, version=1, force=True, settings=dataclasses.replace(SETTINGS, seed=9))
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
    with pytest.raises(InpaintError, match="run.json"):
        exporting.export(str(tmp_path), str(tmp_path / "m"))


@pytest.mark.parametrize("options, message", [(dict(settings=SearchSettings(window=4)), "odd"),
                                              (dict(prior="wild"), "unknown prior"),
                                              (dict(settings=SearchSettings(restarts=0)), "restarts")])
def test_bad_export_options_are_refused_before_loading(tiny_run_dir, tmp_path, options, message):
    with pytest.raises(InpaintError, match=message):
        exporting.export(tiny_run_dir, str(tmp_path / "m"), **options)
    assert not os.path.exists(tmp_path / "m")


def test_stale_scratch_folders_of_killed_exports_are_removed_and_live_ones_kept(tiny_run_dir, tmp_path):
    import socket

    base = tmp_path / "m"
    base.mkdir()
    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # a process that has exited
    stale = base / f".tmp-export-{host}-{dead}-abc"
    (stale / "variables").mkdir(parents=True)
    live = base / f".tmp-export-{host}-{os.getpid()}-def"
    elsewhere = base / f".tmp-export-otherhost-{dead}-ghi"
    live.mkdir()
    elsewhere.mkdir()
    exporting.export(tiny_run_dir, str(base), settings=SETTINGS)
    assert sorted(os.listdir(base)) == sorted(["1", live.name, elsewhere.name])


@pytest.mark.slow
def test_an_export_killed_mid_write_leaves_nothing_the_next_export_keeps(tiny_run_dir, tmp_path):
    import signal
    import time as clock

    base = tmp_path / "m"
    code = ("import sys; from tf_semantic_inpaint import export as e; from tf_semantic_inpaint.contract import "
            "SearchSettings; e.export(sys.argv[1], sys.argv[2], settings=SearchSettings(iterations=5))")
    victim = subprocess.Popen([sys.executable, "-c", code, tiny_run_dir, str(base)],
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    while not (base.is_dir() and any(n.startswith(".tmp-export-") for n in os.listdir(base))):
        assert victim.poll() is None, "the export ended before it could be killed"
        clock.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert any(n.startswith(".tmp-export-") for n in os.listdir(base))  # what kill -9 leaves
    exporting.export(tiny_run_dir, str(base), settings=SETTINGS)
    assert sorted(os.listdir(base)) == ["1"]
