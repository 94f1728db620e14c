"""Masks: the four corruption types, mask files and importance weights."""

import cv2
import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf

from tf_semantic_inpaint import masks
from tf_semantic_inpaint.errors import InpaintError
from tf_semantic_inpaint.images import ImageError

SIZES = [(28, 28), (32, 32), (64, 64), (64, 48), (200, 300)]


def missing(mask):
    """bool [H, W], True where M == 0."""
    return mask[..., 0] == 0


def boundary_edges(hole):
    """Number of 4-neighbour pixel pairs that straddle the hole's edge."""
    return int(np.sum(hole[1:] != hole[:-1]) + np.sum(hole[:, 1:] != hole[:, :-1]))


def components(hole):
    return scipy.ndimage.label(hole)[1]


# make_mask


@pytest.mark.parametrize("kind", masks.MASK_KINDS)
@pytest.mark.parametrize("height,width", SIZES + [(29, 31)])
def test_mask_is_binary_float32_hw1(kind, height, width):
    mask = masks.make_mask(kind, height, width, seed=3)
    assert mask.shape == (height, width, 1)
    assert mask.dtype == np.float32
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert 0 < mask.sum() < height * width  # both known and missing pixels


@pytest.mark.parametrize("height,width", SIZES)
def test_center_is_a_centred_block_of_exactly_a_quarter(height, width):
    hole = missing(masks.make_mask("center", height, width))
    assert hole.sum() == height * width // 4
    rows, cols = np.nonzero(hole)
    assert hole.sum() == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)  # one solid rectangle
    assert (np.ptp(rows) + 1, np.ptp(cols) + 1) == (height // 2, width // 2)
    assert rows.min() == height - 1 - rows.max()  # same margin above and below
    assert cols.min() == width - 1 - cols.max()


def test_center_at_64x64_is_rows_and_columns_16_to_47():
    expected = np.ones((64, 64, 1), np.float32)
    expected[16:48, 16:48] = 0
    np.testing.assert_array_equal(masks.make_mask("center", 64, 64), expected)


def test_center_at_odd_sizes_is_floor_half_and_off_centre_by_at_most_one():
    hole = missing(masks.make_mask("center", 29, 31))
    rows, cols = np.nonzero(hole)
    assert (np.ptp(rows) + 1, np.ptp(cols) + 1) == (14, 15)
    assert (rows.min(), 29 - 1 - rows.max()) == (7, 8)  # the spare row goes below
    assert (cols.min(), 31 - 1 - cols.max()) == (8, 8)


@pytest.mark.parametrize("height,width", SIZES + [(29, 31)])
def test_random_misses_exactly_80_percent_spread_over_the_image(height, width):
    hole = missing(masks.make_mask("random", height, width, seed=0))
    assert hole.sum() == round(0.8 * height * width)
    for quadrant in (hole[: height // 2, : width // 2], hole[height // 2 :, width // 2 :]):
        assert 0.7 < quadrant.mean() < 0.9


@pytest.mark.parametrize("height,width", SIZES + [(29, 31)])
def test_pattern_misses_a_quarter(height, width):
    for seed in range(3):
        mask = masks.make_mask("pattern", height, width, seed=seed)
        assert missing(mask).sum() == round(0.25 * height * width)
        assert 0.2 <= masks.missing_fraction(mask) <= 0.3


@pytest.mark.parametrize("height,width", [(64, 64), (200, 300)])
def test_pattern_is_blobs_not_scattered_pixels(height, width):
    pattern = missing(masks.make_mask("pattern", height, width, seed=1))
    scattered = np.random.default_rng(1).random((height, width)) < 0.25
    assert components(pattern) * 20 < components(scattered)
    assert boundary_edges(pattern) * 4 < boundary_edges(scattered)


def test_pattern_blobs_scale_with_the_image():
    def shape_stats(size):
        holes = [missing(masks.make_mask("pattern", size, size, seed=s)) for s in range(5)]
        return (np.mean([components(h) for h in holes]),
                np.mean([boundary_edges(h) for h in holes]) / size)

    small, large = shape_stats(32), shape_stats(256)
    # Same number of blobs and the same boundary per image side at 8x the resolution.
    assert 0.7 < small[0] / large[0] < 1.4
    assert 0.8 < small[1] / large[1] < 1.25


@pytest.mark.parametrize(
    "side,region",
    [
        ("left", np.s_[:, :32]),
        ("right", np.s_[:, 32:]),
        ("top", np.s_[:24, :]),
        ("bottom", np.s_[24:, :]),
    ],
)
def test_half_variants_miss_the_named_half(side, region):
    mask = masks.make_mask(f"half-{side}", 48, 64)
    expected = np.ones((48, 64, 1), np.float32)
    expected[region] = 0
    np.testing.assert_array_equal(mask, expected)
    assert masks.missing_fraction(mask) == 0.5


def test_half_picks_each_side_by_seed():
    variants = {side: masks.make_mask(f"half-{side}", 32, 32) for side in masks.HALF_SIDES}
    seen = set()
    for seed in range(20):
        mask = masks.make_mask("half", 32, 32, seed=seed)
        matches = [side for side, v in variants.items() if np.array_equal(mask, v)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == set(masks.HALF_SIDES)


@pytest.mark.parametrize(
    "side,region",
    [("left", np.s_[:, :3]), ("right", np.s_[:, 4:]), ("top", np.s_[:2, :]), ("bottom", np.s_[3:, :])],
)
def test_half_at_odd_sizes_misses_floor_half_at_the_named_edge(side, region):
    expected = np.ones((5, 7, 1), np.float32)
    expected[region] = 0
    np.testing.assert_array_equal(masks.make_mask(f"half-{side}", 5, 7), expected)


@pytest.mark.parametrize("kind", masks.MASK_KINDS)
def test_same_seed_same_mask(kind):
    np.testing.assert_array_equal(
        masks.make_mask(kind, 64, 48, seed=7), masks.make_mask(kind, 64, 48, seed=7)
    )


@pytest.mark.parametrize("kind", ["pattern", "random"])
def test_other_seed_other_mask(kind):
    assert not np.array_equal(masks.make_mask(kind, 64, 48, seed=7), masks.make_mask(kind, 64, 48, seed=8))
    assert not np.array_equal(masks.make_mask(kind, 64, 48), masks.make_mask(kind, 64, 48))


def test_unknown_kind_names_the_valid_kinds():
    with pytest.raises(masks.MaskError, match="center, pattern, random, half") as raised:
        masks.make_mask("circle", 32, 32)
    assert isinstance(raised.value, InpaintError)
    assert "circle" in str(raised.value)


@pytest.mark.parametrize("height,width", [(0, 32), (32, -1), (32.0, 32)])
def test_bad_size_is_a_mask_error(height, width):
    with pytest.raises(masks.MaskError, match="positive integers"):
        masks.make_mask("center", height, width)


def test_missing_fraction():
    mask = np.ones((4, 5, 1), np.float32)
    mask[0, :3] = 0
    assert masks.missing_fraction(mask) == 3 / 20


# Mask files: white = missing


@pytest.mark.parametrize("kind", masks.MASK_KINDS)
def test_write_then_read_gives_the_same_mask(tmp_path, kind):
    mask = masks.make_mask(kind, 64, 48, seed=5)
    path = tmp_path / f"{kind}.png"
    masks.write_mask(path, mask)
    np.testing.assert_array_equal(masks.read_mask(path), mask)


def test_written_file_is_8_bit_grey_with_white_missing(tmp_path):
    mask = masks.make_mask("center", 32, 32)
    masks.write_mask(tmp_path / "m.png", mask[..., 0])  # [H, W] is accepted too
    raw = cv2.imread(str(tmp_path / "m.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint8 and raw.shape == (32, 32)
    np.testing.assert_array_equal(raw, np.where(mask[..., 0] == 0, 255, 0))


def test_hand_made_png_white_is_missing(tmp_path):
    raw = np.zeros((6, 8), np.uint8)
    raw[1:3, 2:5] = 255
    cv2.imwrite(str(tmp_path / "m.png"), raw)
    expected = np.ones((6, 8, 1), np.float32)
    expected[1:3, 2:5] = 0
    np.testing.assert_array_equal(masks.read_mask(tmp_path / "m.png"), expected)


def test_grey_levels_split_at_half_range_8_bit(tmp_path):
    cv2.imwrite(str(tmp_path / "m.png"), np.array([[0, 1, 127, 128, 200, 255]], np.uint8))
    np.testing.assert_array_equal(masks.read_mask(tmp_path / "m.png")[0, :, 0], [1, 1, 1, 0, 0, 0])


def test_grey_levels_split_at_half_range_16_bit(tmp_path):
    cv2.imwrite(str(tmp_path / "m.png"), np.array([[0, 255, 32767, 32768, 65535]], np.uint16))
    np.testing.assert_array_equal(masks.read_mask(tmp_path / "m.png")[0, :, 0], [1, 1, 1, 0, 0])


def test_colour_mask_goes_through_luminance(tmp_path):
    bgr = np.array([[[0, 0, 0], [255, 255, 255], [0, 0, 255], [0, 255, 0], [128, 128, 128]]], np.uint8)
    cv2.imwrite(str(tmp_path / "m.png"), bgr)
    # black known, white missing, red (luminance 0.30) known, green (0.59) missing, grey 128 missing
    np.testing.assert_array_equal(masks.read_mask(tmp_path / "m.png")[0, :, 0], [1, 0, 1, 0, 0])


def test_read_missing_or_unreadable_file_is_an_image_error(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        masks.read_mask(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ImageError, match="bad.png"):
        masks.read_mask(tmp_path / "bad.png")


def test_write_mask_refuses_to_overwrite_when_asked(tmp_path):
    path = tmp_path / "m.png"
    masks.write_mask(path, masks.make_mask("center", 8, 8))
    before = path.read_bytes()
    with pytest.raises(InpaintError, match="exists"):
        masks.write_mask(path, masks.make_mask("half-left", 8, 8), overwrite=False)
    assert path.read_bytes() == before
    masks.write_mask(path, masks.make_mask("half-left", 8, 8))
    np.testing.assert_array_equal(masks.read_mask(path), masks.make_mask("half-left", 8, 8))


def test_write_mask_wants_png_and_a_mask_shape(tmp_path):
    with pytest.raises(masks.MaskError, match="PNG"):
        masks.write_mask(tmp_path / "m.jpg", masks.make_mask("center", 8, 8))
    with pytest.raises(ValueError, match=r"\(8, 8, 3\)"):
        masks.write_mask(tmp_path / "m.png", np.ones((8, 8, 3), np.float32))
    assert not list(tmp_path.iterdir())


# Importance weights


def importance_weights_by_loops(mask, window):
    """The importance weights by explicit loops over pixels, for one mask [H, W]."""
    height, width = mask.shape
    r = window // 2
    weights = np.zeros((height, width))
    for i in range(height):
        for j in range(width):
            if mask[i, j] == 0:
                continue
            neighbours = [
                1.0 - mask[a, b]
                for a in range(i - r, i + r + 1)
                for b in range(j - r, j + r + 1)
                if 0 <= a < height and 0 <= b < width
            ]
            weights[i, j] = sum(neighbours) / len(neighbours)
    return weights


def test_importance_weights_by_hand_for_a_corner_hole():
    mask = np.ones((1, 5, 5, 1), np.float32)
    mask[0, 0, 0] = 0
    expected = np.zeros((5, 5))
    expected[0, 1] = expected[1, 0] = 1 / 6  # border pixels: 6 neighbours inside the image
    expected[1, 1] = 1 / 9
    weights = masks.importance_weights(mask, window=3)
    np.testing.assert_allclose(weights.numpy()[0, ..., 0], expected, rtol=1e-6)


@pytest.mark.parametrize("window", [1, 3, 5, 7])
def test_importance_weights_match_the_loops(window):
    batch = np.stack(
        [
            masks.make_mask("center", 9, 8),
            masks.make_mask("half-right", 9, 8),
            masks.make_mask("random", 9, 8, seed=2),
            masks.make_mask("pattern", 9, 8, seed=2),
        ]
    )
    weights = masks.importance_weights(batch, window)
    assert weights.dtype == tf.float32 and weights.shape == batch.shape
    for mask, w in zip(batch, weights.numpy()):
        np.testing.assert_allclose(w[..., 0], importance_weights_by_loops(mask[..., 0], window), atol=1e-6)
        assert (w[mask == 0] == 0).all()  # hole pixels weigh nothing


def test_importance_weights_are_zero_away_from_the_hole():
    weights = masks.importance_weights(masks.make_mask("center", 32, 32)[np.newaxis], 7).numpy()[0, ..., 0]
    assert (weights[:5] == 0).all() and weights[5:8, 8:24].min() > 0  # the hole starts at row 8
    assert masks.importance_weights(np.ones((2, 8, 8, 1)), 7).numpy().max() == 0


def test_importance_weights_in_a_tf_function_with_unknown_shape():
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32)])
    def weigh(m):
        return masks.importance_weights(m, 5)

    for shape in [(2, 9, 8), (1, 16, 21)]:
        mask = np.stack([masks.make_mask("pattern", *shape[1:], seed=s) for s in range(shape[0])])
        weights = weigh(tf.constant(mask)).numpy()
        np.testing.assert_allclose(weights, masks.importance_weights(mask, 5).numpy())
        for m, w in zip(mask, weights):
            np.testing.assert_allclose(w[..., 0], importance_weights_by_loops(m[..., 0], 5), atol=1e-6)


@pytest.mark.parametrize("window", [0, -1, 2, 8, 3.0, True, "7"])
def test_importance_window_must_be_a_positive_odd_integer(window):
    with pytest.raises(masks.MaskError, match="odd integer"):
        masks.importance_weights(np.ones((1, 8, 8, 1), np.float32), window)


@pytest.mark.parametrize("kind", ["center", "pattern", "random", "half"])
def test_importance_weights_equal_average_pooling_for_any_window_even_one_known_only_at_run_time(kind):
    """The summed-area tables give exactly avg_pool2d's SAME average (border: inside pixels only)."""
    import tensorflow as tf

    m = np.stack([masks.make_mask(kind, 28, 30, seed=i) for i in range(3)])
    at_run_time = tf.function(lambda m, w: masks.importance_weights(m, w))
    for window in (1, 3, 7, 15, 27, 61):
        pooled = tf.nn.avg_pool2d(1.0 - m, ksize=window, strides=1, padding="SAME").numpy()
        expected = np.where(m != 0, pooled, 0.0)
        np.testing.assert_allclose(masks.importance_weights(m, window).numpy(), expected, atol=1e-5)
        np.testing.assert_allclose(at_run_time(tf.constant(m), tf.constant(window)).numpy(), expected, atol=1e-5)


# hole_depth


@pytest.mark.parametrize("kind", masks.MASK_TYPES)
def test_hole_depth_is_the_chessboard_distance_to_the_known_pixels_up_to_the_cap(kind):
    batch = np.stack([masks.make_mask(kind, 28, 28, seed=s) for s in range(4)])
    exact = np.stack([scipy.ndimage.distance_transform_cdt(1 - m[..., 0], metric="chessboard") for m in batch])
    for cap in (1, 6, 20):
        depth = masks.hole_depth(batch, cap).numpy()
        assert depth.shape == batch.shape and depth.dtype == np.float32
        np.testing.assert_array_equal(depth[..., 0], np.minimum(exact, cap))
    assert exact.max() >= (14 if kind == "half" else 1)  # a half image is 14 pixels deep
