"""The exported search against the in-process one, and REST latency through `tfinpaint serve`.

    python benchmarks/serving_latency.py RUN_DIR [--model saved_models/fashion_mnist]

1. Seconds per search step of the Keras models in-process (LatentSearch on G and D
   restored from RUN_DIR) and of the exported SavedModel (its search functions), at
   batch 1 and 64 with the same settings: they should be equal.
2. Wall-clock latency of one `inpaint` request (one 28x28 image, the model's default
   search) and one `inpaint_png` request through `tfinpaint serve` on loopback, against
   TF Serving's default 30 s REST timeout.
Writes results/serving_latency.json.
"""

import argparse
import base64
import json
import os
import socket
import urllib.request

import numpy as np

from common import best_of, dev_server, machine, matmul_peak_gflops, save


def per_step(run_search, iterations):
    """Seconds per step from two search lengths (removes the fixed cost of a call)."""
    run_search(5)
    long, _ = best_of(lambda: run_search(iterations), repeats=2)
    short, _ = best_of(lambda: run_search(iterations // 5), repeats=2)
    return (long - short) / (iterations - iterations // 5)


def in_process_vs_exported(run_dir, model_path):
    import tensorflow as tf

    from tf_semantic_inpaint.contract import SearchSettings
    from tf_semantic_inpaint.export import load_trained_models
    from tf_semantic_inpaint.local import LocalModel
    from tf_semantic_inpaint.masks import make_mask
    from tf_semantic_inpaint.search import LatentSearch

    generator, discriminator, _ = load_trained_models(run_dir)
    keras_search = LatentSearch(generator, discriminator)
    exported = LocalModel(model_path)
    rows = []
    settings = lambda n: SearchSettings(iterations=n, restarts=1)
    for batch in (1, 64):
        rng = np.random.default_rng(0)
        images = rng.uniform(0, 1, (batch, 28, 28, 1)).astype(np.float32)
        masks = np.stack([make_mask("center", 28, 28)] * batch)
        iterations = 200 if batch == 1 else 50
        def in_process(n, images=images, masks=masks):
            scalars = (tf.constant(0.003), tf.constant(0.03), tf.constant(1), tf.constant(0))
            return keras_search.search(images * 2 - 1, masks, tf.constant(n), *scalars)["z"].numpy()

        def from_export(n, images=images, masks=masks):
            return exported.search(images, masks, settings(n))

        keras_step = per_step(in_process, iterations)
        exported_step = per_step(from_export, iterations)
        rows.append({"batch": batch, "in_process_seconds_per_step": round(keras_step, 5),
                     "exported_seconds_per_step": round(exported_step, 5),
                     "exported_over_in_process": round(exported_step / keras_step, 3)})
        print(f"batch {batch:2d}: in-process {keras_step * 1e3:7.2f} ms/step, exported {exported_step * 1e3:7.2f} "
              f"ms/step (ratio {exported_step / keras_step:.2f})")
    return rows


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rest_latency(model_path):
    from tf_semantic_inpaint.images import encode_png
    from tf_semantic_inpaint.masks import make_mask, mask_png

    base = os.path.dirname(model_path) if os.path.isfile(os.path.join(model_path, "saved_model.pb")) else model_path
    with dev_server(base) as (_, url):
        image = np.random.default_rng(0).uniform(0, 1, (28, 28, 1)).astype(np.float32)
        mask = make_mask("center", 28, 28)

        def post(body):
            request = urllib.request.Request(f"{url}:predict", data=json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.load(response)

        arrays = {"signature_name": "inpaint", "inputs": {"images": image[None].tolist(), "masks": mask[None].tolist()}}
        b64 = lambda data: {"b64": base64.b64encode(data).decode()}  # noqa: E731
        pngs = {"signature_name": "inpaint_png", "instances": [
            {"image_png": b64(encode_png(image)), "mask_png": b64(mask_png(mask))}]}
        post(arrays)  # first call traces nothing (the graph is loaded) but warms the caches
        out = {}
        for label, body in (("inpaint", arrays), ("inpaint_png", pngs)):
            best, median = best_of(lambda body=body: post(body), repeats=3)
            out[label] = {"seconds_best": round(best, 3), "seconds_median": round(median, 3),
                          "fraction_of_tf_serving_default_timeout_30s": round(median / 30, 3)}
            print(f"REST {label:12s}: {median:.2f} s per request (median of 3), {100 * median / 30:.0f}% of 30 s")
        return out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", help="the training run the model was exported from")
    parser.add_argument("--model", default=None, help="exported model [default: shipped]")
    args = parser.parse_args()

    from tf_semantic_inpaint.contract import resolve_model_dir
    from tf_semantic_inpaint.local import shipped_model_dir

    model_path = resolve_model_dir(args.model or shipped_model_dir())
    peak = matmul_peak_gflops()
    print(f"float32 matmul peak: {peak:.0f} GFLOP/s")
    result = {"machine": machine(), "matmul_peak_gflops": round(peak, 1), "model": model_path,
              "search_steps": in_process_vs_exported(args.run_dir, model_path),
              "rest": rest_latency(model_path)}
    save("serving_latency", result)


if __name__ == "__main__":
    main()
