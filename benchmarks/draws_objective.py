"""Does an encoder trained for the mean of its own draws close the gap on half and center masks? On VALIDATION images.

    python benchmarks/draws_objective.py --model EXPORT [--n 256] [--steps 1000] [--name NAME]

The posterior mean leans, deep in the hole, on the mean of draws G(clip(E(y) + σ ε))
around the encoder's guess (search.DepthMix). The encoder is trained for G(E(y)) alone
(mean L1 over every pixel), so nothing asks the draws' mean to be a good guess of the
hole. Starting from the export's encoder each time, this trains E for S more steps
(Adam, lr 2e-4, batch 64 real + 64 of G's samples, masks of all four kinds, G frozen)
under each objective of OBJECTIVES: the shipped loss, plus w times the squared error on
the hole of the mean of K draws G(clip(E(y) + σ ε_k)) (ε_0 = 0, σ the export's
DepthMix spread) on the real images. Then it scores, on the first n validation images
(the masks of benchmarks/search_defaults.py):

- G(E(y)) alone, blended (the warm start, no search);
- the model's default search with that E: its best sample and its posterior mean, blended.

The control is the shipped objective continued for the same steps (w = 0). The Context
Encoder answers the same masked images. Writes benchmarks/results/draws_objective/NAME.json.
"""

import argparse

from encoder_objective import compare_objectives
from search_defaults import rival_arguments

# name -> weight w of the draws' mean's squared error on the hole (errors in G's [-1, 1] range)
OBJECTIVES = {
    "shipped (L1, every pixel), continued": 0.0,
    "shipped + 1 x squared error of the draws' mean on the hole": 1.0,
    "shipped + 4 x squared error of the draws' mean on the hole": 4.0,
}


def draws_training(encoder, generator, weight, completer):
    """The package's EncoderTraining with the draws' loss at `weight`, at the export's DepthMix spread."""
    from tf_semantic_inpaint.encoder import TRAINING_DRAWS, EncoderTraining

    return EncoderTraining(encoder, generator, latent_weight=0.1, seed=0, draws_weight=weight,
                           draws=TRAINING_DRAWS, spread=completer.search.mix.spread)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    rival_arguments(parser, 5)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    args.name = f"draws_objective/{args.name}"
    from tf_semantic_inpaint.encoder import TRAINING_DRAWS

    compare_objectives(args, OBJECTIVES, draws_training, first_label="export's encoder",
                       training_draws=TRAINING_DRAWS, objectives=OBJECTIVES)


if __name__ == "__main__":
    main()
