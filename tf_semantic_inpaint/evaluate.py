"""The paper's Table 1: PSNR (and SSIM) of every method on every mask kind.

Yeh et al. (2017) compare their latent search with classical inpainting on the test
images of each dataset under the four corruption types. Here, for the first n images
of a split at the MODEL's resolution and channels:

    report = evaluate("saved_models/fashion_mnist", n=500)
    print(report.to_markdown())
    write(report, "results/fashion_mnist")     # results.md, results.json, examples.png, alternatives.png

This module chooses and runs the methods and collects their scores; report.py presents
them (Report: Markdown, JSON, figure; `write`, re-exported here).

Protocol, the same for every method:
- image i under mask kind k gets make_mask(k, R, R, seed * MASK_SEED_STRIDE + i): one
  mask per image, identical for every method;
- every method receives the image with its hole ZEROED and the mask (the baselines'
  contract, `fn(image, mask) -> completed`, float32 [R, R, C] in [0, 1]), so no
  method can read the missing pixels;
- PSNR and SSIM compare the whole completed image with the original in [0, 1]
  (metrics.psnr / metrics.ssim); per-image PSNRs are capped at metrics.PSNR_CAP.

Methods: "ours" (the latent search's best sample, G(z*) composited into the hole),
"ours_blend" (the same sample, Poisson blended), "ours_mean" (the same search's estimate
of the posterior mean, a loss-weighted average of its candidates, Poisson blended: the
best single guess by PSNR, where a sample is one sharp plausible completion),
"ours_typical" (the same search's candidate nearest that mean over the hole, Poisson
blended: a sharp sample of the object most restarts agree on; all four come from one
`inpaint_batch` call),
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

The alternatives figure shows, for the first images of one mask kind (half, when it is
evaluated), the search's K = min(ALTERNATIVES, restarts) samples beside its mean
(SearchSettings.samples = K on those images' search; the samples are chosen from the
same candidates, so the scored rows do not depend on K).
"""

import dataclasses
import datetime
import os
import sys
import time

import numpy as np

from tf_semantic_inpaint import baselines, metrics
from tf_semantic_inpaint.errors import InpaintError
from tf_semantic_inpaint.masks import MASK_KINDS, MASK_TYPES, make_mask
from tf_semantic_inpaint.report import FILES, Report, Score, write  # noqa: F401 (FILES, write: evaluate's API)

# Rows of the one latent search: sample, blended sample, mean, the sample nearest the mean.
OURS = ("ours", "ours_blend", "ours_mean", "ours_typical")
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
ALTERNATIVES = 4  # samples per image in the alternatives figure (fewer when restarts are fewer)


class EvaluationError(InpaintError):
    """The evaluation cannot run as asked; the message says what to change."""


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
    from tf_semantic_inpaint.progress import Progress

    started = time.perf_counter()
    masks, methods, asked_for_ce = _checked_request(masks, methods, extra_methods, n, batch_size, dataset, split)
    context_encoder = _context_encoder(context_encoder, dataset) if CONTEXT_ENCODER in methods else None
    if context_encoder is None:
        if asked_for_ce:
            raise EvaluationError(
                f"no context encoder for {dataset}: pass one (--context-encoder PATH) or leave "
                f"{CONTEXT_ENCODER} out of the methods."
            )
        methods = tuple(m for m in methods if m != CONTEXT_ENCODER)
    judge = _judge(judge, dataset)
    model, settings, batch_size = _search_model(model, settings, batch_size, context_encoder)
    resolution, channels = model.resolution, model.channels
    truth = evaluation_images(dataset, split, n, resolution, channels, data_dir)
    semantics = _Semantics(judge, dataset, split, n, resolution, channels, data_dir) if judge else None
    if semantics:
        semantics.add(_UNCORRUPTED, None, truth)
    runners, train_info = _baseline_runners(methods, extra_methods, dataset, model, data_dir, train_images_limit)
    run = _Methods(methods, model, settings, context_encoder, runners)
    keep = max(1, min(examples, n))
    # The alternatives figure's mask kind (half images leave the most room for different
    # answers) and samples per image (none without a search with settings).
    shown_kind = "half" if "half" in masks else masks[0]
    searched = settings is not None and any(m in methods for m in OURS)
    samples = min(ALTERNATIVES, settings.restarts) if searched else 0
    tally = _Tally(methods, masks, keep, semantics)
    batches = range(0, n, batch_size)
    bar = Progress(len(masks) * len(batches), "evaluate", unit="batch", enabled=progress)
    for kind in masks:
        all_masks = np.stack([make_mask(kind, resolution, resolution, seed * MASK_SEED_STRIDE + i)
                              for i in range(n)])
        for start in batches:
            original, mask = truth[start:start + batch_size], all_masks[start:start + batch_size]
            alternatives = samples if kind == shown_kind and start < keep else 0
            outputs, found = run(original * mask, mask, kind, bar, alternatives)
            tally.add(kind, start, original, mask, outputs, found)
            bar.update(bar.done + 1)
    bar.close()

    card = getattr(model, "card", {}) or {}
    return Report(
        dataset=dataset, split=split, n=n, resolution=resolution, channels=channels,
        model_path=_shown_path(getattr(model, "path", None)) or getattr(model, "url", None), model_card=card,
        settings={**dataclasses.asdict(settings), **card.get("search_fixed", {})} if settings is not None else None,
        seed=seed, masks=masks, methods=methods, scores=tally.scores(), seconds=run.seconds,
        examples=tally.examples, alternatives=tally.alternatives(shown_kind), mask_seed_stride=MASK_SEED_STRIDE,
        pairs=_pairs(methods),
        shared_search=tuple(m for m in OURS if m in methods),
        channel_note=_channel_note(dataset, channels), train_images=train_info,
        context_encoder=(None if context_encoder is None else
                         {"path": _shown_path(context_encoder.path), "card": context_encoder.card}),
        judge=None if judge is None else {"path": _shown_path(judge.path), "card": judge.card},
        semantic_bounds=semantics.bounds(masks) if semantics else None,
        reference_images=semantics.reference if semantics else None,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        versions=_versions(), total_seconds=time.perf_counter() - started,
    )


def _checked_request(masks, methods, extra_methods, n, batch_size, dataset, split):
    """(masks, methods, whether the context encoder was asked for by name), checked before any work.

    Raises EvaluationError for unknown masks, methods or dataset, n or batch_size below
    1, and data-driven baselines on a split that holds their training images.
    """
    from tf_semantic_inpaint import data

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
    return masks, methods, asked_for_ce


def _search_model(model, settings, batch_size, context_encoder):
    """(model, its SearchSettings, batch size fitting its limits) for the latent search.

    Raises EvaluationError when the context encoder works at another size than the model.
    """
    from tf_semantic_inpaint.local import LocalModel

    if not hasattr(model, "search"):
        model = LocalModel(model)
    settings = settings or getattr(model, "defaults", None)
    if settings is not None and hasattr(model, "limits"):  # one search call must fit the model's limits
        per_image = settings.restarts * max(settings.iterations, 1)
        batch_size = max(1, min(batch_size, model.limits.max_batch,
                                model.limits.max_candidates // settings.restarts,
                                model.limits.max_candidate_steps // per_image))
    shape = (model.resolution, model.channels)
    if context_encoder is not None and (context_encoder.resolution, context_encoder.channels) != shape:
        raise EvaluationError(
            f"the context encoder works at {context_encoder.resolution}x{context_encoder.resolution}x"
            f"{context_encoder.channels}, the model at {shape[0]}x{shape[0]}x{shape[1]}; "
            "compare models of one resolution and channels."
        )
    return model, settings, batch_size


def _baseline_runners(methods, extra_methods, dataset, model, data_dir, train_images_limit):
    """({name: fn(image, mask) -> completed} of the baselines and extra methods asked for,
    (training images used, available) or None when no data-driven baseline runs)."""
    runners, train_info = {}, None
    classical = [m for m in methods if m in baselines.CLASSICAL]
    if classical:
        runners.update(baselines.make_baselines(classical))
    data_driven = [m for m in methods if m in baselines.DATA_DRIVEN]
    if data_driven:
        train, available = training_images(dataset, model.resolution, model.channels, data_dir,
                                           train_images_limit)
        runners.update(baselines.make_baselines(data_driven, train))
        train_info = (len(train), available)
    runners.update(dict(extra_methods or {}))
    return runners, train_info


def _pairs(methods):
    """((ours, rival), ...): our best sample row, then the mean, against the context encoder
    and nearest neighbour; then the mean against the sample (the perception-distortion tradeoff)."""
    sample = next((m for m in ("ours_blend", "ours") if m in methods), None)
    ours = [m for m in (sample, "ours_mean", "ours_typical") if m in methods]
    pairs = [(m, rival) for m in ours for rival in (CONTEXT_ENCODER, "nearest_neighbour") if rival in methods]
    return tuple(pairs + ([("ours_mean", sample)] if sample in ours and "ours_mean" in ours else []))


class _Methods:
    """Runs every method on a batch and keeps each one's wall-clock time.

    Call with (given float32 [b, R, R, C] in [0, 1] with the hole zeroed, mask float32
    [b, R, R, 1], mask kind, progress bar, samples K) -> ({method: completed float32
    [b, R, R, C]}, alternatives); with K >= 1 the latent search returns K samples per
    image and alternatives is {"samples": float32 [b, K, R, R, C] in [0, 1] (blended
    when a blended row is asked for, best first), "sample_losses": float32 [b, K],
    "mean": float32 [b, R, R, C] (when the model gives one)}, else None.
    `seconds`: {method: seconds so far}; the latent-search rows share one search's time.
    """

    def __init__(self, methods, model, settings, context_encoder, runners):
        self.methods, self.model, self.settings = methods, model, settings
        self.context_encoder, self.runners = context_encoder, runners
        self.seconds = dict.fromkeys(methods, 0.0)

    def __call__(self, given, mask, kind, bar, samples=0):
        from tf_semantic_inpaint.inpaint import inpaint_batch

        outputs, alternatives = {}, None
        if any(m in self.methods for m in OURS):
            alternatives = self._latent_search(given, mask, kind, bar, samples, outputs)
        if self.context_encoder is not None:
            bar.update(bar.done, f"{kind}: context encoder")
            clock = time.perf_counter()
            # The same path as the latent search's: PNGs through the exported contract.
            results = inpaint_batch(list(given), list(mask), self.context_encoder, blend=False)
            outputs[CONTEXT_ENCODER] = np.stack([r.completed for r in results])
            self.seconds[CONTEXT_ENCODER] += time.perf_counter() - clock
        for name, fn in self.runners.items():
            bar.update(bar.done, f"{kind}: {name}")
            clock = time.perf_counter()
            outputs[name] = np.stack([_checked_output(name, fn(g, m), g) for g, m in zip(given, mask)])
            self.seconds[name] += time.perf_counter() - clock
        return outputs, alternatives

    def _latent_search(self, given, mask, kind, bar, samples, outputs):
        """Put every row of OURS into `outputs`, all from one `inpaint_batch` call; return
        the alternatives (see the class) when samples >= 1, else None."""
        from tf_semantic_inpaint.inpaint import inpaint_batch

        step = bar.done
        report = lambda done, total, losses: bar.update(step, f"{kind}: latent search {done}/{total}")  # noqa: E731
        settings = dataclasses.replace(self.settings, samples=samples) if samples else self.settings
        clock = time.perf_counter()
        results = inpaint_batch(list(given), list(mask), self.model, settings,
                                blend=any(m in self.methods for m in OURS[1:]), progress=report,
                                estimate="typical" if "ours_typical" in self.methods else "sample")
        spent = time.perf_counter() - clock
        if "ours_mean" in self.methods and any(r.mean is None for r in results):
            raise EvaluationError(f"{getattr(self.model, 'path', self.model)} gives no posterior mean (an export "
                                  "older than the mean); export the model again or leave ours_mean out.")
        for name, attribute in (("ours", "completed"), ("ours_blend", "blended"), ("ours_mean", "mean"),
                                ("ours_typical", "typical")):
            if name in self.methods:
                outputs[name] = np.stack([getattr(r, attribute) for r in results])
                self.seconds[name] += spent
        if not samples:
            return None
        found = {"samples": np.stack([np.stack(r.samples) for r in results]).astype(np.float32),
                 "sample_losses": np.array([r.sample_losses for r in results], np.float32)}
        if all(r.mean is not None for r in results):
            found["mean"] = np.stack([r.mean for r in results]).astype(np.float32)
        return found


class _Tally:
    """Collects, per method and mask kind, the per-image scores and the figure's examples.

    `add` takes each batch in image order; `scores()` gives {method: {kind: Score}};
    `examples` is Report.examples (the first `keep` images of each kind).
    """

    def __init__(self, methods, masks, keep, semantics):
        self.methods, self.keep, self.semantics = methods, keep, semantics
        self.psnrs = {m: {k: [] for k in masks} for m in methods}
        self.ssims = {m: {k: [] for k in masks} for m in methods}
        self.kept = {m: dict.fromkeys(masks, True) for m in methods}
        self.examples = {}
        self.found = {}  # {mask kind: the search's alternatives of the examples}

    def add(self, kind, start, original, mask, outputs, alternatives=None):
        """Score a batch: images start.. of `original` [b, R, R, C] under `mask`, outputs {method: [b, ...]};
        keep the examples' `alternatives` (see _Methods) when given."""
        known = np.broadcast_to(mask > 0.5, original.shape)
        for name in self.methods:
            out = outputs[name]
            self.psnrs[name][kind].extend(np.minimum(metrics.psnr(out, original), metrics.PSNR_CAP))
            self.ssims[name][kind].extend(metrics.ssim(out, original))
            self.kept[name][kind] &= bool(np.array_equal(out[known], original[known]))
            if self.semantics:
                self.semantics.add(name, kind, out)
        if self.semantics:
            self.semantics.add(_MASKED, kind, original * mask)
        if start < self.keep:  # the first `keep` images are the figure's examples
            take = self.keep - start
            example = self.examples.setdefault(kind, {"outputs": {}})
            for key, value in (("masked", np.where(mask > 0.5, original, 0.5)), ("truth", original), ("mask", mask)):
                example[key] = _joined(example.get(key), value[:take].astype(np.float32))
            for name in self.methods:
                example["outputs"][name] = _joined(example["outputs"].get(name), outputs[name][:take])
            for key, value in (alternatives or {}).items():
                found = self.found.setdefault(kind, {})
                found[key] = _joined(found.get(key), value[:take])

    def alternatives(self, kind):
        """Report.alternatives for mask `kind`, or None when no samples were asked for."""
        if kind not in self.found:
            return None
        example = self.examples[kind]
        return {"mask": kind, "masked": example["masked"], "truth": example["truth"], **self.found[kind]}

    def scores(self):
        """{method: {mask kind: Score}}, with the judge's verdicts when there is one."""
        semantics = self.semantics
        return {m: {k: _score(m, k, self.psnrs[m][k], self.ssims[m][k], self.kept[m][k],
                              semantics.result(m, k) if semantics else None) for k in self.psnrs[m]}
                for m in self.methods}

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
            context_encoder = shipped_model_dir(f"{dataset}_ce")  # saved_models/fashion_mnist_ce
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
