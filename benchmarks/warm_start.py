"""Warm starts from the encoder against the random-start search, on VALIDATION images.

    python benchmarks/warm_start.py ENCODER_RUN [--n 64] [--epoch N] [--name NAME]

ENCODER_RUN is a `tfinpaint train-encoder` run; its G (and D) are those of the GAN
run it was trained against. On the first n validation images under each of the
paper's four masks (the masks of benchmarks/search_defaults.py), mean PSNR of the
completion (G(z*) pasted into the hole, and Poisson-blended) for:

(i)   G(E(y ⊙ M, M)) alone, no search;
(ii)  the default search (search.SearchSettings but iterations and restarts) started
      from E's z, read after S in {0, 25, 50, 100, 300} steps, with R = 1, 2, 4
      restarts: restarts beyond the first start from E's z plus Gaussian noise
      (sigma 0.25, "noise") or from uniform random z ("random");
(iii) the same search from random starts only (R = 1 and 4; 300 x 4 is the default).

The cost column is steps x restarts relative to the default 300 x 4 (the search's
time is proportional to it; E's one forward pass is timed separately).
Writes benchmarks/results/warm_start/NAME.json.
"""

import argparse
import dataclasses
import os
import time

import numpy as np
from search_defaults import MASKS, _psnr, validation_set

from common import best_of, machine, save

MILESTONES = (0, 25, 50, 100, 300)
NOISE_SIGMA = 0.25
# (name, restarts, how restarts beyond the first start); "random" alone = no encoder.
STARTS = (
    ("encoder", 1, None),
    ("encoder+noise", 2, "noise"),
    ("encoder+noise", 4, "noise"),
    ("encoder+random", 4, "random"),
    ("random", 1, "random"),
    ("random", 4, "random"),
)


def initial_z(encoded, restarts, extra, seed=0):
    """z_0 [n * restarts, z_dim]: per image E's z (or random, when encoded is None) then `extra` starts."""
    n, z_dim = encoded.shape
    rng = np.random.default_rng(seed)
    rows = np.repeat(encoded, restarts, axis=0)
    first = np.arange(n) * restarts
    others = np.setdiff1d(np.arange(n * restarts), first)
    if extra == "noise":
        rows[others] = np.clip(rows[others] + NOISE_SIGMA * rng.standard_normal((len(others), z_dim)), -1, 1)
    else:
        rows[others] = rng.uniform(-1, 1, (len(others), z_dim))
    return rows.astype(np.float32)


def scores(images, masks, generated):
    """Mean PSNR (composite, blended) of G(z*) [n, H, W, C] in [-1, 1] completing `images`."""
    from tf_semantic_inpaint.blend import composite, poisson_blend

    generated = np.clip(generated * 0.5 + 0.5, 0, 1)
    comp = np.stack([composite(y, g, m) for y, g, m in zip(images, generated, masks)])
    blend = np.stack([poisson_blend(y, g, m) for y, g, m in zip(images, generated, masks)])
    return round(float(_psnr(comp, images).mean()), 3), round(float(_psnr(blend, images).mean()), 3)


def along_search(search, images, masks, z0, restarts, settings):
    """{steps: (composite, blended)} at each milestone of one search from z0."""
    import tensorflow as tf

    lam, lr, r = tf.constant(settings.lam), tf.constant(settings.learning_rate), tf.constant(restarts)
    tiled, weights, state = search.start(tf.constant(images * 2 - 1), tf.constant(masks), r,
                                         tf.constant(settings.seed), tf.constant(z0))
    out, done = {}, 0
    for steps in MILESTONES:
        if steps > done:
            state, _ = search.advance(state, tiled, weights, tf.constant(steps - done), lam, lr)
            done = steps
        best = search.finish(state, tiled, weights, lam, r)
        out[steps] = scores(images, masks, best["generated"].numpy())
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("encoder_run")
    parser.add_argument("--epoch", type=int, default=0, help="the encoder's checkpoint of this epoch")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--name", default=None)
    args = parser.parse_args()

    import tensorflow as tf

    from tf_semantic_inpaint import encoder as encoding
    from tf_semantic_inpaint import train as training
    from tf_semantic_inpaint.export import load_trained_models
    from tf_semantic_inpaint.search import LatentSearch, SearchSettings

    config = encoding.load_encoder_config(args.encoder_run)
    encoder = encoding.load_encoder(args.encoder_run, args.epoch)
    if config.generator_epoch:
        gan, gan_config, _ = training.restore_gan(
            config.generator, os.path.join(config.generator, "checkpoints", f"ckpt-{config.generator_epoch}"))
        generator, discriminator = gan.inference_generator, gan.discriminator
    else:
        generator, discriminator, gan_config = load_trained_models(config.generator)
    name = args.name or os.path.basename(os.path.normpath(args.encoder_run)) + (f"_e{args.epoch}" if args.epoch else "")
    images, masks = validation_set(gan_config, args.n)
    settings = SearchSettings()
    search = LatentSearch(generator, discriminator, window=settings.window, prior=settings.prior)
    result = {"machine": machine(), "encoder_run": args.encoder_run, "encoder_epoch": args.epoch or "final",
              "generator": config.generator, "generator_epoch": config.generator_epoch or "final",
              "n_validation_images": args.n, "settings": dataclasses.asdict(settings),
              "noise_sigma": NOISE_SIGMA, "psnr": {}}

    encode = tf.function(lambda y, m: encoder(y, m))
    y1, m1 = tf.constant(images[:1] * 2 - 1), tf.constant(masks["center"][:1])
    encode(y1, m1)
    result["encoder_seconds_batch_1"] = round(best_of(lambda: encode(y1, m1).numpy(), 20)[0], 5)

    for kind in MASKS:
        t0 = time.perf_counter()
        y, m = images * 2 - 1, masks[kind]
        encoded = encode(tf.constant(y), tf.constant(m)).numpy()
        rows = {"encoder alone": scores(images, m, generator(encoded, training=False).numpy())}
        for start, restarts, extra in STARTS:
            first = encoded if start.startswith("encoder") else np.random.default_rng(1).uniform(
                -1, 1, encoded.shape).astype(np.float32)
            z0 = initial_z(first, restarts, extra)
            for steps, psnr in along_search(search, images, m, z0, restarts, settings).items():
                rows[f"{start} R={restarts} S={steps}"] = psnr
        result["psnr"][kind] = rows
        print(f"{kind}: ({time.perf_counter() - t0:.0f} s)", flush=True)
        for label, (comp, blend) in rows.items():
            print(f"  {label:28s} {comp:6.2f} {blend:6.2f}", flush=True)
    result["mean_over_masks"] = {
        label: [round(float(np.mean([result["psnr"][k][label][i] for k in MASKS])), 3) for i in (0, 1)]
        for label in result["psnr"][MASKS[0]]
    }
    save(os.path.join("warm_start", name), result)


if __name__ == "__main__":
    main()
