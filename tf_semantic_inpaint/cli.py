"""`tfinpaint`: the command line, thin over the library.

Each command parses, calls the library, prints. TensorFlow is imported inside the
command bodies so `tfinpaint --help` answers at once.
"""

import functools
import os
import sys

import click

from tf_semantic_inpaint.errors import InpaintError

# Hide TensorFlow's oneDNN / CPU-feature INFO lines (set before TF is imported).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _import_tensorflow_quietly():
    """Import TensorFlow with C-level stderr silenced.

    On machines without a GPU the CUDA stub prints "Could not find cuda drivers"
    before logging is configured; it is noise for a CLI user. Python errors still
    surface: only the file descriptor is redirected, and only during the import.
    """
    if "tensorflow" in sys.modules or os.environ.get("TFINPAINT_VERBOSE_IMPORT"):
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                import tensorflow as tf

                tf.config.list_physical_devices()  # the CUDA probe also prints; do it now
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _user_errors(command):
    """Turn InpaintError into a one-line `Error: ...` and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except InpaintError as error:
            raise click.ClickException(str(error)) from None

    return wrapper


def _size(value):
    """'28x28' or '28' -> (height, width)."""
    try:
        parts = [int(p) for p in value.lower().split("x")]
        if len(parts) == 1:
            parts *= 2
        height, width = parts
        if height < 1 or width < 1:
            raise ValueError
        return height, width
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a size; write HEIGHTxWIDTH, e.g. 28x28.") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tf-semantic-inpaint")
def main():
    """Semantic image inpainting with a deep generative prior (Yeh et al., CVPR 2017).

    Train a DCGAN, export it with the latent search as one SavedModel, and fill
    holes in images by searching G's latent space, then Poisson blending.
    """


@main.command()
@click.argument("dataset")
@click.option("--data-dir", default=None, help="tfds data dir [default: $TFDS_DATA_DIR or ~/tensorflow_datasets].")
@_user_errors
def prepare(dataset, data_dir):
    """Write the tfds data of DATASET once (fashion_mnist: from the Debian package).

    fashion_mnist needs `apt-get install dataset-fashion-mnist` and no network.
    celeb_a, svhn_cropped and cars196 need the network or their original files in
    DATA_DIR/downloads/manual/.
    """
    _import_tensorflow_quietly()
    from tf_semantic_inpaint import data

    builder = data.prepare(dataset, data_dir)
    splits = ", ".join(f"{k}: {v.num_examples}" for k, v in builder.info.splits.items())
    click.echo(f"{dataset} is prepared in {builder.data_dir} ({splits}).")


@main.command()
@click.option("--dataset", default="fashion_mnist", show_default=True,
              help="fashion_mnist, celeb_a, svhn_cropped, cars196, or a folder of images.")
@click.option("--resolution", type=int, default=28, show_default=True,
              help="Image size: 4..7 times a power of two (28, 32, 64, 128).")
@click.option("--channels", type=click.Choice(["1", "3"]), default=None,
              help="1 or 3 [default: the dataset's own].")
@click.option("--width", type=int, default=64, show_default=True,
              help="Base channel width (64 at 64x64 is the paper's DCGAN).")
@click.option("--z-dim", type=int, default=100, show_default=True, help="Size of the latent z.")
@click.option("--epochs", type=int, default=20, show_default=True, help="Total epochs (also when resuming).")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Global batch size.")
@click.option("--steps-per-epoch", type=int, default=0, show_default=True,
              help="Batches per epoch; 0 means one pass over the training split.")
@click.option("--data-dir", default=None, help="tfds data dir.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--strategy", type=click.Choice(["default", "mirrored", "multiworker"]),
              default="default", show_default=True,
              help="tf.distribute strategy: mirrored = all local GPUs, multiworker = TF_CONFIG cluster.")
@click.option("--model", type=click.Choice(["dcgan", "context-encoder", "judge"]), default="dcgan",
              show_default=True,
              help="dcgan: the latent search's prior; context-encoder: Pathak et al.'s rival; "
                   "judge: the classifier behind evaluate's semantic metrics.")
@click.option("--learning-rate", type=float, default=None,
              help="Context encoder only: Adam's learning rate [default: 1e-3].")
@click.option("--known-weight", type=float, default=None,
              help="Context encoder only: weight of the known pixels' mean squared error in L_rec "
                   "(the missing pixels' has weight 1) [default: 1].")
@click.option("--adversarial-weight", type=float, default=None,
              help="Context encoder only: λ_adv of the joint loss [default: Pathak et al.'s 0.001].")
@click.option("--ema-decay", type=float, default=0.999, show_default=True,
              help="Decay of the moving average of G's weights, the G that is saved and exported; "
                   "0 = none.")
@click.option("--keep-checkpoints", type=int, default=3, show_default=True,
              help="Newest checkpoints to keep; 0 keeps every epoch's (to choose one by validation).")
@click.option("--init-from", type=click.Path(exists=True, file_okay=False), default=None,
              help="A DCGAN SavedModel version (e.g. saved_models/fashion_mnist/3) whose G and D start the "
                   "run, to train it on when its run is gone; --epochs counts on from the export's.")
@click.pass_context
@_user_errors
def train(ctx, out, resume, **options):
    """Train a DCGAN (or a context encoder, or the judge) on uncorrupted images.

    Writes a checkpoint, a sample grid and TensorBoard logs every epoch into OUT;
    --resume continues from the last checkpoint. Examples:

    \b
        tfinpaint train --dataset fashion_mnist --epochs 20 --out runs/fmnist
        tfinpaint train --model context-encoder --epochs 15 --out runs/fmnist_ce
        tfinpaint train --model judge --epochs 10 --out runs/fmnist_judge
        tfinpaint train --init-from saved_models/fashion_mnist/3 --epochs 40 --out runs/fmnist_more
    """
    _import_tensorflow_quietly()
    import dataclasses

    from tf_semantic_inpaint import train as training

    options["channels"] = int(options["channels"] or 0)
    options["data_dir"] = options["data_dir"] or ""
    options["init_from"] = options["init_from"] or ""
    given = {
        k: v for k, v in options.items()
        if ctx.get_parameter_source(k) != click.core.ParameterSource.DEFAULT
    }
    if resume and os.path.isfile(os.path.join(out, "run.json")):
        # Resume with the run's own settings; only options given now override them.
        config = dataclasses.replace(training.load_run_config(out), **given)
    else:
        config = training.TrainConfig(**options)
    config = dataclasses.replace(config, command=" ".join(["tfinpaint"] + sys.argv[1:]))
    chief, task_id = training.cluster_role(config.strategy)
    trained = training.train(config, out, resume=resume)
    if config.strategy == "multiworker":  # the same digest on every worker shows they agree
        click.echo(f"Worker {task_id} done: weights digest {training.weights_digest(trained)}.")
    if chief:
        saved = {"dcgan": "G and D", "context-encoder": "the context encoder and its D",
                 "judge": "the judge"}[config.model]
        click.echo(f"Trained {config.epochs} epochs; {saved} saved in {out}. "
                   f"Next: tfinpaint export {out} --out saved_models/NAME")


@main.command("train-encoder")
@click.option("--generator", required=True, type=click.Path(file_okay=False),
              help="The GAN run (--out of `tfinpaint train`), or a version folder of a DCGAN export, "
                   "whose G the encoder serves.")
@click.option("--generator-epoch", type=int, default=0, show_default=True,
              help="Use that run's checkpoint of this epoch; 0 = its final G.")
@click.option("--width", type=int, default=64, show_default=True, help="Channels of E's first convolution.")
@click.option("--epochs", type=int, default=10, show_default=True, help="Total epochs (also when resuming).")
@click.option("--batch-size", type=int, default=64, show_default=True,
              help="Real images per step (as many samples of G are added).")
@click.option("--steps-per-epoch", type=int, default=0, show_default=True,
              help="Batches per epoch; 0 means one pass over the training split.")
@click.option("--learning-rate", type=float, default=5e-4, show_default=True)
@click.option("--latent-weight", type=float, default=0.1, show_default=True,
              help="Weight of ||E - z||^2 on G's own samples.")
@click.option("--draws-weight", type=float, default=0.0, show_default=True,
              help="Weight of the squared error on the hole of the mean of 8 draws G(E + 0.15 noise), "
                   "the draws the posterior mean leans on (1 for the shipped encoder); 0: none.")
@click.option("--keep-checkpoints", type=int, default=3, show_default=True, help="0 keeps every epoch's.")
@click.option("--data-dir", default=None, help="tfds data dir.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Encoder run directory.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.pass_context
@_user_errors
def train_encoder(ctx, out, resume, **options):
    """Train an encoder E(y*M, M) -> z for warm starts of the latent search.

    E learns, on G's own samples and on real training images under the paper's four
    masks, the z from which G draws the masked image; G stays frozen. Example:

        tfinpaint train-encoder --generator runs/fmnist --epochs 10 --out runs/fmnist_encoder

    A shipped model's G serves too (its training run may be gone); export it again with
    the new encoder:

    \b
        tfinpaint train-encoder --generator saved_models/fashion_mnist/4 --out runs/enc
        tfinpaint export saved_models/fashion_mnist/4 --encoder runs/enc --out saved_models/fashion_mnist
    """
    _import_tensorflow_quietly()
    import dataclasses

    from tf_semantic_inpaint import encoder as encoding

    options["data_dir"] = options["data_dir"] or ""
    given = {k: v for k, v in options.items()
             if ctx.get_parameter_source(k) != click.core.ParameterSource.DEFAULT}
    if resume and os.path.isfile(os.path.join(out, "run.json")):
        config = dataclasses.replace(encoding.load_encoder_config(out), **given)
    else:
        config = encoding.EncoderConfig(**options)
    config = dataclasses.replace(config, command=" ".join(["tfinpaint"] + sys.argv[1:]))
    encoding.train_encoder(config, out, resume=resume)
    click.echo(f"Trained the encoder {config.epochs} epochs; saved in {out}/encoder.keras.")


@main.command()
@click.option("--type", "kind", default="center", show_default=True,
              help="center, pattern, random, half, or half-left/right/top/bottom.")
@click.option("--size", required=True, help="HEIGHTxWIDTH, e.g. 28x28.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Output PNG.")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@_user_errors
def masks(kind, size, seed, out, force):
    """Write one of the paper's masks as a PNG (white = missing)."""
    from tf_semantic_inpaint import masks as masking

    height, width = _size(size)
    mask = masking.make_mask(kind, height, width, seed)
    masking.write_mask(out, mask, overwrite=force)
    click.echo(f"{out}: {kind} mask, {width}x{height}, "
               f"{100 * masking.missing_fraction(mask):.1f}% missing.")


class _Finite(click.ParamType):
    """A finite float (NaN and infinities refused), above `low` (exclusive) or at least it."""

    name = "number"

    def __init__(self, low, inclusive):
        self.low, self.inclusive = low, inclusive

    def convert(self, value, param, ctx):
        import math

        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number.", param, ctx)
        ok = math.isfinite(number) and (number >= self.low if self.inclusive else number > self.low)
        if not ok:
            self.fail(f"{value!r} must be a finite number {'>=' if self.inclusive else '>'} {self.low:g}.", param, ctx)
        return number


_INT32 = click.IntRange(-(2**31), 2**31 - 1)


def search_options(command):
    """The per-request search settings, one option each; unset ones keep the model's own."""
    options = [
        click.option("--iterations", type=click.IntRange(0, 2**31 - 1), default=None,
                     help="Adam steps on z [default: the model's]."),
        click.option("--restarts", type=click.IntRange(1, 2**31 - 1), default=None,
                     help="Random starts per image, searched together [default: the model's]."),
        click.option("--lam", type=_Finite(0.0, True), default=None,
                     help="λ, the weight of the prior loss [default: the model's]."),
        click.option("--lr", "learning_rate", type=_Finite(0.0, False), default=None,
                     help="Adam's learning rate on z [default: the model's]."),
        click.option("--seed", type=_INT32, default=None, help="Seed of the random starts [default: the model's]."),
        click.option("--samples", type=click.IntRange(1, 2**31 - 1), default=None,
                     help="K distinct completions to return (at most --restarts); with K > 1 `inpaint` "
                          "also writes OUT_sample1..K and a contact sheet OUT_samples.png [default: 1]."),
        click.option("--window", type=click.IntRange(1, 2**31 - 1), default=None,
                     help="Side of the importance-weight window N(i), odd (the paper's is 7) [default: the model's]."),
        click.option("--warm-start/--random-start", "warm_start", default=None,
                     help="Start from the model's encoder E(y*M, M), or from random z as in the paper "
                          "[default: the model's: warm when it has an encoder]."),
        click.option("--refine-steps", type=click.IntRange(0, 2**31 - 1), default=None,
                     help="Adam steps on G's features after the search, within --refine-radius of G's own "
                          "(0: none, as in the paper) [default: the model's]."),
        click.option("--refine-radius", type=_Finite(0.0, True), default=None,
                     help="How far the refinement may move G's features, relative to their norm "
                          "[default: the model's]."),
        click.option("--method", type=click.Choice(["paper"]), default=None,
                     help="paper: the search exactly as published (7x7 window, λ 0.003, 1500 iterations, "
                          "one random start, no refinement); options given beside it still apply."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _search_overrides(options):
    """{SearchSettings field: value} of the search options given (a --method preset first)."""
    method = options.pop("method", None)
    given = {k: v for k, v in options.items() if v is not None}
    if method == "paper":
        from tf_semantic_inpaint.contract import PAPER

        given = {**{k: getattr(PAPER, k) for k in ("iterations", "restarts", "lam", "window", "warm_start",
                                                    "samples", "refine_steps")}, **given}
    return given


@main.command()
@click.argument("image", type=click.Path(exists=True))
@click.argument("mask", required=False, type=click.Path(exists=True))
@click.option("-o", "--out", type=click.Path(), default=None,
              help="Output file (a folder in batch mode) [default: IMAGE_inpainted.png].")
@click.option("--model", default=None, help="SavedModel or TF Serving model base [default: shipped].")
@click.option("--mask-type", default=None,
              help="Use one of the paper's masks instead of a MASK file: center, pattern, random, "
                   "half[-left|-right|-top|-bottom].")
@click.option("--mask-seed", type=_INT32, default=0, show_default=True, help="Seed of --mask-type.")
@search_options
@click.option("--estimate", type=click.Choice(["sample", "mean", "typical"]), default="sample", show_default=True,
              help="What fills the hole: the best sample G(z*) (sharp, one plausible answer), the "
                   "posterior-mean estimate, a loss-weighted average of the restarts (the best guess "
                   "by PSNR, blurrier), or the typical sample, the restart's completion nearest that "
                   "mean (sharp, and more often the right object than the best sample).")
@click.option("--no-blend", is_flag=True, help="Skip Poisson blending: paste G(z*) into the hole.")
@click.option("--compare", type=click.Path(dir_okay=False), default=None,
              help="Also write input | masked | G(z*) | result side by side to this PNG.")
@click.option("--resize-mask", is_flag=True, help="Stretch a mask of another size to the image.")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@click.option("--server", default=None, help="TF Serving REST URL, e.g. http://localhost:8501.")
@click.option("--model-name", default=None, help="Model name on the --server.")
@click.option("--timeout", type=_Finite(0.0, False), default=60.0, show_default=True,
              help="REST timeout in seconds.")
@_user_errors
def inpaint(image, mask, out, model, mask_type, mask_seed, estimate, no_blend, compare, resize_mask, force,
            server, model_name, timeout, **search):
    """Fill the missing region of IMAGE (white in MASK) with a semantic completion.

    IMAGE may be a folder: every image in it is inpainted (MASK then is one mask
    file for all, or a folder of masks with the same file names) and -o names
    the output folder. Examples:

        tfinpaint inpaint shirt.png hole.png -o shirt_done.png

        tfinpaint inpaint shirt.png --mask-type center --compare figure.png

        tfinpaint inpaint shirt.png hole.png --server http://localhost:8501 --model-name fashion_mnist

        tfinpaint inpaint shirt.png --mask-type half --samples 4 --restarts 8

        tfinpaint inpaint shirt.png hole.png --method paper
    """
    from tf_semantic_inpaint import files

    if (mask is None) == (mask_type is None):
        raise click.UsageError("give either a MASK file or --mask-type, not both or neither.")
    if server and not model_name:
        raise click.UsageError("--server needs --model-name (the name TF Serving serves it under).")
    if server and model:
        raise click.UsageError("--model is local; with --server the model is --model-name.")
    if mask_type is not None:
        from tf_semantic_inpaint.masks import MASK_KINDS

        if mask_type not in MASK_KINDS:
            raise click.BadParameter(f"{mask_type!r}; use one of {', '.join(MASK_KINDS)}.", param_hint="--mask-type")

    def load_model():
        if server:  # the REST client needs no TensorFlow
            from tf_semantic_inpaint.client import RestModel

            return RestModel(server, model_name, timeout=timeout)
        _import_tensorflow_quietly()
        from tf_semantic_inpaint.local import LocalModel

        return LocalModel(model)

    written = files.inpaint_files(
        image, mask, out, model=load_model, settings=_search_overrides(search),
        mask_type=mask_type, mask_seed=mask_seed, blend=not no_blend, compare=compare,
        resize_mask=resize_mask, force=force, estimate=estimate,
    )
    for path in written:
        click.echo(path)


@main.command("inpaint-beam", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("images")
@click.argument("masks")
@click.option("--out", required=True, help="Output folder: local, gs://, s3://, ... (Beam's file systems).")
@click.option("--runner", default="DirectRunner", show_default=True,
              help="Beam runner: DirectRunner, DataflowRunner, FlinkRunner, SparkRunner, ...")
@click.option("--model", default=None,
              help="SavedModel or TF Serving model base, local or remote [default: shipped].")
@search_options
@click.option("--estimate", type=click.Choice(["sample", "mean", "typical"]), default="sample", show_default=True,
              help="What fills the hole, as for `inpaint`: the best sample G(z*), the posterior-mean "
                   "estimate, or the sample nearest it.")
@click.option("--no-blend", is_flag=True, help="Skip Poisson blending: paste G(z*) into the hole.")
@click.option("--resize-mask", is_flag=True, help="Stretch a mask of another size to its image.")
@click.option("--force", is_flag=True, help="Redo images already completed by an earlier run.")
@click.option("--batch-size", type=click.IntRange(1, 2**31 - 1), default=16, show_default=True,
              help="Images per latent search (as `inpaint`).")
@click.pass_context
@_user_errors
def inpaint_beam(ctx, images, masks, out, runner, model, estimate, no_blend, resize_mask, force, batch_size,
                 **search):
    """Inpaint every IMAGES/MASKS pair on Apache Beam (pip install "tf-semantic-inpaint[beam]").

    IMAGES and MASKS are file patterns or folders on any file system Beam reads (quote
    patterns); a mask pairs with the image of the same file stem, or MASKS is one mask
    for all. Writes OUT/<stem>.png, OUT/manifest.jsonl (input, output, losses, model
    version per image) and OUT/dead_letter.jsonl (bad pairs with the reason). A re-run
    skips images already done with the same model and search. Options Beam knows
    (after the arguments) go to the pipeline, e.g. on both local cores:

    \b
      tfinpaint inpaint-beam 'photos/*.png' 'masks/*.png' --out completed/ \\
        --direct_num_workers 2 --direct_running_mode multi_processing

    and on Dataflow (see README, 'Batch inpainting on Apache Beam'):

    \b
      tfinpaint inpaint-beam 'gs://B/photos/*.png' 'gs://B/masks/*.png' --out gs://B/completed \\
        --model gs://B/models/fashion_mnist --runner DataflowRunner --project P \\
        --region us-central1 --temp_location gs://B/tmp --setup_file ./setup.py
    """
    _import_tensorflow_quietly()
    from tf_semantic_inpaint import beam as batch

    report = batch.run(
        images, masks, out, model=model, blend=not no_blend, resize_mask=resize_mask, force=force,
        batch_size=batch_size, pipeline_args=["--runner", runner, *ctx.args],
        settings=_search_overrides(search), estimate=estimate,
    )
    click.echo(f"{report.inpainted} inpainted, {report.skipped} done before, {report.failed} failed. "
               f"Manifest: {report.manifest}")
    if report.failed:
        click.echo(f"The failed pairs and why: {report.dead_letter}", err=True)


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="TF Serving model base, e.g. saved_models/fashion_mnist.")
@click.option("--version", "version", type=click.IntRange(1, 2**31 - 1), default=None,
              help="Integer version [default: one more than the newest].")
@click.option("--force", is_flag=True, help="Replace an existing version.")
@click.option("--iterations", type=click.IntRange(0, 2**31 - 1), default=None,
              help="Default Adam steps baked into `inpaint` [default: 300].")
@click.option("--restarts", type=click.IntRange(1, 2**31 - 1), default=None,
              help="Default random starts per image [default: 4].")
@click.option("--lam", type=_Finite(0.0, True), default=None, help="Default λ, the prior loss weight [default: 0.003].")
@click.option("--lr", "learning_rate", type=_Finite(0.0, False), default=None,
              help="Default Adam learning rate on z [default: 0.03].")
@click.option("--seed", type=_INT32, default=None, help="Default seed of the random starts [default: 0].")
@click.option("--window", type=int, default=None,
              help="Default side of the importance-weight window N(i), odd (the paper's is 7) [default: 15].")
@click.option("--refine-steps", type=click.IntRange(0, 2**31 - 1), default=None,
              help="Default Adam steps of the refinement of G's features after the search [default: 0, none].")
@click.option("--refine-radius", type=_Finite(0.0, True), default=None,
              help="Default radius of the refinement, relative to the features' norm [default: 0.1].")
@click.option("--prior", type=click.Choice(["paper", "nonsaturating"]), default=None,
              help="Prior loss, fixed at export: λ log(1 - D(G(z))) (paper) or -λ log D(G(z)) [default: paper, "
                   "or that of the SavedModel exported again].")
@click.option("--encoder", type=click.Path(exists=True, file_okay=False), default=None,
              help="A `tfinpaint train-encoder` run for this G (--generator RUN_DIR): exported for warm "
                   "starts (the `encode` signature), which `inpaint` then uses by default; for an export "
                   "exported again it replaces the encoder the export has.")
@click.option("--mean-draws", type=click.IntRange(0, 1024), default=None,
              help="Draws around the encoder's guess that the posterior mean (--estimate mean) leans on deep "
                   "in the hole, fixed at export; 0: none, the search's candidates alone [default: 32 with an "
                   "encoder, or that of the SavedModel exported again].")
@_user_errors
def export(run_dir, out, version, force, prior, encoder, mean_draws, **search):
    """Export a training run as ONE SavedModel (G, D, latent search) for TF Serving.

    Writes OUT/<version>/ (saved_model.pb, variables/, model_card.json), atomically.
    A context-encoder run is exported behind the same contract (no search: its
    settings change nothing); a judge run becomes the judge's SavedModel (`classify`).
    RUN_DIR may also be a version folder of an earlier DCGAN export: its networks are
    exported again with this version's contract, keeping the defaults not given here.
    """
    _import_tensorflow_quietly()
    import dataclasses

    from tf_semantic_inpaint import export as exporting
    from tf_semantic_inpaint.contract import SearchSettings
    from tf_semantic_inpaint.search import DepthMix
    from tf_semantic_inpaint.train import load_run_config

    earlier = exporting.earlier_defaults(run_dir)  # exporting an export again: its defaults, unless given
    settings = dataclasses.replace(earlier or SearchSettings(), **{k: v for k, v in search.items() if v is not None})
    mix = exporting.KEEP if mean_draws is None else (
        None if mean_draws == 0 else dataclasses.replace(DepthMix(), draws=mean_draws))
    path = exporting.export(run_dir, out, version=version, force=force, settings=settings, prior=prior,
                            encoder=encoder, mix=mix)
    if earlier is None and load_run_config(run_dir).model == "judge":
        click.echo(f"Exported the judge {path}; `tfinpaint evaluate --judge {out}` uses it.")
        return
    click.echo(f"Exported {path}. Serve it with: tfinpaint serve {out}")


@main.command()
@click.argument("model_base", type=click.Path(exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind; the default accepts local clients only.")
@click.option("--port", type=click.IntRange(0, 65535), default=8501, show_default=True,
              help="TF Serving's REST port (0: any free port).")
@click.option("--max-body-mb", type=_Finite(0.0, False), default=32.0, show_default=True,
              help="Refuse larger requests with HTTP 413.")
@click.option("--read-timeout", type=_Finite(0.0, False), default=30.0, show_default=True,
              help="Seconds a whole request may take to arrive (408 after).")
@click.option("--max-connections", type=click.IntRange(1), default=64, show_default=True,
              help="Open connections at once (503 beyond).")
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True,
              help="Model calls at once.")
@click.option("--max-queue", type=click.IntRange(0), default=32, show_default=True,
              help="Model calls waiting for a worker (503 beyond).")
@click.option("--enable-batching", is_flag=True,
              help="Run concurrent inpaint / inpaint_png requests as one batch (TF Serving's flag).")
@click.option("--batching-parameters-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="TF Serving's batching parameters file [default: MODEL_BASE/batching_parameters.txt "
                   "if there is one, else 8 rows, 5 ms].")
@click.option("--quiet", is_flag=True, help="No log line per request.")
@_user_errors
def serve(model_base, host, port, max_body_mb, enable_batching, batching_parameters_file, **options):
    """Serve MODEL_BASE over TF Serving's REST API, for development without Docker.

    Production serving is TensorFlow Serving itself, on the same model base:

    \b
      docker run -p 8501:8501 \\
        --mount type=bind,source=$PWD/saved_models/fashion_mnist,target=/models/fashion_mnist \\
        -e MODEL_NAME=fashion_mnist -t tensorflow/serving

    Both answer GET /v1/models/NAME[/metadata] and POST /v1/models/NAME:predict, e.g.
    `tfinpaint inpaint img.png mask.png --server http://127.0.0.1:8501 --model-name NAME`.
    It has no authentication: keep it on loopback (the default --host).
    """
    from tf_semantic_inpaint.batching import BatchingParameters

    batching = None
    if batching_parameters_file and not enable_batching:
        raise click.UsageError("--batching-parameters-file needs --enable-batching (as in TF Serving).")
    if enable_batching:
        shipped = os.path.join(model_base, "batching_parameters.txt")
        path = batching_parameters_file or (shipped if os.path.isfile(shipped) else None)
        batching = BatchingParameters.read(path) if path else BatchingParameters()
    _import_tensorflow_quietly()
    from tf_semantic_inpaint import devserver

    devserver.serve(model_base, host=host, port=port, max_body_bytes=int(max_body_mb * 2**20), batching=batching,
                    **options)


def _names(value):
    """'a,b' or a repeated option -> ['a', 'b'] (None when not given)."""
    names = [n.strip() for item in value for n in item.split(",") if n.strip()]
    return names or None


@main.command()
@click.option("--model", default=None, help="SavedModel or model base [default: shipped].")
@click.option("--dataset", default="fashion_mnist", show_default=True,
              help="Any dataset `train` accepts (CelebA gives the paper's setting).")
@click.option("--split", default="test", show_default=True, help="Split to score (tune on validation).")
@click.option("--n", "n", type=click.IntRange(1), default=500, show_default=True, help="First N images of the split.")
@click.option("--masks", multiple=True, help="Mask kinds, comma-separated [default: center,pattern,random,half].")
@click.option("--methods", multiple=True,
              help="Methods, comma-separated [default: all: ours, ours_blend, ours_mean, ours_typical, "
                   "context_encoder (when there is one), telea, navier_stokes, biharmonic, total_variation, "
                   "train_mean, nearest_neighbour].")
@click.option("--mask-seed", type=_INT32, default=0, show_default=True, help="Seed of the masks.")
@click.option("--data-dir", default=None, help="tfds data dir.")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=64, show_default=True,
              help="Images per search call (lowered to fit the model's limits).")
@search_options
@click.option("--context-encoder", "context_encoder", default=None,
              help="Context encoder SavedModel (the rival's rows), or 'none' "
                   "[default: the one shipped for the dataset, if any].")
@click.option("--judge", default=None,
              help="Judge SavedModel for semantic accuracy and Fréchet distance, or 'none' "
                   "[default: the one shipped for the dataset, if any].")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for results.md, results.json, examples.png and alternatives.png.")
@click.option("--force", is_flag=True, help="Overwrite existing results.")
@_user_errors
def evaluate(model, dataset, split, n, masks, methods, mask_seed, data_dir, batch_size, out, force, context_encoder,
             judge, **search):
    """Score the model, the context encoder and classical baselines the paper's way (Table 1).

    PSNR and SSIM; with a judge for the dataset also semantic accuracy and a Fréchet
    distance of the judge's features. Example:

        tfinpaint evaluate --split test --n 500 --out results/fashion_mnist
    """
    import dataclasses
    import os.path

    from tf_semantic_inpaint import evaluate as evaluation

    masks, methods = _names(masks) or list(evaluation.MASK_TYPES), _names(methods)
    evaluation.check_masks(masks)  # bad names fail before anything is loaded
    evaluation.check_methods(methods)
    existing = [f for f in evaluation.FILES if os.path.exists(os.path.join(out, f))]
    if existing and not force:
        raise click.ClickException(f"{out} already holds {', '.join(existing)}; pass --force or another --out.")
    _import_tensorflow_quietly()
    from tf_semantic_inpaint.local import LocalModel

    local = LocalModel(model)
    settings = dataclasses.replace(local.defaults, **_search_overrides(search))
    off = lambda value: False if value is not None and value.lower() == "none" else value  # noqa: E731
    report = evaluation.evaluate(local, dataset=dataset, split=split, n=n, masks=masks, methods=methods,
                                 seed=mask_seed, data_dir=data_dir, settings=settings, batch_size=batch_size,
                                 context_encoder=off(context_encoder), judge=off(judge))
    click.echo(report.to_markdown())
    for path in evaluation.write(report, out, force=force):
        click.echo(path)


if __name__ == "__main__":
    main()
