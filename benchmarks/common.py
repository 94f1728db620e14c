"""Shared by the benchmark scripts: the machine's matmul peak, timing, JSON output.

Speed on a shared machine is noisy, so every script measures the float32 matmul
peak in the same run and reports its numbers beside it (or as a ratio).
"""

import contextlib
import json
import os
import platform
import statistics
import sys
import time

import tf_semantic_inpaint  # noqa: F401  (sets TensorFlow's oneDNN default before TensorFlow loads)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def matmul_peak_gflops(n=2048, repeats=10):
    """Best float32 GFLOP/s of an n x n matmul inside a tf.function (the machine's peak)."""
    import tensorflow as tf

    a = tf.random.uniform((n, n))
    b = tf.random.uniform((n, n))
    matmul = tf.function(lambda x, y: tf.matmul(x, y))
    matmul(a, b).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


def best_of(fn, repeats=3):
    """Minimum wall time of `fn()` over `repeats` calls (after the caller's warm-up)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def machine():
    import keras
    import tensorflow as tf

    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "load_average": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def save(name, result):
    """Write benchmarks/results/NAME.json and return its path."""
    path = os.path.join(RESULTS, f"{name}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)  # NAME may hold a subfolder
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"saved {path}")
    return path


@contextlib.contextmanager
def dev_server(base, *options):
    """`tfinpaint serve BASE` on a free loopback port, ready; yields (process, model URL)."""
    import socket
    import subprocess
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exe = os.path.join(os.path.dirname(sys.executable), "tfinpaint")
    server = subprocess.Popen([exe, "serve", base, "--port", str(port), "--quiet", *options],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/v1/models/{os.path.basename(os.path.normpath(base))}"
    try:
        while True:
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit(server.stderr.read()) from None
                time.sleep(0.2)
        yield server, url
    finally:
        server.terminate()
        server.wait(timeout=30)
