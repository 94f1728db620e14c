"""The judge: a small CNN classifier of the dataset's classes, behind evaluate's semantic metrics.

PSNR cannot tell a plausible completion from a blurry one of the same error; the
paper's claim is that the latent search's completions are semantically right. The
judge measures that: the share of completed images it assigns to the image's true
class (semantic accuracy), and a Fréchet distance between its penultimate features
of completed and of real images (FID's formula on this judge, not Inception's;
metrics.frechet_distance).

    network     two blocks of a 3x3 convolution (batch norm, ReLU) and 2x2 max pooling,
                widths 32 and 64, then a dense layer of FEATURES units (ReLU): the
                penultimate features; dropout, and a dense layer of logits
    training    Adam 1e-3, cross-entropy, on the training split (validation for the
                epoch's accuracy), through `train.train`: `tfinpaint train --model judge`
    export      a SavedModel whose `classify` (= serving_default) signature maps
                images float32 [b, R, R, C] in [0, 1] to `logits` [b, classes],
                `probabilities` [b, classes], `classes` int64 [b] and `features`
                [b, FEATURES]; it loads without this package.
"""

import datetime
import os

import keras
import numpy as np
import tensorflow as tf

FEATURES = 128  # penultimate width: small enough for a well-estimated covariance at n = 500
LEARNING_RATE = 1e-3
CARD_FORMAT = "tf-semantic-inpaint judge card 1"


@keras.saving.register_keras_serializable(package="tf_semantic_inpaint")
class Judge(keras.Model):
    """A CNN classifier: image -> class logits, with its penultimate features exposed.

    Args:
        resolution: image height and width (at least 4).
        channels: 1 or 3.
        classes: number of classes.
        dropout: rate before the logits.

    Call:
        images: float32 [batch, resolution, resolution, channels] in [-1, 1].
        returns: float32 [batch, classes], logits.
    `features(images)`: float32 [batch, FEATURES], non-negative (after ReLU).

    Example:
        >>> judge = Judge(28, 1, 10)
        >>> judge(images).shape, judge.features(images).shape
        (TensorShape([b, 10]), TensorShape([b, 128]))
    """

    def __init__(self, resolution=28, channels=1, classes=10, dropout=0.3, **kwargs):
        super().__init__(**kwargs)
        if resolution < 4:
            raise ValueError(f"the judge's resolution must be at least 4, got {resolution}.")
        self.resolution, self.channels, self.classes, self.dropout = resolution, channels, classes, dropout
        layers = []
        for filters in (32, 64):
            layers += [keras.layers.Conv2D(filters, 3, padding="same", use_bias=False),
                       keras.layers.BatchNormalization(), keras.layers.ReLU(),
                       keras.layers.MaxPooling2D(2, padding="same")]
        layers += [keras.layers.Flatten(), keras.layers.Dense(FEATURES, activation="relu")]
        # Held in Sequentials, not Python lists, so tf.train.Checkpoint sees every variable.
        self.body = keras.Sequential(layers, name="body")
        self.head = keras.Sequential(
            [keras.layers.Dropout(dropout), keras.layers.Dense(classes)], name="head"
        )
        self.build((None, resolution, resolution, channels))

    def build(self, input_shape):
        self.body.build(input_shape)
        self.head.build((None, FEATURES))
        self.built = True

    def features(self, images, training=False):
        """Penultimate features, float32 [batch, FEATURES], of images in [-1, 1]."""
        return self.body(images, training=training)

    def call(self, images, training=False):
        return self.head(self.features(images, training=training), training=training)

    def get_config(self):
        config = super().get_config()
        config.update(resolution=self.resolution, channels=self.channels, classes=self.classes,
                      dropout=self.dropout)
        return config


def build_judge(resolution, channels, classes, learning_rate=LEARNING_RATE):
    """A Judge compiled with Adam, cross-entropy on logits and accuracy."""
    judge = Judge(resolution, channels, classes, name="judge")
    judge.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    judge.optimizer.build(judge.trainable_variables)  # slots now: checkpoints match before/after step 1
    return judge


# --- Training (through train.train with model "judge") ----------------------------


def validation_batches(config, batch_size=500):
    """The validation split as (images, labels) batches: the judge's accuracy after each epoch."""
    from tf_semantic_inpaint import data

    examples, _ = data.load_labelled_images(config.dataset, "validation", config.resolution,
                                            config.channels, config.data_dir or None)
    return examples.batch(batch_size)


def load_trained_judge(run_dir):
    """(judge, run config, epochs) of a judge run: judge.keras, else the newest checkpoint."""
    from tf_semantic_inpaint import train as training

    config = training.load_run_config(run_dir)
    final = os.path.join(run_dir, "judge.keras")
    if os.path.isfile(final):
        return keras.saving.load_model(final), config, config.epochs
    return training.restore_gan(run_dir)


def accuracy(judge, dataset, split, data_dir=None, batch_size=500):
    """The judge's accuracy (share of correct classes) on a whole labelled split."""
    from tf_semantic_inpaint import data

    examples, _ = data.load_labelled_images(dataset, split, judge.resolution, judge.channels, data_dir)
    correct = total = 0
    for images, labels in examples.batch(batch_size):
        predicted = np.argmax(judge(images, training=False).numpy(), axis=-1)
        correct += int(np.sum(predicted == labels.numpy()))
        total += len(predicted)
    return correct / total


# --- Export -----------------------------------------------------------------------


class JudgeModule(tf.Module):
    """What the judge's SavedModel holds: the raw variables and the `classify` function.

    Raw tf.Variables, not the Keras model, so that the TF1 loader (TF Serving's)
    restores them (see export.py).
    """

    def __init__(self, judge):
        super().__init__(name="judge")
        self.model_variables = [v.value for v in judge.weights]
        spec = tf.TensorSpec([None, judge.resolution, judge.resolution, judge.channels], tf.float32)

        def classify(images):
            scaled = tf.clip_by_value(images, 0.0, 1.0) * 2.0 - 1.0
            features = judge.features(scaled, training=False)
            logits = judge.head(features, training=False)
            return {"logits": logits, "probabilities": tf.nn.softmax(logits),
                    "classes": tf.argmax(logits, axis=-1), "features": features}

        self.classify = tf.function(classify, input_signature=[spec])

    def signatures(self):
        return {"serving_default": self.classify.get_concrete_function(),
                "classify": self.classify.get_concrete_function()}


def export_judge(run_dir, base, version=None, force=False, notes=None):
    """Export a judge run as BASE/<version>/ (SavedModel + model_card.json); return that path.

    The card records the class names, the training command and time, and the
    judge's accuracy on the validation and test splits; `notes` (a dict) adds fields.
    """
    from tf_semantic_inpaint import data
    from tf_semantic_inpaint.contract import versions
    from tf_semantic_inpaint.errors import InpaintError
    from tf_semantic_inpaint.export import write_savedmodel
    from tf_semantic_inpaint.train import load_sessions

    existing = versions(base)
    version = version if version is not None else (existing[-1] + 1 if existing else 1)
    target = os.path.join(base, str(version))
    if os.path.exists(target) and not force:
        raise InpaintError(f"{target} exists; pass --force to replace it or choose another --version.")
    judge, config, epochs = load_trained_judge(run_dir)
    sessions = load_sessions(run_dir)
    data_dir = config.data_dir or None
    module = JudgeModule(judge)
    card = {
        "format": CARD_FORMAT,
        "kind": "judge",
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dataset": config.dataset,
        "resolution": judge.resolution,
        "channels": judge.channels,
        "class_names": data.class_names(config.dataset, data_dir),
        "features": FEATURES,
        "input_range": [0.0, 1.0],
        "training_command": config.command,
        "epochs": epochs,
        "batch_size": config.batch_size,
        "learning_rate": LEARNING_RATE,
        "seed": config.seed,
        "training_sessions": sessions,
        "training_seconds": round(sum(s["seconds"] for s in sessions), 1),
        "accuracy": {split: round(accuracy(judge, config.dataset, split, data_dir), 4)
                     for split in ("validation", "test")},
        "signatures": sorted(module.signatures()),
        **(notes or {}),
    }
    write_savedmodel(module, target, card, force)
    return target


# --- Loading the exported judge ---------------------------------------------------


class LoadedJudge:
    """An exported judge, loaded in this process.

    Args:
        path: a judge SavedModel directory or its model base (newest version).

    `classify(images)`: images float32 [n, R, R, C] in [0, 1] -> (logits float32
    [n, classes], features float32 [n, FEATURES]) as NumPy, in batches.
    """

    def __init__(self, path):
        from tf_semantic_inpaint.contract import resolve_model_dir
        from tf_semantic_inpaint.errors import InpaintError
        from tf_semantic_inpaint.export import read_card

        self.path = resolve_model_dir(path)
        self.card = read_card(self.path)
        if self.card.get("kind") != "judge":
            raise InpaintError(f"{self.path} is not a judge (its model card does not say so); "
                             "export one with `tfinpaint export` of a `--model judge` run.")
        self._classify = tf.saved_model.load(self.path).signatures["classify"]
        self.resolution, self.channels = self.card["resolution"], self.card["channels"]
        self.dataset, self.class_names = self.card["dataset"], self.card["class_names"]

    def classify(self, images, batch_size=500):
        logits, features = [], []
        for start in range(0, len(images), batch_size):
            out = self._classify(images=tf.constant(images[start:start + batch_size], tf.float32))
            logits.append(out["logits"].numpy())
            features.append(out["features"].numpy())
        return np.concatenate(logits), np.concatenate(features)


def shipped_judge_dir(dataset):
    """The model base of the judge shipped for `dataset`, or None when there is none."""
    from tf_semantic_inpaint.errors import InpaintError
    from tf_semantic_inpaint.local import shipped_model_dir

    try:
        return shipped_model_dir(f"{dataset}_judge")
    except InpaintError:
        return None
