"""The evaluation's report: its scores as a Markdown table, a JSON record and a figure.

`evaluate.evaluate` fills a `Report`; this module only presents it:

    report.to_markdown()          # the table(s): PSNR / SSIM, semantic metrics, paired, timing
    report.to_json()              # everything, per-image values included
    report.figure_image()         # example completions of every method, labelled
    report.alternatives_image()   # the latent search's K samples and its mean for a few images
    write(report, "results/fashion_mnist")     # the FILES, atomically
"""

import dataclasses
import json
import os

import numpy as np

from tf_semantic_inpaint import metrics
from tf_semantic_inpaint.errors import InpaintError

FIGURE_TILE = 112  # tiles are enlarged by pixel replication to at least this many pixels
SHORT_NAMES = {
    "ours": "ours", "ours_blend": "ours+blend", "ours_mean": "ours mean", "ours_typical": "ours typical",
    "context_encoder": "CE",
    "telea": "Telea", "navier_stokes": "N-S", "biharmonic": "biharm.", "total_variation": "TV",
    "train_mean": "train mean", "nearest_neighbour": "NN",
}
# The last only when the report has alternatives (a latent search with settings ran).
FILES = ("results.md", "results.json", "examples.png", "alternatives.png")
# What the latent search's rows are, said under the tables when the mean is among them.
SEARCH_ROWS = ("ours and ours_blend are the latent search's best sample (lowest loss), pasted and "
               "Poisson-blended; ours_mean is the same search's estimate of the posterior mean, a "
               "loss-weighted average of its candidates, Poisson-blended: the best single guess by PSNR, "
               "where a sample is one sharp, plausible completion; ours_typical is the candidate nearest "
               "that mean over the hole, Poisson-blended: one sharp sample of what most candidates agree on.")


@dataclasses.dataclass(frozen=True)
class Score:
    """One cell of the table: a method on a mask kind over the n images.

    Attributes:
        psnr, psnr_std: mean and standard deviation of the per-image PSNR in dB, each
            capped at metrics.PSNR_CAP first.
        ssim, ssim_std: mean and standard deviation of the per-image SSIM in [-1, 1].
        psnr_per_image, ssim_per_image: tuples of n floats, in image order (PSNR capped).
        known_kept: whether every known pixel of every output equals the input's.
        semantic_accuracy: share of the outputs the judge assigns to the true class,
            or None without a judge; correct_per_image: tuple of n 0/1 (or None).
        frechet_distance: Fréchet distance of the outputs' judge features to the
            reference set's, or None without a judge or reference.
    """

    method: str
    mask: str
    psnr: float
    psnr_std: float
    ssim: float
    ssim_std: float
    psnr_per_image: tuple
    ssim_per_image: tuple
    known_kept: bool
    semantic_accuracy: float | None = None
    frechet_distance: float | None = None
    correct_per_image: tuple | None = None


@dataclasses.dataclass
class Report:
    """The outcome of `evaluate`: scores, what produced them, and example images.

    Attributes:
        scores: {method: {mask kind: Score}}, methods and masks in table order.
        seconds: {method: wall-clock seconds over all n x masks images}; the methods
            of `shared_search` come from one search, so each carries its time.
        examples: {mask kind: {"masked", "truth": float32 [k, R, R, C] in [0, 1],
            "outputs": {method: float32 [k, R, R, C]}}}, the first k images.
        alternatives: the latent search's alternatives for the first k images of one mask
            kind: {"mask": kind, "masked", "truth": float32 [k, R, R, C] in [0, 1],
            "samples": float32 [k, K, R, R, C] (best first), "sample_losses": float32
            [k, K], and "mean": float32 [k, R, R, C] when the model gives one}; or None.
        channel_note: how the dataset's channels were converted for the model, or None.
        train_images: (used, available) training images of the data-driven baselines,
            or None when none ran.
        context_encoder: {"path", "card"} of the context encoder, or None.
        judge: {"path", "card"} of the judge, or None (then no semantic metrics).
        semantic_bounds: the judge on the uncorrupted images and on the masked inputs:
            {"uncorrupted": {"accuracy", "frechet_distance"}, "masked": {kind: {...}}},
            or None without a judge.
        reference_images: (first index, count) of the Fréchet distance's reference
            images in the split, or None.
        mask_seed_stride: image i got make_mask(kind, R, R, seed * mask_seed_stride + i).
        pairs: ((method, rival), ...) whose PSNRs are compared paired per image.
        shared_search: the methods whose outputs come from one latent search.
    """

    dataset: str
    split: str
    n: int
    resolution: int
    channels: int
    model_path: str | None
    model_card: dict
    settings: dict | None
    seed: int
    masks: tuple
    methods: tuple
    scores: dict
    seconds: dict
    examples: dict
    mask_seed_stride: int
    pairs: tuple = ()
    shared_search: tuple = ()
    alternatives: dict | None = None
    channel_note: str | None = None
    train_images: tuple | None = None
    context_encoder: dict | None = None
    judge: dict | None = None
    semantic_bounds: dict | None = None
    reference_images: tuple | None = None
    date: str = ""
    versions: dict = dataclasses.field(default_factory=dict)
    total_seconds: float = 0.0

    @property
    def rows(self):
        """The table: [(method, [Score of each mask kind])], in table order."""
        return [(method, [self.scores[method][kind] for kind in self.masks]) for method in self.methods]

    @property
    def has_semantics(self):
        """True when the cells carry semantic accuracy (a judge ran)."""
        return self.semantic_bounds is not None

    def paired(self, method, other, kind):
        """PSNR of `method` minus `other`, paired per image, on one mask kind.

        Returns:
            (mean dB, standard error of the mean dB, share of images where `method`
            is better), floats.
        """
        a = np.asarray(self.scores[method][kind].psnr_per_image)
        b = np.asarray(self.scores[other][kind].psnr_per_image)
        difference = a - b
        error = float(np.std(difference, ddof=1) / np.sqrt(len(a))) if len(a) > 1 else float("nan")
        return float(np.mean(difference)), error, float(np.mean(a > b))

    def per_image_ms(self, method):
        """Mean wall-clock milliseconds per image (and mask) of `method`."""
        return 1000.0 * self.seconds[method] / (self.n * len(self.masks))

    def header(self):
        """One line: dataset, split, n, resolution, model and search settings."""
        if self.settings:
            s = self.settings
            # :g shows a float32-rounded 0.03 from a model's limits signature as 0.03.
            search = (f"{s['iterations']} iterations, {s['restarts']} restarts, learning rate "
                      f"{s['learning_rate']:g}, λ {s['lam']:g}, seed {s['seed']}"
                      + "".join(f", {k} {s[k]}" for k in ("prior", "window") if k in s)
                      + (f", then {s['refine_steps']} refinement steps within {s['refine_radius']:g}"
                         if s.get("refine_steps") else ""))
        else:
            search = "the server's defaults"
        return (f"Dataset {self.dataset}, split {self.split}, n = {self.n} images at "
                f"{self.resolution}x{self.resolution}x{self.channels}; model `{self.model_path}`; "
                f"search: {search}; mask seed {self.seed}.")

    def to_markdown(self):
        """The report as Markdown: notes, then the tables (rows = methods, columns = mask kinds)."""
        lines = [f"# Inpainting evaluation: {self.dataset} {self.split}, n = {self.n}", "", self.header(), ""]
        notes = []
        if self.channel_note:
            notes.append(self.channel_note[0].upper() + self.channel_note[1:] + ".")
        if self.train_images:
            used, available = self.train_images
            notes.append(f"Data-driven baselines use {used:,} of the {available:,} training images.")
        if notes:
            lines += [" ".join(notes), ""]
        lines += self._psnr_markdown()
        if self.has_semantics:
            lines += self._semantic_markdown()
        if self.pairs:
            lines += self._paired_markdown()
        lines += ["", "| method | ms per image |", "| --- | ---: |"]
        lines += [f"| {m} | {self.per_image_ms(m):.1f} |" for m in self.methods]
        if len(self.shared_search) > 1:
            lines += ["", f"{_and(self.shared_search)} come from one latent search; "
                      f"{'both' if len(self.shared_search) == 2 else 'all'} rows show its time."]
        if "ours_mean" in self.methods:
            lines += ["", SEARCH_ROWS]
        lines += ["", f"{self.date}; tensorflow {self.versions.get('tensorflow')}, "
                  f"keras {self.versions.get('keras')}; {self.total_seconds:.0f} s in all.", ""]
        return "\n".join(lines)

    def _table_head(self, first="method"):
        """A Markdown table's header and alignment lines: `first`, then one column per mask kind."""
        return [f"| {first} | " + " | ".join(self.masks) + " |", "| --- |" + " ---: |" * len(self.masks)]

    def _psnr_markdown(self):
        """The main table's Markdown lines: "PSNR dB / SSIM" per cell, best per column in bold."""
        # Best at the shown precision, so ties as printed are all bold.
        best_psnr = {k: max(round(self.scores[m][k].psnr, 2) for m in self.methods) for k in self.masks}
        best_ssim = {k: max(round(self.scores[m][k].ssim, 3) for m in self.methods) for k in self.masks}

        def bold_if(text, best):
            return f"**{text}**" if float(text) == best else text

        lines = [f"Mean PSNR in dB over the whole image (each image capped at {metrics.PSNR_CAP:g} dB) / "
                 "mean SSIM; best per column in bold.", "", *self._table_head()]
        for method, cells in self.rows:
            texts = [f"{bold_if(f'{c.psnr:.2f}', best_psnr[c.mask])} / "
                     f"{bold_if(f'{c.ssim:.3f}', best_ssim[c.mask])}" for c in cells]
            lines.append(f"| {method} | " + " | ".join(texts) + " |")
        return lines

    def _paired_markdown(self):
        """The paired-PSNR table's Markdown lines, one row per (method, rival) of `pairs`."""
        lines = ["", "PSNR paired per image, first method minus second: mean dB ± standard error, "
                 "share of images where the first is better.", "", *self._table_head("comparison")]
        for first, second in self.pairs:
            cells = [self.paired(first, second, kind) for kind in self.masks]
            lines.append(f"| {first} − {second} | " + " | ".join(
                f"{m:+.2f} ± {e:.2f}, {100 * share:.0f}%" for m, e, share in cells) + " |")
        return lines

    def _semantic_markdown(self):
        """The semantic table's Markdown lines: accuracy (%) / Fréchet distance per cell."""
        bounds = self.semantic_bounds
        first, count = self.reference_images or (None, 0)
        reference = (f"the judge's penultimate features of {count:,} real {self.split} images not "
                     f"evaluated (images {first:,} to {first + count - 1:,})" if count else "no reference")
        fd = lambda value: "n/a" if value is None else f"{value:.2f}"  # noqa: E731
        lines = ["", f"Semantic accuracy (% of images the judge `{self.judge['path']}` assigns to their "
                 f"true class) / Fréchet distance between {reference} and those of the outputs (FID's "
                 "formula on this judge, not Inception FID; it shrinks with n, so compare at one n).",
                 "", *self._table_head()]
        for method, cells in self.rows:
            lines.append(f"| {method} | " + " | ".join(
                f"{100 * c.semantic_accuracy:.1f} / {fd(c.frechet_distance)}" for c in cells) + " |")
        whole = bounds["uncorrupted"]
        lines.append("| *uncorrupted (ceiling)* | " + " | ".join(
            [f"{100 * whole['accuracy']:.1f} / {fd(whole['frechet_distance'])}"] * len(self.masks)) + " |")
        lines.append("| *masked input, hole black* | " + " | ".join(
            f"{100 * bounds['masked'][k]['accuracy']:.1f} / {fd(bounds['masked'][k]['frechet_distance'])}"
            for k in self.masks) + " |")
        return lines

    def to_json(self):
        """Everything as a JSON-ready dict (no inf or nan: PSNRs are capped)."""
        return {
            "format": "tf-semantic-inpaint evaluation 1",
            "date": self.date,
            "dataset": self.dataset,
            "split": self.split,
            "n": self.n,
            "resolution": self.resolution,
            "channels": self.channels,
            "channel_conversion": self.channel_note,
            "seed": self.seed,
            "mask_seeds": f"make_mask(kind, R, R, seed * {self.mask_seed_stride} + image index)",
            "masks": list(self.masks),
            "methods": list(self.methods),
            "psnr_cap_db": metrics.PSNR_CAP,
            "model": {"path": self.model_path, "card": self.model_card},
            "search_settings": self.settings,
            "train_images": (dict(zip(("used", "available"), self.train_images))
                             if self.train_images else None),
            "context_encoder": self.context_encoder,
            "judge": self.judge,
            "semantic_bounds": self.semantic_bounds,
            "frechet_reference_images": (dict(zip(("first", "count"), self.reference_images))
                                         if self.reference_images else None),
            "paired_psnr": {
                f"{first} - {second}": {
                    kind: dict(zip(("mean_db", "standard_error_db", "share_better"),
                                   (round(v, 4) for v in self.paired(first, second, kind))))
                    for kind in self.masks
                }
                for first, second in self.pairs
            },
            "versions": self.versions,
            # Significant figures, not decimals: a fast method must not round to 0.
            "seconds": {m: _significant(s) for m, s in self.seconds.items()},
            "ms_per_image": {m: _significant(self.per_image_ms(m)) for m in self.methods},
            "total_seconds": round(self.total_seconds, 3),
            "results": {method: {kind: self._cell_json(c) for kind, c in zip(self.masks, cells)}
                        for method, cells in self.rows},
            "alternatives": self._alternatives_json(),
        }

    def _alternatives_json(self):
        """What the alternatives figure shows (mask kind, images, samples and their losses), or None."""
        found = self.alternatives
        if found is None:
            return None
        losses = [[round(float(v), 5) for v in row] for row in found["sample_losses"]]
        return {"mask": found["mask"], "images": len(found["samples"]), "samples": found["samples"].shape[1],
                "mean": "mean" in found, "sample_losses": losses}

    def _cell_json(self, c):
        """One Score as a JSON-ready dict (semantic keys only when a judge ran)."""
        return {
            "psnr": c.psnr, "psnr_std": c.psnr_std, "ssim": c.ssim, "ssim_std": c.ssim_std,
            "known_pixels_kept": c.known_kept,
            "psnr_per_image": list(c.psnr_per_image),
            "ssim_per_image": list(c.ssim_per_image),
            **({"semantic_accuracy": c.semantic_accuracy, "frechet_distance": c.frechet_distance,
                "correct_per_image": list(c.correct_per_image)} if self.has_semantics else {}),
        }

    def figure_image(self):
        """Example completions as float32 [H, W, C] in [0, 1], labelled.

        One block of rows per mask kind (its name on the left), columns
        masked input (hole in mid grey) | each method | ground truth, each tile
        enlarged by pixel replication to at least FIGURE_TILE pixels.
        """
        labels = ["masked"] + [SHORT_NAMES.get(m, m) for m in self.methods] + ["truth"]
        blocks = {}
        for kind in self.masks:
            example = self.examples[kind]
            blocks[kind] = [example["masked"]] + [example["outputs"][m] for m in self.methods] + [example["truth"]]
        return _labelled_blocks(blocks, labels, self.resolution, self.channels)

    def alternatives_image(self):
        """The alternatives figure: float32 [H, W, C] in [0, 1], labelled, or None without alternatives.

        One row per image of `alternatives`: masked input (hole in mid grey) | sample 1
        (the best) .. sample K | mean | ground truth, tiles enlarged as in figure_image.
        """
        found = self.alternatives
        if found is None:
            return None
        samples = found["samples"]
        labels = ["masked"] + [f"sample {i + 1}" for i in range(samples.shape[1])]
        panels = [found["masked"]] + list(np.moveaxis(samples, 1, 0))
        if "mean" in found:
            labels.append("mean")
            panels.append(found["mean"])
        return _labelled_blocks({found["mask"]: panels + [found["truth"]]}, labels + ["truth"],
                                self.resolution, self.channels)

    def figure(self, path):
        """Write `figure_image()` to `path` as a PNG (atomically)."""
        from tf_semantic_inpaint.images import write_image

        write_image(path, self.figure_image())


def _significant(value, digits=4):
    """`value` rounded to `digits` significant figures (0.000123456 -> 0.0001235)."""
    return float(f"{value:.{digits}g}")



def _and(names):
    """'a and b', 'a, b and c'."""
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def write(report, out_dir, force=False):
    """Write the FILES (results.md, results.json, examples.png, alternatives.png when the
    report has alternatives) into out_dir; return their paths.

    Everything is rendered first, then each file is written atomically, so a
    failure leaves no partial file. Existing files are refused unless force.
    """
    from tf_semantic_inpaint.images import encode_png, write_bytes_atomic

    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise InpaintError(f"{out_dir} is a file; pass a folder as the output.")
    targets = [os.path.join(out_dir, name) for name in FILES]
    existing = [t for t in targets if os.path.exists(t)]
    if existing and not force:
        raise InpaintError(
            f"{', '.join(existing)} already exist(s); pass --force to overwrite or choose another --out."
        )
    alternatives = report.alternatives_image()
    contents = [
        report.to_markdown().encode("utf-8"),
        (json.dumps(report.to_json(), indent=1, allow_nan=False) + "\n").encode("utf-8"),
        encode_png(report.figure_image()),
        None if alternatives is None else encode_png(alternatives),
    ]
    # Everything is rendered before the first write, so a failure leaves no partial result.
    written = [(target, content) for target, content in zip(targets, contents) if content is not None]
    for target, content in written:
        write_bytes_atomic(target, content)
    return [target for target, _ in written]


def _labelled_blocks(blocks, labels, resolution, channels):
    """Blocks of image rows, each named on the left, under one strip of column labels.

    Args:
        blocks: {row label: list of panels (one per column), each float32 [k, R, R, C]
            in [0, 1]}; panel j of a block fills column j of its k rows.
        labels: the column names.

    Returns:
        float32 [H, W, C] in [0, 1], each tile enlarged by pixel replication to at least
        FIGURE_TILE pixels.
    """
    from tf_semantic_inpaint.images import grid, label_strip, labelled, put_text, text_width

    scale = max(1, -(-FIGURE_TILE // resolution))
    tile, pad = resolution * scale, 2
    grids = []
    for name, panels in blocks.items():
        tiles = np.stack(panels, axis=1).reshape((-1,) + panels[0].shape[1:])  # row-major
        grids.append((name, grid(tiles, columns=len(panels), pad=pad, scale=scale)))
    side = max(text_width(name) for name in blocks) + 12
    header = labelled(np.zeros((0, grids[0][1].shape[1], channels), np.float32), labels, tile, pad)
    parts = [np.concatenate([label_strip(24, side, channels)[1](), header], axis=1)]
    for name, block in grids:
        canvas, as_image = label_strip(block.shape[0], side, channels)
        put_text(canvas, name, side // 2, block.shape[0] // 2 + 5, side - 4)
        parts.append(np.concatenate([as_image(), block], axis=1))
    return np.concatenate(parts, axis=0)
