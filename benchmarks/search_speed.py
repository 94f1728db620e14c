"""Speed of the latent search: one graph vs an eager loop, against the matmul peak.

    python benchmarks/search_speed.py [--model saved_models/fashion_mnist]

For the shipped model's architecture and the paper's 64x64x3 DCGAN, at batch 1 and
64: seconds per Adam step of the one-graph search (LatentSearch.search, a
tf.while_loop in one tf.function) and of an eager GradientTape loop at the same
shapes, the FLOPs of one step (TF's profiler on the step's graph) and the achieved
GFLOP/s beside the machine's float32 matmul peak measured in the same run. Also:
a single 28x28 image with the shipped model's default settings (search seconds),
and the peak memory (max RSS) of a single-image `tfinpaint inpaint` process.
Writes results/search_speed.json.

Targets (the project's issue 3): 64x64 batch 64 >= 85% of peak; batch 1 >= 4x
faster than eager; one 28x28 image with defaults < 5 s; peak memory < 1.5 GB.
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from common import best_of, machine, matmul_peak_gflops, save

CONFIGS = [
    {"name": "shipped 28x28x1 (width 64)", "resolution": 28, "channels": 1, "width": 64},
    {"name": "paper 64x64x3 (width 64)", "resolution": 64, "channels": 3, "width": 64},
]


def _models(resolution, channels, width):
    from tf_semantic_inpaint.models import Discriminator, Generator

    return Generator(resolution, channels, width=width), Discriminator(resolution, channels, width=width)


def step_flops(search, batch, resolution, channels):
    """FLOPs of one search step (G and D forward, gradient w.r.t. z) from TF's profiler."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    images = tf.zeros((batch, resolution, resolution, channels))
    weights = tf.ones((batch, resolution, resolution, 1))

    @tf.function(input_signature=[tf.TensorSpec((batch, search.z_dim), tf.float32)])
    def step(z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            context, prior, _ = search.losses(z, images, weights, 0.003)
            total = tf.reduce_sum(context + prior)
        return tape.gradient(total, z)

    frozen = convert_variables_to_constants_v2(step.get_concrete_function())
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(graph=frozen.graph, options=options).total_float_ops


def graph_seconds_per_step(search, batch, resolution, channels, iterations):
    import tensorflow as tf

    images = tf.random.uniform((batch, resolution, resolution, channels)) * 2 - 1
    masks = tf.ones((batch, resolution, resolution, 1)) * tf.cast(
        tf.random.uniform((1, resolution, resolution, 1)) > 0.5, tf.float32)
    args = (tf.constant(0.003), tf.constant(0.03), tf.constant(1), tf.constant(0))
    run = lambda n: search.search(images, masks, tf.constant(n), *args)["z"].numpy()  # noqa: E731
    run(2)  # trace
    # The difference of two lengths removes the fixed cost of the call itself.
    long, _ = best_of(lambda: run(iterations), repeats=2)
    short, _ = best_of(lambda: run(max(1, iterations // 5)), repeats=2)
    return (long - short) / (iterations - max(1, iterations // 5))


def eager_seconds_per_step(search, batch, resolution, channels, iterations):
    """The same Adam steps written as a Python loop of eager GradientTape calls."""
    import tensorflow as tf

    from tf_semantic_inpaint.masks import importance_weights

    images = tf.random.uniform((batch, resolution, resolution, channels)) * 2 - 1
    weights = importance_weights(tf.ones((batch, resolution, resolution, 1)) * tf.cast(
        tf.random.uniform((1, resolution, resolution, 1)) > 0.5, tf.float32), search.window)
    z = tf.Variable(tf.random.uniform((batch, search.z_dim), -1, 1))
    optimizer = tf.keras.optimizers.Adam(0.03)

    def loop(n):
        for _ in range(n):
            with tf.GradientTape() as tape:
                context, prior, _ = search.losses(z, images, weights, 0.003)
                total = tf.reduce_sum(context + prior)
            optimizer.apply([tape.gradient(total, z)], [z])
            z.assign(tf.clip_by_value(z, -1, 1))
        return z.numpy()

    loop(2)
    seconds, _ = best_of(lambda: loop(iterations), repeats=2)
    return seconds / iterations


def single_image_default(model_path):
    """Search seconds for one 28x28 image with the model's default settings."""
    import dataclasses

    from tf_semantic_inpaint.local import LocalModel
    from tf_semantic_inpaint.masks import make_mask

    model = LocalModel(model_path)
    image = np.random.default_rng(0).uniform(0, 1, (1, model.resolution, model.resolution, model.channels))
    mask = make_mask("center", model.resolution, model.resolution)[None]
    model.search(image.astype("float32"), mask, model.defaults)  # load and trace
    seconds, median = best_of(lambda: model.search(image.astype("float32"), mask, model.defaults), repeats=3)
    return {"settings": dataclasses.asdict(model.defaults),
            "seconds_best": round(seconds, 3), "seconds_median": round(median, 3)}


def cli_peak_memory(model_path):
    """Max RSS (MB) of a whole `tfinpaint inpaint` process on one 28x28 image."""
    from tf_semantic_inpaint.images import write_image

    with tempfile.TemporaryDirectory() as tmp:
        image = os.path.join(tmp, "img.png")
        write_image(image, np.random.default_rng(0).uniform(0, 1, (28, 28, 1)).astype("float32"))
        exe = os.path.join(os.path.dirname(sys.executable), "tfinpaint")
        start = time.perf_counter()
        subprocess.run([exe, "inpaint", image, "--mask-type", "center", "--model", model_path,
                        "-o", os.path.join(tmp, "out.png")], check=True, capture_output=True)
        wall = time.perf_counter() - start
    return {"max_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
            "wall_seconds_including_startup": round(wall, 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="SavedModel for the single-image checks [default: shipped]")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    args = parser.parse_args()

    from tf_semantic_inpaint.contract import resolve_model_dir
    from tf_semantic_inpaint.local import shipped_model_dir
    from tf_semantic_inpaint.search import LatentSearch

    model_path = resolve_model_dir(args.model or shipped_model_dir())
    memory = cli_peak_memory(model_path)  # first: RUSAGE_CHILDREN is a running maximum
    peak = matmul_peak_gflops()
    print(f"float32 matmul peak: {peak:.0f} GFLOP/s")
    rows = []
    for config in CONFIGS:
        generator, discriminator = _models(config["resolution"], config["channels"], config["width"])
        search = LatentSearch(generator, discriminator)
        for batch in (1, 64):
            big = batch * config["resolution"] ** 2 > 64 * 28 * 28
            iterations = (20 if big else 200) if args.quick else (60 if big else 500)
            flops = step_flops(search, batch, config["resolution"], config["channels"])
            graph = graph_seconds_per_step(search, batch, config["resolution"], config["channels"], iterations)
            eager = eager_seconds_per_step(search, batch, config["resolution"], config["channels"],
                                           max(10, iterations // 5))
            row = {
                **config, "batch": batch,
                "gflop_per_step": round(flops / 1e9, 4),
                "graph_seconds_per_step": round(graph, 5),
                "eager_seconds_per_step": round(eager, 5),
                "graph_speedup_over_eager": round(eager / graph, 2),
                "graph_gflops": round(flops / graph / 1e9, 1),
                "fraction_of_matmul_peak": round(flops / graph / 1e9 / peak, 3),
            }
            rows.append(row)
            print(f"{config['name']:28s} batch {batch:2d}: graph {graph * 1e3:8.2f} ms/step "
                  f"({row['graph_gflops']:6.1f} GFLOP/s = {100 * row['fraction_of_matmul_peak']:4.0f}% of peak), "
                  f"eager {eager * 1e3:8.2f} ms/step, speed-up {row['graph_speedup_over_eager']:.1f}x")
    single = single_image_default(model_path)
    print(f"one image, default settings: {single['seconds_best']:.2f} s of search ({single['settings']})")
    print(f"`tfinpaint inpaint` on one image: max RSS {memory['max_rss_mb']:.0f} MB, "
          f"{memory['wall_seconds_including_startup']:.1f} s wall including start-up")
    save("search_speed", {"machine": machine(), "matmul_peak_gflops": round(peak, 1), "model": model_path,
                          "steps": rows, "single_image_default": single, "cli_single_image": memory})


if __name__ == "__main__":
    main()
