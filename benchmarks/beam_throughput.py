"""Images/s of batch inpainting on Beam (DirectRunner) against `tfinpaint inpaint` on a folder.

    python benchmarks/beam_throughput.py [--n 128 --iterations 300]

The shipped model and its default search on N real Fashion-MNIST test images, each
with one of the paper's four masks. Every setting is the real command in a fresh
process, timed from start to exit (TensorFlow's start-up included, as a user waits
for it): `tfinpaint inpaint` on the folder (one process, batches of 16), then
`tfinpaint inpaint-beam` on the DirectRunner in one process and in two processes
(multi_processing, one per core), then `tfinpaint inpaint` again; ratios are to the mean
of the two `tfinpaint inpaint` runs. Writes results/beam_throughput.json.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from common import machine, matmul_peak_gflops, save

TFINPAINT = os.path.join(os.path.dirname(sys.executable), "tfinpaint")
MASK_KINDS = ("center", "pattern", "random", "half")


def write_pairs(folder, n):
    """images/ and masks/ of the first n Fashion-MNIST test images, the four masks in turn."""
    from tf_semantic_inpaint.data import DEBIAN_FASHION_MNIST, read_idx
    from tf_semantic_inpaint.images import write_image
    from tf_semantic_inpaint.masks import make_mask, write_mask

    garments = read_idx(DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz")[:n]
    for sub in ("images", "masks"):
        os.makedirs(os.path.join(folder, sub))
    for i, garment in enumerate(garments):
        write_image(os.path.join(folder, "images", f"{i:05d}.png"), garment[..., np.newaxis] / np.float32(255))
        write_mask(os.path.join(folder, "masks", f"{i:05d}.png"), make_mask(MASK_KINDS[i % 4], 28, 28, seed=i))


def timed(command):
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if result.returncode:
        raise SystemExit(result.stderr[-3000:])
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=128, help="Images.")
    parser.add_argument("--iterations", type=int, default=None, help="Search steps [default: the model's].")
    args = parser.parse_args()
    peak = matmul_peak_gflops()
    print(f"float32 matmul peak: {peak:.0f} GFLOP/s, {os.cpu_count()} cores")
    root = tempfile.mkdtemp(prefix="beam-bench-")
    write_pairs(root, args.n)
    images, masks = os.path.join(root, "images"), os.path.join(root, "masks")
    search = ["--iterations", str(args.iterations)] if args.iterations else []

    def folder(out):
        return [TFINPAINT, "inpaint", images, masks, "-o", os.path.join(root, out), *search]

    settings = [
        ("tfinpaint inpaint on the folder (1 process)", folder("folder")),
        ("inpaint-beam, DirectRunner, 1 process",
         [TFINPAINT, "inpaint-beam", images, masks, "--out", os.path.join(root, "beam1"), *search]),
        ("inpaint-beam, DirectRunner, 2 processes",
         [TFINPAINT, "inpaint-beam", images, masks, "--out", os.path.join(root, "beam2"), *search,
          "--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]),
        # Again at the end: the machine is shared, and the two baseline runs bracket its drift.
        ("tfinpaint inpaint on the folder (1 process), again", folder("folder_again")),
    ]
    rows = []
    for name, command in settings:
        seconds = timed(command)
        rows.append({"setting": name, "seconds": round(seconds, 1), "images_per_second": round(args.n / seconds, 2)})
        print(f"{name:45s} {seconds:7.1f} s  {args.n / seconds:6.2f} images/s")
    reference = (rows[0]["images_per_second"] + rows[-1]["images_per_second"]) / 2
    for row in rows:
        row["vs_tfinpaint_inpaint"] = round(row["images_per_second"] / reference, 2)
    save("beam_throughput", {"machine": machine(), "matmul_peak_gflops": round(peak, 1), "images": args.n,
                             "iterations": args.iterations or "model default", "results": rows})


if __name__ == "__main__":
    main()
