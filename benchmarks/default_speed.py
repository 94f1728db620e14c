"""How fast the default completion is, against the first model's default and the paper's search.

    python benchmarks/default_speed.py [--repeats 3]

In one run, through the shipped SavedModels as the library runs them (LocalModel, the
exported graph): the time to complete ONE 28x28 image (the best of --repeats rounds, each
round timing every run in turn) and the images per second of a batch of 64 (the best of
one round fewer), for

- "default":   the newest shipped model (version 6: G trained 40 epochs, encoder warm
               start, 20 steps x 8 restarts, then the refinement of G's features, and
               the posterior mean's 32 draws around the encoder's guess) with its own
               defaults;
- "previous":  the version before it with its defaults (version 5: the same G and D,
               an encoder trained less, 25 steps x 8), which shows what the newest
               version's changes buy or cost;
- "first":     the first shipped model (version 1) with its defaults (300 x 4, random
               starts), the default this replaces;
- "paper":     the newest model run as published (contract.PAPER: 1500 steps, one random
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

    numbers = versions(BASE)
    latest, previous = (LocalModel(os.path.join(BASE, str(v))) for v in numbers[-1:-3:-1])
    first = LocalModel(os.path.join(BASE, "1"))
    runs = {
        "default": (latest, latest.defaults),
        "previous": (previous, previous.defaults),
        "first": (first, first.defaults),
        "paper": (latest, dataclasses.replace(latest.defaults, **{
            k: getattr(PAPER, k) for k in ("iterations", "restarts", "lam", "window", "warm_start", "refine_steps")})),
    }
    peak = matmul_peak_gflops()
    for model, settings in runs.values():
        model.search(images[:1], masks[:1], settings)  # trace once
    # Rounds of every run in turn, the best of each kept: a slow spell of the shared machine
    # then costs every run alike instead of biasing the ratios.
    one, batch = {name: [] for name in runs}, {name: [] for name in runs}
    for repeat in range(args.repeats):
        for name, (model, settings) in runs.items():
            one[name].append(best_of(lambda m=model, s=settings: m.search(images[:1], masks[:1], s), 1)[0])
            if repeat < max(1, args.repeats - 1):
                batch[name].append(best_of(lambda m=model, s=settings: m.search(images, masks, s), 1)[0])
            print(f"round {repeat + 1}, {name:>8}: one image {min(one[name]):.3f} s, batch of 64 "
                  f"{64 / min(batch[name]):.2f} images/s", flush=True)
    rows = {name: {"settings": dataclasses.asdict(settings), "model": model.path,
                   "one_image_seconds": round(min(one[name]), 4),
                   "batch_64_images_per_second": round(64 / min(batch[name]), 3)}
            for name, (model, settings) in runs.items()}
    speedups = {
        other: {"one_image": round(min(one[other]) / min(one["default"]), 3),
                "batch_throughput": round(min(batch[other]) / min(batch["default"]), 3)}
        for other in ("first", "paper", "previous")
    }
    speedups["previous_over_first"] = {"one_image": round(min(one["first"]) / min(one["previous"]), 3),
                                       "batch_throughput": round(min(batch["first"]) / min(batch["previous"]), 3)}
    print("speed-ups:", speedups)
    save("default_speed", {"machine": {**machine(), "matmul_peak_gflops": round(peak, 1)}, "runs": rows,
                           "speedup_of_default_over": speedups, "measured": time.strftime("%Y-%m-%d %H:%M:%S")})


if __name__ == "__main__":
    main()
