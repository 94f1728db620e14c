"""Training data: real Fashion-MNIST from the Debian files, the paper's datasets, folders."""

import os
import socket

import cv2
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tf_semantic_inpaint import data


@pytest.fixture(scope="module")
def prepared():
    """The real Fashion-MNIST, prepared once into the default tfds data dir."""
    return data.prepare("fashion_mnist")


@pytest.mark.parametrize("split, count", [("train", 57_000), ("validation", 3_000), ("test", 10_000)])
def test_fashion_mnist_splits_are_real_and_complete(prepared, split, count):
    ds, n = data.load_images("fashion_mnist", split, 28)
    assert n == count
    first = np.stack(list(ds.take(64).as_numpy_iterator()))
    assert first.shape == (64, 28, 28, 1) and first.dtype == np.float32
    assert first.min() == -1.0 and first.max() == 1.0  # black background, white garments


def test_tfds_records_equal_the_debian_files(prepared):
    """The tfds dataset holds exactly the Debian package's pixels and labels, in order."""
    images = data.read_idx(data.DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz")
    labels = data.read_idx(data.DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10_000, 28, 28) and labels.shape == (10_000,)
    ds = tfds.load("fashion_mnist", split="test", data_dir=data.default_data_dir(), download=False,
                   shuffle_files=False)
    got = {}
    for example in ds.take(2_000).as_numpy_iterator():
        got[example["image"].tobytes()] = int(example["label"])
    # tfds shuffles records when writing; match each record to its Debian image.
    debian = {img.tobytes(): int(lab) for img, lab in zip(images, labels)}
    assert all(debian[k] == v for k, v in got.items())


def test_load_images_resizes_and_converts(prepared):
    ds, _ = data.load_images("fashion_mnist", "validation", 32, channels=3)
    x = next(iter(ds)).numpy()
    assert x.shape == (32, 32, 3)
    assert x.min() == -1 and x.max() > 0  # [0, 1] -> [-1, 1]: the black background is -1
    np.testing.assert_allclose(x[..., 0], x[..., 1])  # grey replicated


def test_training_dataset_batches(prepared):
    ds, steps = data.training_dataset("fashion_mnist", 28, batch_size=64, seed=0)
    assert steps == 57_000 // 64
    batch = next(iter(ds))
    assert batch.shape == (64, 28, 28, 1)


def test_missing_debian_files_say_how_to_install(tmp_path):
    with pytest.raises(data.DataError, match="apt-get install dataset-fashion-mnist"):
        data.prepare("fashion_mnist", data_dir=str(tmp_path / "tfds"), source_dir=str(tmp_path))


@pytest.mark.parametrize("name", ["celeb_a", "svhn_cropped", "cars196"])
def test_unprepared_paper_dataset_fails_fast_with_instructions(tmp_path, name, monkeypatch):
    # "Fast" means without touching the network (tfds would retry it for minutes), whatever
    # the machine's speed: any connection attempt fails the test.
    attempts = []

    def no_network(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(data.DataError, match=f"tfinpaint prepare {name}"):
        data.load_images(name, "train", 64, data_dir=str(tmp_path))
    assert attempts == []


def test_unknown_dataset_names_the_choices():
    with pytest.raises(data.DataError, match="fashion_mnist, celeb_a"):
        data.check_dataset_name("imagenet")


@pytest.mark.parametrize(
    "name, channels, split", [("celeb_a", 3, "validation"), ("svhn_cropped", 3, "test"), ("cars196", 3, "train")]
)
def test_paper_dataset_pipelines_on_mock_data(name, channels, split, tmp_path, monkeypatch):
    """Shapes and ranges of the celeb_a / svhn / cars pipelines (tfds mock data, not real images)."""
    builder = tfds.builder(name)
    # mock_data fakes the records but not the "prepared" state our fail-fast check reads.
    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
    with tfds.testing.mock_data(num_examples=4, data_dir=str(tmp_path)):
        # mock_data serves fake examples with the dataset's real feature specs.
        ds, count = data.load_images(name, split, 64, data_dir=str(tmp_path))
        images = np.stack(list(ds.take(4).as_numpy_iterator()))
    assert builder.name == name
    assert images.shape == (4, 64, 64, channels) and images.dtype == np.float32
    assert images.min() < 0 < images.max()  # in the model's [-1, 1], not [0, 1]


def test_celeb_a_crop_is_the_central_108_square():
    image = tf.zeros((218, 178, 3), tf.uint8)
    assert data._crop({"image": image}, "celeb_a").shape == (108, 108, 3)


def test_cars_crop_follows_the_bounding_box():
    image = np.zeros((100, 200, 3), np.uint8)
    image[20:60, 50:150] = 255
    box = tf.constant([0.2, 0.25, 0.6, 0.75])  # ymin, xmin, ymax, xmax
    crop = data._crop({"image": tf.constant(image), "bbox": box}, "bbox").numpy()
    assert crop.shape == (40, 100, 3) and crop.min() == 255


def _write_images(folder, sizes):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        cv2.imwrite(str(folder / f"img{i:03d}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_folder_of_any_size_images(tmp_path):
    _write_images(tmp_path / "imgs", [(40, 60), (100, 50), (64, 64)] * 10)
    ds, count = data.load_images(str(tmp_path / "imgs"), "all", 32)
    images = np.stack(list(ds.as_numpy_iterator()))
    assert count == 30 and images.shape == (30, 32, 32, 3)
    train = data.list_folder_images(str(tmp_path / "imgs"), "train")
    assert 0 < len(train) <= 30
    validation = set(data.list_folder_images(str(tmp_path / "imgs"), "all")) - set(train)
    # the held-out images are fixed by their names: the same split every time
    assert set(data.list_folder_images(str(tmp_path / "imgs"), "train")) == set(train)
    assert not validation & set(train)


def test_folder_centre_crops_before_resizing(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, 20:60] = 255  # the central 40x40 square is white, the sides black
    cv2.imwrite(str(folder / "a.png"), image)
    ds, _ = data.load_images(str(folder), "all", 8)
    assert next(iter(ds)).numpy().min() > 0.999  # only the white centre survives the crop


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(data.DataError, match="holds no images"):
        data.load_images(str(tmp_path / "empty"), "all", 32)


def test_unreadable_image_in_folder_is_skipped(tmp_path):
    _write_images(tmp_path / "imgs", [(32, 32)] * 3)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"not a png")
    ds, count = data.load_images(str(tmp_path / "imgs"), "all", 16)
    assert count == 4 and len(list(ds.as_numpy_iterator())) == 3


# --- Labels (the judge and the semantic metrics) ------------------------------------


def test_labelled_images_follow_load_images_order_with_the_debian_labels(prepared):
    """Image i of the labelled test split is image i of load_images, with its Debian label."""
    plain, count = data.load_images("fashion_mnist", "test", 28)
    labelled, labelled_count = data.load_labelled_images("fashion_mnist", "test", 28)
    assert labelled_count == count == 10_000
    images = np.stack(list(plain.take(300).as_numpy_iterator()))
    pairs = list(labelled.take(300).as_numpy_iterator())
    np.testing.assert_array_equal(np.stack([x for x, _ in pairs]), images)
    labels = np.array([y for _, y in pairs])
    np.testing.assert_array_equal(labels, np.fromiter(data.load_labels("fashion_mnist", "test").take(300)
                                                      .as_numpy_iterator(), np.int64))
    debian_images = data.read_idx(data.DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz")
    debian_labels = data.read_idx(data.DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz")
    by_pixels = {img.tobytes(): int(lab) for img, lab in zip(debian_images, debian_labels)}
    pixels = np.round((images[..., 0] + 1) * 127.5).astype(np.uint8)
    assert [by_pixels[p.tobytes()] for p in pixels] == labels.tolist()
    assert set(labels.tolist()) == set(range(10))


def test_class_names_and_labelled_training_batches(prepared):
    assert data.class_names("fashion_mnist")[:3] == ["T-shirt/top", "Trouser", "Pullover"]
    ds, steps = data.labelled_training_dataset("fashion_mnist", 28, batch_size=32, seed=0)
    assert steps == 57_000 // 32
    images, labels = next(iter(ds))
    assert images.shape == (32, 28, 28, 1) and labels.shape == (32,) and labels.dtype == tf.int64


def test_datasets_without_labels_say_so(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8), np.uint8))
    assert data.has_labels("fashion_mnist") and not data.has_labels("celeb_a")
    assert not data.has_labels(str(tmp_path))
    for dataset in ("celeb_a", str(tmp_path)):
        with pytest.raises(data.DataError, match="no class labels"):
            data.load_labelled_images(dataset, "train", 28)
