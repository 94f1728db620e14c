"""The model that ships in saved_models/: found after `pip install .`, and it works."""

import os
import subprocess
import sys
import zipfile

import cv2
import numpy as np
import pytest

from tf_semantic_inpaint import contract
from tf_semantic_inpaint import inpaint as inpainting
from tf_semantic_inpaint.baselines import biharmonic
from tf_semantic_inpaint.local import LocalModel
from tf_semantic_inpaint.masks import MASK_TYPES, make_mask
from tf_semantic_inpaint.metrics import psnr

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def shipped():
    return LocalModel()


def test_shipped_model_and_its_card(shipped):
    assert shipped.path.startswith(os.path.join(REPO, "saved_models")) or "site-packages" in shipped.path
    assert (shipped.resolution, shipped.channels) == (28, 1)
    card = shipped.card
    assert card["dataset"] == "fashion_mnist"
    assert card["training_command"].startswith("tfinpaint train")
    assert card["epochs"] >= 10


def test_cli_default_model_on_a_real_test_image_from_another_directory(tmp_path, fashion_mnist_test_images):
    """No --model, run from elsewhere: the installed (or checkout) shipped model is found."""
    image = (fashion_mnist_test_images[7, ..., 0] * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "in.png"), image)
    exe = os.path.join(os.path.dirname(sys.executable), "tfinpaint")
    result = subprocess.run([exe, "inpaint", "in.png", "--mask-type", "center", "-o", "out.png",
                             "--iterations", "100"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED)
    known = make_mask("center", 28, 28)[..., 0] == 1
    assert out.shape == image.shape
    np.testing.assert_array_equal(out[known], image[known])


def _validation_images(n):
    """The first n real Fashion-MNIST validation images, float32 [n, 28, 28, 1] in [0, 1]."""
    from tf_semantic_inpaint import data

    data.prepare("fashion_mnist")
    ds, _ = data.load_images("fashion_mnist", "validation", 28)
    return np.stack(list(ds.take(n).as_numpy_iterator())) * 0.5 + 0.5


def _beats_biharmonic(model):
    """On 12 validation images and every mask, the model's mean PSNR is 1 dB over biharmonic's."""
    images = _validation_images(12)
    for kind in MASK_TYPES:
        masks = [make_mask(kind, 28, 28, seed=500 + i) for i in range(len(images))]
        results = inpainting.inpaint_batch(list(images), masks, model)
        ours = np.mean([psnr(r.output, y) for r, y in zip(results, images)])
        smooth = np.mean([psnr(biharmonic(y * m, m), y) for y, m in zip(images, masks)])
        assert ours > smooth + 1.0, (kind, ours, smooth)


@pytest.mark.slow
def test_shipped_model_beats_biharmonic_on_real_validation_images(shipped):
    """With its default search, the shipped model fills holes better than smooth interpolation."""
    _beats_biharmonic(shipped)


@pytest.mark.slow
def test_the_mean_scores_at_least_the_best_sample_on_a_validation_batch(shipped):
    """The posterior-mean estimate is the better guess by PSNR (what --estimate mean is for)."""
    from tf_semantic_inpaint.blend import composite

    images = _validation_images(16)
    gains = []
    for kind in MASK_TYPES:
        masks = np.stack([make_mask(kind, 28, 28, seed=700 + i) for i in range(len(images))])
        found = shipped.search(images, masks)
        for y, m, sample, mean in zip(images, masks, found["generated"], found["mean"]):
            gains.append(psnr(composite(y, mean, m), y) - psnr(composite(y, sample, m), y))
    assert np.mean(gains) >= 0.0, np.mean(gains)


@pytest.mark.slow
def test_the_encoders_draws_deep_in_the_hole_make_a_better_mean_on_half_images(shipped):
    """Version 5's DepthMix: on real validation images with half masks the mean that leans on
    the encoder's draws deep in the hole is closer to the truth there than the search's own."""
    import tensorflow as tf

    from tf_semantic_inpaint.export import InpaintingModule, exported_completer

    assert shipped.card["search_fixed"]["mean_mix"]["draws"] >= 1
    images = _validation_images(16)
    masks = np.stack([make_mask("half", 28, 28, seed=900 + i) for i in range(len(images))])
    mixed = shipped.search(images, masks)["mean"]
    own = InpaintingModule(exported_completer(shipped.path, mix=None)[0], shipped.defaults)
    alone = own.inpaint(tf.constant(images), tf.constant(masks))["mean"].numpy()
    hole = masks == 0
    error = {name: np.mean((mean[hole] - images[hole]) ** 2) for name, mean in (("mixed", mixed), ("alone", alone))}
    assert error["mixed"] < 0.9 * error["alone"], error
    np.testing.assert_allclose(mixed[~hole], alone[~hole], atol=1e-5)  # β = 0 on known pixels


@pytest.mark.slow
def test_shipped_context_encoder_is_a_real_rival(fashion_mnist_test_images):
    """The Context Encoder that ships beside the DCGAN answers the same contract and fills
    holes far better than smooth interpolation on every mask."""
    from tf_semantic_inpaint.local import shipped_model_dir

    ce = LocalModel(shipped_model_dir("fashion_mnist_ce"))
    assert ce.card["model"] == "context-encoder" and ce.card["dataset"] == "fashion_mnist"
    _beats_biharmonic(ce)


@pytest.mark.slow
def test_wheel_carries_the_shipped_model(tmp_path):
    """`pip install .` installs saved_models/ inside the package (setup.py's build step)."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", REPO, "--no-deps", "-w", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    wheel = next(p for p in os.listdir(tmp_path) if p.endswith(".whl"))
    names = zipfile.ZipFile(tmp_path / wheel).namelist()
    for model in os.listdir(os.path.join(REPO, "saved_models")):  # the DCGAN, the context encoder, the judge
        base = os.path.join(REPO, "saved_models", model)
        prefix = f"tf_semantic_inpaint/saved_models/{model}"
        assert contract.versions(base), model
        for version in contract.versions(base):
            assert f"{prefix}/{version}/saved_model.pb" in names
            assert f"{prefix}/{version}/model_card.json" in names
        for name in os.listdir(base):  # files beside the versions, e.g. TF Serving's batching parameters
            if os.path.isfile(os.path.join(base, name)):
                assert f"{prefix}/{name}" in names
    assert any(n.startswith("tf_semantic_inpaint/saved_models/fashion_mnist/") and "/variables/" in n
               for n in names)
