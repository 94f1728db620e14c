"""Inpainting any image: sizes, channels, bit depths, exact known pixels, bad input."""

import os

import cv2
import numpy as np
import pytest

from tf_semantic_inpaint import inpaint as inpainting
from tf_semantic_inpaint.errors import InpaintError
from tf_semantic_inpaint.images import read_image_with_depth
from tf_semantic_inpaint.masks import make_mask, write_mask
from tf_semantic_inpaint.search import SearchSettings

FAST = SearchSettings(iterations=30, restarts=2, learning_rate=0.05)


@pytest.fixture(scope="module")
def model(tiny_export):
    return inpainting.LocalModel(tiny_export)


def test_model_reads_its_shape_and_defaults(model):
    assert (model.resolution, model.channels, model.z_dim) == (28, 1, 100)
    assert model.defaults.iterations == 30 and model.defaults.restarts == 2


@pytest.mark.parametrize("shape", [(28, 28, 1), (60, 45, 1), (50, 70, 3), (17, 23, 3)])
def test_any_size_and_channels_keep_known_pixels_exactly(model, shape, fashion_mnist_test_images):
    rng = np.random.default_rng(0)
    base = cv2.resize(fashion_mnist_test_images[1], (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    image = np.clip(np.dstack([base] * shape[2]) + rng.normal(0, 0.01, shape), 0, 1).astype(np.float32)
    mask = make_mask("center", shape[0], shape[1], seed=0)
    for blend in (True, False):
        result = inpainting.inpaint(image, mask, model, FAST, blend=blend)
        assert result.output.shape == shape and result.output.dtype == np.float32
        known = mask[..., 0] == 1
        np.testing.assert_array_equal(result.output[known], image[known])
        assert result.output.min() >= 0 and result.output.max() <= 1
        assert result.generated.shape == shape and result.z.shape == (100,)
    np.testing.assert_array_equal(result.completed[~known], result.generated[~known])


def test_blending_corrects_the_colour_of_the_fill(model, fashion_mnist_test_images):
    """Brighten the image so G's fill is too dark: blending takes the border's level, the composite cannot."""
    image = np.clip(fashion_mnist_test_images[2] * 0.6 + 0.4, 0, 1)
    mask = make_mask("center", 28, 28)
    result = inpainting.inpaint(image, mask, model, FAST)
    hole = mask[..., 0] == 0
    bias = lambda out: abs(float(np.mean(out[hole] - image[hole])))  # noqa: E731
    # (tests/test_blend.py checks the exact offset removal; here the fill is also structurally off)
    assert bias(result.blended) < 0.75 * bias(result.completed), (bias(result.blended), bias(result.completed))


def test_low_resolution_mask_never_marks_hole_pixels_known():
    image = np.zeros((100, 100, 1), np.float32)
    mask = np.ones((100, 100, 1), np.float32)
    mask[50, 50] = 0  # one missing pixel
    _, small = inpainting.to_model_inputs(image, mask, 28, 1)
    assert small.min() == 0  # the hole survives the downsampling
    assert small.mean() > 0.98


def test_batch_of_different_sizes(model, fashion_mnist_test_images):
    images = [fashion_mnist_test_images[3], np.dstack([fashion_mnist_test_images[4]] * 3)[:20]]
    masks = [make_mask("random", 28, 28, 1), make_mask("half", 20, 28, 2)]
    results = inpainting.inpaint_batch(images, masks, model, FAST)
    assert [r.output.shape for r in results] == [(28, 28, 1), (20, 28, 3)]


def test_same_result_as_the_exported_signature(model, fashion_mnist_test_images):
    """At the model's own size, the library equals one call of the `inpaint` signature."""
    import tensorflow as tf

    image = fashion_mnist_test_images[5]
    mask = make_mask("pattern", 28, 28, seed=3)
    result = inpainting.inpaint(image, mask, model, blend=False)
    out = model.signatures["inpaint"](images=tf.constant(image[None]), masks=tf.constant(mask[None]))
    np.testing.assert_array_equal(result.output, out["completed"].numpy()[0])


def test_mask_without_missing_pixels_returns_the_input(model, capsys):
    image = np.random.default_rng(0).uniform(0, 1, (28, 28, 1)).astype(np.float32)
    result = inpainting.inpaint(image, np.ones((28, 28, 1)), model, FAST)
    np.testing.assert_array_equal(result.output, image)
    assert "no missing pixel" in capsys.readouterr().err


def test_mask_with_every_pixel_missing_is_refused(model):
    with pytest.raises(InpaintError, match="no context to condition on"):
        inpainting.inpaint(np.zeros((28, 28, 1)), np.zeros((28, 28, 1)), model, FAST)


def test_mask_size_must_match_unless_resized(model):
    image = np.zeros((40, 30, 1), np.float32)
    with pytest.raises(InpaintError, match=r"the mask is 28x28 but the image is 30x40.*--resize-mask"):
        inpainting.inpaint(image, make_mask("center", 28, 28), model, FAST)
    result = inpainting.inpaint(image, make_mask("center", 28, 28), model, FAST, resize_mask=True)
    assert result.output.shape == (40, 30, 1)


def test_not_a_savedmodel(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InpaintError, match="not a SavedModel"):
        inpainting.LocalModel(str(tmp_path / "empty"))


def test_files_rgba_and_16_bit_round_trip(model, tmp_path, fashion_mnist_test_images):
    """RGBA and 16-bit inputs: output at the input's depth, known pixels bit-exact."""
    base = fashion_mnist_test_images[6][..., 0]
    rgba = np.dstack([base * 255] * 3 + [np.full_like(base, 255)]).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    deep = (base * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    write_mask(str(tmp_path / "hole.png"), make_mask("center", 28, 28))
    for name, channels, depth in (("rgba", 3, 8), ("deep", 1, 16)):
        written = inpainting.inpaint_files(str(tmp_path / f"{name}.png"), str(tmp_path / "hole.png"),
                                           settings=FAST, model=model, progress=False)
        assert written == [str(tmp_path / f"{name}_inpainted.png")]
        raw = cv2.imread(written[0], cv2.IMREAD_UNCHANGED)
        source = cv2.imread(str(tmp_path / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert raw.dtype == (np.uint16 if depth == 16 else np.uint8)
        known = make_mask("center", 28, 28)[..., 0] == 1
        if channels == 3:
            source = source[..., :3]
        np.testing.assert_array_equal(raw[known], source[known])
        _, got_depth = read_image_with_depth(written[0])
        assert got_depth == depth


def test_folder_batch_refuses_to_clobber_and_writes_nothing_on_bad_input(model, tmp_path, fashion_mnist_test_images):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"x{i}.png"), (fashion_mnist_test_images[i] * 255).astype(np.uint8))
    written = inpainting.inpaint_files(str(folder), None, str(tmp_path / "out"), model=model,
                                       mask_type="center", settings=FAST, compare=str(tmp_path / "cmp"),
                                       progress=False)
    assert sorted(os.listdir(tmp_path / "out")) == ["x0.png", "x1.png", "x2.png"]
    assert sorted(os.listdir(tmp_path / "cmp")) == ["x0.png", "x1.png", "x2.png"]
    assert len(written) == 6
    with pytest.raises(InpaintError, match="--force"):
        inpainting.inpaint_files(str(folder), None, str(tmp_path / "out"), model=model,
                                 mask_type="center", settings=FAST, progress=False)
    (folder / "x3.png").write_bytes(b"broken")
    with pytest.raises(InpaintError, match="x3.png"):
        inpainting.inpaint_files(str(folder), None, str(tmp_path / "out2"), model=model,
                                 mask_type="center", settings=FAST, progress=False)
    assert not os.path.exists(tmp_path / "out2")
