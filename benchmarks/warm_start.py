"""Warm starts and estimates: choosing the shipped search defaults on VALIDATION images.

    python benchmarks/warm_start.py GAN_RUN ENCODER_RUN [--n 64] [--name NAME]

Builds the export's module in memory (G and D of GAN_RUN's newest checkpoint or final
models, E of ENCODER_RUN: the graph `tfinpaint export --encoder` writes) and runs the
`inpaint_with_refinement` function on the first n validation images under each of the
paper's four masks (the masks of benchmarks/search_defaults.py), for:

- random starts (the paper's), 300 steps x 4 restarts: the first model's default;
- warm starts from E(y ⊙ M, M) (restart 0 at E's z, the others around it), S steps x R
  restarts for S in {0, 25, 50, 100} and R in {1, 4, 8}.

For each: mean PSNR of the blended completion from the best sample and from the
posterior-mean estimate, and the cost as candidate-steps relative to 300 x 4 (the
search's time is proportional to it). Writes benchmarks/results/warm_start/NAME.json.
"""

import argparse
import dataclasses
import time

import numpy as np
from search_defaults import MASKS, _psnr, validation_set

from common import machine, save

GRID = [(False, 300, 4)] + [(True, s, r) for r in (1, 4, 8) for s in (0, 25, 50, 100)]


def run(module, images, masks, settings):
    """{estimate: mean PSNR of the blended completions} of one search per mask kind, and seconds."""
    import tensorflow as tf

    from tf_semantic_inpaint.blend import poisson_blend

    options = {k: tf.constant(int(v) if isinstance(v, bool) else v) for k, v in dataclasses.asdict(settings).items()}
    scores, started = {}, time.perf_counter()
    for kind in MASKS:
        found = module.inpaint_with_refinement(tf.constant(images), tf.constant(masks[kind]), **options)
        for estimate, key in (("sample", "generated"), ("mean", "mean")):
            fills = found[key].numpy()
            blended = np.stack([poisson_blend(y, g, m) for y, g, m in zip(images, fills, masks[kind])])
            scores.setdefault(estimate, {})[kind] = round(float(_psnr(blended, images).mean()), 3)
    for per_kind in scores.values():
        per_kind["mean"] = round(float(np.mean([per_kind[k] for k in MASKS])), 3)
    return scores, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gan_run")
    parser.add_argument("encoder_run")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--name", default="validation")
    args = parser.parse_args()

    from tf_semantic_inpaint.contract import Limits, SearchSettings
    from tf_semantic_inpaint.encoder import load_encoder
    from tf_semantic_inpaint.export import InpaintingModule, SearchCompleter, load_trained_models

    generator, discriminator, config = load_trained_models(args.gan_run)
    completer = SearchCompleter(generator, discriminator, encoder=load_encoder(args.encoder_run))
    module = InpaintingModule(completer, limits=Limits(max_candidates=10**6, max_candidate_steps=10**10))
    images, masks = validation_set(config, args.n)
    rows = {}
    for warm, steps, restarts in GRID:
        settings = SearchSettings(iterations=steps, restarts=restarts, warm_start=warm)
        name = f"{'warm' if warm else 'random'} {steps}x{restarts}"
        scores, seconds = run(module, images, masks, settings)
        rows[name] = {"settings": dataclasses.asdict(settings), "psnr": scores,
                      "relative_cost": round(steps * restarts / (300 * 4), 4), "seconds": round(seconds, 1)}
        print(f"{name:>16}: sample {scores['sample']}  mean {scores['mean']}  ({seconds:.0f} s)", flush=True)
    save(f"warm_start/{args.name}", {"machine": machine(), "gan_run": args.gan_run, "gan_epochs": config.epochs,
                                     "encoder_run": args.encoder_run, "n_validation_images": args.n,
                                     "split": "validation", "rows": rows})


if __name__ == "__main__":
    main()
