"""Does a more stable GAN objective give G more range? On VALIDATION images.

    python benchmarks/gan_objective.py [--epochs 5] [--gammas 1 10] [--n 64] [--name NAME]

The ceiling of every completion is what G can draw: fitted to a whole validation image
(every pixel known), the shipped G gets back only about 23 dB, and neither training it
longer nor twice as wide moved that (benchmarks/prior_quality.py). This trains the
shipped architecture (28x28x1, width 64, EMA G) from the same seed for the same epochs
with the shipped objective (non-saturating, Goodfellow et al.) and with an R1 gradient
penalty on D's real inputs added, (γ / 2) E ||∇_x D(x)||² (Mescheder et al., ICML 2018:
the regulariser that makes the GAN game converge locally, StyleGAN's default), for each
γ; then measures each G's range as prior_quality.py does (300 Adam steps, best of 4
starts) on the first n validation images, paired against the shipped objective's run.

Writes benchmarks/results/gan_objective/NAME.json and a sample grid per run.
"""

import argparse
import os
import time

import numpy as np
from prior_quality import range_fit
from search_defaults import validation_set

from common import RESULTS, machine, save


def r1_gan(gamma, seed):
    """The shipped DCGAN (28x28x1, width 64, EMA) whose D loss adds (γ/2) E ||∇_x D(x)||² on real x."""
    import tensorflow as tf

    from tf_semantic_inpaint.gan import DCGAN, build_gan

    class R1DCGAN(DCGAN):
        def train_step(self, real):
            z = self.sample_z(tf.shape(real)[0])
            bce = lambda labels, logits: tf.reduce_mean(  # noqa: E731
                tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))
            with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
                with tf.GradientTape() as input_tape:
                    input_tape.watch(real)
                    real_logits = self.discriminator(real, training=True)
                    total = tf.reduce_sum(real_logits)  # inside the tape, or its gradient is None
                slopes = input_tape.gradient(total, real)
                r1 = tf.reduce_mean(tf.reduce_sum(tf.square(slopes), axis=[1, 2, 3]))
                fake = self.generator(z, training=True)
                fake_logits = self.discriminator(fake, training=True)
                d_loss = (bce(tf.ones_like(real_logits), real_logits) + bce(tf.zeros_like(fake_logits), fake_logits)
                          + 0.5 * gamma * r1)
                g_loss = bce(tf.ones_like(fake_logits), fake_logits)
            self.d_optimizer.apply(d_tape.gradient(d_loss, self.discriminator.trainable_variables),
                                   self.discriminator.trainable_variables)
            self.g_optimizer.apply(g_tape.gradient(g_loss, self.generator.trainable_variables),
                                   self.generator.trainable_variables)
            self.update_ema()
            self.d_loss_tracker.update_state(d_loss)
            self.g_loss_tracker.update_state(g_loss)
            self.d_real_tracker.update_state(tf.reduce_mean(tf.sigmoid(real_logits)))
            self.d_fake_tracker.update_state(tf.reduce_mean(tf.sigmoid(fake_logits)))
            return {m.name: m.result() for m in self.metrics} | {"r1": r1}

    shipped = build_gan(28, 1, width=64, seed=seed)
    gan = R1DCGAN(shipped.generator, shipped.discriminator, seed=seed)
    gan.compile()
    return gan


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--gammas", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="validation")
    args = parser.parse_args()

    import types

    import keras

    from tf_semantic_inpaint import data
    from tf_semantic_inpaint.gan import build_gan
    from tf_semantic_inpaint.images import grid, write_image

    keras.utils.set_random_seed(args.seed)
    train, steps = data.training_dataset("fashion_mnist", 28, 64, seed=args.seed)
    config = types.SimpleNamespace(dataset="fashion_mnist", resolution=28, channels=1)
    images, _ = validation_set(config, args.n)
    folder = os.path.join(RESULTS, "gan_objective")
    os.makedirs(folder, exist_ok=True)

    runs, per_image = {}, {}
    for gamma in [0.0, *args.gammas]:
        label = "non-saturating (shipped)" if gamma == 0 else f"non-saturating + R1, γ {gamma:g}"
        keras.utils.set_random_seed(args.seed)
        gan = build_gan(28, 1, width=64, seed=args.seed) if gamma == 0 else r1_gan(gamma, args.seed)
        started = time.perf_counter()
        history = gan.fit(train, epochs=args.epochs, steps_per_epoch=steps, verbose=2)
        seconds = time.perf_counter() - started
        psnr, _ = range_fit(gan.inference_generator, gan.discriminator, images)
        per_image[label] = psnr
        fixed_z = np.random.default_rng(0).uniform(-1, 1, (64, gan.z_dim)).astype(np.float32)  # as prior_quality
        samples = gan.inference_generator(fixed_z, training=False).numpy() * 0.5 + 0.5
        write_image(os.path.join(folder, f"{args.name}_gamma_{gamma:g}_samples.png"),
                    grid(np.clip(samples, 0, 1), scale=2))
        runs[label] = {"gamma": gamma, "training_seconds": round(seconds, 1),
                       "last_epoch": {k: round(float(v[-1]), 4) for k, v in history.history.items()},
                       "range_psnr_mean": round(float(psnr.mean()), 3),
                       "range_psnr_sem": round(float(psnr.std() / np.sqrt(len(psnr))), 3)}
        difference = psnr - per_image["non-saturating (shipped)"]
        sem = difference.std() / np.sqrt(len(difference))
        runs[label]["range_minus_shipped_objective"] = {"mean": round(float(difference.mean()), 3),
                                                        "sem": round(float(sem), 3)}
        print(f"{label}: range {psnr.mean():.2f} dB ({difference.mean():+.2f} ± {sem:.2f} paired), "
              f"trained in {seconds:.0f} s", flush=True)
    save(os.path.join("gan_objective", args.name), {
        "machine": machine(), "split": "validation", "n_validation_images": args.n, "epochs": args.epochs,
        "architecture": "28x28x1 DCGAN, width 64, EMA 0.999, batch 64", "seed": args.seed, "runs": runs,
        "range_per_image": {k: [round(float(v), 3) for v in p] for k, p in per_image.items()}})


if __name__ == "__main__":
    main()
