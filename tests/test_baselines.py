"""Tests for tf_semantic_inpaint.baselines: contract, accuracy on smooth images, real data."""

import numpy as np
import pytest

from tf_semantic_inpaint import baselines, metrics
from tf_semantic_inpaint.errors import InpaintError

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
SMOOTH = ["telea", "navier_stokes", "biharmonic", "total_variation"]


def plane(height, width, coefficients):
    """float32 [height, width, C]: channel c is a + b x + d y with x, y in [0, 1]."""
    yy, xx = np.mgrid[0:height, 0:width] / np.array([height - 1, width - 1])[:, None, None]
    return np.stack([a + b * xx + d * yy for a, b, d in coefficients], -1).astype(np.float32)


def centre_hole(size, border):
    """float32 [size, size, 1]: 1 (known) except a centre square `border` pixels in."""
    mask = np.ones((size, size, 1), np.float32)
    mask[border:-border, border:-border] = 0.0
    return mask


def total_variation_of(image):
    dx, dy = baselines._gradient(image.astype(np.float64))
    return float(np.sqrt(dx**2 + dy**2).sum())


def _with_hole(image, mask, fill):
    return np.where(mask > 0.5, image, fill).astype(np.float32)


GREY = plane(28, 28, [(0.1, 0.6, 0.2)])
COLOUR = plane(32, 32, [(0.1, 0.6, 0.2), (0.8, -0.5, 0.1), (0.3, 0.2, 0.4)])


def _all_methods(shape):
    """Every baseline, data-driven ones built on 50 random training images of `shape`."""
    rng = np.random.default_rng(0)
    train = rng.random((50,) + shape).astype(np.float32)
    return baselines.make_baselines(list(baselines.CLASSICAL) + list(baselines.DATA_DRIVEN), train)


@pytest.mark.parametrize("image", [GREY, COLOUR], ids=["grey", "colour"])
def test_every_method_keeps_known_pixels_and_ignores_the_hole(image):
    size = image.shape[0]
    mask = centre_hole(size, size // 4)
    rng = np.random.default_rng(1)
    garbage_a = rng.random(image.shape).astype(np.float32)
    garbage_b = np.full(image.shape, np.nan, np.float32)
    garbage_b[::2] = 7.0
    known = np.broadcast_to(mask > 0.5, image.shape)
    for name, method in _all_methods(image.shape).items():
        out_a = method(_with_hole(image, mask, garbage_a), mask)
        out_b = method(_with_hole(image, mask, garbage_b), mask)
        assert out_a.dtype == np.float32 and out_a.shape == image.shape, name
        assert np.array_equal(out_a[known], image[known]), name  # bitwise
        assert np.array_equal(out_a, out_b), f"{name} looked at the hole's contents"


@pytest.mark.parametrize("image", [GREY, COLOUR], ids=["grey", "colour"])
@pytest.mark.parametrize("name", SMOOTH)
def test_smooth_methods_recover_a_plane_far_better_than_zero_fill(image, name):
    size = image.shape[0]
    mask = centre_hole(size, size // 4 + 2)
    zero_fill = metrics.psnr(image * mask, image)  # about 14 dB
    completed = baselines.CLASSICAL[name](image, mask)
    # Measured: Telea 38-39 dB, Navier-Stokes 40 dB, TV 93-99 dB, biharmonic 118-131 dB.
    assert metrics.psnr(completed, image) > max(35.0, zero_fill + 20.0)


def test_biharmonic_and_tv_reproduce_a_plane_almost_exactly():
    mask = centre_hole(32, 10)
    for name in ("biharmonic", "total_variation"):
        assert metrics.psnr(baselines.CLASSICAL[name](COLOUR, mask), COLOUR) > 80.0, name


def test_gradient_and_divergence_are_negative_adjoints():
    rng = np.random.default_rng(2)
    x, px, py = rng.normal(size=(3, 9, 7, 2))
    dx, dy = baselines._gradient(x)
    assert np.sum(dx * px + dy * py) == pytest.approx(-np.sum(x * baselines._divergence(px, py)))


def test_total_variation_minimises_tv_within_the_known_range():
    rng = np.random.default_rng(3)
    # A blocky image: its hole crosses edges, so the answer is not a plane.
    image = np.kron(rng.random((4, 4, 3)), np.ones((6, 6, 1))).astype(np.float32)
    mask = centre_hole(24, 6)
    completed = baselines.total_variation(image, mask)
    # The original is feasible, so the minimiser's TV is no larger (up to convergence).
    assert total_variation_of(completed) <= total_variation_of(image) + 1e-2
    assert total_variation_of(completed) < total_variation_of(image * mask)
    known = image[mask[..., 0] > 0.5]
    assert np.all(completed >= known.min(axis=0)) and np.all(completed <= known.max(axis=0))


def test_total_variation_handles_holes_at_the_border():
    mask = np.ones((20, 20, 1), np.float32)
    mask[:, :6] = 0.0  # the left edge: no known ring on that side of the box
    image = plane(20, 20, [(0.1, 0.6, 0.0)])  # a horizontal ramp
    completed = baselines.total_variation(image, mask)
    assert np.array_equal(completed[:, 6:], image[:, 6:])
    # Repeating the first known column costs no TV at all: that is the answer.
    assert np.allclose(completed[:, :6], image[:, 6:7], atol=1e-3)


def test_nearest_neighbour_returns_the_training_image_itself():
    train = np.random.default_rng(4).random((30, 28, 28, 1)).astype(np.float32)
    mask = centre_hole(28, 7)
    nn = baselines.NearestNeighbour(train)
    query = _with_hole(train[17], mask, 0.5)
    assert nn.nearest(query, mask) == 17
    assert np.array_equal(nn(query, mask), train[17])


def test_nearest_neighbour_compares_known_pixels_only():
    rng = np.random.default_rng(5)
    mask = centre_hole(16, 4)
    hole = np.broadcast_to(mask < 0.5, (16, 16, 3))
    train = rng.random((6, 16, 16, 3)).astype(np.float32)
    # Image 2 matches the query outside the hole but is white inside it; image 4 is a bit
    # off outside and black inside, so it would win if the (zeroed) hole counted.
    train[2][hole] = 1.0
    train[4] = np.clip(train[2] + 0.03 * rng.normal(size=train[2].shape), 0, 1)
    train[4][hole] = 0.0
    query = _with_hole(train[2], mask, train[4])
    nn = baselines.NearestNeighbour(train)
    assert nn.nearest(query, mask) == 2
    assert np.array_equal(nn(query, mask), train[2])


def test_nearest_neighbour_searches_every_chunk(monkeypatch):
    monkeypatch.setattr(baselines, "NN_CHUNK_BYTES", 3 * 8 * 8 * 4)  # 3 images a chunk
    train = np.random.default_rng(6).random((10, 8, 8, 1)).astype(np.float32)
    mask = centre_hole(8, 3)
    nn = baselines.NearestNeighbour(train)
    for index in (0, 4, 9):  # first chunk, middle, the partial last chunk
        assert nn.nearest(train[index], mask) == index


def test_training_mean_fills_the_hole_with_the_mean_image():
    train = np.random.default_rng(7).random((20, 12, 12, 3)).astype(np.float32)
    mask = centre_hole(12, 3)
    image = np.full((12, 12, 3), 0.25, np.float32)
    completed = baselines.TrainingMean(train)(image, mask)
    hole = np.broadcast_to(mask < 0.5, image.shape)
    assert np.allclose(completed[hole], train.mean(axis=0)[hole], atol=1e-6)
    assert np.all(completed[~hole] == 0.25)


def test_make_baselines_builds_by_name_and_explains_mistakes():
    made = baselines.make_baselines(["biharmonic", "telea"])
    assert list(made) == ["biharmonic", "telea"] and made["telea"] is baselines.telea
    assert list(baselines.make_baselines("total_variation")) == ["total_variation"]
    train = np.zeros((3, 4, 4, 1), np.float32)
    made = baselines.make_baselines(["nearest_neighbour", "train_mean"], train)
    assert isinstance(made["nearest_neighbour"], baselines.NearestNeighbour)
    assert isinstance(made["train_mean"], baselines.TrainingMean)
    with pytest.raises(InpaintError, match="unknown baseline 'opencv'.*telea, navier_stokes"):
        baselines.make_baselines(["opencv"])
    with pytest.raises(baselines.BaselineError, match="train_mean need training images"):
        baselines.make_baselines(["telea", "train_mean"])
    with pytest.raises(baselines.BaselineError, match="divide uint8 by 255"):
        baselines.make_baselines(["train_mean"], np.zeros((3, 4, 4, 1), np.uint8))


def test_bad_inputs_raise_baseline_errors():
    mask = centre_hole(28, 7)
    with pytest.raises(baselines.BaselineError, match="mask has shape"):
        baselines.telea(GREY, mask[:20])
    with pytest.raises(baselines.BaselineError, match="to_float"):
        baselines.telea((GREY * 255).astype(np.uint8), mask)
    with pytest.raises(baselines.BaselineError, match="no known pixels"):
        baselines.total_variation(GREY, np.zeros_like(mask))
    with pytest.raises(baselines.BaselineError, match="same size"):
        baselines.TrainingMean(np.zeros((2, 14, 14, 1), np.float32))(GREY, mask)


# --- Real Fashion-MNIST ---------------------------------------------------------------


@pytest.fixture(scope="module")
def fashion_mnist():
    """(first 20 test images, all 60,000 training images), float32 [N, 28, 28, 1] in [0, 1]."""
    from tf_semantic_inpaint.data import read_idx  # imports TensorFlow: only when needed

    def load(name):
        path = f"{FASHION_MNIST}/{name}-images-idx3-ubyte.gz"
        try:
            raw = read_idx(path)
        except FileNotFoundError:
            pytest.skip(f"{path} missing: apt-get install dataset-fashion-mnist")
        return raw[..., np.newaxis].astype(np.float32) / 255.0

    return load("t10k")[:20], load("train")


def test_methods_on_real_fashion_mnist_give_sensible_psnr(fashion_mnist):
    test, train = fashion_mnist
    mask = centre_hole(28, 7)  # the centre 14x14, a quarter of the image
    made = baselines.make_baselines(list(baselines.CLASSICAL) + list(baselines.DATA_DRIVEN), train)
    score = {
        name: metrics.mean_psnr([metrics.psnr(method(x, mask), x) for x in test])
        for name, method in made.items()
    }
    zero_fill = metrics.mean_psnr(metrics.psnr(test * mask, test))
    # Measured on these 20 images: zero fill 11.7, mean 16.2, biharmonic 17.5, Telea 18.0,
    # TV 18.3, Navier-Stokes 18.4, nearest neighbour 22.1 dB.
    assert 11.0 < zero_fill < 12.5
    assert 15.5 < score["train_mean"] < 17.0
    for name in SMOOTH:
        assert 17.0 < score[name] < 19.5, (name, score[name])
        assert score[name] > score["train_mean"] + 0.8, (name, score[name])
    assert score["nearest_neighbour"] > 21.0
