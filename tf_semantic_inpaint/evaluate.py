"""The paper's Table 1: PSNR (and SSIM) of every method on every mask kind.

Yeh et al. (2017) compare their latent search with classical inpainting on the test
images of each dataset under the four corruption types. Here, for the first n images
of a split at the MODEL's resolution and channels:

    report = evaluate("saved_models/fashion_mnist", n=500)
    print(report.to_markdown())
    write(report, "results/fashion_mnist")     # results.md, results.json, examples.png

Protocol, the same for every method:
- image i under mask kind k gets make_mask(k, R, R, seed * MASK_SEED_STRIDE + i): one
  mask per image, identical for every method;
- every method receives the image with its hole ZEROED and the mask (the baselines'
  contract, `fn(image, mask) -> completed`, float32 [R, R, C] in [0, 1]), so no
  method can read the missing pixels;
- PSNR and SSIM compare the whole completed image with the original in [0, 1]
  (metrics.psnr / metrics.ssim); per-image PSNRs are capped at metrics.PSNR_CAP.

Methods: "ours" (the latent search, G(z*) composited into the hole), "ours_blend"
(the same search, Poisson blended; both come from one `inpaint_batch` call),
"context_encoder" (Pathak et al.'s rival, any exported model with the `inpaint`
contract; the shipped one by default), the classical baselines and the data-driven
ones (built from the TRAINING split), plus any `extra_methods` a caller passes in
with the baselines' contract.

Semantic metrics, when a judge exists for the dataset (judge.py; the shipped one by
default) and the dataset has labels:
- semantic accuracy: the share of completed images the judge assigns to the image's
  true class; the judge's accuracy on the uncorrupted images is the ceiling, on the
  masked inputs (hole black) the floor;
- Fréchet distance (metrics.frechet_distance: FID's formula on the judge's
  penultimate features, not Inception FID) between the n completed images and a
  REFERENCE set of real images of the same split that are not evaluated: images
  n .. n + REFERENCE_IMAGES - 1. It shrinks as n grows (finite-sample bias), so
  compare values only at one n; the uncorrupted images' distance to the same
  reference is the floor that sampling alone gives.
"""

import dataclasses
import datetime
import json
import os
import sys
import time

import numpy as np

from tf_semantic_inpaint import baselines, metrics
from tf_semantic_inpaint.errors import InpaintError
from tf_semantic_inpaint.masks import MASK_KINDS, MASK_TYPES, make_mask

OURS = ("ours", "ours_blend")
CONTEXT_ENCODER = "context_encoder"
METHODS = OURS + (CONTEXT_ENCODER,) + tuple(baselines.CLASSICAL) + tuple(baselines.DATA_DRIVEN)
# Real images of the split after the n evaluated ones: the Fréchet distance's reference.
REFERENCE_IMAGES = 5000
# Mask seeds are seed * stride + image index: a prime above any test split's size keeps
# the seeds of different `seed`s apart.
MASK_SEED_STRIDE = 100_003
# Largest training set held for the data-driven baselines (float32 in memory): all of
# Fashion-MNIST (179 MB); CelebA at 64x64x3 would need 8 GB, so it gets the first 43,690.
TRAIN_BYTES_BUDGET = 2 << 30
EXAMPLES = 3  # example rows per mask kind in the figure
FIGURE_TILE = 112  # tiles are enlarged by pixel replication to at least this many pixels
SHORT_NAMES = {
    "ours": "ours", "ours_blend": "ours+blend", "context_encoder": "CE", "telea": "Telea", "navier_stokes": "N-S",
    "biharmonic": "biharm.", "total_variation": "TV", "train_mean": "mean",
    "nearest_neighbour": "NN",
}


class EvaluationError(InpaintError):
    """The evaluation cannot run as asked; the message says what to change."""


# --- Results ---------------------------------------------------------------------


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
        seconds: {method: wall-clock seconds over all n x masks images}; "ours" and
            "ours_blend" share one search, so both carry its time.
        examples: {mask kind: {"masked", "truth": float32 [k, R, R, C] in [0, 1],
            "outputs": {method: float32 [k, R, R, C]}}}, the first k images.
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

    def paired_pairs(self):
        """[(ours, rival)]: our best row against the context encoder and nearest neighbour."""
        ours = next((m for m in ("ours_blend", "ours") if m in self.methods), None)
        if ours is None:
            return []
        return [(ours, rival) for rival in (CONTEXT_ENCODER, "nearest_neighbour") if rival in self.methods]

    def per_image_ms(self, method):
        """Mean wall-clock milliseconds per image (and mask) of `method`."""
        return 1000.0 * self.seconds[method] / (self.n * len(self.masks))

    def header(self):
        """One line: dataset, split, n, resolution, model and search settings."""
        if self.settings:
            s = self.settings
            search = (f"{s['iterations']} iterations, {s['restarts']} restarts, learning rate "
                      f"{s['learning_rate']}, λ {s['lam']}, seed {s['seed']}"
                      + "".join(f", {k} {s[k]}" for k in ("prior", "window") if k in s))
        else:
            search = "the server's defaults"
        return (f"Dataset {self.dataset}, split {self.split}, n = {self.n} images at "
                f"{self.resolution}x{self.resolution}x{self.channels}; model `{self.model_path}`; "
                f"search: {search}; mask seed {self.seed}.")

    def to_markdown(self):
        """The table as Markdown: rows = methods, columns = mask kinds, "PSNR dB / SSIM"."""
        # Best at the shown precision, so ties as printed are all bold.
        best_psnr = {k: max(round(self.scores[m][k].psnr, 2) for m in self.methods) for k in self.masks}
        best_ssim = {k: max(round(self.scores[m][k].ssim, 3) for m in self.methods) for k in self.masks}

        def bold_if(text, best):
            return f"**{text}**" if float(text) == best else text

        lines = [f"# Inpainting evaluation: {self.dataset} {self.split}, n = {self.n}", "",
                 self.header(), ""]
        notes = []
        if self.channel_note:
            notes.append(self.channel_note[0].upper() + self.channel_note[1:] + ".")
        if self.train_images:
            used, available = self.train_images
            notes.append(f"Data-driven baselines use {used:,} of the {available:,} training images.")
        if notes:
            lines += [" ".join(notes), ""]
        lines += [
            f"Mean PSNR in dB over the whole image (each image capped at {metrics.PSNR_CAP:g} dB) / "
            "mean SSIM; best per column in bold.",
            "",
            "| method | " + " | ".join(self.masks) + " |",
            "| --- |" + " ---: |" * len(self.masks),
        ]
        for method, cells in self.rows:
            texts = [f"{bold_if(f'{c.psnr:.2f}', best_psnr[c.mask])} / "
                     f"{bold_if(f'{c.ssim:.3f}', best_ssim[c.mask])}" for c in cells]
            lines.append(f"| {method} | " + " | ".join(texts) + " |")
        if self.has_semantics:
            lines += self._semantic_markdown()
        pairs = self.paired_pairs()
        if pairs:
            lines += ["", "PSNR paired per image, first method minus second: mean dB ± standard error, "
                      "share of images where the first is better.", "",
                      "| comparison | " + " | ".join(self.masks) + " |", "| --- |" + " ---: |" * len(self.masks)]
            for first, second in pairs:
                cells = [self.paired(first, second, kind) for kind in self.masks]
                lines.append(f"| {first} − {second} | " + " | ".join(
                    f"{m:+.2f} ± {e:.2f}, {100 * share:.0f}%" for m, e, share in cells) + " |")
        lines += ["", "| method | ms per image |", "| --- | ---: |"]
        lines += [f"| {m} | {self.per_image_ms(m):.1f} |" for m in self.methods]
        if "ours" in self.methods and "ours_blend" in self.methods:
            lines += ["", "ours and ours_blend come from one latent search; both rows show its time."]
        lines += ["", f"{self.date}; tensorflow {self.versions.get('tensorflow')}, "
                  f"keras {self.versions.get('keras')}; {self.total_seconds:.0f} s in all.", ""]
        return "\n".join(lines)

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
                 "", "| method | " + " | ".join(self.masks) + " |", "| --- |" + " ---: |" * len(self.masks)]
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
            "mask_seeds": f"make_mask(kind, R, R, seed * {MASK_SEED_STRIDE} + image index)",
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
                for first, second in self.paired_pairs()
            },
            "versions": self.versions,
            # Significant figures, not decimals: a fast method must not round to 0.
            "seconds": {m: _significant(s) for m, s in self.seconds.items()},
            "ms_per_image": {m: _significant(self.per_image_ms(m)) for m in self.methods},
            "total_seconds": round(self.total_seconds, 3),
            "results": {
                method: {
                    kind: {
                        "psnr": c.psnr, "psnr_std": c.psnr_std, "ssim": c.ssim, "ssim_std": c.ssim_std,
                        "known_pixels_kept": c.known_kept,
                        "psnr_per_image": list(c.psnr_per_image),
                        "ssim_per_image": list(c.ssim_per_image),
                        **({"semantic_accuracy": c.semantic_accuracy, "frechet_distance": c.frechet_distance,
                            "correct_per_image": list(c.correct_per_image)} if self.has_semantics else {}),
                    }
                    for kind, c in zip(self.masks, cells)
                }
                for method, cells in self.rows
            },
        }

    def figure_image(self):
        """Example completions as float32 [H, W, C] in [0, 1], labelled.

        One block of rows per mask kind (its name on the left), columns
        masked input (hole in mid grey) | each method | ground truth, each tile
        enlarged by pixel replication to at least FIGURE_TILE pixels.
        """
        from tf_semantic_inpaint.images import grid, label_strip, labelled, put_text, text_width

        labels = ["masked"] + [SHORT_NAMES.get(m, m) for m in self.methods] + ["truth"]
        scale = max(1, -(-FIGURE_TILE // self.resolution))
        tile, pad = self.resolution * scale, 2
        blocks = []
        for kind in self.masks:
            example = self.examples[kind]
            panels = [example["masked"]] + [example["outputs"][m] for m in self.methods] + [example["truth"]]
            tiles = np.stack(panels, axis=1).reshape((-1,) + panels[0].shape[1:])  # row-major
            blocks.append((kind, grid(tiles, columns=len(panels), pad=pad, scale=scale)))
        side = max(text_width(kind) for kind in self.masks) + 12
        header = labelled(np.zeros((0, blocks[0][1].shape[1], self.channels), np.float32), labels, tile, pad)
        parts = [np.concatenate([label_strip(24, side, self.channels)[1](), header], axis=1)]
        for kind, block in blocks:
            canvas, as_image = label_strip(block.shape[0], side, self.channels)
            put_text(canvas, kind, side // 2, block.shape[0] // 2 + 5, side - 4)
            parts.append(np.concatenate([as_image(), block], axis=1))
        return np.concatenate(parts, axis=0)

    def figure(self, path):
        """Write `figure_image()` to `path` as a PNG (atomically)."""
        from tf_semantic_inpaint.images import write_image

        write_image(path, self.figure_image())


def _significant(value, digits=4):
    """`value` rounded to `digits` significant figures (0.000123456 -> 0.0001235)."""
    return float(f"{value:.{digits}g}")


# --- Data ------------------------------------------------------------------------


def evaluation_images(dataset, split, n, resolution, channels, data_dir=None):
    """The first n images of a split, as the evaluation sees them.

    Args:
        dataset, split, data_dir: as in data.load_images.
        n: how many, from the start of the split (its fixed order).
        resolution, channels: the model's.

    Returns:
        float32 [n, resolution, resolution, channels] in [0, 1].

    Raises:
        EvaluationError: n is not in 1..the split's size (the message gives the size).
    """
    from tf_semantic_inpaint import data

    images, count = data.load_images(dataset, split, resolution, channels, data_dir)
    if n > count:
        raise EvaluationError(
            f"the {split} split of {dataset} has {count:,} images, fewer than n = {n:,}; "
            f"pass n <= {count:,}."
        )
    return _to_unit(images.take(n), n)


def training_images(dataset, resolution, channels, data_dir=None, limit=None):
    """The data-driven baselines' training images, at most TRAIN_BYTES_BUDGET of them.

    Returns:
        (float32 [N, resolution, resolution, channels] in [0, 1], images available).
    """
    from tf_semantic_inpaint import data

    images, count = data.load_images(dataset, "train", resolution, channels, data_dir)
    fit = max(1, TRAIN_BYTES_BUDGET // (4 * resolution * resolution * channels))
    used = min(count, limit or count, fit)
    if used < min(count, limit or count):
        print(f"notice: the data-driven baselines use the first {used:,} of {count:,} training "
              f"images ({TRAIN_BYTES_BUDGET >> 30} GiB); pass train_images_limit to choose.",
              file=sys.stderr)
    return _to_unit(images.take(used), used), count


def _to_unit(images, count):
    """A tf.data of [-1, 1] images -> float32 [count, ...] in [0, 1]."""
    batches = list(images.batch(4096).as_numpy_iterator())
    stacked = np.concatenate(batches) if batches else np.zeros((0,), np.float32)
    if len(stacked) != count:
        raise EvaluationError(f"expected {count:,} images but the dataset gave {len(stacked):,}.")
    from tf_semantic_inpaint.preprocess import to_unit_range

    return to_unit_range(stacked).numpy().astype(np.float32)


def _channel_note(dataset, channels):
    """How load_images converts the dataset's channels for the model, or None."""
    from tf_semantic_inpaint import data

    native = data.dataset_channels(dataset)
    if native == channels:
        return None
    if channels == 3:
        return "grey images replicated to RGB for the RGB model"
    return "RGB images reduced to grey by luminance for the grey model"


# --- Checks ----------------------------------------------------------------------


def check_masks(masks):
    """Mask kinds as a tuple without repeats; EvaluationError for unknown ones."""
    masks = (masks,) if isinstance(masks, str) else tuple(dict.fromkeys(masks))
    if not masks:
        raise EvaluationError(f"no mask kinds given; use some of {', '.join(MASK_TYPES)}.")
    unknown = [k for k in masks if k not in MASK_KINDS]
    if unknown:
        raise EvaluationError(
            f"unknown mask kind(s) {', '.join(map(repr, unknown))}: use {', '.join(MASK_KINDS)}."
        )
    return masks


def check_methods(methods=None, extra_methods=None):
    """Method names in table order; EvaluationError for unknown or clashing ones.

    None means every built-in method; extra methods are always appended.
    """
    extra = dict(extra_methods or {})
    for name, fn in extra.items():
        if name in METHODS or not isinstance(name, str) or not callable(fn):
            raise EvaluationError(
                f"extra method {name!r} must be a new name (not one of {', '.join(METHODS)}) "
                "with a callable fn(image, mask) -> completed."
            )
    if methods is None:
        methods = METHODS
    methods = (methods,) if isinstance(methods, str) else tuple(dict.fromkeys(methods))
    valid = METHODS + tuple(extra)
    unknown = [m for m in methods if m not in valid]
    if unknown:
        raise EvaluationError(
            f"unknown method(s) {', '.join(map(repr, unknown))}: use {', '.join(valid)}."
        )
    methods += tuple(m for m in extra if m not in methods)
    if not methods:
        raise EvaluationError(f"no methods given; use some of {', '.join(valid)}.")
    return methods


def _checked_output(name, output, image):
    """A method's output as float32, or EvaluationError if its shape or values are wrong."""
    output = np.asarray(output, np.float32)
    if output.shape != image.shape:
        raise EvaluationError(
            f"method {name!r} returned shape {output.shape} for an image of shape {image.shape}; "
            "it must return the completed image of the same shape."
        )
    if not np.all(np.isfinite(output)):
        raise EvaluationError(f"method {name!r} returned NaN or infinite pixels; fix the method.")
    return output


# --- The evaluation --------------------------------------------------------------


def evaluate(model=None, dataset="fashion_mnist", split="test", n=500, masks=MASK_TYPES,
             methods=None, seed=0, data_dir=None, settings=None, batch_size=64, progress=True,
             train_images_limit=None, extra_methods=None, examples=EXAMPLES,
             context_encoder=None, judge=None):
    """Score every method on every mask kind over the first n images of a split.

    Args:
        model: a LocalModel (or anything with `search`, `resolution`, `channels`), a
            SavedModel path or model base, or None for the shipped model.
        dataset, split, data_dir: as in data.load_images; images are loaded at the
            model's resolution and channels.
        n: images, the first n of the split.
        masks: mask kinds (MASK_TYPES by default; "half-left" etc. work too).
        methods: names from METHODS, or None for all of them.
        seed: the masks' seed; image i gets make_mask(kind, R, R, seed * 100003 + i).
        settings: SearchSettings of the latent search (default: the model's).
        batch_size: images per latent-search call.
        progress: show a tqdm bar over (mask kind x batch).
        train_images_limit: use at most this many training images for the
            data-driven baselines (default: all that fit in TRAIN_BYTES_BUDGET).
        extra_methods: {name: fn(image, mask) -> completed} with the baselines'
            contract: image float32 [R, R, C] in [0, 1] with the hole zeroed, mask
            float32 [R, R, 1] (1 = known); the output float [R, R, C] in [0, 1]. A
            test oracle can close over `evaluation_images(...)` and return the image
            matching the known pixels (e.g. baselines.NearestNeighbour over them).
        examples: images per mask kind kept for the figure.
        context_encoder: the "context_encoder" method's model: an exported context
            encoder's SavedModel path or model base (or its LocalModel), run through the
            same contract as `model`; None for the one shipped for the dataset (its rows
            are left out when there is none, unless asked for in `methods`); False for none.
        judge: the classifier behind the semantic metrics: a judge SavedModel path or
            model base (or a judge.LoadedJudge); None for the one shipped for the
            dataset (none: no semantic metrics); False for none.

    Returns:
        a Report.

    Raises:
        EvaluationError (an InpaintError) for unknown masks or methods, n larger than
        the split, or data-driven baselines on a split they were built from; all
        checked before the model or the data are loaded, except the split's size.
    """
    from tf_semantic_inpaint import data
    from tf_semantic_inpaint.inpaint import inpaint_batch
    from tf_semantic_inpaint.local import LocalModel
    from tf_semantic_inpaint.progress import Progress

    started = time.perf_counter()
    masks = check_masks(masks)
    asked_for_ce = methods is not None and CONTEXT_ENCODER in methods
    methods = check_methods(methods, extra_methods)
    if n < 1 or batch_size < 1:
        raise EvaluationError(f"n and batch_size must be at least 1, got n = {n}, batch_size = {batch_size}.")
    data.check_dataset_name(dataset)
    data_driven = [m for m in methods if m in baselines.DATA_DRIVEN]
    if data_driven and split in ("train", "all"):
        # The baselines would find the evaluated images themselves in their training set.
        raise EvaluationError(
            f"{', '.join(data_driven)} draw on the training images, which the {split} split "
            "contains; evaluate on validation or test, or leave them out of the methods."
        )

    context_encoder = _context_encoder(context_encoder, dataset) if CONTEXT_ENCODER in methods else None
    if context_encoder is None:
        if asked_for_ce:
            raise EvaluationError(
                f"no context encoder for {dataset}: pass one (--context-encoder PATH) or leave "
                f"{CONTEXT_ENCODER} out of the methods."
            )
        methods = tuple(m for m in methods if m != CONTEXT_ENCODER)
    judge = _judge(judge, dataset)

    if not hasattr(model, "search"):
        model = LocalModel(model)
    settings = settings or getattr(model, "defaults", None)
    if settings is not None and hasattr(model, "limits"):  # one search call must fit the model's limits
        per_image = settings.restarts * max(settings.iterations, 1)
        batch_size = max(1, min(batch_size, model.limits.max_batch,
                                model.limits.max_candidates // settings.restarts,
                                model.limits.max_candidate_steps // per_image))
    resolution, channels = model.resolution, model.channels
    if context_encoder is not None and (context_encoder.resolution, context_encoder.channels) != (
            resolution, channels):
        raise EvaluationError(
            f"the context encoder works at {context_encoder.resolution}x{context_encoder.resolution}x"
            f"{context_encoder.channels}, the model at {resolution}x{resolution}x{channels}; "
            "compare models of one resolution and channels."
        )
    truth = evaluation_images(dataset, split, n, resolution, channels, data_dir)
    semantics = _Semantics(judge, dataset, split, n, resolution, channels, data_dir) if judge else None
    if semantics:
        semantics.add(_UNCORRUPTED, None, truth)

    runners, train_info = {}, None
    classical = [m for m in methods if m in baselines.CLASSICAL]
    if classical:
        runners.update(baselines.make_baselines(classical))
    if data_driven:
        train, available = training_images(dataset, resolution, channels, data_dir, train_images_limit)
        runners.update(baselines.make_baselines(data_driven, train))
        train_info = (len(train), available)
    runners.update(dict(extra_methods or {}))

    seconds = dict.fromkeys(methods, 0.0)
    psnrs = {m: {k: [] for k in masks} for m in methods}
    ssims = {m: {k: [] for k in masks} for m in methods}
    kept = {m: dict.fromkeys(masks, True) for m in methods}
    shown = {}
    keep = max(1, min(examples, n))
    batches = range(0, n, batch_size)
    bar = Progress(len(masks) * len(batches), "evaluate", unit="batch", enabled=progress)
    for kind in masks:
        all_masks = np.stack([make_mask(kind, resolution, resolution, seed * MASK_SEED_STRIDE + i)
                              for i in range(n)])
        for start in batches:
            original = truth[start:start + batch_size]
            mask = all_masks[start:start + batch_size]
            # Every method sees the hole zeroed: none can read the missing pixels.
            given = original * mask
            outputs = {}
            if any(m in methods for m in OURS):
                step = bar.done
                report = lambda done, total, losses, kind=kind, step=step: bar.update(
                    step, f"{kind}: latent search {done}/{total}")
                clock = time.perf_counter()
                results = inpaint_batch(list(given), list(mask), model, settings,
                                        blend="ours_blend" in methods, progress=report)
                spent = time.perf_counter() - clock
                for name, attribute in (("ours", "completed"), ("ours_blend", "blended")):
                    if name in methods:
                        outputs[name] = np.stack([getattr(r, attribute) for r in results])
                        seconds[name] += spent
            if context_encoder is not None:
                bar.update(bar.done, f"{kind}: context encoder")
                clock = time.perf_counter()
                # The same path as the latent search's: PNGs through the exported contract.
                results = inpaint_batch(list(given), list(mask), context_encoder, blend=False)
                outputs[CONTEXT_ENCODER] = np.stack([r.completed for r in results])
                seconds[CONTEXT_ENCODER] += time.perf_counter() - clock
            for name, fn in runners.items():
                bar.update(bar.done, f"{kind}: {name}")
                clock = time.perf_counter()
                outputs[name] = np.stack([_checked_output(name, fn(g, m), g) for g, m in zip(given, mask)])
                seconds[name] += time.perf_counter() - clock
            known = np.broadcast_to(mask > 0.5, original.shape)
            for name in methods:
                out = outputs[name]
                psnrs[name][kind].extend(np.minimum(metrics.psnr(out, original), metrics.PSNR_CAP))
                ssims[name][kind].extend(metrics.ssim(out, original))
                kept[name][kind] &= bool(np.array_equal(out[known], original[known]))
                if semantics:
                    semantics.add(name, kind, out)
            if semantics:
                semantics.add(_MASKED, kind, given)
            if start < keep:  # the first `keep` images are the figure's examples
                take = keep - start
                example = shown.setdefault(kind, {"outputs": {}})
                for key, value in (("masked", np.where(mask > 0.5, original, 0.5)),
                                   ("truth", original), ("mask", mask)):
                    example[key] = _joined(example.get(key), value[:take].astype(np.float32))
                for name in methods:
                    example["outputs"][name] = _joined(example["outputs"].get(name), outputs[name][:take])
            bar.update(bar.done + 1)
    bar.close()

    scores = {
        m: {k: _score(m, k, psnrs[m][k], ssims[m][k], kept[m][k],
                      semantics.result(m, k) if semantics else None) for k in masks}
        for m in methods
    }
    return Report(
        dataset=dataset, split=split, n=n, resolution=resolution, channels=channels,
        model_path=_shown_path(getattr(model, "path", None)) or getattr(model, "url", None),
        model_card=getattr(model, "card", {}) or {},
        settings=({**dataclasses.asdict(settings), **(getattr(model, "card", {}) or {}).get("search_fixed", {})}
                  if settings is not None else None),
        seed=seed, masks=masks, methods=methods, scores=scores, seconds=seconds,
        examples=shown, channel_note=_channel_note(dataset, channels), train_images=train_info,
        context_encoder=(None if context_encoder is None else
                         {"path": _shown_path(context_encoder.path), "card": context_encoder.card}),
        judge=None if judge is None else {"path": _shown_path(judge.path), "card": judge.card},
        semantic_bounds=semantics.bounds(masks) if semantics else None,
        reference_images=semantics.reference if semantics else None,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        versions=_versions(), total_seconds=time.perf_counter() - started,
    )


# --- Context encoder and judge ------------------------------------------------------

# Pseudo-methods of the semantic bounds: the judge on the masked inputs (floor) and on the
# uncorrupted images (ceiling).
_MASKED, _UNCORRUPTED = "masked input", "uncorrupted"


def _context_encoder(context_encoder, dataset):
    """The context encoder's model (a LocalModel, or the caller's model object), or None.

    See `evaluate`; a SavedModel whose card names another model kind is refused.
    """
    from tf_semantic_inpaint import data
    from tf_semantic_inpaint.local import LocalModel, shipped_model_dir

    if context_encoder is False:
        return None
    if context_encoder is None:
        if dataset not in data.DATASETS:
            return None
        try:
            context_encoder = shipped_model_dir(f"{dataset}_context_encoder")
        except InpaintError:
            return None
    model = context_encoder if hasattr(context_encoder, "search") else LocalModel(context_encoder)
    kind = (getattr(model, "card", None) or {}).get("model")
    if kind != "context-encoder":
        raise EvaluationError(f"{getattr(model, 'path', model)} is a {kind or 'unknown'} model, not a context "
                              "encoder; pass one exported from a `tfinpaint train --model context-encoder` run.")
    return model


def _judge(judge, dataset):
    """The judge as a judge.LoadedJudge-like object, or None (see `evaluate`)."""
    from tf_semantic_inpaint import data

    if judge is False or not data.has_labels(dataset):
        if judge not in (None, False):
            raise EvaluationError(f"{dataset} has no class labels, so a judge cannot score it; "
                                  "leave out the judge.")
        return None
    from tf_semantic_inpaint.judge import LoadedJudge, shipped_judge_dir

    if judge is None:
        judge = shipped_judge_dir(dataset)
        if judge is None:
            return None
    return judge if hasattr(judge, "classify") else LoadedJudge(judge)


class _Semantics:
    """Collects the judge's verdicts on every output; gives semantic accuracy and Fréchet distances.

    Reference of the distances: images n .. n + REFERENCE_IMAGES - 1 of the split
    (real, never evaluated), or none when the split has fewer than two left.
    """

    def __init__(self, judge, dataset, split, n, resolution, channels, data_dir):
        from tf_semantic_inpaint import data

        self.judge = judge
        self.labels = evaluation_labels(dataset, split, n, data_dir)
        images, count = data.load_images(dataset, split, resolution, channels, data_dir)
        take = min(REFERENCE_IMAGES, count - n)
        self.reference, self.reference_features = None, None
        if take >= 2:
            self.reference = (n, take)
            _, self.reference_features = judge.classify(self._view(_to_unit(images.skip(n).take(take), take)))
        self.logits, self.features = {}, {}

    def _view(self, images):
        """Images at the judge's resolution and channels, prepared as the models' inputs are."""
        from tf_semantic_inpaint import preprocess

        if images.shape[1:] == (self.judge.resolution, self.judge.resolution, self.judge.channels):
            return images
        converted = preprocess.convert_channels(preprocess.resize_to(images, self.judge.resolution),
                                                self.judge.channels)
        return np.clip(converted.numpy(), 0.0, 1.0)

    def add(self, method, kind, images):
        """Judge `images`, the next batch of outputs of `method` on mask `kind`, in image order."""
        logits, features = self.judge.classify(self._view(images))
        self.logits.setdefault((method, kind), []).append(logits)
        self.features.setdefault((method, kind), []).append(features)

    def result(self, method, kind):
        """(semantic accuracy, Fréchet distance or None, correct [n] bool) of a method on a kind."""
        logits = np.concatenate(self.logits[(method, kind)])
        features = np.concatenate(self.features[(method, kind)])
        frechet = None
        if self.reference is not None and len(features) >= 2:
            frechet = round(metrics.frechet_distance(features, self.reference_features), 4)
        correct = np.argmax(logits, axis=-1) == self.labels
        return round(metrics.semantic_accuracy(logits, self.labels), 4), frechet, correct

    def bounds(self, masks):
        """The ceiling (uncorrupted images) and floor (masked inputs) of the semantic metrics."""
        pack = lambda r: {"accuracy": r[0], "frechet_distance": r[1]}  # noqa: E731
        return {"uncorrupted": pack(self.result(_UNCORRUPTED, None)),
                "masked": {k: pack(self.result(_MASKED, k)) for k in masks}}


def evaluation_labels(dataset, split, n, data_dir=None):
    """The class labels of the first n images of a split, int64 [n] (evaluation_images' order)."""
    from tf_semantic_inpaint import data

    labels = np.fromiter(data.load_labels(dataset, split, data_dir).take(n).as_numpy_iterator(), np.int64)
    if len(labels) != n:
        raise EvaluationError(f"expected {n:,} labels but the dataset gave {len(labels):,}.")
    return labels


def _joined(first, more):
    """np.concatenate([first, more]), or `more` when there is no first yet."""
    return more if first is None else np.concatenate([first, more])


def _score(method, kind, psnr_values, ssim_values, known_kept, semantic=None):
    """A Score from per-image values; `semantic` = (accuracy, Fréchet distance, correct) or None."""
    accuracy, frechet, correct = semantic or (None, None, None)
    psnr_values = np.asarray(psnr_values, np.float64)
    ssim_values = np.asarray(ssim_values, np.float64)
    return Score(
        method=method, mask=kind,
        psnr=metrics.mean_psnr(psnr_values), psnr_std=float(np.std(psnr_values)),
        ssim=float(np.mean(ssim_values)), ssim_std=float(np.std(ssim_values)),
        # Four decimals keep results.json small; the means use full precision.
        psnr_per_image=tuple(round(float(v), 4) for v in psnr_values),
        ssim_per_image=tuple(round(float(v), 4) for v in ssim_values),
        known_kept=known_kept,
        semantic_accuracy=accuracy, frechet_distance=frechet,
        correct_per_image=None if correct is None else tuple(int(c) for c in correct),
    )


def _versions():
    """Versions of Python and the libraries that shape the numbers."""
    import importlib.metadata

    import cv2
    import keras
    import scipy
    import tensorflow as tf

    try:
        ours = importlib.metadata.version("tf-semantic-inpaint")
    except importlib.metadata.PackageNotFoundError:
        ours = "unknown"
    try:
        import skimage

        skimage_version = skimage.__version__
    except ImportError:
        skimage_version = None
    return {
        "python": sys.version.split()[0], "tf_semantic_inpaint": ours,
        "tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__,
        "scipy": scipy.__version__, "opencv": cv2.__version__, "scikit-image": skimage_version,
    }


# --- Files -----------------------------------------------------------------------

def _shown_path(path):
    """path relative to the working directory when inside it (results get committed), else as is."""
    if path is None:
        return None
    relative = os.path.relpath(path)
    return path if relative.startswith(os.pardir) else relative


FILES = ("results.md", "results.json", "examples.png")


def write(report, out_dir, force=False):
    """Write results.md, results.json and examples.png into out_dir; return their paths.

    Everything is rendered first, then each file is written atomically, so a
    failure leaves no partial file. Existing files are refused unless force.
    """
    from tf_semantic_inpaint.images import encode_png, write_bytes_atomic

    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise EvaluationError(f"{out_dir} is a file; pass a folder as the output.")
    targets = [os.path.join(out_dir, name) for name in FILES]
    existing = [t for t in targets if os.path.exists(t)]
    if existing and not force:
        raise EvaluationError(
            f"{', '.join(existing)} already exist(s); pass --force to overwrite or choose another --out."
        )
    contents = [
        report.to_markdown().encode("utf-8"),
        (json.dumps(report.to_json(), indent=1, allow_nan=False) + "\n").encode("utf-8"),
        encode_png(report.figure_image()),
    ]
    # Everything is rendered before the first write, so a failure leaves no partial result.
    for target, content in zip(targets, contents):
        write_bytes_atomic(target, content)
    return targets
