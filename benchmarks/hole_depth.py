"""Does a mask-aware mean pay: the search's mean near the known pixels, the encoder's draws deep in the hole?

    python benchmarks/hole_depth.py [--model saved_models/fashion_mnist/4] [--n 256] [--name NAME]

On VALIDATION images. posterior_mean.py found that on half images the mean of 64 draws
around the encoder's guess G(E(y) + σ ε), weighted by exp(-L), beats the search's mean
(the search over-fits the known half), while on the other masks the search wins. The
difference between the masks is how far the hole's pixels lie from the nearest known
pixel: 1 to 2 pixels on random and pattern masks, up to 7 in a center block, up to 14 in
a half image. This measures a per-pixel mixture

    fill_i = (1 - β_i) mean_search_i + β_i mean_draws_i,   β_i = β_max clip((d_i - d_0) / s, 0, 1),

d_i the chessboard distance of hole pixel i to the nearest known pixel, over a grid of
(d_0, s, β_max), the draws' spread σ, softmax temperature c and count R, and whether D's
prior term counts in the draws' weights, and picks the rule with the best mean PSNR over
the four masks. Every number is the mean PSNR of the
Poisson-blended completion; the shipped Context Encoder answers the same masked images.
Writes benchmarks/results/hole_depth/NAME.json.
"""

import argparse
import time

import numpy as np
from posterior_mean import blended_psnr, default_search, report, weighted
from search_defaults import MASKS, rival_arguments, rival_row

# Draw sets (σ of the draws around the encoder's guess, softmax temperature c, draws R, whether D's
# prior term counts in the draws' weights) and mixing rules (d_0, s, β_max).
DRAW_SETS = ([(σ, c, 32, True) for σ in (0.15, 0.25, 0.5) for c in (0.25, 0.5, 1.0)]
             + [(0.25, 0.25, r, True) for r in (16, 64)] + [(0.25, 0.25, 32, False)])
RULES = [(d0, s, top) for d0 in (0, 2) for s in (3, 6, 10) for top in (0.5, 0.75, 1.0)]


def encoder_draws(completer, defaults, images, masks, spread, draws, prior=True):
    """(candidates [n, R, H, W, C] in [-1, 1], losses [n, R]): G(clip(E(y) + σ ε_r)), ε_0 = 0; the
    losses L_c + L_p, or L_c alone when not `prior`."""
    import tensorflow as tf

    from tf_semantic_inpaint import preprocess
    from tf_semantic_inpaint.masks import importance_weights

    y = preprocess.to_model_range(tf.constant(images))
    m = tf.constant(masks)
    guess = completer.encoder(y, m, training=False)
    noise = tf.random.stateless_normal([draws, guess.shape[1]], seed=[defaults.seed, 7])
    noise = spread * tf.concat([tf.zeros_like(noise[:1]), noise[1:]], axis=0)
    n = len(images)
    weights = importance_weights(m, completer.search.window)
    candidates, losses = [], []
    for start in range(0, n, 32):  # 32 images x R draws per call
        rows = slice(start, min(n, start + 32))
        z = tf.reshape(tf.clip_by_value(guess[rows, None] + noise, -1.0, 1.0), [-1, guess.shape[1]])
        k = z.shape[0] // draws
        context, prior_loss, generated = completer.search.losses(  # each image with its own W
            z, tf.repeat(y[rows], draws, axis=0), tf.repeat(weights[rows], draws, axis=0), tf.constant(defaults.lam))
        candidates.append(generated.numpy().reshape(k, draws, *images.shape[1:]))
        losses.append((context + (prior_loss if prior else 0.0)).numpy().reshape(k, draws))
    return np.concatenate(candidates), np.concatenate(losses)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    rival_arguments(parser, 4)
    parser.set_defaults(n=256)
    args = parser.parse_args()

    from tf_semantic_inpaint.masks import hole_depth

    completer, defaults, _, images, masks, search = default_search(args.model, args.n)
    rows = {"context encoder": rival_row(args.context_encoder, images, masks)}
    started = time.perf_counter()
    searched = {kind: search(kind) for kind in MASKS}  # (sample, mean, z*), the export's default
    seconds = {"search": round(time.perf_counter() - started, 1)}
    rows["search: best sample (shipped)"] = {k: blended_psnr(images, searched[k][0], masks[k]) for k in MASKS}
    rows["search: mean (shipped)"] = {k: blended_psnr(images, searched[k][1], masks[k]) for k in MASKS}
    deepest = max(d0 + s for d0, s, _ in RULES)  # every rule's β is flat from there on
    depth = {kind: hole_depth(masks[kind], deepest).numpy() for kind in MASKS}  # what the export computes
    draws_mean = {}
    for spread, c, draws, prior in DRAW_SETS:
        started = time.perf_counter()
        per_kind = {kind: encoder_draws(completer, defaults, images, masks[kind], spread, draws, prior)
                    for kind in MASKS}
        label = f"draws σ {spread} c {c} R {draws}" + ("" if prior else " weights L_c alone")
        seconds[label] = round(time.perf_counter() - started, 1)
        if "encoder guess G(E(y)) alone" not in rows:
            rows["encoder guess G(E(y)) alone"] = {k: blended_psnr(images, per_kind[k][0][:, 0], masks[k])
                                                   for k in MASKS}
        draws_mean[label] = {k: weighted(*per_kind[k], c) for k in MASKS}
        rows[f"{label}: mean alone"] = {k: blended_psnr(images, draws_mean[label][k], masks[k]) for k in MASKS}
    for label, per_kind in draws_mean.items():
        for d0, s, top in RULES:
            fills = {k: searched[k][1] + top * np.clip((depth[k] - d0) / s, 0, 1) * (per_kind[k] - searched[k][1])
                     for k in MASKS}
            rows[f"{label}: depth mix d0 {d0} s {s} βmax {top}"] = {
                k: blended_psnr(images, fills[k], masks[k]) for k in MASKS}
        print(label, "done", flush=True)
    report(f"hole_depth/{args.name}", rows, args, defaults, seconds=seconds)
    best = max((r for r in rows if "depth mix" in r), key=lambda r: rows[r]["mean"])
    print("best rule:", best, rows[best])


if __name__ == "__main__":
    main()
