"""Tests for tf_semantic_inpaint.metrics: PSNR by hand, inf handling, SSIM sanity."""

import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from tf_semantic_inpaint import metrics
from tf_semantic_inpaint.errors import InpaintError


def _image(shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def test_psnr_matches_hand_computation():
    target = np.zeros((8, 8, 1), np.float32)
    # Every pixel off by 0.1: MSE 0.01 -> 10 log10(1 / 0.01) = 20 dB.
    assert metrics.psnr(target + 0.1, target) == pytest.approx(20.0, abs=1e-5)
    # Half the pixels off by 0.2: MSE 0.02 -> 16.9897 dB.
    half = target.copy()
    half[:4] = 0.2
    assert metrics.psnr(half, target) == pytest.approx(10 * math.log10(1 / 0.02), abs=1e-5)
    # data_range scales the peak: 0..255 images off by 25.5 are again 20 dB.
    assert metrics.psnr(target + 25.5, target, data_range=255.0) == pytest.approx(20.0, abs=1e-5)


def test_psnr_is_symmetric_and_counts_every_channel():
    a, b = _image((6, 5, 3), 1), _image((6, 5, 3), 2)
    assert metrics.psnr(a, b) == pytest.approx(metrics.psnr(b, a))
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(1 / mse))


def test_psnr_batch_gives_one_value_per_image():
    predictions, targets = _image((4, 7, 7, 1), 3), _image((4, 7, 7, 1), 4)
    values = metrics.psnr(predictions, targets)
    assert values.shape == (4,)
    for value, p, t in zip(values, predictions, targets):
        assert value == pytest.approx(metrics.psnr(p, t))


def test_identical_images_give_inf_and_mean_psnr_caps_it():
    image = _image((5, 5, 1))
    assert metrics.psnr(image, image) == math.inf
    assert metrics.psnr(np.stack([image, image]), np.stack([image, image + 0.1]))[0] == math.inf
    assert metrics.mean_psnr([math.inf, 20.0]) == pytest.approx((metrics.PSNR_CAP + 20.0) / 2)
    assert metrics.mean_psnr([20.0, 30.0]) == pytest.approx(25.0)
    assert metrics.mean_psnr(np.array([math.inf]), cap=60.0) == pytest.approx(60.0)
    assert math.isnan(metrics.mean_psnr([]))


def test_psnr_rejects_mismatched_shapes():
    with pytest.raises(InpaintError, match="shape"):
        metrics.psnr(np.zeros((4, 4, 1)), np.zeros((4, 4, 3)))
    with pytest.raises(metrics.MetricError, match="channel axis"):
        metrics.psnr(np.zeros((4, 4)), np.zeros((4, 4)))


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_ssim_is_one_for_identical_and_falls_with_noise(shape):
    image = np.clip(_image(shape) * 0.5 + 0.25, 0, 1)
    noise = np.random.default_rng(9).normal(size=shape)
    slightly = np.clip(image + 0.02 * noise, 0, 1)
    badly = np.clip(image + 0.2 * noise, 0, 1)
    assert metrics.ssim(image, image) == pytest.approx(1.0)
    assert metrics.ssim(badly, image) < metrics.ssim(slightly, image) < 1.0


def test_ssim_grayscale_matches_skimage_on_2d_arrays():
    a, b = _image((28, 28, 1), 5), _image((28, 28, 1), 6)
    expected = structural_similarity(
        a[..., 0].astype(np.float64), b[..., 0].astype(np.float64), data_range=1.0
    )
    assert metrics.ssim(a, b) == pytest.approx(expected)


def test_ssim_batch_and_tiny_images():
    a, b = _image((3, 28, 28, 1), 7), _image((3, 28, 28, 1), 8)
    values = metrics.ssim(a, b)
    assert values.shape == (3,)
    assert values[1] == pytest.approx(metrics.ssim(a[1], b[1]))
    # Smaller than the 7x7 window: it shrinks to 5x5 rather than failing.
    tiny = _image((5, 6, 1))
    assert metrics.ssim(tiny, tiny) == pytest.approx(1.0)
    with pytest.raises(metrics.MetricError, match="3x3"):
        metrics.ssim(np.zeros((2, 2, 1)), np.zeros((2, 2, 1)))


# --- Semantic metrics -----------------------------------------------------------------


def test_semantic_accuracy_counts_the_argmax_against_the_labels():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 0.5, 0.1], [0.3, 0.2, 0.9], [5.0, 0.0, 0.0]])
    assert metrics.semantic_accuracy(logits, np.array([0, 1, 2, 1])) == 0.75
    assert metrics.semantic_accuracy(logits, np.array([1, 0, 0, 2])) == 0.0
    with pytest.raises(InpaintError, match="logits"):
        metrics.semantic_accuracy(logits, np.array([0, 1]))


def test_frechet_distance_is_zero_for_identical_sets_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(500, 16))
    assert metrics.frechet_distance(features, features) == pytest.approx(0.0, abs=1e-8)
    reference = rng.normal(size=(5000, 16))
    same = metrics.frechet_distance(features, reference)
    shifted = [metrics.frechet_distance(features + s, reference) for s in (0.25, 0.5, 1.0)]
    assert same < shifted[0] < shifted[1] < shifted[2]
    # A mean shift of s in every one of 16 dimensions adds 16 s² to d².
    assert shifted[2] - same == pytest.approx(16.0, rel=0.1)
    # A scaled covariance: Σ = 4 I against I gives Tr(4I + I - 2·2I) = 16.
    assert metrics.frechet_distance(2 * rng.normal(size=(20000, 16)), reference) == pytest.approx(16.0, rel=0.1)


def test_frechet_distance_bias_shrinks_with_n():
    """Samples of one distribution: the distance is all finite-sample bias, falling with n."""
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(20000, 32))
    small, large = (metrics.frechet_distance(rng.normal(size=(n, 32)), reference) for n in (100, 2000))
    assert large < small / 5


def test_frechet_distance_of_fewer_samples_than_dimensions_is_finite():
    rng = np.random.default_rng(2)
    value = metrics.frechet_distance(rng.normal(size=(5, 64)), rng.normal(size=(300, 64)))
    assert math.isfinite(value) and value > 0
    with pytest.raises(InpaintError, match="at least two"):
        metrics.frechet_distance(rng.normal(size=(1, 4)), rng.normal(size=(10, 4)))
