"""Composite and Poisson blending of G(z*) into the hole of y."""

import numpy as np
import pytest

from tf_semantic_inpaint import blend, masks
from tf_semantic_inpaint.errors import InpaintError


def hole_mask(height, width, *blocks):
    """M float32 [H, W, 1] with the given (row slice, column slice) blocks missing."""
    mask = np.ones((height, width, 1), np.float32)
    for block in blocks:
        mask[block] = 0
    return mask


MASKS = {
    "centre": hole_mask(12, 10, np.s_[3:8, 3:7]),
    "touching the top border": hole_mask(12, 10, np.s_[0:5, 2:6]),
    "in the bottom-right corner": hole_mask(12, 10, np.s_[6:, 7:]),
    "a whole column band": hole_mask(12, 10, np.s_[:, 4:6]),
    "two separate holes": hole_mask(12, 10, np.s_[1:4, 1:4], np.s_[7:10, 5:9]),
    "single pixels": hole_mask(12, 10, np.s_[0, 0], np.s_[5, 5], np.s_[11, 3]),
    "random 80%": masks.make_mask("random", 12, 10, seed=0),
    "pattern": masks.make_mask("pattern", 16, 16, seed=0),
}


def smooth_image(height, width, channels, seed):
    """A smooth float32 [H, W, C] image in [0.2, 0.8]."""
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[0:height, 0:width] / max(height, width)
    planes = [0.5 + 0.15 * np.sin(3 * r * rng.uniform(0.5, 2) + 2 * c + rng.uniform(0, 6)) +
              0.15 * np.cos(4 * c * rng.uniform(0.5, 2) + rng.uniform(0, 6)) for _ in range(channels)]
    return np.stack(planes, -1).astype(np.float32)


def neighbours(p, height, width):
    """The 4-neighbours of pixel p that lie inside the image."""
    i, j = p
    candidates = ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1))
    return [(a, b) for a, b in candidates if 0 <= a < height and 0 <= b < width]


def laplacian(f, p):
    """|N_p| f_p - Σ_{q ∈ N_p} f_q at pixel p, neighbours inside the image only: [C]."""
    qs = neighbours(p, *f.shape[:2])
    return len(qs) * f[p].astype(np.float64) - sum(f[q].astype(np.float64) for q in qs)


def poisson_by_loops(image, generated, mask):
    """The Poisson equation written out pixel by pixel and solved densely (the reference)."""
    height, width, channels = image.shape
    hole = [(i, j) for j in range(width) for i in range(height) if mask[i, j, 0] == 0]
    number = {p: k for k, p in enumerate(hole)}
    a = np.zeros((len(hole), len(hole)))
    b = np.zeros((len(hole), channels))
    for p in hole:
        for q in neighbours(p, height, width):
            a[number[p], number[p]] += 1
            b[number[p]] += generated[p].astype(np.float64) - generated[q]
            if q in number:
                a[number[p], number[q]] -= 1
            else:
                b[number[p]] += image[q]
    solution = np.linalg.solve(a, b)
    out = image.astype(np.float64)
    for p, k in number.items():
        out[p] = np.clip(solution[k], 0, 1)
    return out


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", MASKS)
def test_matches_the_equation_solved_pixel_by_pixel(name, channels):
    mask = MASKS[name]
    rng = np.random.default_rng(0)
    image = rng.random(mask.shape[:2] + (channels,), dtype=np.float32)
    generated = rng.random(image.shape, dtype=np.float32)
    blended = blend.poisson_blend(image, generated, mask)
    assert blended.dtype == np.float32 and blended.shape == image.shape
    np.testing.assert_allclose(blended, poisson_by_loops(image, generated, mask), atol=1e-6)


@pytest.mark.parametrize("name", MASKS)
def test_known_pixels_are_bitwise_unchanged(name):
    mask = MASKS[name]
    rng = np.random.default_rng(1)
    image = rng.random(mask.shape[:2] + (3,), dtype=np.float32)
    generated = rng.random(image.shape, dtype=np.float32)
    image_before, generated_before = image.copy(), generated.copy()
    blended = blend.poisson_blend(image, generated, mask)
    known = mask[..., 0] == 1
    assert np.array_equal(blended[known], image[known])
    assert not np.allclose(blended[~known], image[~known])  # the hole did change
    assert np.array_equal(image, image_before) and np.array_equal(generated, generated_before)


def test_float64_input_keeps_its_float32_known_pixels():
    mask = MASKS["centre"]
    image = np.random.default_rng(2).random((12, 10, 3))
    blended = blend.poisson_blend(image, image[::-1].copy(), mask)
    known = mask[..., 0] == 1
    assert blended.dtype == np.float32
    assert np.array_equal(blended[known], image.astype(np.float32)[known])


@pytest.mark.parametrize("name", MASKS)
def test_generated_equal_to_the_image_gives_the_image(name):
    mask = MASKS[name]
    image = smooth_image(*mask.shape[:2], 3, seed=3)
    blended = blend.poisson_blend(image, image, mask)
    np.testing.assert_allclose(blended, blend.composite(image, image, mask), atol=1e-6)
    np.testing.assert_allclose(blended, image, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", MASKS)
def test_a_colour_offset_in_g_is_removed(name, channels):
    # Same gradients as y and the boundary values of y: the blend recovers y in the hole,
    # where the composite shows the offset as a seam.
    mask = MASKS[name]
    image = smooth_image(*mask.shape[:2], channels, seed=4)
    offset = np.array([0.15, -0.1, 0.05][:channels], np.float32)
    generated = image + offset
    hole = mask[..., 0] == 0
    np.testing.assert_allclose(blend.poisson_blend(image, generated, mask)[hole], image[hole], atol=1e-5)
    np.testing.assert_allclose(blend.composite(image, generated, mask)[hole] - image[hole],
                               np.broadcast_to(offset, image[hole].shape), atol=1e-6)


@pytest.mark.parametrize("name", MASKS)
def test_the_laplacian_of_the_result_is_g_s_inside_the_hole(name):
    mask = MASKS[name]
    height, width = mask.shape[:2]
    image = smooth_image(height, width, 3, seed=5)
    generated = smooth_image(height, width, 3, seed=6)
    blended = blend.poisson_blend(image, generated, mask)
    hole = np.argwhere(mask[..., 0] == 0)
    assert 0 < blended.min() and blended.max() < 1  # no clipping, so the equation holds exactly
    for p in map(tuple, hole):
        np.testing.assert_allclose(laplacian(blended, p), laplacian(generated, p), atol=1e-5)


@pytest.mark.parametrize("name", MASKS)
def test_constant_g_fills_the_hole_with_a_harmonic_function(name):
    mask = MASKS[name]
    image = smooth_image(*mask.shape[:2], 3, seed=7)
    blended = blend.poisson_blend(image, np.full_like(image, 0.5), mask)
    for p in map(tuple, np.argwhere(mask[..., 0] == 0)):
        np.testing.assert_allclose(laplacian(blended, p), 0, atol=1e-5)
    known = image[mask[..., 0] == 1]
    # Maximum principle: a harmonic fill stays within the range of the known pixels.
    assert known.min(0).min() - 1e-6 <= blended.min() and blended.max() <= known.max() + 1e-6


def test_the_image_inside_the_hole_is_never_read():
    mask = MASKS["two separate holes"]
    image = smooth_image(12, 10, 3, seed=8)
    generated = smooth_image(12, 10, 3, seed=9)
    poisoned = image.copy()
    poisoned[mask[..., 0] == 0] = np.nan
    np.testing.assert_array_equal(blend.poisson_blend(poisoned, generated, mask),
                                  blend.poisson_blend(image, generated, mask))


def test_result_is_clipped_to_0_1():
    mask = hole_mask(16, 16, np.s_[4:12, 4:12])
    rng = np.random.default_rng(10)
    image = rng.random((16, 16, 3), dtype=np.float32)
    generated = 5.0 * rng.random((16, 16, 3), dtype=np.float32)  # wild gradients overshoot
    blended = blend.poisson_blend(image, generated, mask)
    assert blended.min() == 0.0 and blended.max() == 1.0


def test_mask_may_be_hw_or_hw1():
    mask = MASKS["pattern"]
    rng = np.random.default_rng(11)
    image, generated = rng.random((2, 16, 16, 3), dtype=np.float32)
    np.testing.assert_array_equal(blend.poisson_blend(image, generated, mask[..., 0]),
                                  blend.poisson_blend(image, generated, mask))


def test_no_missing_pixel_returns_a_copy_of_the_image():
    image = np.random.default_rng(12).random((8, 8, 3), dtype=np.float32)
    blended = blend.poisson_blend(image, np.zeros_like(image), np.ones((8, 8, 1), np.float32))
    assert np.array_equal(blended, image)
    blended[0, 0] = 7
    assert image[0, 0, 0] != 7


def test_all_missing_is_a_blend_error():
    image = np.zeros((8, 8, 3), np.float32)
    with pytest.raises(blend.BlendError, match="every pixel") as raised:
        blend.poisson_blend(image, image, np.zeros((8, 8, 1), np.float32))
    assert isinstance(raised.value, InpaintError)


@pytest.mark.parametrize("function", [blend.poisson_blend, blend.composite])
def test_shape_mismatches_name_both_shapes(function):
    image = np.zeros((8, 8, 3), np.float32)
    mask = np.ones((8, 8, 1), np.float32)
    with pytest.raises(ValueError, match=r"\(8, 8, 1\).*\(8, 8, 3\)"):
        function(image, np.zeros((8, 8, 1), np.float32), mask)
    with pytest.raises(ValueError, match=r"\(8, 9, 1\).*\(8, 8, 3\)"):
        function(image, image, np.ones((8, 9, 1), np.float32))
    with pytest.raises(ValueError, match=r"\(8, 8\)"):
        function(image[..., 0], image[..., 0], mask)


def test_composite_takes_known_pixels_from_y_and_the_rest_from_g():
    mask = MASKS["two separate holes"]
    rng = np.random.default_rng(13)
    image, generated = rng.random((2, 12, 10, 3), dtype=np.float32)
    result = blend.composite(image, generated, mask)
    known = mask[..., 0] == 1
    assert result.dtype == np.float32
    assert np.array_equal(result[known], image[known])
    assert np.array_equal(result[~known], generated[~known])
    # A soft M mixes the two: M y + (1 - M) G(z).
    soft = np.full((12, 10), 0.25, np.float32)
    np.testing.assert_allclose(blend.composite(image, generated, soft),
                               0.25 * image + 0.75 * generated, atol=1e-7)
