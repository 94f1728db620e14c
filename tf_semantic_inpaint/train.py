"""Training a run: a run directory, `fit` with callbacks, resume, distribution.

`model` picks what is trained: "dcgan" (G and D, the latent search's prior),
"context-encoder" (Pathak et al.'s rival, see context_encoder.py) or "judge" (the
classifier behind the semantic metrics, see judge.py).

A run directory holds:
    run.json          the configuration (what `tfinpaint export` reads back)
    sessions.json     every `train` invocation: command, start, seconds, epochs done;
                      written when a session starts and updated as it goes
    checkpoints/      tf.train checkpoints of G, D, the EMA of G, both optimizers and the epoch
    samples/          epoch_001.png, ...: G(z) for a fixed z, in inference mode (the EMA G;
                      for a context encoder: masked input | completion | truth of
                      validation images)
    logs/             TensorBoard
    generator.keras, discriminator.keras   the final models (generator = the EMA G; the
                      context encoder F for a context-encoder run; a judge run has
                      judge.keras and no samples)
    raw_generator.keras                    the last iterate of G (when there is an EMA)
"""

import dataclasses
import datetime
import hashlib
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from tf_semantic_inpaint import data
from tf_semantic_inpaint.errors import InpaintError
from tf_semantic_inpaint.gan import EMA_DECAY, build_gan
from tf_semantic_inpaint.images import grid, write_bytes_atomic, write_image

STRATEGIES = ("default", "mirrored", "multiworker")
MODELS = ("dcgan", "context-encoder", "judge")
# Fields that fix the model; a resumed run must agree on them.
_MODEL_FIELDS = ("model", "dataset", "resolution", "channels", "z_dim", "width", "ema_decay")
# Settings of the context encoder's training only (context_encoder.py gives the defaults).
_CONTEXT_ENCODER_FIELDS = ("learning_rate", "known_weight", "adversarial_weight")


class TrainingError(InpaintError):
    """Training cannot start or continue; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved as run.json).

    Defaults: DCGAN's batch 64; width 64 is the paper's 64x64 model (512-256-128-64).
    """

    dataset: str = "fashion_mnist"
    resolution: int = 28
    channels: int = 0  # 0: the dataset's own
    z_dim: int = 100
    width: int = 64
    batch_size: int = 64
    epochs: int = 20
    steps_per_epoch: int = 0  # 0: one pass over the training split
    seed: int = 0
    strategy: str = "default"
    data_dir: str = ""
    command: str = ""
    model: str = "dcgan"  # "dcgan", "context-encoder" or "judge"
    # Context encoder only (None elsewhere; for it, None = context_encoder's default):
    # Adam's learning rate, L_rec's weight of the known pixels, λ_adv.
    learning_rate: float | None = None
    known_weight: float | None = None
    adversarial_weight: float | None = None
    ema_decay: float = EMA_DECAY  # 0: no EMA of G (runs from before the EMA existed)
    keep_checkpoints: int = 3  # newest checkpoints kept; 0 keeps every epoch's (to choose one)
    # A DCGAN export whose networks start the run (G and its moving average from the exported
    # G, D from its D, fresh optimizers); epochs count on from the export's. "" = from scratch.
    init_from: str = ""

    def model_fields(self):
        return {k: getattr(self, k) for k in _MODEL_FIELDS}


def make_strategy(name):
    """A tf.distribute strategy by name: default, mirrored (local GPUs) or multiworker."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        cluster_role(name)  # a clear error without TF_CONFIG
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise TrainingError(f"unknown strategy {name!r}: use one of {', '.join(STRATEGIES)}.")


def cluster_role(strategy_name):
    """(is_chief, task_id) of this process; every process is the chief unless multiworker.

    Read from TF_CONFIG, before the strategy exists: creating a
    MultiWorkerMirroredStrategy waits until every worker has started, so anything to
    check or refuse must be done first, and the chief must write nothing before it.
    The chief is the task of type "chief", or worker 0 when the cluster has none.
    """
    if strategy_name != "multiworker":
        return True, 0
    if "TF_CONFIG" not in os.environ:
        raise TrainingError(
            "--strategy multiworker needs the TF_CONFIG environment variable describing "
            "the cluster on every worker (see README, 'Scaling training across machines')."
        )
    try:
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        cluster = resolver.cluster_spec().as_dict()
        task_type, task_id = resolver.task_type, resolver.task_id
    except (ValueError, TypeError, KeyError) as error:
        raise TrainingError(f"TF_CONFIG is not a valid cluster description: {error}") from None
    if not cluster or task_type not in cluster or task_id is None:
        raise TrainingError(
            'TF_CONFIG must name the cluster and this task, e.g. {"cluster": {"worker": '
            '["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}.'
        )
    chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in cluster)
    return chief, int(task_id)


def loopback_tf_configs(workers=2):
    """TF_CONFIG values (JSON strings) of a cluster of `workers` processes on this machine.

    One per worker, on free ports of 127.0.0.1: to try `--strategy multiworker` on one
    machine (the tests and benchmarks/multiworker_scaling.py use it).
    """
    import socket

    sockets = [socket.socket() for _ in range(workers)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]}
    for s in sockets:
        s.close()
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(workers)]


def _validate_out(out, config, resume):
    """Refuse to start where an existing run would be overwritten or mixed."""
    run_file = os.path.join(out, "run.json")
    if os.path.exists(run_file):
        with open(run_file) as f:
            previous = TrainConfig(**json.load(f))
        if not resume:
            raise TrainingError(
                f"{out} already holds a training run; pass --resume to continue it "
                "or choose another --out."
            )
        if previous.model_fields() != config.model_fields():
            diff = {
                k: (getattr(previous, k), getattr(config, k))
                for k in _MODEL_FIELDS if getattr(previous, k) != getattr(config, k)
            }
            differences = ", ".join(f"{k}: {a} there, {b} here" for k, (a, b) in diff.items())
            raise TrainingError(
                f"{out} holds a different run ({differences}); "
                "resume with the same settings or choose another --out."
            )
    elif resume:
        raise TrainingError(f"nothing to resume: {out} holds no training run (no run.json).")
    elif os.path.isdir(out) and os.listdir(out):
        raise TrainingError(
            f"{out} exists and is not empty; choose a new or empty --out so nothing is overwritten."
        )


class _SampleGrid(keras.callbacks.Callback):
    """Save G(z) for a fixed z, in inference mode (what the latent search sees), per epoch."""

    def __init__(self, folder, z):
        super().__init__()
        self.folder, self.z = folder, z

    def on_epoch_end(self, epoch, logs=None):
        images = self.model.inference_generator(self.z, training=False).numpy() * 0.5 + 0.5
        scale = max(1, 64 // images.shape[1])
        write_image(os.path.join(self.folder, f"epoch_{epoch + 1:03d}.png"), grid(images, scale=scale))


class _StopOnNaN(keras.callbacks.Callback):
    """Stop at the first non-finite loss, before any checkpoint of broken weights."""

    def __init__(self):
        super().__init__()
        self.failed_at = None

    def on_train_batch_end(self, batch, logs=None):
        bad = {k: v for k, v in (logs or {}).items() if not math.isfinite(float(v))}
        if bad and self.failed_at is None:
            self.failed_at = (self.params.get("steps"), batch, bad)
            self.model.stop_training = True


class _Checkpoint(keras.callbacks.Callback):
    """Write a tf.train checkpoint at the end of every epoch (unless losses went NaN)."""

    def __init__(self, manager, epoch_var, nan_guard):
        super().__init__()
        self.manager, self.epoch_var, self.nan_guard = manager, epoch_var, nan_guard

    def on_epoch_end(self, epoch, logs=None):
        if self.nan_guard.failed_at is None:
            self.epoch_var.assign(epoch + 1)
            self.manager.save(checkpoint_number=epoch + 1)


def checkpoint_for(gan, epoch_var=None):
    """The tf.train.Checkpoint of a run: G, D, both optimizers, noise state, epoch."""
    parts = dict(gan=gan, epoch=epoch_var if epoch_var is not None else tf.Variable(0, dtype=tf.int64))
    if hasattr(gan, "seed_generator"):  # the DCGAN's noise; the context encoder draws none
        parts["noise_state"] = gan.seed_generator.state
    return tf.train.Checkpoint(**parts)


def build_model(config):
    """The compiled model a run trains: a DCGAN, a ContextEncoderGAN or a Judge."""
    if config.model == "judge":
        from tf_semantic_inpaint.judge import build_judge

        classes = len(data.class_names(config.dataset, config.data_dir or None))
        return build_judge(config.resolution, config.channels, classes)
    if config.model == "context-encoder":
        from tf_semantic_inpaint.context_encoder import build_context_encoder

        config = _check_model_settings(config)  # unset settings take the CE paper's defaults
        return build_context_encoder(
            config.resolution, config.channels, config.width, config.learning_rate,
            config.known_weight, config.adversarial_weight,
        )
    return build_gan(config.resolution, config.channels, config.z_dim, config.width, config.seed,
                     ema_decay=config.ema_decay)


def _check_model_settings(config):
    """The config with the context encoder's defaults filled in; TrainingError for an
    unknown model or context-encoder settings given to another model."""
    if config.model not in MODELS:
        raise TrainingError(f"unknown --model {config.model!r}: use one of {', '.join(MODELS)}.")
    given = [k for k in _CONTEXT_ENCODER_FIELDS if getattr(config, k) is not None]
    if config.model != "context-encoder":
        if given:
            names = ", ".join("--" + k.replace("_", "-") for k in given)
            raise TrainingError(f"{names} set(s) the context encoder's training; add --model context-encoder.")
        return config
    from tf_semantic_inpaint import context_encoder

    defaults = dict(learning_rate=context_encoder.LEARNING_RATE, known_weight=context_encoder.KNOWN_WEIGHT,
                    adversarial_weight=context_encoder.ADVERSARIAL_WEIGHT)
    return dataclasses.replace(config, **{k: v for k, v in defaults.items() if getattr(config, k) is None})


def read_run_fields(run_dir, what="a training run"):
    """The fields of `run_dir`/run.json; TrainingError naming `what` when there is none."""
    path = os.path.join(run_dir, "run.json")
    if not os.path.isfile(path):
        raise TrainingError(f"{run_dir} is not {what} (no run.json); train one first.")
    with open(path) as f:
        return json.load(f)


def load_run_config(run_dir):
    """The TrainConfig saved in `run_dir`/run.json."""
    fields = read_run_fields(run_dir)
    fields.setdefault("ema_decay", 0.0)  # run.json written before the EMA existed
    return TrainConfig(**fields)


def restore_gan(run_dir, checkpoint=None):
    """(gan, config, epoch) from the newest checkpoint of `run_dir`, or from `checkpoint`.

    Args:
        checkpoint: a checkpoint prefix (e.g. RUN/checkpoints/ckpt-12) to restore
            instead of the newest, e.g. to choose an epoch by validation.
    """
    config = load_run_config(run_dir)
    gan = build_model(config)
    epoch = tf.Variable(0, dtype=tf.int64)
    latest = checkpoint or tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    if latest is None:
        raise TrainingError(f"{run_dir} has no checkpoint yet; train at least one epoch.")
    checkpoint_for(gan, epoch).restore(latest).assert_existing_objects_matched()
    return gan, config, int(epoch.numpy())


def train(config, out, resume=False, verbose="auto"):
    """Train (or resume) a run into `out`; return the trained DCGAN (ContextEncoderGAN, Judge).

    Raises:
        TrainingError / data.DataError: bad settings, data or run directory;
            nothing in `out` is overwritten.
    """
    config = _check_model_settings(config)
    data.check_dataset_name(config.dataset)
    if config.model == "judge" and not data.has_labels(config.dataset):
        raise TrainingError(f"{config.dataset} has no class labels for a judge to learn; train the judge "
                            "on fashion_mnist, svhn_cropped or cars196.")
    from tf_semantic_inpaint.models import upsampling_plan

    try:
        upsampling_plan(config.resolution)  # fail before touching anything
    except ValueError as error:
        raise TrainingError(f"--resolution: {error}") from None
    if config.channels == 0:
        config = dataclasses.replace(config, channels=data.dataset_channels(config.dataset))
    if config.batch_size < 1 or config.epochs < 1 or config.steps_per_epoch < 0:
        raise TrainingError("--batch-size and --epochs must be positive, --steps-per-epoch >= 0.")
    if not 0.0 <= config.ema_decay < 1.0 or config.keep_checkpoints < 0:
        raise TrainingError("--ema-decay must be in [0, 1) (0: no EMA of G) and "
                            "--keep-checkpoints >= 0 (0: keep all).")
    if config.init_from:
        _check_init_from(config, out, resume)
    chief, task_id = cluster_role(config.strategy)
    # Every worker checks before the strategy's start-up barrier; the chief writes only after it,
    # so no worker can mistake this run's own files for an existing run.
    _validate_out(out, config, resume)
    strategy = make_strategy(config.strategy)
    keras.utils.set_random_seed(config.seed)
    multiworker = config.strategy == "multiworker"

    dataset, steps = _training_data(config, config.seed, multiworker)
    steps = config.steps_per_epoch or steps

    # Only the chief writes into `out`. The others must still take part in saving (it may
    # run collective ops), so they save into a local scratch folder they delete at the end.
    if not chief:
        _remove_stale_scratch()
    work = out if chief else tempfile.mkdtemp(prefix=f"{_SCRATCH_PREFIX}{task_id}-{os.getpid()}-")
    try:
        gan = _fit(config, out, work, chief, strategy, dataset, steps, resume, verbose)
        if multiworker:  # nobody leaves before everyone is done (the chief hosts the coordination)
            strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)
        return gan
    finally:
        if not chief:
            shutil.rmtree(work, ignore_errors=True)


_SCRATCH_PREFIX = "tfinpaint-worker"


def _check_init_from(config, out, resume):
    """TrainingError unless `config.init_from` is a DCGAN export of the run's shape, checked
    before anything is written; a resumed run must name the same export as when it began."""
    from tf_semantic_inpaint.export import read_card

    if config.model != "dcgan":
        raise TrainingError("--init-from starts a DCGAN from an export; drop it or use --model dcgan.")
    if not os.path.isfile(os.path.join(config.init_from, "saved_model.pb")):
        raise TrainingError(f"--init-from {config.init_from} is not a SavedModel version folder; pass one "
                            "such as saved_models/fashion_mnist/3.")
    card = read_card(config.init_from)
    shape = {k: getattr(config, k) for k in ("resolution", "channels", "z_dim", "width")}
    theirs = {k: card.get(k) for k in shape}
    if card.get("model") != "dcgan" or theirs != shape:
        raise TrainingError(f"--init-from {config.init_from} holds a {card.get('model')} of {theirs}, not a DCGAN "
                            f"of this run's {shape}; set --resolution, --channels, --z-dim and --width to the "
                            "export's.")
    if resume and os.path.isfile(os.path.join(out, "run.json")):
        began = read_run_fields(out).get("init_from", "")
        if os.path.realpath(began) != os.path.realpath(config.init_from):
            raise TrainingError(f"{out} began from {began or 'scratch'}, not from {config.init_from}; "
                                "resume it without --init-from.")
    if card.get("epochs", 0) >= config.epochs:
        raise TrainingError(f"{config.init_from} was trained {card.get('epochs')} epochs; --epochs counts on "
                            "from there, so give more.")


def _start_from_export(gan, epoch_var, export_dir, out):
    """Set G, the moving average of G and D to the networks of the DCGAN export in `export_dir`
    and the epoch to its card's; the chief (`out` given) records the export's training
    sessions first in `out`/sessions.json, so the model card's training time stays whole.

    The optimizers start fresh, and with them the moving average's warm-up (gan.py): for
    its first few hundred steps it follows G closely, and G starts as the export's average."""
    from tf_semantic_inpaint.export import load_exported_networks

    generator, discriminator, _, card = load_exported_networks(export_dir)
    targets = [(gan.generator, generator), (gan.discriminator, discriminator)]
    if getattr(gan, "ema_generator", None) is not None:
        targets.append((gan.ema_generator, generator))
    for model, source in targets:
        for weight, value in zip(model.weights, source.weights, strict=True):
            weight.assign(value)
    epoch_var.assign(card.get("epochs", 0))
    if out is not None and not load_sessions(out):
        sessions = [{**session, "from": export_dir} for session in card.get("training_sessions", [])]
        write_bytes_atomic(os.path.join(out, "sessions.json"), json.dumps(sessions, indent=2).encode())


def _remove_stale_scratch():
    """Delete scratch folders of non-chief workers whose process is gone (killed mid-run)."""
    pattern = re.compile(re.escape(_SCRATCH_PREFIX) + r"\d+-(\d+)-")
    root = tempfile.gettempdir()
    for name in os.listdir(root):
        match = pattern.match(name)
        if not match or int(match.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(match.group(1)), 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's


def _training_data(config, seed, multiworker=False):
    """(batches, steps per epoch) of the run's model: images, or (images, labels) for the
    judge; each batch is the GLOBAL batch.

    Under multiworker, every worker reads the same seeded order and keeps its share of
    each global batch (DATA sharding); FILE sharding would fail on single-file datasets
    such as Fashion-MNIST and give workers unequal numbers of batches on others.
    """
    load = data.labelled_training_dataset if config.model == "judge" else data.training_dataset
    dataset, steps = load(config.dataset, config.resolution, config.batch_size, config.channels,
                          config.data_dir or None, seed=seed)
    if multiworker:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = dataset.with_options(options)
    return dataset, steps


def _fit(config, out, work, chief, strategy, dataset, steps, resume, verbose):
    """The body of `train` once the strategy is up: restore, fit, save."""
    if chief:  # on resume too: a longer --epochs is recorded
        os.makedirs(out, exist_ok=True)
        write_bytes_atomic(
            os.path.join(out, "run.json"), json.dumps(dataclasses.asdict(config), indent=2).encode()
        )

    with strategy.scope():
        gan = build_model(config)
        epoch_var = tf.Variable(0, dtype=tf.int64)
        checkpoint = checkpoint_for(gan, epoch_var)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(work, "checkpoints"),
                                         max_to_keep=(config.keep_checkpoints or None) if chief else 1)
    # Every worker restores the chief's newest checkpoint (the shared run directory), as
    # Keras' BackupAndRestore does: all start from the same epoch and the same weights.
    latest = tf.train.latest_checkpoint(os.path.join(out, "checkpoints")) if resume else None
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
    elif config.init_from:
        _start_from_export(gan, epoch_var, config.init_from, out if chief else None)
    initial_epoch = int(epoch_var.numpy())
    if initial_epoch >= config.epochs:
        print(f"{out} already trained {initial_epoch} of {config.epochs} epochs; nothing to do.",
              file=sys.stderr)
    else:
        # On resume, reshuffle with a new seed rather than replaying epoch 1's order.
        if initial_epoch:
            dataset, _ = _training_data(config, config.seed + initial_epoch, config.strategy == "multiworker")
        dataset, samples, fit_options = _model_specifics(config, dataset, steps, initial_epoch, work)
        nan_guard = _StopOnNaN()
        callbacks = [nan_guard, _Checkpoint(manager, epoch_var, nan_guard)]
        session = None
        if chief:
            session = _SessionRecord(out, config.command, epoch_var)
            callbacks += [
                session,
                samples,
                keras.callbacks.TensorBoard(os.path.join(work, "logs"), write_graph=False),
            ]
            session.write()  # recorded now: a session killed later keeps its entry
        callbacks = [c for c in callbacks if c is not None]
        try:
            gan.fit(
                dataset.repeat(), epochs=config.epochs, steps_per_epoch=steps,
                initial_epoch=initial_epoch, callbacks=callbacks, shuffle=False, verbose=verbose,
                **fit_options,
            )
        except tf.errors.UnavailableError as error:
            raise _worker_lost(error, out) from None
        finally:  # interrupted sessions count too: the model card reports the real training time
            if session is not None:
                session.write()
        if nan_guard.failed_at is not None:
            _, batch, bad = nan_guard.failed_at
            last = manager.latest_checkpoint or "none"
            raise TrainingError(
                f"training diverged: {', '.join(bad)} became non-finite at batch {batch + 1}; "
                f"the last good checkpoint ({last}) is kept. Resume with --resume, or restart "
                "with another --seed or a smaller --batch-size."
            )
    save_models(gan, work)  # every worker saves (it may need them all); only the chief's is kept
    return gan


def _model_specifics(config, dataset, steps, initial_epoch, work):
    """(dataset, sample-grid callback or None, extra `fit` arguments) of the run's model."""
    if config.model == "judge":
        from tf_semantic_inpaint.judge import validation_batches

        return dataset, None, {"validation_data": validation_batches(config)}
    if config.model == "context-encoder":
        from tf_semantic_inpaint import context_encoder

        # Fresh masks for every step; on resume they continue where the run stopped.
        dataset = context_encoder.mask_batches(dataset.repeat(), config.seed, initial_epoch * steps)
        samples = context_encoder.SampleCompletions(
            os.path.join(work, "samples"),
            *context_encoder.sample_inputs(config.dataset, config.resolution, config.channels,
                                           config.data_dir or None),
        )
        return dataset, samples, {}
    fixed_z = np.random.default_rng(config.seed).uniform(-1, 1, (64, config.z_dim)).astype("float32")
    return dataset, _SampleGrid(os.path.join(work, "samples"), fixed_z), {}


def _worker_lost(error, out):
    """The TrainingError for a multi-worker run that lost a worker (collectives aborted)."""
    latest = tf.train.latest_checkpoint(os.path.join(out, "checkpoints")) or "none yet"
    # The first line of TensorFlow's message, without its {{function_node ...}} prefix.
    first = re.sub(r"\{\{[^}]*\}\}\s*", "", (error.message or str(error)).strip()).splitlines()[0]
    return TrainingError(
        f"a worker of the cluster stopped ({first}); the last checkpoint ({latest}) is kept. "
        "Restart every worker with the same command plus --resume to continue from it."
    )


class _SessionRecord(keras.callbacks.Callback):
    """This session's entry in `out`/sessions.json, written at its start and as it goes.

    Rewritten atomically after every epoch and at most every `interval` seconds within
    one, so a session killed without warning (SIGKILL, a preempted machine) keeps its
    entry, up to its last update, and the model card's training time stays true.
    """

    def __init__(self, out, command, epoch_var, interval=60.0):
        super().__init__()
        self.path = os.path.join(out, "sessions.json")
        self.command, self.epoch_var, self.interval = command, epoch_var, interval
        self.started = time.time()
        self.from_epoch = int(epoch_var.numpy())
        self.index = None  # this session's position in the file, fixed at the first write
        self.written = 0.0

    def write(self):
        sessions = load_sessions(os.path.dirname(self.path))
        if self.index is None:
            self.index = len(sessions)
            sessions.append(None)
        now = time.time()
        sessions[self.index] = {
            "command": self.command,
            "started": _iso(self.started),
            "updated": _iso(now),
            "seconds": round(now - self.started, 1),
            "epochs": [self.from_epoch, int(self.epoch_var.numpy())],
        }
        write_bytes_atomic(self.path, json.dumps(sessions, indent=2).encode())
        self.written = now

    def on_epoch_end(self, epoch, logs=None):
        self.write()

    def on_train_batch_end(self, batch, logs=None):
        if time.time() - self.written >= self.interval:
            self.write()


def weights_digest(model):
    """A short SHA-256 of all of a trained model's weights (for a DCGAN: G, D and the EMA
    of G): equal on every worker of a healthy cluster."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:16]


def _iso(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat(timespec="seconds")


def load_sessions(run_dir):
    """The training sessions recorded in `run_dir`/sessions.json ([] if none)."""
    path = os.path.join(run_dir, "sessions.json")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return json.load(f)


def save_models(gan, out):
    """Save the final models atomically: G (the EMA G when the run keeps one), D and the
    raw G as generator.keras, discriminator.keras and raw_generator.keras; a judge as
    judge.keras."""
    if not hasattr(gan, "generator"):
        models = [(gan, "judge")]
    else:
        models = [(getattr(gan, "inference_generator", gan.generator), "generator"),
                  (gan.discriminator, "discriminator")]
        if getattr(gan, "ema_generator", None) is not None:
            models.append((gan.generator, "raw_generator"))
    for model, name in models:
        final = os.path.join(out, f"{name}.keras")
        tmp = os.path.join(out, f".tmp-{name}.keras")
        model.save(tmp)
        os.replace(tmp, final)
