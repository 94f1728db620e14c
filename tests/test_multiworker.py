"""Multi-worker training on loopback: two `tfinpaint train` processes, one TF_CONFIG cluster.

The workers train on a folder of real Fashion-MNIST images (256, written as PNGs), so
each process starts in seconds; everything else is the command a user runs on two machines.
"""

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tf_semantic_inpaint import train as training

TFINPAINT = os.path.join(os.path.dirname(sys.executable), "tfinpaint")
# Width 8 and 3 steps of a global batch of 16: real training, in seconds.
TINY = ["--width", "8", "--batch-size", "16", "--steps-per-epoch", "3", "--seed", "3"]
CHIEF_FILES = ["checkpoints", "discriminator.keras", "generator.keras", "logs", "raw_generator.keras", "run.json",
               "samples", "sessions.json"]


_RUNS = itertools.count()


class Cluster:
    """Two `tfinpaint train --strategy multiworker` processes on 127.0.0.1.

    Each gets TF_CONFIG naming both workers and its own index, and TMPDIR `scratch`
    (where a non-chief keeps its scratch folder), with output to a log file.
    """

    def __init__(self, folder, out, args, scratch):
        self.logs, self.workers, run = [], [], next(_RUNS)
        for index, tf_config in enumerate(training.loopback_tf_configs(2)):
            self.logs.append(os.path.join(folder, f"run{run}-worker{index}.log"))
            env = {**os.environ, "TMPDIR": scratch, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": tf_config}
            with open(self.logs[-1], "w") as f:
                self.workers.append(subprocess.Popen(
                    [TFINPAINT, "train", "--strategy", "multiworker", "--out", out, *args],
                    env=env, stdout=f, stderr=subprocess.STDOUT,
                ))

    def output(self, index):
        with open(self.logs[index]) as f:
            return f.read()

    def wait(self, timeout=600):
        codes = [worker.wait(timeout=timeout) for worker in self.workers]
        for index, code in enumerate(codes):
            assert code == 0, f"worker {index} exited with {code}:\n{self.output(index)[-3000:]}"

    def digests(self):
        return [re.search(r"Worker \d done: weights digest (\w+)", self.output(i)).group(1) for i in range(2)]

    def kill(self):
        for worker in self.workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


def _flat(gan):
    """G's, D's and the EMA G's weights, one vector."""
    return np.concatenate([w.numpy().ravel() for w in gan.weights])


def _restored(run_dir, number=None):
    """The DCGAN of a run's newest checkpoint, or of ckpt-`number`."""
    path = os.path.join(run_dir, "checkpoints", f"ckpt-{number}") if number is not None else None
    return training.restore_gan(run_dir, checkpoint=path)[0]


def _scratch_folders(tmpdir):
    return [name for name in os.listdir(tmpdir) if name.startswith("tfinpaint-worker")]


def _latest_epoch(run_dir):
    latest = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


@pytest.mark.slow
def test_two_workers_train_as_one_machine_survive_a_lost_worker_and_resume(fashion_mnist_folder, tmp_path):
    """One story, to start as few TensorFlow processes as possible:

    1. two workers train (--batch-size 16: 8 images each per step); worker 1 is killed
       with SIGKILL; the chief stops with a clear error, its checkpoints and session kept;
    2. both restart with --resume and continue from the chief's last checkpoint; they end
       bitwise equal, and only the chief wrote into the run directory;
    3. the first session's weights are those of one machine training as many epochs with a
       batch of 16 at the same learning rate: the batch is global, the learning rate not scaled.
    """
    out, scratch = str(tmp_path / "run"), str(tmp_path / "scratch")
    os.makedirs(scratch)
    # Long enough that it is still running when worker 1 is killed.
    cluster = Cluster(str(tmp_path), out, ["--dataset", fashion_mnist_folder, "--epochs", "10000", *TINY], scratch)
    try:
        deadline = time.time() + 600
        while _latest_epoch(out) < 2:
            assert time.time() < deadline and all(w.poll() is None for w in cluster.workers), (
                cluster.output(0)[-3000:])
            time.sleep(0.05)
        cluster.workers[1].send_signal(signal.SIGKILL)
        # The chief finds its peer gone, stops with a clear error and keeps its checkpoints.
        assert cluster.workers[0].wait(timeout=300) == 1
    finally:
        cluster.kill()
    message = cluster.output(0)
    assert "Error: a worker of the cluster stopped" in message and "--resume" in message
    assert "Traceback" not in message
    stopped_at = _latest_epoch(out)
    assert 2 <= stopped_at < 10000
    (session,) = training.load_sessions(out)
    assert session["epochs"] == [0, stopped_at]  # the interrupted session is recorded
    assert len(_scratch_folders(scratch)) == 1  # worker 1 died before removing its scratch folder

    resumed = Cluster(str(tmp_path), out, ["--resume", "--epochs", str(stopped_at + 1)], scratch)
    try:
        resumed.wait()
    finally:
        resumed.kill()
    first, second = resumed.digests()
    assert first == second  # worker 1 restored the chief's checkpoint, not its own or nothing
    assert "Trained" in resumed.output(0) and "Trained" not in resumed.output(1)
    assert sorted(os.listdir(out)) == CHIEF_FILES  # nothing from worker 1 ...
    assert _scratch_folders(scratch) == []  # ... whose scratch folders are gone, the dead one's too
    samples = sorted(os.listdir(os.path.join(out, "samples")))
    assert samples == [f"epoch_{e:03d}.png" for e in range(1, stopped_at + 2)]
    assert [s["epochs"] for s in training.load_sessions(out)] == [[0, stopped_at], [stopped_at, stopped_at + 1]]
    assert training.load_run_config(out).epochs == stopped_at + 1
    cluster_run = _restored(out)
    assert int(cluster_run.g_optimizer.iterations.numpy()) == 3 * (stopped_at + 1)  # continued, not restarted
    assert training.weights_digest(cluster_run) == first  # the chief saved what both workers hold

    # One machine, one replica, the same global batch and learning rate, as many epochs as the
    # first session (mirrored strategy, so Keras takes its first batch the same way).
    config = training.TrainConfig(dataset=fashion_mnist_folder, width=8, batch_size=16, steps_per_epoch=3, seed=3,
                                  epochs=stopped_at, strategy="mirrored")
    single_out = str(tmp_path / "single")
    training.train(config, single_out, verbose=0)
    single = _flat(_restored(single_out))
    one_epoch = np.linalg.norm(single - _flat(_restored(single_out, stopped_at - 1)))
    gap = np.linalg.norm(_flat(_restored(out, stopped_at)) - single)
    print(f"two workers vs one machine: {gap:.3g}; one epoch's change: {one_epoch:.3g}")
    # Measured: 1e-6 to 1e-4 of an epoch's change (float rounding in the all-reduce); another
    # shuffle order gives 6e-3, a batch of 8 (the worker's share taken as the batch) 4e-2.
    assert gap < 1e-3 * one_epoch


def test_cluster_role_from_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert training.cluster_role("default") == (True, 0)
    with pytest.raises(training.TrainingError, match="TF_CONFIG"):
        training.cluster_role("multiworker")
    configs = training.loopback_tf_configs(2)
    for tf_config, expected in zip(configs, [(True, 0), (False, 1)]):
        monkeypatch.setenv("TF_CONFIG", tf_config)
        assert training.cluster_role("multiworker") == expected
    workers = json.loads(configs[0])["cluster"]
    assert len(set(workers["worker"])) == 2 and all(w.startswith("127.0.0.1:") for w in workers["worker"])
    with_chief = {"chief": ["127.0.0.1:3"], **workers}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": with_chief, "task": {"type": "worker", "index": 0}}))
    assert training.cluster_role("multiworker") == (False, 0)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": with_chief, "task": {"type": "chief", "index": 0}}))
    assert training.cluster_role("multiworker") == (True, 0)
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(training.TrainingError, match="TF_CONFIG"):
        training.cluster_role("multiworker")
