"""Files and folders in, completed files out: the work of `tfinpaint inpaint`.

Everything that can be checked is checked before the search starts (inputs readable
and matching, outputs writable and not clobbering anything without --force), and
nothing is written unless all of it succeeds: every output is staged beside its
target and renamed into place at the end. Outputs keep the input's size, channels
(alpha too) and bit depth (16-bit PNGs stay 16-bit), so known pixels are unchanged.
"""

import dataclasses
import os
import sys
import tempfile

import numpy as np

from tf_semantic_inpaint import images as imaging
from tf_semantic_inpaint import masks as masking
from tf_semantic_inpaint.errors import InpaintError
from tf_semantic_inpaint.inpaint import complete, make_pair, mismatch_warnings

FILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
ALPHA_SUFFIXES = (".png", ".tif", ".tiff", ".webp")
COMPARE_LABELS = ("input", "masked", "G(z*)", "output")


@dataclasses.dataclass(frozen=True)
class Job:
    """One image to complete: where it comes from and where its results go."""

    image: str
    mask: str | None  # None: a generated --mask-type mask
    out: str
    compare: str | None
    samples: tuple = ()  # OUT_sample1.png ... when K > 1 samples are asked for
    sheet: str | None = None  # OUT_samples.png: masked | the K samples | the mean

    def targets(self):
        return [t for t in (self.out, self.compare, *self.samples, self.sheet) if t]


def _with_samples(job, k):
    """The Job with the paths of its K samples and their contact sheet (K > 1)."""
    if k <= 1:
        return job
    stem, suffix = os.path.splitext(job.out)
    return dataclasses.replace(job, samples=tuple(f"{stem}_sample{i}{suffix}" for i in range(1, k + 1)),
                               sheet=f"{stem}_samples.png")


def plan(image, mask, out, compare, samples=1):
    """The Jobs of a run: one file, or every image in a folder (masks by file name)."""
    if not os.path.isdir(image):
        stem = os.path.splitext(image)[0]
        return [_with_samples(Job(image, mask, out or f"{stem}_inpainted.png", compare), samples)]
    if not out:
        raise InpaintError("IMAGE is a folder: name an output folder with -o.")
    names = sorted(f for f in os.listdir(image) if f.lower().endswith(FILE_SUFFIXES))
    if not names:
        raise InpaintError(f"folder {image} holds no images ({', '.join(FILE_SUFFIXES)}).")
    jobs = []
    for name in names:
        mask_path = mask
        if mask is not None and os.path.isdir(mask):
            mask_path = os.path.join(mask, name)
            if not os.path.isfile(mask_path):
                raise InpaintError(f"no mask for {name}: expected {mask_path} (same file name).")
        stem = os.path.splitext(name)[0]
        jobs.append(_with_samples(Job(os.path.join(image, name), mask_path, os.path.join(out, f"{stem}.png"),
                                      os.path.join(compare, f"{stem}.png") if compare else None), samples))
    return jobs


def check_outputs(jobs, force):
    """Refuse, before any work, outputs that are inputs, collide, exist (without force) or cannot be written."""
    import cv2

    inputs = {os.path.abspath(p) for job in jobs for p in (job.image, job.mask) if p}
    seen = set()
    for target in (t for job in jobs for t in job.targets()):
        path = os.path.abspath(target)
        if path in inputs:
            raise InpaintError(f"output {target} is one of the inputs; choose another -o.")
        if path in seen:
            raise InpaintError(f"two inputs would both write {target} (same name, other suffix); "
                               "rename one or run them apart.")
        seen.add(path)
        if os.path.isdir(path):
            raise InpaintError(f"output {target} is a folder; name a file.")
        if os.path.exists(path) and not force:
            raise InpaintError(f"{target} exists; pass --force to overwrite it or choose another -o.")
        if not cv2.haveImageWriter(path):
            raise InpaintError(f"cannot write {target}: no image format has the suffix "
                               f"{os.path.splitext(target)[1] or '(none)'!r}; use .png.")
        _check_writable_folder(os.path.dirname(path), target)


def _check_writable_folder(folder, target):
    """The nearest existing ancestor of `folder` must be a writable directory."""
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise InpaintError(f"cannot write {target}: {existing} is a file, not a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InpaintError(f"cannot write {target}: the folder {existing} is not writable.")


def read_job(job, mask_type=None, mask_seed=0, resize_mask=False):
    """(Pair, bit depth) of a Job: its image and mask read and checked.

    A PNG file's own bytes go to the model, so it sees exactly what TF Serving would.
    """
    if job.mask is not None:
        return decode_pair(_read(job.image, "image"), _read(job.mask, "mask"), resize_mask, job.image, job.mask)
    data = _read(job.image, "image")
    image, depth = imaging.decode_image_with_depth(data, job.image)
    mask = masking.make_mask(mask_type, image.shape[0], image.shape[1], mask_seed)
    return make_pair(image, mask, resize_mask, _png_or_none(data), None, job.image), depth


def decode_pair(image_data, mask_data, resize_mask=False, image_name=None, mask_name=None):
    """(Pair, bit depth) of an image file's bytes and its mask file's bytes (white = missing).

    What `read_job` does with local files, for callers that read the bytes elsewhere
    (the Beam pipeline, from any file system); names are for error messages.
    """
    image, depth = imaging.decode_image_with_depth(image_data, image_name)
    mask = masking.decode_mask(mask_data, mask_name)
    pair = make_pair(image, mask, resize_mask, _png_or_none(image_data), _png_or_none(mask_data),
                     image_name, mask_name)
    return pair, depth


def _read(path, what):
    if not os.path.isfile(path):
        raise InpaintError(f"{what} {path!r} does not exist.")
    with open(path, "rb") as f:
        return f.read()


def _png_or_none(data):
    """The bytes when they are a PNG (sent as they are), else None (re-encoded from the pixels)."""
    return data if data.startswith(b"\x89PNG\r\n\x1a\n") else None


def comparison(result, original):
    """input | masked | G(z*) | output side by side under labels, float [h, w, C], enlarged if small."""
    panels = [imaging.colour_and_alpha(x)[0] for x in (original, result.masked, result.generated, result.output)]
    scale = max(1, 128 // max(original.shape[:2]))
    body = imaging.grid(np.stack(panels), columns=4, scale=scale)
    return imaging.labelled(body, COMPARE_LABELS, tile=original.shape[1] * scale)


def contact_sheet(result):
    """masked | sample 1..K | mean side by side under labels, float [h, w, C], enlarged if small."""
    panels = [result.masked, *result.samples] + ([result.mean] if result.mean is not None else [])
    labels = ["masked"] + [f"sample {i}" for i in range(1, len(result.samples) + 1)] + (
        ["mean"] if result.mean is not None else [])
    panels = [imaging.colour_and_alpha(x)[0] for x in panels]
    scale = max(1, 128 // max(panels[0].shape[:2]))
    body = imaging.grid(np.stack(panels), columns=len(panels), scale=scale)
    return imaging.labelled(body, labels, tile=panels[0].shape[1] * scale)


def encode_for(path, image, depth):
    """The bytes of `image` in the format of `path`'s suffix (PNG keeps `depth`)."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in ALPHA_SUFFIXES:
        image = imaging.colour_and_alpha(image)[0]
    return imaging.encode_image(suffix, image, depth if suffix == ".png" else 8)


def _settings(model, overrides, batch, warn):
    """The model's defaults with `overrides` ({field: value}), checked against its limits.

    None (the model's own, baked-in settings) when the model does not say its defaults
    (a server that batches requests) and nothing is overridden.
    """
    from tf_semantic_inpaint.contract import SearchSettings

    if model.defaults is None:
        if not overrides:
            return None
        warn("the server does not report its search defaults (it batches requests?): the options not "
             "given take the library's defaults.")
    return dataclasses.replace(model.defaults or SearchSettings(), **overrides).check(model.limits, batch)


def write_all(contents):
    """Write {path: bytes} all or nothing: staged beside each target, then renamed into place."""
    staged, made = [], []
    try:
        for path, data in contents.items():
            folder = os.path.dirname(os.path.abspath(path))
            missing = []
            while not os.path.exists(folder):
                missing.append(folder)
                folder = os.path.dirname(folder)
            for new in reversed(missing):
                os.mkdir(new)
                made.append(new)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-",
                                       suffix=os.path.basename(path))
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o666 & ~imaging.umask())
    except BaseException:
        for tmp, _ in staged:
            os.unlink(tmp)
        for folder in reversed(made):
            os.rmdir(folder)
        raise
    for tmp, path in staged:
        os.replace(tmp, path)
    return list(contents)


def inpaint_files(image, mask, out=None, model=None, settings=None, mask_type=None, mask_seed=0, blend=True,
                  compare=None, resize_mask=False, force=False, batch_size=16, progress=True, warn=None,
                  estimate="sample"):
    """Inpaint image files (one file, or every image in a folder); return the written paths.

    Args:
        image: an image file or a folder of images.
        mask: a mask file (white = missing), a folder of masks named like the images,
            or None with `mask_type`.
        out: output file (single image) or folder (batch).
        model: a LocalModel / RestModel, a callable returning one (called after every
            input is checked), a SavedModel path, or None for the shipped model.
        settings: {SearchSettings field: value} overriding the model's defaults; with
            samples K > 1, OUT_sample1..K and a contact sheet OUT_samples.png are written too.
        compare: where to write input | masked | G(z*) | output figures.
        estimate: "sample", "mean" or "typical", the completion written to `out` (inpaint.ESTIMATES).
        warn: callable(message) for warnings (default: print to stderr).
    """
    from tf_semantic_inpaint.progress import Progress

    warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr))
    jobs = plan(image, mask, out, compare, (settings or {}).get("samples", 1))
    check_outputs(jobs, force)
    loaded = [read_job(job, mask_type, mask_seed, resize_mask) for job in jobs]
    if model is None or isinstance(model, str):
        from tf_semantic_inpaint.local import LocalModel

        model = LocalModel(model)
    elif callable(model) and not hasattr(model, "inpaint_png"):
        model = model()
    settings = _settings(model, settings or {}, min(batch_size, len(jobs)), warn)
    for message in dict.fromkeys(m for pair, _ in loaded for m in mismatch_warnings(pair.image, model)):
        warn(message)
    for job, (pair, _) in zip(jobs, loaded):
        if pair.image.shape[-1] == 4 and os.path.splitext(job.out)[1].lower() not in ALPHA_SUFFIXES:
            warn(f"{job.out} cannot hold the alpha channel of {job.image}; it is dropped (use .png to keep it).")

    groups = range(0, len(loaded), batch_size)
    steps = settings.iterations if settings is not None else 1  # behind a batching server: unknown
    bar = Progress(steps * len(groups), "latent search", enabled=progress)
    results = []
    for g, start in enumerate(groups):
        report = lambda done, total, losses, offset=g * steps: bar.update(offset + done)  # noqa: E731
        results += complete([pair for pair, _ in loaded[start:start + batch_size]], model, settings, blend, report,
                            estimate)
        bar.update((g + 1) * steps)
    bar.close()

    contents = {}
    for job, (pair, depth), result in zip(jobs, loaded, results):
        contents[job.out] = encode_for(job.out, result.output, depth)
        if job.compare:
            contents[job.compare] = encode_for(job.compare, comparison(result, pair.image), 8)
        for path, sample in zip(job.samples, result.samples):
            contents[path] = encode_for(path, sample, depth)
        if job.sheet:
            contents[job.sheet] = encode_for(job.sheet, contact_sheet(result), 8)
    return write_all(contents)
