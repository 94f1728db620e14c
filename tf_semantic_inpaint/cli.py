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
@click.pass_context
@_user_errors
def train(ctx, out, resume, **options):
    """Train a DCGAN on uncorrupted images.

    Writes a checkpoint, a sample grid and TensorBoard logs every epoch into OUT;
    --resume continues from the last checkpoint. Example:

        tfinpaint train --dataset fashion_mnist --epochs 20 --out runs/fmnist
    """
    import dataclasses

    from tf_semantic_inpaint import train as training

    options["channels"] = int(options["channels"] or 0)
    options["data_dir"] = options["data_dir"] or ""
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
    training.train(config, out, resume=resume)
    click.echo(f"Trained {config.epochs} epochs; G and D saved in {out}. "
               f"Next: tfinpaint export {out} --out saved_models/NAME")


if __name__ == "__main__":
    main()
