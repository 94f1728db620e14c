"""The refinement of G's features after the search: choosing its defaults on VALIDATION images.

    python benchmarks/refinement.py [--model saved_models/fashion_mnist/2] [--n 128] [--name NAME]

Rebuilds the exported model's G, D and encoder (export.load_exported_networks), builds
the export's module in memory for each refinement layer and step size, and runs its
`inpaint_with_refinement` function, the model's default search (warm start, 25 steps x
8 restarts) followed by R refinement steps within radius ρ, on the first n validation
images under each of the paper's four masks (the masks of benchmarks/search_defaults.py).
The shipped Context Encoder answers the same masked images, as the rival to beat.

For each setting: mean PSNR of the blended completion from the best sample and from the
posterior-mean estimate, per mask kind, and seconds for the whole setting (relative to
no refinement, the same run). Writes benchmarks/results/refinement/NAME.json.
"""

import argparse
import dataclasses
import os
import time
import types

import numpy as np
from search_defaults import MASKS, _psnr, rival_arguments, validation_set

from common import machine, save

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (layer, learning rate): [(steps, radius), ...]; layer 0 is G's 7x7x128 projection at 28x28.
GRID = {
    (0, 0.01): [(25, 0.1), (25, 0.3), (25, 1.0), (50, 0.1), (50, 0.3), (50, 1.0)],
    (0, 0.03): [(25, 0.1), (25, 0.3)],
    (1, 0.01): [(25, 0.3)],
}


def blended_psnr(images, fills, masks):
    from tf_semantic_inpaint.blend import poisson_blend

    blended = np.stack([poisson_blend(y, g, m) for y, g, m in zip(images, fills, masks)])
    return _psnr(blended, images)


def run(module, images, masks, settings):
    """{estimate: {kind: mean PSNR}} of the blended completions, and seconds of the searches."""
    import tensorflow as tf

    options = {k: tf.constant(int(v) if isinstance(v, bool) else v) for k, v in dataclasses.asdict(settings).items()}
    scores, seconds = {}, 0.0
    for kind in MASKS:
        started = time.perf_counter()
        found = module.inpaint_with_refinement(tf.constant(images), tf.constant(masks[kind]), **options)
        found = {k: v.numpy() for k, v in found.items()}
        seconds += time.perf_counter() - started
        for estimate, key in (("sample", "generated"), ("mean", "mean")):
            scores.setdefault(estimate, {})[kind] = blended_psnr(images, found[key], masks[kind])
    return scores, seconds


def summary(scores):
    """{estimate: {kind: mean dB, "mean": mean over kinds}}, rounded."""
    out = {}
    for estimate, per_kind in scores.items():
        out[estimate] = {k: round(float(np.mean(v)), 3) for k, v in per_kind.items()}
        out[estimate]["mean"] = round(float(np.mean([out[estimate][k] for k in MASKS])), 3)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    rival_arguments(parser, 2)
    parser.add_argument("--only", default=None,
                        help="Run only these layer-0, lr-0.01 settings, e.g. '10:0.1,25:0.1' (steps:radius).")
    args = parser.parse_args()
    grid = GRID if args.only is None else {(0, 0.01): [tuple(float(x) if "." in x else int(x) for x in pair.split(":"))
                                                       for pair in args.only.split(",")]}

    from tf_semantic_inpaint.contract import Limits
    from tf_semantic_inpaint.export import InpaintingModule, SearchCompleter, earlier_defaults, load_exported_networks
    from tf_semantic_inpaint.local import LocalModel

    generator, discriminator, encoder, card = load_exported_networks(args.model)
    defaults = earlier_defaults(args.model)
    config = types.SimpleNamespace(dataset=card["dataset"], resolution=card["resolution"], channels=card["channels"])
    images, masks = validation_set(config, args.n)

    rival = LocalModel(args.context_encoder)
    rows = {"context encoder": {"psnr": summary({"sample": {
        kind: _psnr(rival.search(images, masks[kind])["completed"], images) for kind in MASKS}})}}
    print(f"{'context encoder':>28}: {rows['context encoder']['psnr']['sample']}", flush=True)

    limits = Limits(max_candidates=10**6, max_candidate_steps=10**10)
    base_seconds = None
    per_image = {}
    for (layer, learning_rate), settings_grid in [((0, 0.01), [(0, 0.1)] + grid[(0, 0.01)])] + [
            (key, value) for key, value in grid.items() if key != (0, 0.01)]:
        completer = SearchCompleter(generator, discriminator, card["search_fixed"]["prior"], encoder,
                                    refine_layer=layer, refine_learning_rate=learning_rate)
        module = InpaintingModule(completer, defaults, limits)
        run(module, images[:2], {k: v[:2] for k, v in masks.items()}, defaults)  # trace once
        for steps, radius in settings_grid:
            settings = dataclasses.replace(defaults, refine_steps=steps, refine_radius=radius)
            scores, seconds = run(module, images, masks, settings)
            name = "no refinement" if steps == 0 else f"layer {layer} lr {learning_rate} {steps} steps ρ {radius}"
            base_seconds = base_seconds or seconds
            rows[name] = {"refine_layer": layer, "refine_learning_rate": learning_rate, "settings":
                          dataclasses.asdict(settings), "psnr": summary(scores), "seconds": round(seconds, 1),
                          "relative_seconds": round(seconds / base_seconds, 2)}
            per_image[name] = {e: {k: [round(float(x), 3) for x in v] for k, v in s.items()}
                               for e, s in scores.items()}
            print(f"{name:>28}: sample {rows[name]['psnr']['sample']}  mean {rows[name]['psnr']['mean']}  "
                  f"({seconds:.0f} s)", flush=True)
    save(f"refinement/{args.name}", {"machine": machine(), "model": os.path.abspath(args.model),
                                     "n_validation_images": args.n, "split": "validation", "rows": rows,
                                     "per_image": per_image})


if __name__ == "__main__":
    main()
