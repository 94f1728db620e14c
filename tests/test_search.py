"""The latent search: falling loss, recovery of G's own images, restarts, determinism."""

import numpy as np
import pytest
import tensorflow as tf

from tf_semantic_inpaint.masks import make_mask
from tf_semantic_inpaint.search import LatentSearch, SearchSettings


@pytest.fixture(scope="module")
def search(tiny_models):
    return LatentSearch(*tiny_models)


def _psnr(a, b):
    """PSNR of two arrays in [-1, 1], measured in [0, 1]."""
    return 10 * np.log10(1.0 / np.mean(((a - b) / 2) ** 2))


def _batch(kind, n, seed=0):
    return np.stack([make_mask(kind, 28, 28, seed=seed + i) for i in range(n)])


def _call(search, images, masks, iterations=60, lam=0.003, lr=0.05, restarts=2, seed=0):
    return search.search(
        tf.constant(images, tf.float32), tf.constant(masks, tf.float32), tf.constant(iterations),
        tf.constant(lam), tf.constant(lr), tf.constant(restarts), tf.constant(seed),
    )


def test_loss_falls_and_z_stays_in_the_box(search, fashion_mnist_test_images):
    images = fashion_mnist_test_images[:4] * 2 - 1
    result = _call(search, images, _batch("center", 4), iterations=80)
    history = result["history"].numpy()
    assert history.shape == (80, 8)  # 4 images x 2 restarts
    assert np.all(history[-1] < history[0])
    assert history[-1].mean() < 0.8 * history[0].mean()
    z = result["z"].numpy()
    assert z.shape == (4, 100) and z.min() >= -1 and z.max() <= 1


def test_recovers_an_image_made_by_g_far_better_than_a_mean_fill(tiny_models, search):
    """y = G(z_true) with a central hole: G(z*) fills the hole close to the truth."""
    generator, _ = tiny_models
    z_true = tf.random.stateless_uniform([4, 100], seed=[7, 7], minval=-0.9, maxval=0.9)
    truth = generator(z_true, training=False).numpy()
    masks = _batch("center", 4)
    result = _call(search, truth, masks, iterations=400, lam=0.0, lr=0.05, restarts=4, seed=1)
    hole = masks[..., 0] == 0
    generated = result["generated"].numpy()
    for i in range(4):
        known_mean = truth[i][~hole[i]].mean()
        ours = _psnr(generated[i][hole[i]], truth[i][hole[i]])
        mean_fill = _psnr(known_mean, truth[i][hole[i]])
        assert ours > mean_fill + 6, (i, ours, mean_fill)


def test_restarts_keep_the_candidate_with_the_lowest_loss(search, fashion_mnist_test_images):
    images = tf.constant(fashion_mnist_test_images[:3] * 2 - 1)
    masks = tf.constant(_batch("pattern", 3))
    restarts, lam = tf.constant(5), tf.constant(0.003)
    tiled, weights, state = search.prepare(images, masks, restarts, tf.constant(4))
    state, history = search.adam_steps(state, tiled, weights, tf.constant(20), lam, tf.constant(0.05))
    final_context, final_prior, _ = search.losses(state[0], tiled, weights, lam)
    along_path = history.numpy().min(axis=0)
    np.testing.assert_allclose(state[5].numpy(), along_path, rtol=1e-6)
    # Each candidate's best: the lowest loss along its path or at its final z.
    per_candidate = np.minimum(along_path, (final_context + final_prior).numpy()).reshape(3, 5)
    best = search.select_best(state, tiled, weights, lam, restarts)
    np.testing.assert_array_equal(best["best_restart"].numpy(), per_candidate.argmin(axis=1))
    np.testing.assert_allclose(
        (best["context_loss"] + best["prior_loss"]).numpy(), per_candidate.min(axis=1), rtol=1e-5
    )
    assert np.ptp(per_candidate, axis=1).min() > 0  # the restarts really differ


def test_the_best_visited_z_is_kept_when_the_last_steps_get_worse(search, fashion_mnist_test_images):
    """A learning rate far too large makes Adam wander off: the result is still the best z seen."""
    images = fashion_mnist_test_images[:2] * 2 - 1
    masks = _batch("center", 2)
    result = _call(search, images, masks, iterations=40, lr=5.0, restarts=1)
    history = result["history"].numpy()
    final = (result["context_loss"] + result["prior_loss"]).numpy()
    assert np.all(final <= history.min(axis=0) + 1e-4)
    assert np.any(history[-1] > final + 1e-3)  # the path did end worse than the kept z


def test_same_seed_same_result_other_seed_other_start(search, fashion_mnist_test_images):
    images = fashion_mnist_test_images[:2] * 2 - 1
    masks = _batch("random", 2)
    a = _call(search, images, masks, iterations=20, seed=3)
    b = _call(search, images, masks, iterations=20, seed=3)
    c = _call(search, images, masks, iterations=20, seed=4)
    np.testing.assert_array_equal(a["z"].numpy(), b["z"].numpy())
    assert not np.allclose(a["z"].numpy(), c["z"].numpy())


def test_chunked_run_equals_the_one_graph_search(search, fashion_mnist_test_images):
    images = fashion_mnist_test_images[:2] * 2 - 1
    masks = _batch("half", 2)
    settings = SearchSettings(iterations=45, restarts=2, learning_rate=0.05, seed=2)
    calls = []
    chunked = search.run(images, masks, settings, chunk=10, progress=lambda d, t: calls.append((d, t)))
    whole = _call(search, images, masks, iterations=45, restarts=2, seed=2)
    assert calls == [(10, 45), (20, 45), (30, 45), (40, 45), (45, 45)]
    for key in ("z", "generated", "context_loss", "prior_loss"):
        np.testing.assert_array_equal(chunked[key].numpy(), whole[key].numpy())
    np.testing.assert_array_equal(chunked["history"].numpy(), whole["history"].numpy())


def test_prior_loss_is_lambda_log_one_minus_d(tiny_models, fashion_mnist_test_images):
    generator, discriminator = tiny_models
    images = fashion_mnist_test_images[:2] * 2 - 1
    masks = _batch("center", 2)
    for prior, expected in (("paper", lambda d: np.log(1 - d)), ("nonsaturating", lambda d: -np.log(d))):
        s = LatentSearch(generator, discriminator, prior=prior)
        result = _call(s, images, masks, iterations=0, lam=0.5, restarts=1)
        d_of_g = tf.sigmoid(discriminator(result["generated"], training=False)).numpy()[:, 0]
        np.testing.assert_allclose(result["prior_loss"].numpy(), 0.5 * expected(d_of_g), rtol=1e-4)
    with_zero = _call(LatentSearch(generator, discriminator), images, masks, iterations=0, lam=0.0)
    np.testing.assert_array_equal(with_zero["prior_loss"].numpy(), 0.0)


def test_context_loss_is_the_weighted_l1_over_known_pixels(search, fashion_mnist_test_images):
    images = fashion_mnist_test_images[:1] * 2 - 1
    masks = _batch("center", 1)
    result = _call(search, images, masks, iterations=0, lam=0.0, restarts=1)
    from tf_semantic_inpaint.masks import importance_weights

    w = importance_weights(masks, search.window).numpy()
    expected = np.sum(w * np.abs(result["generated"].numpy() - images))
    np.testing.assert_allclose(result["context_loss"].numpy()[0], expected, rtol=1e-5)
    # The hole's contents are ignored: garbage there changes nothing.
    garbage = images.copy()
    garbage[masks == 0] = 0.7
    again = _call(search, garbage, masks, iterations=0, lam=0.0, restarts=1)
    np.testing.assert_array_equal(again["context_loss"].numpy(), result["context_loss"].numpy())


def test_a_mask_without_known_pixels_is_an_invalid_argument(search):
    with pytest.raises(tf.errors.InvalidArgumentError, match="no context to condition on"):
        _call(search, np.zeros((1, 28, 28, 1)), np.zeros((1, 28, 28, 1)), iterations=1)


@pytest.mark.parametrize("bad", [dict(iterations=-1), dict(restarts=0), dict(window=4), dict(prior="x")])
def test_settings_are_checked(bad):
    from tf_semantic_inpaint.errors import InpaintError

    with pytest.raises(InpaintError):
        SearchSettings(**bad)


def test_a_given_initial_z_is_where_the_search_starts(search, fashion_mnist_test_images):
    """A warm start: zero steps return the given z (clipped to the box); steps lower its loss."""
    images = tf.constant(fashion_mnist_test_images[:2] * 2 - 1)
    masks = tf.constant(_batch("center", 2))
    start = np.random.default_rng(3).uniform(-1.2, 1.2, (4, 100)).astype(np.float32)  # 2 images x 2
    args = (images, masks, tf.constant(0), tf.constant(0.0), tf.constant(0.05), tf.constant(2), tf.constant(0))
    result = search.search(*args, initial_z=tf.constant(start))
    best = result["best_restart"].numpy()
    np.testing.assert_array_equal(result["z"].numpy(), np.clip(start, -1, 1)[np.arange(2) * 2 + best])
    moved = search.search(*args[:2], tf.constant(30), *args[3:], initial_z=tf.constant(start))
    assert np.all(moved["context_loss"].numpy() < result["context_loss"].numpy())
    chunked = search.run(images, masks, SearchSettings(iterations=30, restarts=2, lam=0.0, learning_rate=0.05),
                         chunk=10, initial_z=tf.constant(start))
    np.testing.assert_allclose(chunked["z"].numpy(), moved["z"].numpy(), atol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="one row per image and restart"):
        search.search(*args, initial_z=tf.constant(start[:3]))
