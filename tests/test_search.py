"""The latent search: falling loss, recovery of G's own images, restarts, determinism,
batch independence."""

import numpy as np
import pytest
import tensorflow as tf

from tf_semantic_inpaint.masks import make_mask
from tf_semantic_inpaint.search import LatentSearch, check_fixed


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


def _history(search, images, masks, iterations, lam=0.003, lr=0.05, restarts=2, seed=0):
    """(final state, losses [iterations, candidates]) of a search that records its history."""
    tiled, weights, state = search.prepare(tf.constant(images, tf.float32), tf.constant(masks, tf.float32),
                                           tf.constant(restarts), tf.constant(seed))
    return search.adam_steps(state, tiled, weights, tf.constant(iterations), tf.constant(lam),
                             tf.constant(lr), record_history=True)


def test_loss_falls(search, fashion_mnist_test_images):
    images = fashion_mnist_test_images[:4] * 2 - 1
    _, history = _history(search, images, _batch("center", 4), iterations=80)
    history = history.numpy()
    assert history.shape == (80, 8)  # 4 images x 2 restarts
    assert np.all(history[-1] < history[0])
    assert history[-1].mean() < 0.8 * history[0].mean()


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
    state, history = search.adam_steps(state, tiled, weights, tf.constant(20), lam, tf.constant(0.05),
                                       record_history=True)
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
    history = _history(search, images, masks, 40, lr=5.0, restarts=1)[1].numpy()
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


def test_an_image_gets_the_same_result_alone_and_in_any_batch(search, fashion_mnist_test_images):
    """The random starts depend on the seed only, never on an image's position in a batch."""
    images = fashion_mnist_test_images[:4] * 2 - 1
    masks = _batch("pattern", 4)
    together = _call(search, images, masks, iterations=25, restarts=3, seed=7)
    reordered = _call(search, images[::-1], masks[::-1], iterations=25, restarts=3, seed=7)
    for i in range(4):
        alone = _call(search, images[i:i + 1], masks[i:i + 1], iterations=25, restarts=3, seed=7)
        for key in ("z", "generated"):
            np.testing.assert_allclose(alone[key].numpy()[0], together[key].numpy()[i], atol=2e-5)
            np.testing.assert_allclose(reordered[key].numpy()[3 - i], together[key].numpy()[i], atol=2e-5)


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


@pytest.mark.parametrize("window, prior, message", [(4, "paper", "odd"), (0, "paper", "odd"),
                                                    (7, "x", "unknown prior")])
def test_fixed_parts_are_checked(window, prior, message):
    with pytest.raises(ValueError, match=message):
        check_fixed(window, prior)


def _refined(search, images, masks, refine_steps, refine_radius, iterations=30, restarts=2, seed=0):
    return search.search(
        tf.constant(images, tf.float32), tf.constant(masks, tf.float32), tf.constant(iterations),
        tf.constant(0.003), tf.constant(0.05), tf.constant(restarts), tf.constant(seed),
        tf.constant(refine_steps), tf.constant(refine_radius),
    )


def test_features_and_from_features_compose_to_g(tiny_models):
    generator, _ = tiny_models
    z = tf.random.stateless_uniform([3, 100], seed=[1, 2], minval=-1, maxval=1)
    assert generator.feature_layers == 2  # 28x28: 7x7 projection, 14x14 block
    for layer in range(generator.feature_layers):
        h = generator.features(z, layer)
        assert h.shape[1] == 7 * 2**layer and float(tf.reduce_min(h)) >= 0.0  # post-ReLU
        np.testing.assert_allclose(generator.from_features(h, layer).numpy(), generator(z).numpy(), atol=1e-5)


@pytest.mark.parametrize("layer", [0, 1])
def test_the_refinement_lowers_the_loss_and_keeps_known_pixels(tiny_models, fashion_mnist_test_images, layer):
    """From the same searched z, the refined candidates' L_c + L_p never rises and falls on
    most; the context loss falls on average; the completion keeps every known pixel."""
    from tf_semantic_inpaint.blend import composite

    search = LatentSearch(*tiny_models, refine_layer=layer)
    images = fashion_mnist_test_images[:6] * 2 - 1
    masks = np.concatenate([_batch("center", 3), _batch("pattern", 3)])
    tiled, weights, state = search.prepare(tf.constant(images, tf.float32), tf.constant(masks, tf.float32),
                                           tf.constant(1), tf.constant(0))
    lam = tf.constant(0.003)
    state = search.adam_steps(state, tiled, weights, tf.constant(30), lam, tf.constant(0.05))
    z, context, prior, plain = search.candidates(state, tiled, weights, lam)
    z_refined, context_refined, prior_refined, refined = search.candidates(
        state, tiled, weights, lam, tf.constant(25), tf.constant(0.3))
    np.testing.assert_array_equal(z_refined.numpy(), z.numpy())  # the refinement moves h, not z
    before, after = (context + prior).numpy(), (context_refined + prior_refined).numpy()
    assert np.all(after <= before + 1e-5), (before, after)
    assert np.sum(after < 0.97 * before) >= 4, (before, after)
    assert context_refined.numpy().mean() < context.numpy().mean()
    refined = refined.numpy()
    assert np.abs(refined - plain.numpy()).max() > 0.01  # drawn from moved features, not G(z*)
    assert refined.min() >= -1 and refined.max() <= 1
    for y, g, m in zip((images + 1) / 2, (refined + 1) / 2, masks):
        completed = composite(y, g, m)
        np.testing.assert_array_equal(completed[m[..., 0] == 1], y[m[..., 0] == 1])


def test_the_refinement_is_bounded_by_its_radius(tiny_models, fashion_mnist_test_images):
    """Radius 0 changes nothing; a small radius moves G's output less than a large one."""
    search = LatentSearch(*tiny_models)
    images = fashion_mnist_test_images[:3] * 2 - 1
    masks = _batch("half", 3)
    plain = _refined(search, images, masks, 0, 0.0)["generated"].numpy()
    still = _refined(search, images, masks, 20, 0.0)["generated"].numpy()
    np.testing.assert_allclose(still, plain, atol=1e-5)
    small = np.abs(_refined(search, images, masks, 20, 0.02)["generated"].numpy() - plain).mean()
    large = np.abs(_refined(search, images, masks, 20, 0.5)["generated"].numpy() - plain).mean()
    assert 0 < small < large


def test_refine_layer_is_checked(tiny_models):
    with pytest.raises(ValueError, match=r"refine_layer must be in 0..1"):
        LatentSearch(*tiny_models, refine_layer=2)
