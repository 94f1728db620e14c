"""Training throughput (images/s) of `fit` with the custom train_step, batch 64.

    python benchmarks/train_throughput.py [--steps 30]

Measures 28x28x1 (the shipped model, and twice as wide), 32x32x1 and the paper's 64x64x3 DCGAN, with
the machine's float32 matmul peak in the same run; writes results/train_throughput.json.
"""

import argparse
import time

import numpy as np

from common import machine, matmul_peak_gflops, save

CONFIGS = [
    {"name": "shipped 28x28x1 (width 64)", "resolution": 28, "channels": 1, "width": 64},
    {"name": "28x28x1, twice as wide (width 128)", "resolution": 28, "channels": 1, "width": 128},
    {"name": "32x32x1 (width 64)", "resolution": 32, "channels": 1, "width": 64},
    {"name": "paper 64x64x3 (width 64)", "resolution": 64, "channels": 3, "width": 64},
]


def throughput(resolution, channels, width, batch, steps):
    import tensorflow as tf

    from tf_semantic_inpaint.gan import build_gan

    gan = build_gan(resolution, channels, width=width, seed=0)
    images = np.random.default_rng(0).uniform(-1, 1, (batch * 8, resolution, resolution, channels))
    data = tf.data.Dataset.from_tensor_slices(images.astype("float32")).batch(batch).cache().repeat()
    gan.fit(data, epochs=1, steps_per_epoch=5, verbose=0)  # trace and warm up
    start = time.perf_counter()
    gan.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
    return steps * batch / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    peak = matmul_peak_gflops()
    print(f"float32 matmul peak: {peak:.0f} GFLOP/s")
    rows = []
    for config in CONFIGS:
        rate = throughput(config["resolution"], config["channels"], config["width"], args.batch_size, args.steps)
        rows.append({**config, "batch_size": args.batch_size, "images_per_second": round(rate, 1)})
        print(f"{config['name']:32s} {rate:8.1f} images/s")
    save("train_throughput", {"machine": machine(), "matmul_peak_gflops": round(peak, 1), "results": rows})


if __name__ == "__main__":
    main()
