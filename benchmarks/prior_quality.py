"""How good is a generator G as a prior for inpainting? Measured on VALIDATION images.

    python benchmarks/prior_quality.py MODEL [--epoch N] [--raw] [--n 64] [--name NAME]

MODEL is an exported SavedModel version (e.g. saved_models/fashion_mnist/1) or a
training run directory (its final models, or with --epoch N its checkpoint of that
epoch; --raw takes the last iterate of G instead of its moving average). On the first
n images of the validation split:

(a) range: fit z to the WHOLE image (every pixel known, plain L1, Adam lr 0.03,
    best of 4 starts, 300 steps, z in [-1, 1]) and report the mean PSNR of G(z*):
    how much of a real image G can draw at all (FACTS: 23.6 dB for the first shipped
    model on test images);
(b) inpainting: mean PSNR of the default latent search (search.SearchSettings) on
    the four masks, G(z*) pasted into the hole and Poisson-blended, with the same
    masks as benchmarks/search_defaults.py;
(c) pictures to look at: 64 samples G(z) for the training run's fixed z, and the
    first 16 validation images beside their range fits.

Writes benchmarks/results/prior_quality/NAME.json and NAME_samples.png,
NAME_range.png.
"""

import argparse
import dataclasses
import os
import time
import types

import numpy as np
from search_defaults import MASKS, _psnr, score, validation_set

from common import RESULTS, machine, save

RANGE_STEPS, RANGE_STARTS, RANGE_LR = 300, 4, 0.03


def load_models(model, epoch=None, raw=False):
    """(G, D, description dict) from a SavedModel version or a training run."""
    if os.path.isfile(os.path.join(model, "saved_model.pb")):
        from tf_semantic_inpaint.export import load_exported_networks

        generator, discriminator, _, card = load_exported_networks(model)
        config = types.SimpleNamespace(dataset=card["dataset"], resolution=card["resolution"],
                                       channels=card["channels"])
        return generator, discriminator, config, {"savedmodel": model, "epochs": card["epochs"]}
    from tf_semantic_inpaint import train as training
    from tf_semantic_inpaint.export import load_trained_models

    if epoch is None:
        generator, discriminator, config = load_trained_models(model, raw=raw)
        epochs = config.epochs
    else:
        checkpoint = os.path.join(model, "checkpoints", f"ckpt-{epoch}")
        gan, config, epochs = training.restore_gan(model, checkpoint)
        generator = gan.generator if raw else gan.inference_generator
        discriminator = gan.discriminator
    which = "raw" if raw or not config.ema_decay else f"ema {config.ema_decay}"
    return generator, discriminator, config, {"run_dir": model, "epochs": epochs, "generator": which}


def range_fit(generator, discriminator, images):
    """Fit z to whole images (all pixels known): PSNR [n] of G(z*) and G(z*) [n, H, W, C] in [0, 1]."""
    import tensorflow as tf

    from tf_semantic_inpaint.search import LatentSearch

    search = LatentSearch(generator, discriminator)
    n = len(images)
    tiled = tf.repeat(tf.constant(images * 2 - 1), RANGE_STARTS, axis=0)
    weights = tf.ones_like(tiled[..., :1])  # plain L1 over every pixel
    z = search.initial_z(n, RANGE_STARTS, tf.constant(0))
    never = tf.fill([n * RANGE_STARTS], float("inf"))
    state = (z, tf.zeros_like(z), tf.zeros_like(z), tf.constant(0), z, never)
    lam, restarts = tf.constant(0.0), tf.constant(RANGE_STARTS)
    state = search.adam_steps(state, tiled, weights, tf.constant(RANGE_STEPS), lam, tf.constant(RANGE_LR))
    best = search.select_best(state, tiled, weights, lam, restarts)
    fitted = np.clip(best["generated"].numpy() * 0.5 + 0.5, 0, 1)
    return _psnr(fitted, images), fitted


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help="a SavedModel version directory or a training run directory")
    parser.add_argument("--epoch", type=int, default=None, help="a run's checkpoint of this epoch")
    parser.add_argument("--raw", action="store_true", help="the raw G instead of its moving average")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--name", default=None, help="output name [default: from the model]")
    parser.add_argument("--skip-inpainting", action="store_true", help="only (a) and (c)")
    args = parser.parse_args()

    from tf_semantic_inpaint.contract import SearchSettings
    from tf_semantic_inpaint.images import grid, write_image

    generator, discriminator, config, source = load_models(args.model, args.epoch, args.raw)
    name = args.name or (
        f"{os.path.basename(os.path.normpath(args.model))}"
        + (f"_e{args.epoch}" if args.epoch else "") + ("_raw" if args.raw else "")
    )
    images, masks = validation_set(config, args.n)
    result = {"machine": machine(), "model": source, "n_validation_images": args.n}

    t0 = time.perf_counter()
    psnr, fitted = range_fit(generator, discriminator, images)
    sem = psnr.std() / np.sqrt(len(psnr))
    result["range"] = {"psnr_mean": round(float(psnr.mean()), 3), "psnr_sem": round(float(sem), 3),
                       "steps": RANGE_STEPS, "starts": RANGE_STARTS, "learning_rate": RANGE_LR,
                       "seconds": round(time.perf_counter() - t0, 1),
                       "psnr_per_image": [round(float(v), 3) for v in psnr]}  # to pair two generators
    print(f"{name}: range (whole-image fit) {psnr.mean():.2f} dB", flush=True)

    if not args.skip_inpainting:
        t0 = time.perf_counter()
        settings = SearchSettings()
        scores = score(generator, discriminator, images, masks, settings)
        result["inpainting"] = {"settings": dataclasses.asdict(settings), "psnr": scores,
                                "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{name}: inpainting blended " + "  ".join(
            f"{k} {scores[k]['blended']:.2f}" for k in (*MASKS, "mean")), flush=True)

    folder = os.path.join(RESULTS, "prior_quality")
    os.makedirs(folder, exist_ok=True)
    fixed_z = np.random.default_rng(0).uniform(-1, 1, (64, generator.z_dim)).astype(np.float32)
    samples = generator(fixed_z, training=False).numpy() * 0.5 + 0.5
    write_image(os.path.join(folder, f"{name}_samples.png"), grid(np.clip(samples, 0, 1), scale=2))
    pairs = np.stack([images[:16], fitted[:16]], axis=1).reshape(-1, *images.shape[1:])
    write_image(os.path.join(folder, f"{name}_range.png"), grid(pairs, scale=2))  # real, fit, real, fit, ...
    save(os.path.join("prior_quality", name), result)


if __name__ == "__main__":
    main()
