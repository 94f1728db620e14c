"""Fine-tuning G's weights per image after the search (a deep generative prior): does it help? On VALIDATION images.

    python benchmarks/weight_finetuning.py [--model saved_models/fashion_mnist/3] [--n 64] [--name NAME]

Pan et al.'s deep generative prior (ECCV 2020) moves a copy of G's weights per image
so that G(z*) fits the known pixels better than any z can. Here: the model's default
search (warm start, 25 steps x 8 restarts, 10 refinement steps) gives z* of the best
candidate; then Adam on all of G's weights, from the trained ones for every image,
minimises the same L_c + L_p at that z* for S steps at learning rate η, and the
completion is G'(z*). Without a feature loss (β = 0) this measures whether moving the
weights on the search's own objective pays at all; with β > 0 the loss adds the deep
generative prior's discriminator feature loss, β Σ_l mean |D_l(G'(z*) ⊙ M) - D_l(y ⊙ M)|
over the activations D_l of D's convolution blocks, on the known pixels only, as Pan et
al. do for a degraded image.

For each (S, η, β): mean PSNR of the blended completion per mask kind, against the
default's best sample and posterior mean on the same images. Writes
benchmarks/results/weight_finetuning/NAME.json.
"""

import argparse
import time

import numpy as np
from posterior_mean import blended_psnr, default_search, report
from search_defaults import MASKS, rival_arguments

# (steps, learning rate, feature weight β). At a random z the context loss is about 40-70,
# the feature loss 0.25-0.55.
GRID = ((20, 1e-4, 0.0), (50, 3e-4, 0.0), (20, 1e-3, 0.0), (20, 1e-4, 30.0), (20, 1e-4, 100.0), (50, 3e-4, 100.0))


def discriminator_features(discriminator, images):
    """The activations of D's convolution blocks (after each LeakyReLU), a list of [n, h, w, c]."""
    from tf_semantic_inpaint.models import LeakyReLU

    features, x = [], images
    for layer in discriminator.body.layers:
        x = layer(x, training=False)
        if isinstance(layer, LeakyReLU):
            features.append(x)
    return features


def fine_tuner(generator, discriminator, lam, window):
    """tune(z [1, z_dim], y [1, H, W, C], masks [1, H, W, 1], steps, learning_rate, feature_weight)
    -> G'(z) [1, H, W, C], G' being G with its weights moved by Adam on L_c + L_p (the paper's
    prior) + β × D's feature loss on the known pixels; G is restored after."""
    import tensorflow as tf

    from tf_semantic_inpaint.masks import importance_weights

    weights = generator.trainable_variables
    trained = [tf.identity(w) for w in weights]
    moments = [(tf.Variable(tf.zeros_like(w)), tf.Variable(tf.zeros_like(w))) for w in weights]

    @tf.function(reduce_retracing=True)
    def tune(z, y, masks, steps, learning_rate, feature_weight):
        importance = importance_weights(masks, window)
        target = discriminator_features(discriminator, y * masks)
        for w, start, (m, v) in zip(weights, trained, moments):
            w.assign(start), m.assign(tf.zeros_like(start)), v.assign(tf.zeros_like(start))
        for t in tf.range(1, steps + 1):
            with tf.GradientTape() as tape:
                x = generator(z, training=False)
                context = tf.reduce_sum(importance * tf.abs(x - y))
                prior = -lam * tf.reduce_sum(tf.nn.softplus(discriminator(x, training=False)))  # λ log(1 - D)
                features = discriminator_features(discriminator, x * masks)
                feature = tf.add_n([tf.reduce_mean(tf.abs(f - t)) for f, t in zip(features, target)])
                loss = context + prior + feature_weight * feature
            t_float = tf.cast(t, tf.float32)
            for w, grad, (m, v) in zip(weights, tape.gradient(loss, weights), moments):
                m.assign(0.9 * m + 0.1 * grad)
                v.assign(0.999 * v + 0.001 * tf.square(grad))
                w.assign_sub(learning_rate * (m / (1 - 0.9**t_float)) / (tf.sqrt(v / (1 - 0.999**t_float)) + 1e-8))
        return generator(z, training=False)

    def restored(*args):
        try:
            return tune(*args).numpy()
        finally:
            for w, start in zip(weights, trained):
                w.assign(start)

    return restored


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    rival_arguments(parser, 3)
    parser.set_defaults(n=64)
    args = parser.parse_args()

    import tensorflow as tf

    from tf_semantic_inpaint import preprocess

    completer, defaults, _, images, masks, search = default_search(args.model, args.n)
    tune = fine_tuner(completer.generator, completer.discriminator, defaults.lam, defaults.window)
    y = preprocess.to_model_range(images)
    rows, seconds = {}, {}
    for kind in MASKS:
        sample, mean, z = search(kind)
        for name, fill in (("default, best sample", sample), ("default, posterior mean", mean)):
            rows.setdefault(name, {})[kind] = blended_psnr(images, fill, masks[kind])
        for steps, learning_rate, feature_weight in GRID:
            name = f"G's weights fine-tuned at z*, {steps} steps, lr {learning_rate}" + (
                f", D feature loss {feature_weight}" if feature_weight else "")
            started = time.perf_counter()
            tuned = np.concatenate([tune(z[i:i + 1], y[i:i + 1], masks[kind][i:i + 1], tf.constant(steps),
                                         tf.constant(learning_rate, tf.float32),
                                         tf.constant(feature_weight, tf.float32)) for i in range(args.n)])
            seconds.setdefault(name, 0.0)
            seconds[name] += time.perf_counter() - started
            rows.setdefault(name, {})[kind] = blended_psnr(images, tuned, masks[kind])
    report(f"weight_finetuning/{args.name}", rows, args, defaults,
           seconds_per_setting={k: round(v, 1) for k, v in seconds.items()})

if __name__ == "__main__":
    main()
