"""Batch inpainting on Apache Beam: image/mask pairs from any file system, one manifest.

    pip install "tf-semantic-inpaint[beam]"
    tfinpaint inpaint-beam 'photos/*.png' 'masks/*.png' --out completed/ --runner DirectRunner

The pipeline, for any runner (DirectRunner, Dataflow, Flink, Spark) and any file
system Beam supports (local paths, gs://, s3:// with Beam's gcp / aws extras):

    MatchFiles(images), MatchFiles(masks), the records of earlier runs
      -> pair by file stem (photos/a.png with masks/a.png)    unpaired -> dead letter
      -> skip pairs already done with this model and search   (re-runs resume)
      -> read, decode, check each pair                        unreadable, sizes differ -> dead letter
      -> RunInference(InpaintModelHandler): the exported SavedModel's `inpaint_png`
         path through the library calls `tfinpaint inpaint` makes
         (files.decode_pair, inpaint.complete, files.encode_for)   failed batch -> dead letter
      -> write OUT/<stem>.png and its record, each atomically
      -> OUT/manifest.jsonl (one line per image) and OUT/dead_letter.jsonl (one per bad pair)

A record (OUT/.records/<stem>.json) is written after its image, so a record always
describes a complete image: a run stopped half-way and started again redoes only the
images without one, and never leaves a half-written file where an output belongs.
Masks follow the command line's convention: white = missing.
"""

import dataclasses
import json
import os
import posixpath
import uuid

from tf_semantic_inpaint.errors import InpaintError, short_tf_message

try:
    import apache_beam as beam
    from apache_beam.io import fileio
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
    from apache_beam.options.pipeline_options import PipelineOptions
except ImportError as error:  # the core install stays light; Beam is an extra
    raise InpaintError(
        f"batch inpainting on Beam needs Apache Beam ({error}): "
        'pip install "tf-semantic-inpaint[beam]"'
    ) from None

from tf_semantic_inpaint.contract import SearchSettings
from tf_semantic_inpaint.files import FILE_SUFFIXES

MANIFEST = "manifest.jsonl"
DEAD_LETTER = "dead_letter.jsonl"
RECORDS = ".records"


@dataclasses.dataclass(frozen=True)
class BeamJob:
    """What one pipeline does; fixed at launch, the same on every worker.

    Attributes:
        images, masks: file patterns (or folders) Beam's FileSystems can match; `masks`
            may also name one mask file used for every image.
        out: the output folder (local, gs://, s3://, ...).
        model: the SavedModel directory (a version folder); None: the shipped model,
            which each worker finds in its own installed package.
        model_version: the model as written into every record: path ("shipped" for the
            model in the package), version and export time.
        settings: the search settings, complete (the model's defaults with the user's
            changes), checked against the model's limits at launch.
        blend: Poisson-blend G(z*) into each image.
        estimate: what fills the hole, "sample", "mean" or "typical" (inpaint.ESTIMATES).
        resize_mask: stretch a mask of another size to its image.
        force: redo pairs that already have a record for this model and search.
        batch_size: images per latent search (as `tfinpaint inpaint`).
    """

    images: str
    masks: str
    out: str
    model: str | None
    model_version: dict
    settings: SearchSettings
    blend: bool = True
    estimate: str = "sample"
    resize_mask: bool = False
    force: bool = False
    batch_size: int = 16

    @property
    def fingerprint(self):
        """What makes two runs' results interchangeable: model, search, blending, masks."""
        return {"model": self.model_version, "settings": dataclasses.asdict(self.settings),
                "blend": self.blend, "estimate": self.estimate, "resize_mask": self.resize_mask}


# --- Paths on any file system ---------------------------------------------------------


def _is_glob(pattern):
    return any(c in pattern for c in "*?[")


def _is_folder(path):
    return path.endswith("/") or (not _is_remote(path) and os.path.isdir(path))


def _is_remote(path):
    return "://" in path


def _join(folder, name):
    return FileSystems.join(folder.rstrip("/"), name) if _is_remote(folder) else os.path.join(folder, name)


def _name(path):
    return posixpath.basename(path) if _is_remote(path) else os.path.basename(path)


def _stem(path):
    return os.path.splitext(_name(path))[0]


def _pattern(path):
    """A folder becomes the pattern of the images in it (as `tfinpaint inpaint` reads folders)."""
    return _join(path, "*") if _is_folder(path) else path


def _read(path):
    with FileSystems.open(path) as f:
        return f.read()


def _write_atomic(path, data):
    """Write bytes to `path` through a temporary name beside it and a rename."""
    folder = path[: -len(_name(path))]
    tmp = f"{folder}.tmp-{uuid.uuid4().hex}-{_name(path)}"
    with FileSystems.create(tmp) as f:
        f.write(data)
    if FileSystems.exists(path):
        FileSystems.delete([path])  # the rename does not replace on every file system
    FileSystems.rename([tmp], [path])


# --- The model ------------------------------------------------------------------------


def load_model(model=None):
    """(LocalModel, SavedModel directory or None for shipped, version record) of `model`.

    Loaded once at launch, to check the search settings against the model's limits
    and to fix the version every worker uses; a remote model is copied locally first.
    """
    from tf_semantic_inpaint.contract import resolve_model_dir
    from tf_semantic_inpaint.local import LocalModel

    if model is not None and _is_remote(model):
        model = _newest_version(model.rstrip("/"))
    loaded = LocalModel(_local_copy(model))
    if model is not None and not _is_remote(model):
        model = os.path.abspath(resolve_model_dir(model))
    version = _name(model.rstrip("/")) if model else os.path.basename(loaded.path)
    return loaded, model, {"path": model or "shipped", "version": int(version) if version.isdigit() else version,
                           "exported": loaded.card.get("exported")}


def _newest_version(base):
    """`base` itself when it holds a SavedModel, else its newest integer version folder."""
    if FileSystems.exists(_join(base, "saved_model.pb")):
        return base
    folders = [posixpath.basename(posixpath.dirname(m.path)) for m in _match(_join(base, "*/saved_model.pb"))]
    versions = sorted((int(f) for f in folders if f.isdigit()), reverse=True)
    if not versions:
        raise InpaintError(f"{base} holds no SavedModel (no saved_model.pb in it or in a version folder).")
    return _join(base, str(versions[0]))


def _match(pattern):
    (result,) = FileSystems.match([pattern])
    return result.metadata_list


def _local_copy(model_dir):
    """A local copy of a remote SavedModel directory (TensorFlow reads local paths everywhere)."""
    if model_dir is None or not _is_remote(model_dir):
        return model_dir
    import tempfile

    local = tempfile.mkdtemp(prefix="tfinpaint-model-")
    prefix = model_dir.rstrip("/") + "/"
    for metadata in _match(prefix + "**"):
        target = os.path.join(local, metadata.path[len(prefix):])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(_read(metadata.path))
    return local


class InpaintModelHandler(ModelHandler):
    """RunInference's handler over our exported SavedModel (no tensorflow_hub needed).

    An example is a dict holding an `inpaint.Pair` (the image, its known-pixel mask
    and the PNG bytes the model receives, made by `files.decode_pair`); a prediction
    is a PredictionResult whose inference is (`inpaint.InpaintResult`, warnings), made
    by `inpaint.complete`: the calls `tfinpaint inpaint` makes, on the model's
    `inpaint_png` path, so both give the same images. A batch the model refuses is
    searched again image by image, so only the images it refuses alone fail; their
    inference is a `Refused` with the model's reason.
    """

    def __init__(self, model_dir, settings, blend=True, batch_size=16, estimate="sample"):
        # Fixed batches, as `tfinpaint inpaint`: Beam's adaptive batching starts at 1 and keeps
        # a batch under 10 s, which a search of 16 images exceeds (measured 25% slower).
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size)
        self.model_dir, self.settings, self.blend, self.estimate = model_dir, settings, blend, estimate

    def load_model(self):
        from tf_semantic_inpaint.local import LocalModel

        return LocalModel(_local_copy(self.model_dir))

    def run_inference(self, batch, model, inference_args=None):
        from tf_semantic_inpaint.inpaint import complete, mismatch_warnings

        def search(pairs):
            results = complete(pairs, model, self.settings, self.blend, estimate=self.estimate)
            return [(result, mismatch_warnings(pair.image, model)) for pair, result in zip(pairs, results)]

        def alone(pair):
            try:
                return search([pair])[0]
            except Exception as error:  # noqa: BLE001 (whatever the model says is this image's reason)
                return Refused(short_tf_message(error) or type(error).__name__)

        pairs = [example["pair"] for example in batch]
        try:
            inferences = search(pairs)
        except Exception:  # noqa: BLE001 (one bad image, or all of them together over the model's limits)
            inferences = [alone(pair) for pair in pairs]
        return [PredictionResult(example, inference, self.model_dir)
                for example, inference in zip(batch, inferences)]

    def get_num_bytes(self, batch):
        return sum(e["pair"].image.nbytes + len(e["pair"].image_png) for e in batch)

    def get_metrics_namespace(self):
        return "tfinpaint"


@dataclasses.dataclass(frozen=True)
class Refused:
    """The inference of an image the model refused on its own: the reason, one line."""

    reason: str


# --- Steps ----------------------------------------------------------------------------

_FAILED = "failed"


def _dead(paths, reason):
    """A dead letter: the pair's files and why it was not inpainted."""
    return {"input": paths.get("image"), "mask": paths.get("mask"), "reason": reason}


class _Pair(beam.DoFn):
    """(stem, {image: [...], mask: [...], record: [...]}) -> a pair to do, a record to keep, or a dead letter."""

    def __init__(self, job, shared_mask):
        self.job, self.shared_mask = job, shared_mask

    def process(self, element):
        stem, found = element
        for tag, value in self.sort(stem, found):
            yield value if tag is None else beam.pvalue.TaggedOutput(tag, value)

    def sort(self, stem, found):
        """[(output tag or None for the main output, element)] for one stem."""
        images = sorted(found["image"])
        masks = sorted(found.get("mask", [])) if self.shared_mask is None else [self.shared_mask]
        if not images:
            return []  # a mask without an image: nothing to do (as `tfinpaint inpaint` on a folder)
        if len(images) > 1:
            reason = f"{len(images)} images have the stem {stem!r}; their outputs would collide: rename one."
            return [(_FAILED, _dead({"image": image}, reason)) for image in images]
        paths = {"stem": stem, "image": images[0], "mask": masks[0] if len(masks) == 1 else None,
                "output": _join(self.job.out, f"{stem}.png")}
        if not masks:
            return [(_FAILED, _dead(paths, f"no mask for {_name(images[0])}: expected a file named "
                                          f"{stem}.* matching {self.job.masks}."))]
        if len(masks) > 1:
            names = ", ".join(_name(m) for m in masks)
            return [(_FAILED, _dead(paths, f"{len(masks)} masks have the stem {stem!r} ({names}): keep one."))]
        if paths["output"] in (paths["image"], paths["mask"]):
            return [(_FAILED, _dead(paths, f"the output {paths['output']} is one of the inputs; "
                                          "choose another --out."))]
        record = _previous_record(found.get("record", []))
        if not self.job.force and record is not None and _same_job(record, paths, self.job):
            beam.metrics.Metrics.counter("tfinpaint", "skipped").inc()
            return [("kept", record)]
        return [(None, paths)]


def _previous_record(texts):
    for text in texts:
        try:
            return json.loads(text)
        except ValueError:
            return None  # unreadable: redo the image
    return None


def _same_job(record, paths, job):
    return (record.get("input"), record.get("mask"), record.get("output")) == (
        paths["image"], paths["mask"], paths["output"]) and record.get("job") == job.fingerprint


class _Load(beam.DoFn):
    """Paths of a pair -> an example for the model handler, or a dead letter with the reason."""

    def __init__(self, resize_mask):
        self.resize_mask = resize_mask

    def process(self, paths):
        from tf_semantic_inpaint.files import decode_pair

        try:
            pair, depth = decode_pair(_read(paths["image"]), _read(paths["mask"]), self.resize_mask,
                                      paths["image"], paths["mask"])
        except InpaintError as error:
            yield beam.pvalue.TaggedOutput(_FAILED, _dead(paths, str(error)))
        except OSError as error:  # unreadable, vanished, no permission
            yield beam.pvalue.TaggedOutput(_FAILED, _dead(paths, f"cannot read: {error}"))
        else:
            yield {"pair": pair, "depth": depth, "paths": paths}


class _Write(beam.DoFn):
    """A prediction -> OUT/<stem>.png, then its record (each atomic); yields the record.

    A refused image yields its dead letter instead (tagged "failed").
    """

    def __init__(self, job):
        self.job = job

    def process(self, prediction):
        from tf_semantic_inpaint.files import encode_for

        example = prediction.example
        paths = example["paths"]
        if isinstance(prediction.inference, Refused):
            yield beam.pvalue.TaggedOutput(_FAILED, _dead(paths, f"inference failed: {prediction.inference.reason}"))
            return
        result, warnings = prediction.inference
        _write_atomic(paths["output"], encode_for(paths["output"], result.output, example["depth"]))
        record = {
            "input": paths["image"], "mask": paths["mask"], "output": paths["output"],
            "context_loss": result.context_loss, "prior_loss": result.prior_loss,
            "model": self.job.model_version["path"], "model_version": self.job.model_version["version"],
            "job": self.job.fingerprint,
        }
        if warnings:
            record["warnings"] = warnings
        _write_atomic(_join(_join(self.job.out, RECORDS), f"{paths['stem']}.json"),
                      json.dumps(record, sort_keys=True).encode())
        beam.metrics.Metrics.counter("tfinpaint", "inpainted").inc()
        yield record


def _failed_batch(failure):
    """RunInference's dead letter (a failure outside run_inference, e.g. loading the model)
    -> one dead letter per pair. Beam gives (batch, (type, repr, traceback lines))."""
    batch, error = failure
    reason = error[1] if isinstance(error, tuple) else short_tf_message(error)
    for example in batch:
        yield _dead(example["paths"], f"inference failed: {reason}")


def _manifest_line(record):
    """The manifest's view of a record: input, output, losses and model version."""
    keep = ("input", "mask", "output", "context_loss", "prior_loss", "model", "model_version", "warnings")
    return json.dumps({k: record[k] for k in keep if k in record}, sort_keys=True)


def _count(name):
    def count(element):
        beam.metrics.Metrics.counter("tfinpaint", name).inc()
        return element

    return count


def build(pipeline, job):
    """Add the batch-inpainting steps for `job` to `pipeline`."""
    images = (
        pipeline
        | "MatchImages" >> fileio.MatchFiles(_pattern(job.images))
        | "ImageKeys" >> beam.Map(lambda m: (_stem(m.path), m.path))
    )
    if _is_folder(job.images):  # a folder: its image files only (FILE_SUFFIXES), as `tfinpaint inpaint`
        images |= "ImageFiles" >> beam.Filter(lambda kv: kv[1].lower().endswith(FILE_SUFFIXES))
    shared_mask = job.masks if not _is_glob(job.masks) and not _is_folder(job.masks) else None
    groups = {"image": images}
    if shared_mask is None:
        groups["mask"] = (
            pipeline
            | "MatchMasks" >> fileio.MatchFiles(_pattern(job.masks))
            | "MaskKeys" >> beam.Map(lambda m: (_stem(m.path), m.path))
        )
        if _is_folder(job.masks):  # a notes.txt beside a.png must not count as a second mask
            groups["mask"] |= "MaskFiles" >> beam.Filter(lambda kv: kv[1].lower().endswith(FILE_SUFFIXES))
    groups["record"] = (
        pipeline
        | "MatchRecords" >> fileio.MatchFiles(_join(_join(job.out, RECORDS), "*.json"),
                                              empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW)
        | "ReadRecords" >> fileio.ReadMatches()
        | "RecordKeys" >> beam.Map(lambda f: (_stem(f.metadata.path), f.read_utf8()))
    )
    paired = (
        groups
        | "Pair" >> beam.CoGroupByKey()
        | "Check" >> beam.ParDo(_Pair(job, shared_mask)).with_outputs(_FAILED, "kept", main="todo")
    )
    loaded = paired.todo | "Load" >> beam.ParDo(_Load(job.resize_mask)).with_outputs(_FAILED, main="ok")
    handler = InpaintModelHandler(job.model, job.settings, job.blend, job.batch_size, job.estimate)
    predictions, failures = loaded.ok | "Inpaint" >> RunInference(handler).with_exception_handling()
    written = predictions | "Write" >> beam.ParDo(_Write(job)).with_outputs(_FAILED, main="records")
    failed_inference = failures.failed_inferences | "FailedBatches" >> beam.FlatMap(_failed_batch)

    (
        (written.records, paired.kept)
        | "AllRecords" >> beam.Flatten()
        | "ManifestLines" >> beam.Map(_manifest_line)
        | "WriteManifest" >> beam.io.WriteToText(_join(job.out, MANIFEST), shard_name_template="", num_shards=1)
    )
    (
        (paired[_FAILED], loaded[_FAILED], failed_inference, written[_FAILED])
        | "AllFailed" >> beam.Flatten()
        | "CountFailed" >> beam.Map(_count("failed"))
        | "FailedLines" >> beam.Map(lambda d: json.dumps(d, sort_keys=True))
        | "WriteDeadLetter" >> beam.io.WriteToText(_join(job.out, DEAD_LETTER), shard_name_template="",
                                                   num_shards=1)
    )


@dataclasses.dataclass
class BeamReport:
    """What a finished pipeline did: counts and where its manifest and dead letters are."""

    inpainted: int
    skipped: int
    failed: int
    manifest: str
    dead_letter: str


def run(images, masks, out, model=None, settings=None, blend=True, resize_mask=False, force=False,
        batch_size=16, pipeline_args=None, estimate="sample"):
    """Inpaint every image/mask pair on Beam and wait for the pipeline; return a BeamReport.

    Args:
        images, masks: file patterns or folders (masks: also one file for every image).
        out: output folder.
        model: SavedModel or TF Serving base, local or remote; None: the shipped model.
        settings: {SearchSettings field: value} overriding the model's defaults.
        estimate: "sample" (the best G(z*)), "mean" (the posterior-mean estimate) or
            "typical" (the sample nearest it).
        pipeline_args: Beam pipeline options as command-line words, e.g.
            ["--runner", "DataflowRunner", "--project", "p", ...].

    Raises:
        InpaintError: nothing matches `images`, the model cannot be loaded, or a
            setting is out of range or over the model's limits; before the pipeline starts.
    """
    from tf_semantic_inpaint.inpaint import ESTIMATES

    if estimate not in ESTIMATES:
        raise InpaintError(f"unknown estimate {estimate!r}: use one of {', '.join(ESTIMATES)}.")
    options = _pipeline_options(pipeline_args or [])
    if not _is_folder(images) and not _match(images):
        raise InpaintError(f"no file matches {images}; check the pattern (quote it in a shell).")
    loaded, model_dir, version = load_model(model)
    settings = dataclasses.replace(loaded.defaults, **(settings or {})).check(loaded.limits, batch_size)
    del loaded  # each worker loads its own
    job = BeamJob(images=images, masks=masks, out=out, model=model_dir, model_version=version,
                  settings=settings, blend=blend, estimate=estimate, resize_mask=resize_mask, force=force,
                  batch_size=batch_size)
    _remove_leftovers(out)
    with beam.Pipeline(options=options) as pipeline:
        build(pipeline, job)
    counters = {c.key.metric.name: c.committed for c in pipeline.result.metrics().query()["counters"]
                if c.key.metric.namespace == "tfinpaint"}
    return BeamReport(inpainted=counters.get("inpainted", 0), skipped=counters.get("skipped", 0),
                      failed=counters.get("failed", 0), manifest=_join(out, MANIFEST),
                      dead_letter=_join(out, DEAD_LETTER))


def _pipeline_options(args):
    """PipelineOptions of `args`; an option no Beam runner knows is refused, not dropped.

    Beam itself only logs "Discarding unparseable args" and runs without it, so a
    misspelt --temp_location would surface, if at all, deep inside a remote job.
    """
    import difflib

    options = PipelineOptions(args)
    known = options.get_all_options()
    unknown = sorted(set(options.get_all_options(retain_unknown_options=True)) - set(known))
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, known, n=1)
            hints.append(f"--{name}" + (f" (did you mean --{close[0]}?)" if close else ""))
        raise InpaintError(f"unknown option {', '.join(hints)}: neither tfinpaint nor Beam knows it "
                           "(see tfinpaint inpaint-beam --help and Beam's pipeline options).")
    return options


def _remove_leftovers(out):
    """Temporary files of an earlier run that was killed (one run per --out at a time)."""
    leftovers = [m.path for pattern in (".tmp-*", f"{RECORDS}/.tmp-*", "beam-temp-*")
                 for m in _match(_join(out, pattern))]
    if leftovers:
        FileSystems.delete(leftovers)


def read_lines(path):
    """The JSON lines of a manifest or dead-letter file, on any file system."""
    return [json.loads(line) for line in _read(path).decode().splitlines() if line.strip()]

