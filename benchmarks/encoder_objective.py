"""Does an encoder trained for the hole's squared error close the gap on center and half masks? On VALIDATION images.

    python benchmarks/encoder_objective.py [--model saved_models/fashion_mnist/3] [--n 128] [--steps 1000] [--name NAME]

The shipped encoder E(y ⊙ M, M) -> z (encoder.py) is trained with the mean L1 error of
G(E) over every pixel. PSNR rewards the squared error of the hole only: the best guess
under it is the conditional mean, which L1 (the median) and the known pixels (half the
loss on half masks) both pull away from. Starting from the shipped E each time, this
trains E for S more steps (Adam, lr 2e-4, batch 64 real + 64 of G's samples, masks of
all four kinds, G frozen) under each objective of OBJECTIVES, then scores on the first n
validation images (the masks of benchmarks/search_defaults.py):

- G(E(y)) alone, blended (the warm start, no search);
- the model's default search (25 steps x 8 restarts from E, refinement) with that E:
  its best sample and its posterior mean, blended.

The control is the shipped objective continued for the same steps. The Context Encoder
answers the same masked images. Writes benchmarks/results/encoder_objective/NAME.json.
"""

import argparse
import time

from posterior_mean import blended_psnr, default_search, report
from search_defaults import MASKS, rival_arguments, rival_row

# name -> (weight of the hole's squared error, weight of the known pixels' L1, weight of the
# L1 over every pixel (the shipped objective)); all errors in G's [-1, 1] range, per pixel.
OBJECTIVES = {
    "shipped (L1, every pixel), continued": (0.0, 0.0, 1.0),
    "squared error of the hole + 0.5 L1 of the known pixels": (1.0, 0.5, 0.0),
    "squared error of the hole + L1 of every pixel": (1.0, 0.0, 1.0),
}
LEARNING_RATE = 2e-4


def objective_training(encoder, generator, hole_mse, known_l1, all_l1):
    """An EncoderTraining whose per-example image loss is hole_mse × mean (G(E) - x)² over the hole
    + known_l1 × mean |G(E) - x| over the known pixels + all_l1 × mean |G(E) - x| over every pixel."""
    import tensorflow as tf

    from tf_semantic_inpaint.encoder import EncoderTraining

    class ObjectiveTraining(EncoderTraining):
        def losses_of(self, images, masks, z=None, training=False):
            z_hat = self.encoder(images, masks, training=training)
            error = self.generator(z_hat, training=False) - images
            channels = images.shape[-1]
            hole_pixels = tf.maximum(tf.reduce_sum(1.0 - masks, axis=[1, 2, 3]) * channels, 1.0)
            known_pixels = tf.maximum(tf.reduce_sum(masks, axis=[1, 2, 3]) * channels, 1.0)
            hole_l1 = tf.reduce_sum((1.0 - masks) * tf.abs(error), axis=[1, 2, 3]) / hole_pixels
            loss = (hole_mse * tf.reduce_sum((1.0 - masks) * tf.square(error), axis=[1, 2, 3]) / hole_pixels
                    + known_l1 * tf.reduce_sum(masks * tf.abs(error), axis=[1, 2, 3]) / known_pixels
                    + all_l1 * tf.reduce_mean(tf.abs(error), axis=[1, 2, 3]))
            return loss, hole_l1, z_hat

    return ObjectiveTraining(encoder, generator, latent_weight=0.1, seed=0)


def compare_objectives(args, trainings, training_of, **extra):
    """Score the export's encoder; then, for each {name: objective} of `trainings`, retrain it from
    the export's weights for args.steps steps (training_of(encoder, generator, objective, completer)
    gives the EncoderTraining) and score it again. Saves benchmarks/results/<args.name>.json."""
    import keras

    from tf_semantic_inpaint import data, preprocess
    # The search captures E's variables: assigning them retrains it in place.
    completer, defaults, card, images, masks, search = default_search(args.model, args.n)
    generator, encoder = completer.generator, completer.encoder
    y = preprocess.to_model_range(images)
    rows = {"context encoder": rival_row(args.context_encoder, images, masks)}
    shipped = [w.numpy() for w in encoder.weights]

    def score(label):
        for kind in MASKS:
            guess = generator(encoder(y, masks[kind]), training=False).numpy()
            rows.setdefault(f"{label}: G(E(y)) alone", {})[kind] = blended_psnr(images, guess, masks[kind])
            sample, mean, _ = search(kind)
            for estimate, fill in (("best sample", sample), ("posterior mean", mean)):
                rows.setdefault(f"{label}: default search, {estimate}", {})[kind] = blended_psnr(
                    images, fill, masks[kind])

    score(extra.pop("first_label", "shipped encoder"))
    real, _ = data.training_dataset(card["dataset"], card["resolution"], 64, card["channels"], seed=1)
    seconds = {}
    for name, objective in trainings.items():
        for w, value in zip(encoder.weights, shipped):
            w.assign(value)
        keras.utils.set_random_seed(0)
        training = training_of(encoder, generator, objective, completer)
        training.compile(keras.optimizers.Adam(LEARNING_RATE))
        started = time.perf_counter()
        training.fit(real.repeat(), epochs=1, steps_per_epoch=args.steps, verbose=0)
        seconds[name] = round(time.perf_counter() - started, 1)
        print(f"{name}: trained {args.steps} steps in {seconds[name]} s", flush=True)
        score(f"E + {args.steps} steps of {name}")
    report(args.name, rows, args, defaults, steps=args.steps, learning_rate=LEARNING_RATE,
           **extra, training_seconds=seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    rival_arguments(parser, 3)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    args.name = f"encoder_objective/{args.name}"
    compare_objectives(
        args, OBJECTIVES, lambda encoder, generator, weights, _: objective_training(encoder, generator, *weights),
        objectives={k: dict(zip(("hole_squared_error", "known_l1", "every_pixel_l1"), v))
                    for k, v in OBJECTIVES.items()})


if __name__ == "__main__":
    main()
