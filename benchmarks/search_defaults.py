"""Choosing the search defaults by measurement on VALIDATION images (never test).

    python benchmarks/search_defaults.py RUN_DIR [--n 64] [--iterations 1500]

For a trained run (tfinpaint train --out RUN_DIR), on the first n images of the
validation split under each of the paper's four masks:
1. PSNR of the completion (composite and Poisson-blended) against iterations, with the
   starting settings, read off every `chunk` steps of one long search;
2. one-at-a-time sweeps of the learning rate, λ, restarts, window and prior at a
   fixed iteration budget.
Prints tables and writes results/search_defaults.json; the defaults in
contract.SearchSettings and search.WINDOW cite this file.
"""

import argparse
import dataclasses
import os
import time

import numpy as np

from common import machine, save

MASKS = ("center", "pattern", "random", "half")


def _psnr(a, b):
    return 10 * np.log10(1.0 / np.maximum(np.mean((a - b) ** 2, axis=(1, 2, 3)), 1e-10))


def rival_arguments(parser, model_version):
    """Add --model (that version of the shipped model), --context-encoder, --n and --name to `parser`."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--model", default=os.path.join(repo, "saved_models", "fashion_mnist", str(model_version)))
    parser.add_argument("--context-encoder", default=os.path.join(repo, "saved_models", "fashion_mnist_ce"))
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--name", default="validation")


def rival_row(context_encoder, images, masks):
    """{kind: mean PSNR} of the Context Encoder export at `context_encoder` on images [n, H, W, C] in
    [0, 1] under masks {kind: [n, H, W, 1]}: the rival's row of a validation table."""
    from tf_semantic_inpaint.local import LocalModel

    rival = LocalModel(context_encoder)
    return {kind: float(np.mean(_psnr(rival.search(images, masks[kind])["completed"], images))) for kind in masks}


def validation_set(config, n):
    from tf_semantic_inpaint import data
    from tf_semantic_inpaint.masks import make_mask

    ds, _ = data.load_images(config.dataset, "validation", config.resolution, config.channels)
    images = np.stack(list(ds.take(n).as_numpy_iterator())) * 0.5 + 0.5
    masks = {k: np.stack([make_mask(k, config.resolution, config.resolution, seed=10_000 + i)
                          for i in range(n)]) for k in MASKS}
    return images.astype(np.float32), masks


def curve(module, images, masks, settings, chunk):
    """[(iterations, mean PSNR composite, mean PSNR blended)] along one search, every `chunk` steps.

    Runs the exported functions (an InpaintingModule in memory) through the library's
    one chunked driver, finishing the search at every chunk boundary.
    """
    import tensorflow as tf

    from tf_semantic_inpaint.blend import composite, poisson_blend
    from tf_semantic_inpaint.local import search_in_chunks

    inputs = (tf.constant(images), tf.constant(masks))
    points = []
    for done, carry, _ in search_in_chunks(module, module.search_start, inputs, settings, chunk):
        best = module.search_finish(carry, *inputs, tf.constant(settings.lam), tf.constant(settings.restarts),
                                    tf.constant(settings.samples))
        generated = best["generated"].numpy()
        comp = np.stack([composite(y, g, m) for y, g, m in zip(images, generated, masks)])
        blend = np.stack([poisson_blend(y, g, m) for y, g, m in zip(images, generated, masks)])
        points.append((done, float(_psnr(comp, images).mean()), float(_psnr(blend, images).mean())))
    return points


def module_for(generator, discriminator, window, prior):
    from tf_semantic_inpaint.contract import Limits
    from tf_semantic_inpaint.export import InpaintingModule, SearchCompleter

    limits = Limits(max_candidate_steps=10**9, max_candidates=10**6)  # a benchmark, not a server
    return InpaintingModule(SearchCompleter(generator, discriminator, prior), limits=limits)


def score(modules, images, masks, settings, window, prior):
    """Mean PSNR (composite, blended) per mask kind and over all four, at settings.iterations."""
    out = {}
    for kind in MASKS:
        last = curve(modules[window, prior], images, masks[kind], dataclasses.replace(settings, window=window),
                     settings.iterations)[-1]
        out[kind] = {"composite": round(last[1], 3), "blended": round(last[2], 3)}
    out["mean"] = {k: round(float(np.mean([out[m][k] for m in MASKS])), 3) for k in ("composite", "blended")}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=1500, help="length of the PSNR curve")
    parser.add_argument("--budget", type=int, default=400, help="iterations in the sweeps")
    parser.add_argument("--restarts", type=int, default=2, help="restarts in the sweeps (but their own)")
    parser.add_argument("--chunk", type=int, default=100)
    args = parser.parse_args()

    from tf_semantic_inpaint.contract import SearchSettings
    from tf_semantic_inpaint.export import load_trained_models
    from tf_semantic_inpaint.search import WINDOW

    generator, discriminator, config = load_trained_models(args.run_dir)
    images, masks = validation_set(config, args.n)
    start = SearchSettings(iterations=args.iterations)
    fixed = {"window": WINDOW, "prior": "paper"}
    result = {"machine": machine(), "run_dir": args.run_dir, "n_validation_images": args.n,
              "start_settings": {**dataclasses.asdict(start), **fixed}}
    modules = {}

    def module(window, prior):
        if (window, prior) not in modules:
            modules[window, prior] = module_for(generator, discriminator, window, prior)
        return modules

    t0 = time.perf_counter()
    result["curve"] = {k: curve(module(**fixed)[WINDOW, "paper"], images, masks[k], start, args.chunk)
                       for k in MASKS}
    print("PSNR (composite / blended) against iterations, validation images:")
    for i, (iterations, _, _) in enumerate(result["curve"]["center"]):
        cells = "  ".join(f"{k}: {result['curve'][k][i][1]:5.2f}/{result['curve'][k][i][2]:5.2f}" for k in MASKS)
        print(f"  {iterations:5d}  {cells}")
    print(f"  ({time.perf_counter() - t0:.0f} s)")

    base = {**dataclasses.asdict(dataclasses.replace(start, iterations=args.budget, restarts=args.restarts)),
            **fixed}
    result["sweep_base"] = base
    sweeps = {
        "learning_rate": [0.01, 0.03, 0.1],
        "lam": [0.0, 0.003, 0.03, 0.3],
        "window": [3, 7, 15, 27],  # 27 at 28x28: every known pixel near any hole counts
        "prior": ["paper", "nonsaturating"],
        "restarts": [1, 2, 4, 8],
    }
    result["sweeps"], done = {}, {}
    for field, values in sweeps.items():
        result["sweeps"][field] = {}
        for value in values:
            chosen = {**base, field: value}
            key = tuple(sorted(chosen.items()))
            if key not in done:  # the base setting recurs in every sweep
                window, prior = chosen.pop("window"), chosen.pop("prior")
                done[key] = score(module(window, prior), images, masks, SearchSettings(**chosen), window, prior)
            scores = done[key]
            result["sweeps"][field][str(value)] = scores
            print(f"{field:14s} {value!s:14s} mean composite {scores['mean']['composite']:5.2f} "
                  f"blended {scores['mean']['blended']:5.2f}   " +
                  "  ".join(f"{k} {scores[k]['blended']:5.2f}" for k in MASKS), flush=True)
    save("search_defaults", result)


if __name__ == "__main__":
    main()
