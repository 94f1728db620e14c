"""Uncorrupted training images through tensorflow-datasets and tf.data.

Every dataset yields float32 images [resolution, resolution, channels] in [-1, 1]
(G's tanh range). Sources:

- tfds datasets: `fashion_mnist` (built offline from the Debian package
  `dataset-fashion-mnist`), and the paper's `celeb_a` (centre 108x108 crop, as in
  DCGAN), `svhn_cropped` and `cars196` (cropped to the car's bounding box) for users
  who have prepared them.
- a folder of the user's own images (any size; centre-cropped to a square).

Splits: `train`, `validation` (a held-out slice of the training split, for tuning,
unless the dataset has its own) and `test`. A folder has `train`, `validation` and `all`.
"""

import dataclasses
import gzip
import os
import pathlib
import zlib

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tf_semantic_inpaint import preprocess
from tf_semantic_inpaint.errors import InpaintError

DEBIAN_FASHION_MNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# 5% of the training split is held out for tuning the search (3,000 Fashion-MNIST images).
VALIDATION_PERCENT = 5


class DataError(InpaintError):
    """The requested data is missing, empty or unusable; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """How one tfds dataset becomes training images."""

    channels: int
    flip: bool  # random horizontal flips in training, where the paper uses them
    splits: dict  # our split name -> tfds split string
    crop: str = "none"  # "none", "celeb_a" (centre 108x108) or "bbox"


def _held_out(own_validation=None):
    return {
        "train": f"train[:{100 - VALIDATION_PERCENT}%]" if own_validation is None else "train",
        "validation": own_validation or f"train[{100 - VALIDATION_PERCENT}%:]",
        "test": "test",
    }


DATASETS = {
    "fashion_mnist": DatasetSpec(channels=1, flip=False, splits=_held_out()),
    "celeb_a": DatasetSpec(channels=3, flip=True, splits=_held_out("validation"), crop="celeb_a"),
    "svhn_cropped": DatasetSpec(channels=3, flip=False, splits=_held_out()),
    "cars196": DatasetSpec(channels=3, flip=True, splits=_held_out(), crop="bbox"),
}


def default_data_dir():
    """The tfds data dir: $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
    return os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def is_folder(dataset):
    """True when `dataset` names a folder of images rather than a tfds dataset."""
    return dataset not in DATASETS and (os.sep in dataset or os.path.isdir(dataset))


def check_dataset_name(dataset):
    """Raise DataError unless `dataset` is a known tfds name or an existing folder."""
    if dataset in DATASETS:
        return
    if is_folder(dataset):
        if not os.path.isdir(dataset):
            raise DataError(f"image folder {dataset!r} does not exist; pass a folder of images.")
        return
    raise DataError(
        f"unknown dataset {dataset!r}: use one of {', '.join(DATASETS)} or a folder of images."
    )


def dataset_channels(dataset):
    """The natural number of channels of `dataset` (a folder counts as RGB)."""
    check_dataset_name(dataset)
    return DATASETS[dataset].channels if dataset in DATASETS else 3


# --- Fashion-MNIST from the Debian package, as a real tfds dataset ----------------


class _DebianFashionMNIST(tfds.image_classification.FashionMNIST, skip_registration=True):
    """tfds' own `fashion_mnist` builder, reading the local Debian files.

    Debian recompressed the IDX files, so their checksums differ from the ones tfds
    expects although the images are identical; this reads them directly instead of
    through the download manager, and writes the normal `fashion_mnist/3.0.1` data.
    """

    name = "fashion_mnist"

    def __init__(self, source_dir, **kwargs):
        self._source_dir = pathlib.Path(source_dir)
        super().__init__(**kwargs)

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        files = lambda prefix: dict(  # noqa: E731
            data_path=self._source_dir / f"{prefix}-images-idx3-ubyte.gz",
            label_path=self._source_dir / f"{prefix}-labels-idx1-ubyte.gz",
        )
        return [
            tfds.core.SplitGenerator(name=tfds.Split.TRAIN, gen_kwargs=files("train")),
            tfds.core.SplitGenerator(name=tfds.Split.TEST, gen_kwargs=files("t10k")),
        ]

    def _generate_examples(self, data_path, label_path):
        images = read_idx(data_path)[..., np.newaxis]
        labels = read_idx(label_path).astype(np.int64)
        for index, (image, label) in enumerate(zip(images, labels)):
            yield index, {"image": image, "label": label}


def read_idx(path):
    """A gzipped IDX file (the MNIST format) as a uint8 array, e.g. [60000, 28, 28]."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = np.frombuffer(raw[4 : 4 + 4 * ndim], dtype=">u4").astype(int)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def prepare(dataset, data_dir=None, source_dir=None):
    """Write the tfds data of `dataset` into `data_dir`, once; return the builder.

    `fashion_mnist` is built from the Debian package's files (no network). Other
    datasets go through tfds' own `download_and_prepare`, which needs the network or
    the original files in `<data_dir>/downloads/manual/`.
    """
    check_dataset_name(dataset)
    if dataset not in DATASETS:
        raise DataError(f"{dataset!r} is a folder of images; it needs no preparing.")
    data_dir = data_dir or default_data_dir()
    if dataset == "fashion_mnist":
        source_dir = pathlib.Path(source_dir or DEBIAN_FASHION_MNIST)
        builder = _DebianFashionMNIST(source_dir, data_dir=data_dir)
        if not builder.is_prepared():
            missing = [
                name for name in (
                    "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                    "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                )
                if not (source_dir / name).is_file()
            ]
            if missing:
                raise DataError(
                    f"Fashion-MNIST files are missing from {source_dir} ({', '.join(missing)}): "
                    "install them with `sudo apt-get install dataset-fashion-mnist`."
                )
            builder.download_and_prepare(file_format="tfrecord")
        return builder
    builder = tfds.builder(dataset, data_dir=data_dir)
    if not builder.is_prepared():
        manual_dir = os.path.join(data_dir, "downloads", "manual")
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
        )
    return builder


def _prepared_builder(dataset, data_dir):
    """The tfds builder of a prepared dataset; prepares fashion_mnist on first use."""
    data_dir = data_dir or default_data_dir()
    if dataset == "fashion_mnist":
        return prepare(dataset, data_dir)
    builder = tfds.builder(dataset, data_dir=data_dir)
    if not builder.is_prepared():
        # A bare tfds.load would retry the network for minutes; fail now instead.
        raise DataError(
            f"dataset {dataset!r} is not prepared in {data_dir}. Build it once with network "
            f"access: `tfinpaint prepare {dataset} --data-dir {data_dir}` (or `tfds build "
            f"{dataset} --data_dir {data_dir}`), or put its original files in "
            f"{os.path.join(data_dir, 'downloads', 'manual')} first."
        )
    return builder


# --- Image transforms -----------------------------------------------------------


def to_model_range(image, resolution, channels):
    """Any uint8/float image [h, w, c] -> float32 [resolution, resolution, channels] in [-1, 1].

    Centre-crops to a square, then prepares it as inference does (preprocess.py: the
    same resize and channel conversion), so training and inpainting see alike images.
    uint8 input is taken as 0..255, float input as 0..1.
    """
    if image.dtype == tf.uint8:
        image = tf.cast(image, tf.float32) / 255.0
    image = center_square(tf.cast(image, tf.float32))
    image = preprocess.resize_to(preprocess.convert_channels(image, channels), resolution)
    return preprocess.to_model_range(tf.clip_by_value(image, 0.0, 1.0))


def center_square(image, size=None):
    """The centre square of side `size` (default: the shorter side) of [h, w, c]."""
    shape = tf.shape(image)
    side = tf.minimum(shape[0], shape[1]) if size is None else size
    top, left = (shape[0] - side) // 2, (shape[1] - side) // 2
    return image[top : top + side, left : left + side]


def _crop(example, crop):
    image = example["image"]
    if crop == "celeb_a":
        return center_square(image, 108)  # the DCGAN/paper crop of the 178x218 faces
    if crop == "bbox":
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        box = example["bbox"]  # normalised [ymin, xmin, ymax, xmax]
        top, left = tf.cast(box[0] * shape[0], tf.int32), tf.cast(box[1] * shape[1], tf.int32)
        bottom = tf.maximum(tf.cast(box[2] * shape[0], tf.int32), top + 1)
        right = tf.maximum(tf.cast(box[3] * shape[1], tf.int32), left + 1)
        return image[top:bottom, left:right]
    return image


# --- Folders of images ----------------------------------------------------------


def list_folder_images(folder, split="all"):
    """Sorted image paths of a folder (recursively), filtered to one split.

    The split is fixed by a hash of each file's relative path, so adding images
    never moves an existing image between train and validation.
    """
    root = pathlib.Path(folder)
    if not root.is_dir():
        raise DataError(f"image folder {folder!r} does not exist; pass a folder of images.")
    paths = sorted(
        p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not paths:
        raise DataError(
            f"image folder {folder!r} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
            "add some or point --dataset at the right folder."
        )
    if split not in ("train", "validation", "all"):
        raise DataError(
            f"a folder of images has splits train, validation and all, not {split!r}."
        )
    if split == "all":
        return [str(p) for p in paths]
    held_out = lambda p: zlib.crc32(str(p.relative_to(root)).encode()) % 100 < VALIDATION_PERCENT  # noqa: E731
    chosen = [str(p) for p in paths if held_out(p) == (split == "validation")]
    if not chosen:
        raise DataError(f"image folder {folder!r} has no images in its {split} split; add more.")
    return chosen


def _decode_file(path, channels):
    """An image file -> float32 [h, w, channels] in [0, 1] (8- or 16-bit; alpha dropped)."""
    return tf.io.decode_image(
        tf.io.read_file(path), channels=channels, dtype=tf.float32, expand_animations=False
    )


def _first_readable(paths, load, tries=10):
    """Decode eagerly until one file works, so a folder nothing can be read from fails now."""
    errors = []
    for path in paths[:tries]:
        try:
            load(path)
            return
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
            errors.append(f"{path}: {error.message.splitlines()[0]}")
    raise DataError(
        f"cannot decode the images in the folder ({'; '.join(errors[:2])}); "
        "use PNG, JPEG, BMP or GIF files."
    )


# --- Public pipelines -----------------------------------------------------------


def load_images(dataset, split, resolution, channels=None, data_dir=None):
    """Images of one split in a fixed order, unbatched.

    Args:
        dataset: a name in `DATASETS` or a folder path.
        split: "train", "validation" or "test" ("all" for folders).
        resolution: output height and width.
        channels: 1 or 3; default the dataset's own.
        data_dir: the tfds data dir (default $TFDS_DATA_DIR or ~/tensorflow_datasets).

    Returns:
        (dataset, count): a tf.data.Dataset of float32 [resolution, resolution,
        channels] in [-1, 1], and its number of images.
    """
    check_dataset_name(dataset)
    channels = channels or dataset_channels(dataset)
    convert = lambda image: to_model_range(image, resolution, channels)  # noqa: E731
    if is_folder(dataset):
        paths = list_folder_images(dataset, split)
        load = lambda p: convert(_decode_file(p, channels))  # noqa: E731
        _first_readable(paths, load)
        ds = tf.data.Dataset.from_tensor_slices(paths).map(load, num_parallel_calls=tf.data.AUTOTUNE)
        # A file that cannot be decoded is skipped with a warning rather than ending training.
        return ds.ignore_errors(log_warning=True), len(paths)
    spec, ds, count = _tfds_split(dataset, split, data_dir)
    ds = ds.map(lambda ex: convert(_crop(ex, spec.crop)), num_parallel_calls=tf.data.AUTOTUNE)
    return ds, count


def _tfds_split(dataset, split, data_dir):
    """(DatasetSpec, tf.data of raw tfds examples in their fixed order, count) of a split."""
    spec = DATASETS[dataset]
    if split not in spec.splits:
        raise DataError(f"{dataset} has splits {', '.join(spec.splits)}, not {split!r}.")
    builder = _prepared_builder(dataset, data_dir)
    ds = builder.as_dataset(split=spec.splits[split], shuffle_files=False)
    return spec, ds, int(ds.cardinality())  # tfds datasets know their size


def has_labels(dataset):
    """True when `dataset` has class labels (tfds datasets with a "label" feature).

    Folders of images and CelebA (attributes, not classes) have none.
    """
    check_dataset_name(dataset)
    return dataset in ("fashion_mnist", "svhn_cropped", "cars196")


def class_names(dataset, data_dir=None):
    """The class names of a labelled dataset, in label order (e.g. 10 for Fashion-MNIST)."""
    _require_labels(dataset)
    return list(_prepared_builder(dataset, data_dir).info.features["label"].names)


def _require_labels(dataset):
    if not has_labels(dataset):
        raise DataError(
            f"{dataset} has no class labels; the judge and the semantic metrics need a labelled "
            "dataset (fashion_mnist, svhn_cropped or cars196)."
        )


def load_labelled_images(dataset, split, resolution, channels=None, data_dir=None):
    """Images of one split with their class labels, in the fixed order of `load_images`.

    Returns:
        (dataset, count): a tf.data.Dataset of (float32 [resolution, resolution,
        channels] in [-1, 1], int64 label), and its number of examples. Image i is
        image i of `load_images(dataset, split, ...)`.

    Raises:
        DataError: the dataset has no labels (see `has_labels`) or no such split.
    """
    _require_labels(dataset)
    channels = channels or dataset_channels(dataset)
    spec, ds, count = _tfds_split(dataset, split, data_dir)
    ds = ds.map(
        lambda ex: (to_model_range(_crop(ex, spec.crop), resolution, channels), ex["label"]),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return ds, count


def load_labels(dataset, split, data_dir=None):
    """The class labels of one split, int64 scalars, in the fixed order of `load_images`."""
    _require_labels(dataset)
    _, ds, _ = _tfds_split(dataset, split, data_dir)
    return ds.map(lambda ex: ex["label"])


def labelled_training_dataset(dataset, resolution, batch_size, channels=None, data_dir=None, seed=None):
    """The shuffled, batched training split with labels, one pass per epoch.

    Returns:
        (dataset, steps_per_epoch): batches of (float32 [batch_size, resolution,
        resolution, channels] in [-1, 1], int64 [batch_size]) with random horizontal
        flips where the paper uses them (the last partial batch dropped).
    """
    examples, count = load_labelled_images(dataset, "train", resolution, channels, data_dir)
    if count < batch_size:
        raise DataError(f"{dataset} has {count} training images, fewer than one batch of {batch_size}; "
                        "lower --batch-size.")
    if count * resolution * resolution * (channels or dataset_channels(dataset)) * 4 < 2**31:
        examples = examples.cache()
    examples = examples.shuffle(min(count, 20_000), seed=seed, reshuffle_each_iteration=True)
    if DATASETS[dataset].flip:
        examples = examples.map(lambda x, y: (tf.image.random_flip_left_right(x, seed=seed), y))
    return (examples.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE),
            count // batch_size)


def training_dataset(dataset, resolution, batch_size, channels=None, data_dir=None, seed=None):
    """The shuffled, batched training split, one pass per epoch.

    Returns:
        (dataset, steps_per_epoch): batches of float32 [batch_size, resolution,
        resolution, channels] in [-1, 1] (the last partial batch dropped), with random
        horizontal flips where the paper uses them, and the number of batches.
    """
    images, count = load_images(dataset, "train", resolution, channels, data_dir)
    if count < batch_size:
        raise DataError(
            f"{dataset} has {count} training images, fewer than one batch of {batch_size}; "
            "lower --batch-size or add images."
        )
    flip = is_folder(dataset) or DATASETS[dataset].flip
    if count * resolution * resolution * (channels or dataset_channels(dataset)) * 4 < 2**31:
        images = images.cache()  # decode once; larger datasets (CelebA) stream instead
    images = images.shuffle(min(count, 20_000), seed=seed, reshuffle_each_iteration=True)
    if flip:
        images = images.map(lambda x: tf.image.random_flip_left_right(x, seed=seed))
    return images.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE), count // batch_size
