"""Tuning the Context Encoder on VALIDATION images (never test).

    python benchmarks/context_encoder_tuning.py RUN_DIR [RUN_DIR ...] [--n 500]

For each context-encoder run (tfinpaint train --model context-encoder --out RUN_DIR),
restores its newest checkpoint and scores the first n images of the validation split
under each of the paper's four masks with evaluate's protocol (image i gets
make_mask(kind, R, R, i), the hole zeroed, F's output pasted into the hole): mean PSNR
over the whole image, in dB. Prints a table and merges the runs into
results/context_encoder_tuning.json (keyed by run directory name), with each run's
settings and training time, so the shipped settings can cite it.
"""

import argparse
import json
import os

import numpy as np

from common import RESULTS, machine, save

MASKS = ("center", "pattern", "random", "half")


def validation_scores(run_dir, n):
    """{mask kind: mean PSNR}, plus the run's config and epochs, for one run."""
    from tf_semantic_inpaint import data, metrics
    from tf_semantic_inpaint.context_encoder import fill
    from tf_semantic_inpaint.masks import make_mask
    from tf_semantic_inpaint.train import load_sessions, restore_gan

    model, config, epoch = restore_gan(run_dir)
    ds, _ = data.load_images(config.dataset, "validation", config.resolution, config.channels,
                             config.data_dir or None)
    images = np.stack(list(ds.take(n).as_numpy_iterator()))
    scores = {}
    for kind in MASKS:
        masks = np.stack([make_mask(kind, config.resolution, config.resolution, i) for i in range(n)])
        generated = np.concatenate([fill(model.generator, images[s:s + 250], masks[s:s + 250]).numpy()
                                    for s in range(0, n, 250)])
        completed = np.clip((masks * images + (1 - masks) * generated) * 0.5 + 0.5, 0, 1)
        scores[kind] = round(metrics.mean_psnr(metrics.psnr(completed, images * 0.5 + 0.5)), 3)
    scores["mean"] = round(float(np.mean([scores[k] for k in MASKS])), 3)
    sessions = load_sessions(run_dir)
    return {
        "psnr": scores, "epochs": epoch, "width": config.width, "batch_size": config.batch_size,
        "learning_rate": config.learning_rate, "known_weight": config.known_weight,
        "adversarial_weight": config.adversarial_weight, "command": config.command,
        "training_seconds": round(sum(s["seconds"] for s in sessions), 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--n", type=int, default=500)
    args = parser.parse_args()
    path = os.path.join(RESULTS, "context_encoder_tuning.json")
    results = {}
    if os.path.isfile(path):
        with open(path) as f:
            results = json.load(f).get("runs", {})
    for run_dir in args.run_dirs:
        name = os.path.basename(os.path.normpath(run_dir))
        results[name] = {"n": args.n, "split": "validation", **validation_scores(run_dir, args.n)}
    print(f"| run | epochs | min | lr | known w. | {' | '.join(MASKS)} | mean |")
    print("| --- |" + " ---: |" * (len(MASKS) + 5))
    for name, r in sorted(results.items()):
        cells = " | ".join(f"{r['psnr'][k]:.2f}" for k in MASKS + ("mean",))
        print(f"| {name} | {r['epochs']} | {r['training_seconds'] / 60:.0f} | {r['learning_rate']:g} | "
              f"{r['known_weight']:g} | {cells} |")
    save("context_encoder_tuning", {"machine": machine(), "runs": results})


if __name__ == "__main__":
    main()
