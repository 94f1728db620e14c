"""Can a better estimate of the posterior mean close the gap to the Context Encoder? On VALIDATION images.

    python benchmarks/posterior_mean.py [--model saved_models/fashion_mnist/3] [--n 128] [--name NAME]

The `mean` estimate of a search is a loss-weighted average of its candidates (search.py,
`alternatives`): softmax(-(L - L_min) / (c s)) with s the spread of the image's losses and
c = 1. Its error is a variance term, which more or more diverse candidates shrink, and a
bias term, which they do not. This measures both on the first n validation images under
the paper's four masks (the masks of benchmarks/search_defaults.py):

- candidates of the model's default search (warm start, 25 steps x R restarts, refinement),
  with R = 8 or 16 and the weight window 15 or 27;
- candidates with no search at all: G(E(y ⊙ M, M) + σ noise), R = 64 draws around the
  encoder's guess, i.e. self-normalised importance sampling of exp(-L) around the guess;
- estimates from each set: the softmax weighting at temperatures c, the uniform mean, the
  best candidate alone; and mixtures (1 - β) mean + β G(E(y)) of the search's mean with the
  encoder's guess.

Every number is the mean PSNR of the Poisson-blended completion, per mask kind; the
shipped Context Encoder answers the same masked images. Writes
benchmarks/results/posterior_mean/NAME.json.
"""

import argparse
import dataclasses
import os
import time
import types

import numpy as np
from search_defaults import MASKS, _psnr, rival_arguments, rival_row, validation_set

from common import machine, save

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPERATURES = (0.5, 1.0, 2.0, 4.0)
MIXTURES = (0.2, 0.35, 0.5)
# (name, restarts, window, iterations of the search; 0 = the encoder's draws only, no search)
CANDIDATE_SETS = (
    ("search R8 window 15 (shipped)", 8, 15, 25),
    ("search R16 window 15", 16, 15, 25),
    ("search R8 window 27", 8, 27, 25),
    ("encoder draws R64, no search", 64, 15, 0),
)


def blended(images, fills, masks):
    """The Poisson-blended completions [n, H, W, C] in [0, 1]; fills in [-1, 1], [n, H, W, C]."""
    from tf_semantic_inpaint.blend import poisson_blend

    fills = np.clip(fills * 0.5 + 0.5, 0.0, 1.0)
    return np.stack([poisson_blend(y, g, m) for y, g, m in zip(images, fills, masks)])


def blended_psnr(images, fills, masks):
    """Mean PSNR of the Poisson-blended completions; fills in [-1, 1], [n, H, W, C]."""
    return float(np.mean(_psnr(blended(images, fills, masks), images)))


def weighted(candidates, losses, temperature):
    """softmax(-(L - L_min) / (temperature * spread)) average of candidates [n, R, H, W, C]; inf = uniform."""
    losses = losses.astype(np.float64)
    if np.isinf(temperature):
        w = np.ones_like(losses)
    else:
        spread = np.maximum(losses.std(axis=1, keepdims=True), 1e-6)
        w = np.exp(-(losses - losses.min(axis=1, keepdims=True)) / (temperature * spread))
    w /= w.sum(axis=1, keepdims=True)
    return np.einsum("nr,nr...->n...", w, candidates).astype(np.float32)


def exported_completer(model):
    """(SearchCompleter, search defaults, model card) of the DCGAN export at `model`, with its fixed settings."""
    from tf_semantic_inpaint.export import earlier_defaults
    from tf_semantic_inpaint.export import exported_completer as completer_of

    completer, card = completer_of(model)
    return completer, earlier_defaults(model), card


def default_search(model, n):
    """An export's default search on the first n validation images (the masks of search_defaults.py):
    (completer, defaults, card, images [n, H, W, C] in [0, 1], masks {kind: [n, H, W, 1]}, search),
    search(kind) -> the default's best sample and posterior mean, each [n, H, W, C] in [-1, 1], and z*.
    The exported functions capture the networks' variables: assigning new weights changes the search."""
    import tensorflow as tf

    from tf_semantic_inpaint.export import InpaintingModule

    completer, defaults, card = exported_completer(model)
    config = types.SimpleNamespace(dataset=card["dataset"], resolution=card["resolution"], channels=card["channels"])
    images, masks = validation_set(config, n)
    module = InpaintingModule(completer, defaults)
    options = {k: tf.constant(int(v) if isinstance(v, bool) else v) for k, v in dataclasses.asdict(defaults).items()}

    def search(kind):
        parts = []
        for start in range(0, n, 128):  # batch x restarts stays under the export's limit
            found = module.inpaint_with_refinement(tf.constant(images[start:start + 128]),
                                                   tf.constant(masks[kind][start:start + 128]), **options)
            parts.append((found["generated"].numpy() * 2 - 1, found["mean"].numpy() * 2 - 1, found["z"].numpy()))
        return tuple(np.concatenate(part) for part in zip(*parts))

    return completer, defaults, card, images, masks, search


def candidates_of(completer, defaults):
    """run(y, m, restarts, window, iterations) -> (losses [n * R], every restart's completion
    [n * R, H, W, C] in [-1, 1]): the export's warm-started search with its other defaults,
    refined when iterations > 0; y in [-1, 1], m [n, H, W, 1], the rest int32 scalars."""
    import tensorflow as tf

    lam = tf.constant(defaults.lam)

    @tf.function(reduce_retracing=True)
    def run(y, m, restarts, window, iterations):
        carry = completer.start(y, m, restarts, tf.constant(defaults.seed), window, tf.constant(1))
        carry = completer.steps(carry, iterations, lam, tf.constant(defaults.learning_rate))
        tiled, weights, state, _ = carry  # the last: DepthMix draws, not used here
        refine = tf.where(iterations > 0, defaults.refine_steps, 0)
        _, context, prior, generated = completer.search.candidates(
            state, tiled, weights, lam, refine, tf.constant(defaults.refine_radius))
        return context + prior, generated

    return run


def candidate_sets(model, images, masks):
    """{set name: {kind: (candidates [n, R, H, W, C] in [-1, 1], losses [n, R])}}, and seconds per set."""
    import tensorflow as tf

    from tf_semantic_inpaint import preprocess

    completer, defaults, _ = exported_completer(model)
    run = candidates_of(completer, defaults)
    y = preprocess.to_model_range(tf.constant(images))
    sets, seconds = {}, {}
    for name, restarts, window, iterations in CANDIDATE_SETS:
        started = time.perf_counter()
        for kind in MASKS:
            losses, generated = run(y, tf.constant(masks[kind]), tf.constant(restarts), tf.constant(window),
                                    tf.constant(iterations))
            n = len(images)
            sets.setdefault(name, {})[kind] = (generated.numpy().reshape(n, restarts, *images.shape[1:]),
                                               losses.numpy().reshape(n, restarts))
        seconds[name] = round(time.perf_counter() - started, 1)
        print(f"{name}: {seconds[name]} s", flush=True)
    return sets, seconds, defaults


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    rival_arguments(parser, 3)
    args = parser.parse_args()

    config = types.SimpleNamespace(dataset="fashion_mnist", resolution=28, channels=1)
    images, masks = validation_set(config, args.n)
    rows = {"context encoder": rival_row(args.context_encoder, images, masks)}
    sets, seconds, defaults = candidate_sets(args.model, images, masks)
    guess = {kind: c[:, 0] for kind, (c, _) in sets["encoder draws R64, no search"].items()}  # restart 0: E(y)
    rows["encoder guess G(E(y)) alone"] = {kind: blended_psnr(images, guess[kind], masks[kind]) for kind in MASKS}
    for name, per_kind in sets.items():
        for temperature in TEMPERATURES + (float("inf"),):
            label = "uniform mean" if np.isinf(temperature) else f"mean c {temperature}"
            rows[f"{name}: {label}"] = {kind: blended_psnr(images, weighted(c, loss, temperature), masks[kind])
                                        for kind, (c, loss) in per_kind.items()}
        rows[f"{name}: best candidate"] = {kind: blended_psnr(images, weighted(c, loss, 1e-9), masks[kind])
                                           for kind, (c, loss) in per_kind.items()}
        if name.startswith("search"):
            for beta in MIXTURES:
                rows[f"{name}: mean c 1 mixed with G(E(y)), β {beta}"] = {
                    kind: blended_psnr(images, (1 - beta) * weighted(c, loss, 1.0) + beta * guess[kind], masks[kind])
                    for kind, (c, loss) in per_kind.items()}
    report(f"posterior_mean/{args.name}", rows, args, defaults, seconds_per_candidate_set=seconds)


def report(name, rows, args, defaults, **extra):
    """Round rows {row: {kind: dB}}, add their mean over the masks, print them and save them as NAME.json."""
    for label, row in rows.items():
        row.update({k: round(v, 3) for k, v in row.items()})
        row["mean"] = round(float(np.mean([row[k] for k in MASKS])), 3)
        print(f"{label:>70}: " + "  ".join(f"{k} {row[k]:6.2f}" for k in (*MASKS, "mean")), flush=True)
    save(name, {"machine": machine(), "model": os.path.relpath(os.path.abspath(args.model), REPO),
                "split": "validation", "n_validation_images": args.n,
                "search_defaults": dataclasses.asdict(defaults), **extra, "rows_blended_psnr": rows})


if __name__ == "__main__":
    main()
