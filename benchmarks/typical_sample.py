"""Which sharp completion is most often the right object: the best sample or one near the mean? On VALIDATION images.

    python benchmarks/typical_sample.py [--model saved_models/fashion_mnist/6] [--n 256] [--name NAME]

The best sample is the restart with the lowest L_c + L_p: the one that fits the known
pixels most tightly. On half images that is often another garment than the one most
restarts draw, so the judge recognises it less often than the posterior mean, which is
blurrier (a higher Fréchet distance). This compares, on the first n validation images
under the paper's four masks (the masks of benchmarks/search_defaults.py), estimates that
are one real sample of G, each the nearest to the export's posterior mean over the hole
(squared error):

- among the search's restarts (what `--estimate typical` returns);
- among 32 draws G(E(y) + 0.15 ε) around the encoder's guess;
- among both;

against the best sample, the mean, half of each, and the shipped Context Encoder. Every
output is Poisson-blended; each row gives PSNR, the judge's semantic accuracy and the
Fréchet distance of its features to the validation images after the n evaluated
(evaluate.py's protocol). Writes benchmarks/results/typical_sample/NAME.json.
"""

import argparse
import os
import time

import numpy as np
from hole_depth import encoder_draws
from posterior_mean import REPO, blended, candidates_of, default_search
from search_defaults import MASKS, _psnr

from common import machine, save

DRAWS, SPREAD = 32, 0.15


def nearest(pool, mean, masks):
    """Per image the member of pool [n, R, H, W, C] nearest mean [n, H, W, C] over the hole
    (masks [n, H, W, 1], 1 = known): [n, H, W, C], the library's choice for --estimate typical."""
    from tf_semantic_inpaint.inpaint import nearest_to_mean

    return np.stack([p[nearest_to_mean(p, a, k)] for p, a, k in zip(pool, mean, masks)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.path.join(REPO, "saved_models", "fashion_mnist", "6"))
    parser.add_argument("--context-encoder", default=os.path.join(REPO, "saved_models", "fashion_mnist_ce"))
    parser.add_argument("--judge", default=os.path.join(REPO, "saved_models", "fashion_mnist_judge"))
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--name", default="validation")
    args = parser.parse_args()

    import tensorflow as tf

    from tf_semantic_inpaint import preprocess
    from tf_semantic_inpaint.evaluate import _Semantics
    from tf_semantic_inpaint.judge import LoadedJudge
    from tf_semantic_inpaint.local import LocalModel

    n = args.n
    completer, defaults, card, images, masks, search = default_search(args.model, n)
    restarts_of = candidates_of(completer, defaults)
    search_shape = [tf.constant(v) for v in (defaults.restarts, defaults.window, defaults.iterations)]
    y = preprocess.to_model_range(tf.constant(images))
    semantics = _Semantics(LoadedJudge(args.judge), card["dataset"], "validation", n, card["resolution"],
                           card["channels"], None)
    rival = LocalModel(args.context_encoder)

    rows, seconds = {}, {}
    for kind in MASKS:
        started = time.perf_counter()
        m = masks[kind]
        sample, mean, _ = search(kind)
        candidates = restarts_of(y, tf.constant(m), *search_shape)[1].numpy().reshape(
            n, defaults.restarts, *images.shape[1:])
        draws, _ = encoder_draws(completer, defaults, images, m, SPREAD, DRAWS, prior=False)
        both = nearest(np.concatenate([candidates, draws], axis=1), mean, m)
        fills = {"best sample": sample, "posterior mean": mean,
                 "typical: restart nearest the mean (--estimate typical)": nearest(candidates, mean, m),
                 f"draw nearest the mean ({DRAWS} draws around E's guess)": nearest(draws, mean, m),
                 "nearest the mean of restarts and draws": both,
                 "half mean, half the nearest of restarts and draws": 0.5 * mean + 0.5 * both}
        outputs = {label: blended(images, fill, m) for label, fill in fills.items()}
        outputs["context encoder"] = rival.search(images, m)["completed"]
        for label, output in outputs.items():
            semantics.add(label, kind, output)
            accuracy, frechet, _ = semantics.result(label, kind)
            rows.setdefault(label, {})[kind] = {"psnr": round(float(np.mean(_psnr(output, images))), 3),
                                                "semantic_accuracy": accuracy, "frechet_distance": frechet}
        seconds[kind] = round(time.perf_counter() - started, 1)
        print(f"{kind} ({seconds[kind]} s)", flush=True)
        for label in outputs:
            cell = rows[label][kind]
            print(f"  {label:>55}: PSNR {cell['psnr']:6.2f}  accuracy {100 * cell['semantic_accuracy']:5.1f}%  "
                  f"Fréchet {cell['frechet_distance']:6.2f}", flush=True)
    save(f"typical_sample/{args.name}", {
        "machine": machine(), "model": os.path.relpath(os.path.abspath(args.model), REPO), "split": "validation",
        "n_validation_images": n, "draws": DRAWS, "draws_spread": SPREAD, "seconds": seconds,
        "rows_blended": rows})


if __name__ == "__main__":
    main()
