"""How fast the default completion is, against the first model's default and the paper's search.

    python benchmarks/default_speed.py [--repeats 3]

In one run, through the shipped SavedModels as the library runs them (LocalModel, the
exported graph): the time to complete ONE 28x28 image (best of --repeats) and the images
per second of a batch of 64, for

- "default":   the newest shipped model (version 4: G trained 40 epochs, encoder warm
               start, 25 steps x 8 restarts, then the refinement of G's features) with
               its own defaults;
- "first":     the first shipped model (version 1) with its defaults (300 x 4, random
               starts), the default this replaces;
- "paper":     version 2 run as published (contract.PAPER: 1500 steps, one random
               start, 7x7 window).

Speed-ups are ratios measured in the same run, so they hold on a faster or slower
machine. Writes benchmarks/results/default_speed.json.
"""

import argparse
import dataclasses
import os
import time

import numpy as np

from common import best_of, machine, matmul_peak_gflops, save

BASE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "saved_models", "fashion_mnist")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from tf_semantic_inpaint import data
    from tf_semantic_inpaint.contract import PAPER
    from tf_semantic_inpaint.local import LocalModel
    from tf_semantic_inpaint.masks import make_mask

    data.prepare("fashion_mnist")
    ds, _ = data.load_images("fashion_mnist", "validation", 28)
    images = np.stack(list(ds.take(64).as_numpy_iterator())) * 0.5 + 0.5
    masks = np.stack([make_mask("center", 28, 28, seed=i) for i in range(64)])
    from tf_semantic_inpaint.contract import versions

    latest, first = LocalModel(os.path.join(BASE, str(versions(BASE)[-1]))), LocalModel(os.path.join(BASE, "1"))
    runs = {
        "default": (latest, latest.defaults),
        "first": (first, first.defaults),
        "paper": (latest, dataclasses.replace(latest.defaults, **{
            k: getattr(PAPER, k) for k in ("iterations", "restarts", "lam", "window", "warm_start", "refine_steps")})),
    }
    peak = matmul_peak_gflops()
    rows = {}
    for name, (model, settings) in runs.items():
        model.search(images[:1], masks[:1], settings)  # trace once
        one = best_of(lambda m=model, s=settings: m.search(images[:1], masks[:1], s), args.repeats)[0]
        batch = best_of(lambda m=model, s=settings: m.search(images, masks, s), max(1, args.repeats - 1))[0]
        rows[name] = {"settings": dataclasses.asdict(settings), "model": model.path,
                      "one_image_seconds": round(one, 3), "batch_64_images_per_second": round(64 / batch, 1)}
        print(f"{name:>8}: one image {one:.3f} s, batch of 64 {64 / batch:.1f} images/s", flush=True)
    speedups = {
        other: {"one_image": round(rows[other]["one_image_seconds"] / rows["default"]["one_image_seconds"], 1),
                "batch_throughput": round(rows["default"]["batch_64_images_per_second"]
                                          / rows[other]["batch_64_images_per_second"], 1)}
        for other in ("first", "paper")
    }
    print("default vs first:", speedups["first"], " default vs paper:", speedups["paper"])
    save("default_speed", {"machine": {**machine(), "matmul_peak_gflops": round(peak, 1)}, "runs": rows,
                           "speedup_of_default_over": speedups, "measured": time.strftime("%Y-%m-%d %H:%M:%S")})


if __name__ == "__main__":
    main()
