"""Several completions and the best single guess: K distinct samples, the posterior mean,
warm starts from an encoder, and the options signatures that carry them."""

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

from tf_semantic_inpaint import inpaint as inpainting
from tf_semantic_inpaint.contract import PAPER, SearchSettings
from tf_semantic_inpaint.encoder import Encoder
from tf_semantic_inpaint.errors import InpaintError
from tf_semantic_inpaint.export import InpaintingModule, SearchCompleter, write_savedmodel
from tf_semantic_inpaint.local import LocalModel
from tf_semantic_inpaint.masks import importance_weights, make_mask
from tf_semantic_inpaint.search import DISTINCT, DepthMix


def _masks(kind, n, seed=0):
    return np.stack([make_mask(kind, 28, 28, seed=seed + i) for i in range(n)])


@pytest.fixture(scope="module")
def model(tiny_export):
    return LocalModel(tiny_export)


@pytest.fixture(scope="module")
def four_samples(model, fashion_mnist_test_images):
    """The tiny model's search with 8 restarts and K = 4 on 4 real images, half masks."""
    images, masks = fashion_mnist_test_images[:4], _masks("half", 4)
    settings = dataclasses.replace(model.defaults, restarts=8, samples=4)
    return images, masks, settings, model.search(images, masks, settings)


def test_k_samples_are_distinct_and_ordered_and_the_first_is_the_best(four_samples):
    images, masks, _, found = four_samples
    samples = found["samples"]
    assert samples.shape == (4, 4, 28, 28, 1) and found["sample_losses"].shape == (4, 4)
    np.testing.assert_array_equal(samples[:, 0], found["generated"])
    np.testing.assert_allclose(found["sample_losses"][:, 0], found["context_loss"] + found["prior_loss"], rtol=1e-5)
    hole = (1 - masks)[:, None]
    for b in range(4):
        flat = (samples[b] * hole[b]).reshape(4, -1)
        gaps = [np.abs(flat[i] - flat[j]).sum() / hole[b].sum() for i in range(4) for j in range(i)]
        # DISTINCT is in G's [-1, 1]; the samples are in [0, 1].
        assert min(gaps) >= DISTINCT / 2, (b, gaps)


def test_every_sample_and_the_mean_keep_the_known_pixels(model, fashion_mnist_test_images):
    images, masks = fashion_mnist_test_images[4:7], _masks("center", 3)
    settings = dataclasses.replace(model.defaults, restarts=4, samples=3)
    for blend in (False, True):
        results = inpainting.inpaint_batch(list(images), list(masks), model, settings, blend=blend)
        for y, m, r in zip(images, masks, results):
            assert len(r.samples) == 3 and len(r.sample_losses) == 3
            for completion in [*r.samples, r.mean]:
                np.testing.assert_allclose(completion[m[..., 0] > 0], y[m[..., 0] > 0], atol=1 / 255)
            assert not np.allclose(r.samples[1], r.samples[2])


def test_estimate_chooses_the_output_from_one_search(model, fashion_mnist_test_images):
    images, masks = list(fashion_mnist_test_images[:2]), list(_masks("pattern", 2))
    sample = inpainting.inpaint_batch(images, masks, model, estimate="sample")
    mean = inpainting.inpaint_batch(images, masks, model, estimate="mean")
    for s, m in zip(sample, mean):
        np.testing.assert_array_equal(s.output, s.samples[0])
        np.testing.assert_array_equal(m.output, m.mean)
        np.testing.assert_array_equal(s.mean, m.mean)  # the same search either way
    with pytest.raises(InpaintError, match="unknown estimate 'median'"):
        inpainting.inpaint_batch(images, masks, model, estimate="median")


def test_nearest_to_mean_looks_only_at_the_hole():
    known = np.ones((4, 4, 1))
    known[1:3, 1:3] = 0
    mean = np.full((4, 4, 1), 0.5)
    fills = np.stack([np.full((4, 4, 1), v) for v in (0.9, 0.1, 0.6, 0.45)])
    fills[3][known[..., 0] > 0] = 5.0  # far off on known pixels, which do not count
    assert inpainting.nearest_to_mean(fills, mean, known) == 3
    fills[3] = 0.9
    assert inpainting.nearest_to_mean(fills, mean, known) == 2
    assert inpainting.nearest_to_mean(fills[:2], mean, known) == 0  # a tie: the lower loss


def test_the_typical_estimate_is_the_sample_nearest_the_mean(model, fashion_mnist_test_images):
    """estimate="typical": of every restart's completion, the one nearest the mean over the hole."""
    images, masks = list(fashion_mnist_test_images[:6]), list(_masks("half", 6))
    settings = dataclasses.replace(model.defaults, restarts=8, samples=1)
    typical = inpainting.inpaint_batch(images, masks, model, settings, blend=False, estimate="typical")
    every = inpainting.inpaint_batch(images, masks, model, dataclasses.replace(settings, samples=8), blend=False)
    chosen = []
    for t, e, m in zip(typical, every, masks):
        hole = m[..., 0] == 0
        distance = [np.sum((s[hole] - e.mean[hole]) ** 2) for s in e.samples]
        chosen.append(int(np.argmin(distance)))
        np.testing.assert_allclose(t.output, e.samples[chosen[-1]], atol=1 / 255)
        np.testing.assert_array_equal(t.output, t.typical)
        assert len(t.samples) == len(t.sample_losses) == 1  # the K asked for, not every restart
        np.testing.assert_array_equal(t.samples[0], e.samples[0])  # the same search
    assert any(chosen), chosen  # not always the best sample


def test_the_typical_estimate_needs_the_restart_count(model, fashion_mnist_test_images):
    class Unsaid:  # a model behind a server that hides its defaults
        defaults = None

    with pytest.raises(InpaintError, match="does not say how many"):
        inpainting.complete([inpainting.make_pair(fashion_mnist_test_images[0], _masks("half", 1)[0])], Unsaid(),
                            estimate="typical")


def test_the_mean_is_the_loss_weighted_average_of_the_candidates(tiny_models, fashion_mnist_test_images):
    """mean = Σ softmax(-(L_i - L_min) / std(L)) G(z_i) over an image's restarts (search.py)."""
    from tf_semantic_inpaint.search import LatentSearch

    search = LatentSearch(*tiny_models)
    images, masks = tf.constant(fashion_mnist_test_images[:2] * 2 - 1), tf.constant(_masks("center", 2))
    restarts, lam = tf.constant(5), tf.constant(0.003)
    tiled, weights, state = search.prepare(images, masks, restarts, tf.constant(3))
    state = search.adam_steps(state, tiled, weights, tf.constant(15), lam, tf.constant(0.05))
    found = search.alternatives(state, tiled, weights, masks, lam, restarts, tf.constant(2))
    z, best_z, best_loss = state[0], state[4], state[5]
    context, prior, _ = search.losses(z, tiled, weights, lam)
    z = tf.where((context + prior < best_loss)[:, None], z, best_z)
    context, prior, generated = search.losses(z, tiled, weights, lam)
    losses, generated = (context + prior).numpy().reshape(2, 5), generated.numpy().reshape(2, 5, 28, 28, 1)
    for b in range(2):
        w = np.exp(-(losses[b] - losses[b].min()) / losses[b].std())
        expected = np.tensordot(w / w.sum(), generated[b], axes=1)
        np.testing.assert_allclose(found["mean"].numpy()[b], expected, atol=1e-5)
        np.testing.assert_allclose(found["sample_losses"].numpy()[b, 0], losses[b].min(), rtol=1e-6)


def test_options_signature_equals_the_library_and_is_bounded(model, tiny_export, four_samples):
    images, masks, settings, found = four_samples
    loaded = tf.saved_model.load(os.path.join(tiny_export, "1"))
    options = {k: tf.constant(int(v) if isinstance(v, bool) else v) for k, v in dataclasses.asdict(settings).items()
               if not k.startswith("refine_")}  # settings.refine_steps is 0: the model's default
    direct = loaded.signatures["inpaint_with_options"](images=tf.constant(images), masks=tf.constant(masks),
                                                        **options)
    for key in ("samples", "sample_losses", "mean", "generated", "z"):
        np.testing.assert_allclose(direct[key].numpy(), found[key], rtol=1e-5, atol=1e-6)
    too_many = {**options, "samples": tf.constant(9)}
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"samples must be in 1..restarts \(8\), got 9"):
        loaded.signatures["inpaint_with_options"](images=tf.constant(images), masks=tf.constant(masks), **too_many)
    with pytest.raises(InpaintError, match=r"samples must be in 1..restarts \(8\), got 9"):
        model.search(images, masks, dataclasses.replace(settings, samples=9))
    no_encoder = {**options, "warm_start": tf.constant(1)}
    with pytest.raises(tf.errors.InvalidArgumentError, match="needs an encoder and this model has none"):
        loaded.signatures["inpaint_with_options"](images=tf.constant(images), masks=tf.constant(masks), **no_encoder)
    wide = {**options, "window": tf.constant(59)}
    with pytest.raises(tf.errors.InvalidArgumentError, match="window = 59 is over the limit of 57"):
        loaded.signatures["inpaint_with_options"](images=tf.constant(images), masks=tf.constant(masks), **wide)


def test_png_options_signature_returns_k_pngs_at_the_input_size(model, fashion_mnist_test_images):
    import cv2

    image = cv2.resize(fashion_mnist_test_images[0], (56, 42))[..., None]
    mask = make_mask("center", 42, 56, seed=1)
    pair = inpainting.make_pair(image, mask)
    settings = dataclasses.replace(model.defaults, restarts=4, samples=3)
    found = model.inpaint_png([pair.image_png], [pair.mask_png], settings)
    assert len(found["samples_png"]) == 1 and len(found["samples_png"][0]) == 3
    for png in [*found["samples_png"][0], found["mean_png"][0]]:
        assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED).shape == (42, 56)


def test_rest_round_trip_carries_the_options(server, tiny_export, fashion_mnist_test_images):
    from tf_semantic_inpaint.client import RestModel

    rest, local = RestModel(server.url, os.path.basename(tiny_export)), LocalModel(tiny_export)
    images, masks = fashion_mnist_test_images[:2], _masks("center", 2)
    settings = dataclasses.replace(local.defaults, restarts=3, samples=2, window=7)
    over_rest, in_process = rest.search(images, masks, settings), local.search(images, masks, settings)
    assert over_rest["samples"].shape == (2, 2, 28, 28, 1)
    for key in ("samples", "mean", "sample_losses"):
        np.testing.assert_allclose(over_rest[key], in_process[key], rtol=1e-4, atol=1e-5)


# --- Warm starts from an encoder ---------------------------------------------------------


@pytest.fixture(scope="module")
def with_encoder(tiny_models, tmp_path_factory):
    """The tiny models exported with an (untrained, width 8) encoder: the wiring, not the quality."""
    encoder = Encoder(28, 1, width=8)
    module = InpaintingModule(SearchCompleter(*tiny_models, encoder=encoder),
                              SearchSettings(iterations=0, restarts=1, warm_start=True))
    path = str(tmp_path_factory.mktemp("warm") / "1")
    write_savedmodel(module, path, module.card())
    return encoder, path


def test_encode_signature_and_warm_start_begin_at_the_encoders_z(with_encoder, fashion_mnist_test_images):
    encoder, path = with_encoder
    images, masks = fashion_mnist_test_images[:3], _masks("random", 3)
    expected = encoder(tf.constant(images * 2 - 1), tf.constant(masks)).numpy()
    loaded = LocalModel(path)
    assert loaded.defaults.warm_start is True and loaded.card["search_fixed"]["encoder"] is True
    encoded = loaded.signatures["encode"](images=tf.constant(images), masks=tf.constant(masks))["z"].numpy()
    np.testing.assert_allclose(encoded, expected, atol=1e-5)
    # Zero steps, one start: z* is where the search started.
    np.testing.assert_allclose(loaded.search(images, masks)["z"], expected, atol=1e-5)
    cold = loaded.search(images, masks, dataclasses.replace(loaded.defaults, warm_start=False))["z"]
    assert np.abs(cold - expected).mean() > 0.1
    # More starts: restart 0 at E's z, the others around it (WARM_SPREAD), never the same.
    four = loaded.search(images, masks, dataclasses.replace(loaded.defaults, restarts=4, samples=4))
    assert np.abs(four["samples"][:, 1:] - four["samples"][:, :1]).max() > 0


# --- The posterior mean's DepthMix ---------------------------------------------------------

MIX = DepthMix(draws=5, spread=0.3, temperature=0.5, slope=3, ceiling=0.8)


@pytest.fixture(scope="module")
def mix_pair(tiny_models, with_encoder, tmp_path_factory):
    """The tiny models and encoder exported twice, the same search with and without MIX."""
    encoder = with_encoder[0]
    settings = SearchSettings(iterations=3, restarts=2, warm_start=True)
    paths = {}
    for name, mix in (("plain", None), ("mixed", MIX)):
        module = InpaintingModule(SearchCompleter(*tiny_models, encoder=encoder, mix=mix), settings)
        paths[name] = str(tmp_path_factory.mktemp(name) / "1")
        # the networks' widths, as `export` records them (what exporting it again rebuilds from)
        card = {**module.card(), "width": tiny_models[0].width, "encoder": {"width": 8}}
        write_savedmodel(module, paths[name], card)
    return encoder, paths


def _draws_mean(generator, encoder, images, masks, window, seed):
    """MIX's mean of draws around E(y), in NumPy from the networks' outputs: [n, 28, 28, 1] in [-1, 1]."""
    y = images * 2 - 1
    guess = encoder(y, masks).numpy()
    noise = tf.random.stateless_normal([MIX.draws, guess.shape[1]], seed=[seed, 2]).numpy()
    noise[0] = 0.0  # draw 0 is the guess itself
    z = np.clip(guess[:, None] + MIX.spread * noise, -1, 1).reshape(-1, guess.shape[1])
    drawn = generator(z, training=False).numpy().reshape(len(images), MIX.draws, 28, 28, 1)
    weights = importance_weights(masks, window).numpy()[:, None]
    losses = (weights * np.abs(drawn - y[:, None])).sum(axis=(2, 3, 4))  # L_c
    scaled = -(losses - losses.min(axis=1, keepdims=True)) / (MIX.temperature * losses.std(axis=1, keepdims=True))
    w = np.exp(scaled) / np.exp(scaled).sum(axis=1, keepdims=True)
    return np.einsum("nr,nr...->n...", w, drawn)


def test_the_mean_leans_on_the_encoders_draws_by_depth_in_the_hole(mix_pair, tiny_models,
                                                                    fashion_mnist_test_images):
    """Exported, the mixed mean is the search's own mean plus β_i (draws' mean - it), β_i = 0.8
    min(d_i / 3, 1) by the pixel's chessboard distance d_i to the known pixels: exactly the
    search's mean on known pixels, 80% the draws' from depth 3 on. Nothing else changes."""
    import scipy.ndimage

    encoder, paths = mix_pair
    images, masks = fashion_mnist_test_images[:3], _masks("center", 3)
    plain, mixed = LocalModel(paths["plain"]), LocalModel(paths["mixed"])
    assert mixed.card["search_fixed"]["mean_mix"] == dataclasses.asdict(MIX)
    assert plain.card["search_fixed"]["mean_mix"] is None
    before, after = plain.search(images, masks), mixed.search(images, masks)
    for key in ("z", "generated", "samples", "sample_losses"):
        np.testing.assert_array_equal(after[key], before[key])
    drawn = _draws_mean(tiny_models[0], encoder, images, masks, plain.defaults.window, plain.defaults.seed) * 0.5 + 0.5
    depth = np.stack([scipy.ndimage.distance_transform_cdt(1 - m[..., 0], metric="chessboard") for m in masks])
    beta = MIX.ceiling * np.minimum(depth[..., None] / MIX.slope, 1.0)
    np.testing.assert_allclose(after["mean"], before["mean"] + beta * (drawn - before["mean"]), atol=2e-5)
    np.testing.assert_array_equal(after["mean"][masks == 1], before["mean"][masks == 1])
    assert np.abs(after["mean"] - before["mean"])[depth[..., None] >= 3].mean() > 0.01  # the draws count
    # A cold start has no guess to draw around: the mean is the search's own.
    cold = dataclasses.replace(plain.defaults, warm_start=False)
    np.testing.assert_array_equal(mixed.search(images, masks, cold)["mean"], plain.search(images, masks, cold)["mean"])


def test_the_draws_run_in_chunks_with_the_same_result(tiny_models, with_encoder, fashion_mnist_test_images):
    """Few images per forward pass (bounded memory for big batches) change nothing but the passes."""
    completer = SearchCompleter(*tiny_models, encoder=with_encoder[0], mix=MIX)
    y, masks = tf.constant(fashion_mnist_test_images[:3] * 2 - 1), tf.constant(_masks("half", 3))
    z = completer.search.draw_z(completer.encoder(y, masks), tf.constant(0))
    weights = importance_weights(masks, 15)
    whole = completer.search.draws_mean(y, weights, z).numpy()
    for chunk in (1, 4, 7):  # 1 draw per pass, 1 per pass (3 images), 2 per pass with a short last one
        np.testing.assert_allclose(completer.search.draws_mean(y, weights, z, chunk).numpy(), whole, atol=1e-6)


TF1_MEAN = """
import sys
sys.modules["tf_semantic_inpaint"] = None  # TF Serving has no Python package
import numpy as np, tensorflow as tf
path = sys.argv[1]
images = np.random.default_rng(0).uniform(0, 1, (3, 28, 28, 1)).astype(np.float32)
masks = np.ones((3, 28, 28, 1), np.float32); masks[:, :, 14:] = 0
out2 = tf.saved_model.load(path).signatures["inpaint"](images=tf.constant(images), masks=tf.constant(masks))
tf.compat.v1.disable_eager_execution()
with tf.compat.v1.Session(graph=tf.Graph()) as sess:  # the TF1 loader, as TensorFlow Serving's
    meta = tf.compat.v1.saved_model.load(sess, ["serve"], path)
    sig = meta.signature_def["inpaint"]
    out1 = sess.run({k: v.name for k, v in sig.outputs.items()},
                    {sig.inputs["images"].name: images, sig.inputs["masks"].name: masks})
assert np.allclose(out1["mean"], out2["mean"].numpy(), atol=1e-5), "TF1 and TF2 loaders disagree"
print("ok", float(np.abs(out1["mean"] - out1["generated"]).mean()))
"""


def test_the_mixed_mean_runs_under_tf_servings_loader(mix_pair):
    """The draws' loop and TensorArrays load and run in the TF1 session loader TF Serving uses, without
    this package, and give the TF2 loader's mean."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", TF1_MEAN, mix_pair[1]["mixed"]], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


def test_the_mix_is_fixed_at_export_kept_when_exported_again_and_needs_an_encoder(mix_pair, tiny_models, tmp_path):
    from click.testing import CliRunner

    from tf_semantic_inpaint.cli import main
    from tf_semantic_inpaint.export import exported_completer

    _, paths = mix_pair
    assert exported_completer(paths["mixed"])[0].search.mix == MIX
    assert exported_completer(paths["mixed"], mix=None)[0].search.mix is None
    run = lambda *args: CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)  # noqa: E731
    out = tmp_path / "again"
    assert run("export", paths["mixed"], "--out", out, "--version", 1).exit_code == 0
    assert LocalModel(str(out / "1")).card["search_fixed"]["mean_mix"] == dataclasses.asdict(MIX)
    assert run("export", paths["mixed"], "--out", out, "--version", 2, "--mean-draws", 9).exit_code == 0
    assert LocalModel(str(out / "2")).card["search_fixed"]["mean_mix"] == dataclasses.asdict(
        dataclasses.replace(DepthMix(), draws=9))
    assert run("export", paths["mixed"], "--out", out, "--version", 3, "--mean-draws", 0).exit_code == 0
    assert LocalModel(str(out / "3")).card["search_fixed"]["mean_mix"] is None
    no_encoder = InpaintingModule(SearchCompleter(*tiny_models))
    write_savedmodel(no_encoder, str(tmp_path / "plain" / "1"), {**no_encoder.card(), "width": tiny_models[0].width})
    refused = run("export", tmp_path / "plain" / "1", "--out", out, "--version", 4, "--mean-draws", 8)
    assert refused.exit_code == 1 and "need an encoder" in refused.output, refused.output
    assert sorted(os.listdir(out)) == ["1", "2", "3"]
    with pytest.raises(ValueError, match="need an encoder"):
        SearchCompleter(*tiny_models, mix=MIX)


def test_the_paper_preset_is_the_published_search():
    from tf_semantic_inpaint.cli import _search_overrides

    assert (PAPER.window, PAPER.lam, PAPER.iterations, PAPER.restarts, PAPER.warm_start, PAPER.refine_steps) == (
        7, 0.003, 1500, 1, False, 0)
    given = _search_overrides({"method": "paper", "iterations": 20, "lam": None})
    assert given == {"iterations": 20, "restarts": 1, "lam": 0.003, "window": 7, "warm_start": False, "samples": 1,
                     "refine_steps": 0}


def test_the_refinement_through_the_export_lowers_the_loss_and_keeps_known_pixels(model, four_samples):
    """The same search (same z), then refined: the best loss never rises and falls on average;
    `completed` still holds every known pixel exactly."""
    images, masks, settings, found = four_samples
    refined = model.search(images, masks, dataclasses.replace(settings, refine_steps=20, refine_radius=0.3))
    np.testing.assert_array_equal(refined["z"], found["z"])
    before, after = found["sample_losses"][:, 0], refined["sample_losses"][:, 0]
    assert np.all(after <= before + 1e-5) and after.mean() < 0.97 * before.mean(), (before, after)
    assert refined["context_loss"].mean() < found["context_loss"].mean()
    np.testing.assert_array_equal(refined["completed"][masks == 1], images[masks == 1])
    assert np.abs(refined["generated"] - found["generated"]).max() > 0.01
