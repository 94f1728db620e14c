"""Server-side batching: how the search scales with batch size, and what batching buys clients.

    python benchmarks/serving_batching.py [--model saved_models/fashion_mnist] [--seconds 30]

1. Batch scaling, in process: seconds per call of the model's `inpaint_png` signature
   (its default search) for 1, 2, 4, 8 and 16 single-image PNGs per call, and the images
   per second that makes. The batching parameters shipped beside the model are chosen
   from this (the largest batch still gaining >= 10% images/s per doubling).
2. Clients on loopback: 1, 4, 8 and 16 concurrent clients, each sending one 28x28 image
   per `inpaint_png` request for `--seconds`, against `tfinpaint serve` without and with
   `--enable-batching` (the shipped parameters file): requests/s, median and p95 latency.
Prints tables and writes results/serving_batching.json.
"""

import argparse
import base64
import concurrent.futures
import json
import os
import statistics
import time
import urllib.request

from common import best_of, dev_server, machine, matmul_peak_gflops, save

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "notebooks", "data")
NAMES = ["sneaker", "tshirt", "trouser", "dress", "bag", "ankle_boot"]


def pngs():
    """Real Fashion-MNIST test images and center masks as PNG bytes, one pair per name."""
    from tf_semantic_inpaint.masks import make_mask, mask_png

    images = [open(os.path.join(DATA, f"{name}.png"), "rb").read() for name in NAMES]
    return images, [mask_png(make_mask("center", 28, 28))] * len(images)


def batch_scaling(model_path, sizes=(1, 2, 4, 8, 16)):
    import tensorflow as tf

    signature = tf.saved_model.load(model_path).signatures["inpaint_png"]
    images, masks = pngs()
    rows = []
    for size in sizes:
        batch = {"image_png": tf.constant([images[i % len(images)] for i in range(size)]),
                 "mask_png": tf.constant([masks[i % len(masks)] for i in range(size)])}
        signature(**batch)  # warm-up
        seconds, _ = best_of(lambda batch=batch: signature(**batch), repeats=2)
        rows.append({"batch": size, "seconds_per_call": round(seconds, 3),
                     "images_per_second": round(size / seconds, 3)})
        print(f"batch {size:2d}: {seconds:6.2f} s per call, {size / seconds:5.2f} images/s", flush=True)
    return rows


def choose(rows):
    """The largest batch size whose doubling still bought >= 10% more images/s."""
    chosen = rows[0]["batch"]
    for previous, row in zip(rows, rows[1:]):
        if row["images_per_second"] >= 1.1 * previous["images_per_second"]:
            chosen = row["batch"]
        else:
            break
    return chosen


def clients(url, count, seconds):
    images, masks = pngs()
    deadline = time.monotonic() + seconds

    def client(k):
        b64 = lambda data: {"b64": base64.b64encode(data).decode()}  # noqa: E731
        body = json.dumps({"signature_name": "inpaint_png", "instances": [
            {"image_png": b64(images[k % len(images)]), "mask_png": b64(masks[k % len(masks)])}]}).encode()
        latencies = []
        while time.monotonic() < deadline:
            start = time.perf_counter()
            request = urllib.request.Request(f"{url}:predict", data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=600) as response:
                json.load(response)
            latencies.append(time.perf_counter() - start)
        return latencies

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        latencies = sorted(x for xs in pool.map(client, range(count)) for x in xs)
    wall = time.perf_counter() - started
    return {"clients": count, "requests": len(latencies), "requests_per_second": round(len(latencies) / wall, 3),
            "median_seconds": round(statistics.median(latencies), 3),
            "p95_seconds": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 3)}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="model base [default: the shipped one]")
    parser.add_argument("--seconds", type=float, default=30.0, help="per client count and mode")
    parser.add_argument("--clients", default="1,4,8,16")
    parser.add_argument("--name", default="serving_batching", help="results/NAME.json")
    args = parser.parse_args()

    from tf_semantic_inpaint.contract import resolve_model_dir
    from tf_semantic_inpaint.local import shipped_model_dir

    base = args.model or shipped_model_dir()
    peak = matmul_peak_gflops()
    print(f"float32 matmul peak: {peak:.0f} GFLOP/s")
    scaling = batch_scaling(resolve_model_dir(base))
    print(f"largest batch still gaining >= 10% per doubling: {choose(scaling)}")
    params = os.path.join(base, "batching_parameters.txt")
    modes = {"unbatched": [], "batched": ["--enable-batching"] + (["--batching-parameters-file", params]
                                                                 if os.path.isfile(params) else [])}
    loads = {}
    for mode, options in modes.items():
        loads[mode] = []
        with dev_server(base, *options) as (_, url):
            for count in (int(c) for c in args.clients.split(",")):
                row = clients(url, count, args.seconds)
                loads[mode].append(row)
                print(f"{mode:9s} {count:2d} clients: {row['requests_per_second']:5.2f} requests/s, median "
                      f"{row['median_seconds']:.2f} s, p95 {row['p95_seconds']:.2f} s ({row['requests']} requests)",
                      flush=True)
    ratios = [{"clients": a["clients"], "requests_per_second_ratio": round(b["requests_per_second"]
                                                                         / a["requests_per_second"], 2),
               "p95_ratio": round(b["p95_seconds"] / a["p95_seconds"], 2),
               "median_ratio": round(b["median_seconds"] / a["median_seconds"], 2)}
              for a, b in zip(loads["unbatched"], loads["batched"])]
    for r in ratios:
        print(f"{r['clients']:2d} clients, batched / unbatched: requests/s x{r['requests_per_second_ratio']}, "
              f"median x{r['median_ratio']}, p95 x{r['p95_ratio']}")
    save(args.name, {"machine": machine(), "matmul_peak_gflops": round(peak, 1), "model": base,
                              "batch_scaling": scaling, "chosen_max_batch_size": choose(scaling),
                              "parameters_file": params if os.path.isfile(params) else None,
                              "seconds_per_mode_and_count": args.seconds, "load": loads, "ratios": ratios})


if __name__ == "__main__":
    main()
