"""Training images/s of one `tfinpaint train` process against a two-worker cluster on this machine.

    python benchmarks/multiworker_scaling.py [--epochs 6 --steps 30 --batch-size 64]

Each setting runs the real command (the shipped 28x28x1 model, real Fashion-MNIST) in
fresh processes; the two-worker runs use `--strategy multiworker` with TF_CONFIG on
127.0.0.1. The rate is measured between the ends of epoch 1 and of the last epoch (the
chief's sample grids' times), so start-up and tracing are left out; epoch ends
(checkpoint, samples, logs) are in. Writes results/multiworker_scaling.json.

Two processes sharing the machine's cores cannot be faster than one using them all;
the point of the two-worker numbers is what the coordination costs, which on a real
cluster is paid once per step over the network while each machine brings its own cores.
"""

import argparse
import os
import subprocess
import sys
import tempfile

from common import machine, matmul_peak_gflops, save

TFINPAINT = os.path.join(os.path.dirname(sys.executable), "tfinpaint")


def run(workers, batch_size, epochs, steps, threads=None):
    """Train in `workers` processes; return steady-state images/s (global batch x steps / s)."""
    out = tempfile.mkdtemp(prefix="multiworker-bench-")
    run_dir = os.path.join(out, "run")
    args = [TFINPAINT, "train", "--out", run_dir, "--epochs", str(epochs), "--steps-per-epoch", str(steps),
            "--batch-size", str(batch_size)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if threads:  # TensorFlow reads these at start-up
        env.update(TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS=str(threads))
    processes = []
    if workers == 1:
        processes.append(subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    else:
        from tf_semantic_inpaint.train import loopback_tf_configs

        for tf_config in loopback_tf_configs(workers):
            processes.append(subprocess.Popen(
                args + ["--strategy", "multiworker"], env={**env, "TF_CONFIG": tf_config},
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            ))
    for process in processes:
        _, err = process.communicate()
        if process.returncode:
            raise SystemExit(err.decode()[-3000:])
    samples = os.path.join(run_dir, "samples")
    first, last = (os.path.getmtime(os.path.join(samples, f"epoch_{e:03d}.png")) for e in (1, epochs))
    return (epochs - 1) * steps * batch_size / (last - first)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=30, help="Steps per epoch.")
    parser.add_argument("--batch-size", type=int, default=64, help="Global batch of the 1-worker run.")
    args = parser.parse_args()
    peak = matmul_peak_gflops()
    print(f"float32 matmul peak: {peak:.0f} GFLOP/s, {os.cpu_count()} cores")
    b = args.batch_size
    settings = [
        ("1 process, all cores", 1, b, None),
        ("2 workers, same global batch (each half of it)", 2, b, None),
        ("2 workers, same global batch, 1 thread each", 2, b, 1),
        ("2 workers, global batch doubled (each a full batch)", 2, 2 * b, None),
    ]
    rows = []
    for name, workers, batch, threads in settings:
        rate = run(workers, batch, args.epochs, args.steps, threads)
        rows.append({"setting": name, "workers": workers, "global_batch": batch,
                     "threads_per_worker": threads or "default", "images_per_second": round(rate, 1)})
        print(f"{name:55s} {rate:7.1f} images/s")
    single = rows[0]["images_per_second"]
    for row in rows:
        row["vs_one_process"] = round(row["images_per_second"] / single, 2)
    save("multiworker_scaling", {
        "machine": machine(), "matmul_peak_gflops": round(peak, 1),
        "model": "shipped 28x28x1, width 64, fashion_mnist", "epochs": args.epochs,
        "steps_per_epoch": args.steps, "results": rows,
    })


if __name__ == "__main__":
    main()
