"""The latent search: z* = argmin_z L_c(z) + L_p(z) (Yeh et al., 2017, eq. 4-5).

    L_c(z) = || W ⊙ (G(z) - y) ||_1        context loss, W the importance weights
    L_p(z) = λ log(1 - D(G(z)))            prior loss ("paper"), or λ (-log D(G(z)))
                                           ("nonsaturating"), both from D's logit

Adam on z, z clipped to [-1, 1] after every step. Each candidate keeps the best
z it has visited (Adam at a useful learning rate still jitters at the end, by as
much as the gaps between restarts). Several random restarts per image run
together in the batch dimension; the candidate with the lowest L_c + L_p wins.

The whole optimisation is one `tf.while_loop` inside one `tf.function` (a Python
loop of eager steps is 4x-10x slower on CPU; XLA is slower too), so it exports
into a SavedModel and runs in TF Serving unchanged.

Images here are in G's range [-1, 1], at G's resolution; `inpaint.py` converts.
"""

import dataclasses

import tensorflow as tf

from tf_semantic_inpaint.masks import importance_weights

PRIORS = ("paper", "nonsaturating")
# Adam's moment decay rates, as in the paper's Adam.
_BETA_1, _BETA_2, _EPSILON = 0.9, 0.999, 1e-8


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """Settings of the latent search.

    Defaults measured on 32 Fashion-MNIST VALIDATION images x the four masks with the
    shipped model (benchmarks/search_defaults.py -> results/search_defaults.json): the
    numbers below are the mean PSNR of the blended completion over the four masks, one
    setting varied at a time from 400 steps, 2 restarts, lr 0.03, λ 0.003, window 7.
    """

    # PSNR peaks at 200-300 steps (center 22.07 dB at 300) and then slowly falls as G(z)
    # over-fits the context (21.33 dB at 1500).
    iterations: int = 300
    learning_rate: float = 0.03  # 0.01 / 0.03 / 0.1: 20.27 / 20.39 / 20.41 dB
    lam: float = 0.003  # the paper's λ; 0 / 0.003 / 0.03 / 0.3: 20.36 / 20.39 / 20.52 / 19.68 dB
    restarts: int = 4  # 1 / 2 / 4 / 8: 19.78 / 20.39 / 20.48 / 20.61 dB (8 costs twice 4)
    seed: int = 0
    # The paper's N(i) is 7x7; weights then cover only a 3-pixel band around the hole, too
    # little context for half-image holes: 3 / 7 / 15 / 27 give 19.88 / 20.39 / 20.61 / 20.61
    # dB overall and 15.40 / 16.09 / 17.02 / 17.32 dB on half masks.
    window: int = 15
    prior: str = "paper"  # paper / nonsaturating: 20.39 / 20.36 dB

    def __post_init__(self):
        from tf_semantic_inpaint.errors import InpaintError

        if self.iterations < 0 or self.restarts < 1 or self.learning_rate <= 0 or self.lam < 0:
            raise InpaintError(
                "search settings out of range: need iterations >= 0, restarts >= 1, "
                "learning rate > 0 and λ >= 0."
            )
        if self.window < 1 or self.window % 2 == 0:
            raise InpaintError(f"the weight window must be odd and positive, got {self.window}.")
        if self.prior not in PRIORS:
            raise InpaintError(f"unknown prior {self.prior!r}: use one of {', '.join(PRIORS)}.")


class LatentSearch:
    """Searches G's latent space for the z whose G(z) best completes masked images.

    Args:
        generator: a Generator (G), called in inference mode.
        discriminator: a Discriminator (D), called in inference mode.
        window: side of the window N(i) of the importance weights.
        prior: "paper" for λ log(1 - D(G(z))), "nonsaturating" for -λ log D(G(z)).

    `search` (one graph, for export) and `run` (in chunks with progress, for the
    library) give the same result for the same seed.
    """

    def __init__(self, generator, discriminator, window=SearchSettings.window, prior="paper"):
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
        self.generator = generator
        self.discriminator = discriminator
        self.window = window
        self.prior = prior
        self.z_dim = generator.z_dim

    # --- the pieces ------------------------------------------------------------

    def losses(self, z, images, weights, lam):
        """Per-candidate losses and G(z).

        Args:
            z: float32 [n, z_dim] in [-1, 1].
            images: float32 [n, H, W, C] in [-1, 1] (y; hole contents are ignored).
            weights: float32 [n, H, W, 1], the importance weights W.
            lam: float32 scalar λ.

        Returns:
            (context_loss [n], prior_loss [n], generated [n, H, W, C] in [-1, 1]).
        """
        generated = self.generator(z, training=False)
        logits = tf.reshape(self.discriminator(generated, training=False), [-1])
        context = tf.reduce_sum(weights * tf.abs(generated - images), axis=[1, 2, 3])
        if self.prior == "paper":
            prior = -tf.nn.softplus(logits)  # log(1 - sigmoid(l)) = -softplus(l), stable
        else:
            prior = tf.nn.softplus(-logits)  # -log sigmoid(l)
        return context, lam * prior, generated

    def initial_z(self, n, seed):
        """z_0 uniform in [-1, 1]^z_dim, float32 [n, z_dim], fixed by the int32 seed."""
        return tf.random.stateless_uniform(
            [n, self.z_dim], seed=tf.stack([seed, 0]), minval=-1.0, maxval=1.0
        )

    def adam_steps(self, state, images, weights, iterations, lam, learning_rate):
        """Run `iterations` Adam steps on z inside one tf.while_loop.

        Args:
            state: (z, m, v [n, z_dim]: Adam's iterate and moments; t: int32 step count;
                best_z [n, z_dim], best_loss [n]: the lowest-loss z visited so far).
            images, weights: as in `losses`, already repeated per restart.

        Returns:
            (new state, history): history float32 [iterations, n] is the loss
            L_c + L_p of every candidate at the z each step started from.
        """

        def step(i, z, m, v, t, best_z, best_loss, history):
            with tf.GradientTape() as tape:
                tape.watch(z)
                context, prior, _ = self.losses(z, images, weights, lam)
                total = context + prior
                summed = tf.reduce_sum(total)  # candidates are independent: one gradient call
            grad = tape.gradient(summed, z)
            improved = total < best_loss
            best_z = tf.where(improved[:, tf.newaxis], z, best_z)
            best_loss = tf.minimum(total, best_loss)
            t = t + 1
            m = _BETA_1 * m + (1.0 - _BETA_1) * grad
            v = _BETA_2 * v + (1.0 - _BETA_2) * tf.square(grad)
            tf32 = tf.cast(t, tf.float32)
            m_hat = m / (1.0 - tf.pow(_BETA_1, tf32))
            v_hat = v / (1.0 - tf.pow(_BETA_2, tf32))
            z = tf.clip_by_value(z - learning_rate * m_hat / (tf.sqrt(v_hat) + _EPSILON), -1.0, 1.0)
            return i + 1, z, m, v, t, best_z, best_loss, history.write(i, total)

        history = tf.TensorArray(tf.float32, size=iterations, element_shape=tf.TensorShape([None]))
        _, *state, history = tf.while_loop(
            lambda i, *_: i < iterations, step, (tf.constant(0), *state, history)
        )
        # Stacking an empty TensorArray fails; zero iterations give an empty history.
        history = tf.cond(
            iterations > 0, history.stack, lambda: tf.zeros([0, tf.shape(state[0])[0]], tf.float32)
        )
        return tuple(state), history

    def select_best(self, state, images, weights, lam, restarts):
        """Per candidate the better of its final and best visited z; per image the best restart.

        Args:
            state: the search state of `adam_steps`; rows b*restarts ... (b+1)*restarts-1
                are the restarts of image b.
            images, weights: repeated per restart, [batch * restarts, ...].

        Returns:
            dict: z [batch, z_dim], generated [batch, H, W, C] in [-1, 1],
            context_loss [batch], prior_loss [batch], best_restart int32 [batch].
        """
        z, _, _, _, best_z, best_loss = state
        context, prior, _ = self.losses(z, images, weights, lam)
        z = tf.where((context + prior < best_loss)[:, tf.newaxis], z, best_z)
        context, prior, generated = self.losses(z, images, weights, lam)
        best = tf.argmin(tf.reshape(context + prior, [-1, restarts]), axis=1, output_type=tf.int32)
        rows = tf.range(tf.shape(best)[0]) * restarts + best
        return {
            "z": tf.gather(z, rows),
            "generated": tf.gather(generated, rows),
            "context_loss": tf.gather(context, rows),
            "prior_loss": tf.gather(prior, rows),
            "best_restart": best,
        }

    def prepare(self, images, masks, restarts, seed, initial_z=None):
        """Validate inputs, compute W, repeat per restart, and draw z_0.

        Args:
            images: float32 [batch, H, W, C] in [-1, 1].
            masks: float32 [batch, H, W, 1], 1 = known.
            initial_z: optional z_0, float32 [batch * restarts, z_dim] (rows
                b * restarts ... (b + 1) * restarts - 1 start image b), clipped to
                [-1, 1]; e.g. an encoder's guess (a warm start). Default: uniform
                random from `seed`.
        """
        checks = [
            tf.debugging.assert_equal(
                tf.shape(images)[:3], tf.shape(masks)[:3],
                message="images and masks must have the same batch size, height and width",
            ),
            tf.debugging.assert_greater(
                tf.reduce_sum(masks, axis=[1, 2, 3]), 0.0,
                message="a mask has no known pixel: there is no context to condition on",
            ),
            tf.debugging.assert_positive(restarts, message="restarts must be at least 1"),
        ]
        with tf.control_dependencies(checks):
            weights = importance_weights(masks, self.window)
        images = tf.repeat(images, restarts, axis=0)
        weights = tf.repeat(weights, restarts, axis=0)
        if initial_z is None:
            z = self.initial_z(tf.shape(images)[0], seed)
        else:
            rows = tf.debugging.assert_equal(
                tf.shape(initial_z)[0], tf.shape(images)[0],
                message="initial_z needs one row per image and restart",
            )
            with tf.control_dependencies([rows]):
                z = tf.clip_by_value(tf.cast(initial_z, tf.float32), -1.0, 1.0)
        never = tf.fill([tf.shape(z)[0]], float("inf"))  # no z visited yet
        return images, weights, (z, tf.zeros_like(z), tf.zeros_like(z), tf.constant(0), z, never)

    # --- the whole search ---------------------------------------------------------

    @tf.function(reduce_retracing=True)
    def search(self, images, masks, iterations, lam, learning_rate, restarts, seed, initial_z=None):
        """The whole latent search in one graph.

        Args:
            images: float32 [batch, H, W, C] in [-1, 1] (y).
            masks: float32 [batch, H, W, 1], 1 = known (M).
            iterations, restarts, seed: int32 scalars; lam, learning_rate: float32 scalars.
            initial_z: optional z_0 [batch * restarts, z_dim], as in `prepare`.

        Returns:
            dict as `select_best`, plus history float32 [iterations, batch * restarts],
            the loss of every candidate at every step.
        """
        tf.debugging.assert_non_negative(iterations, message="iterations must be >= 0")
        images, weights, state = self.prepare(images, masks, restarts, seed, initial_z)
        state, history = self.adam_steps(state, images, weights, iterations, lam, learning_rate)
        result = self.select_best(state, images, weights, lam, restarts)
        result["history"] = history
        return result

    # The search in pieces, each one graph: `run` strings them together with progress.

    @tf.function(reduce_retracing=True)
    def start(self, images, masks, restarts, seed, initial_z=None):
        """`prepare` as a graph: (tiled images, tiled W, Adam state)."""
        return self.prepare(images, masks, restarts, seed, initial_z)

    @tf.function(reduce_retracing=True)
    def advance(self, state, images, weights, iterations, lam, learning_rate):
        """`adam_steps` as a graph: (new state, history)."""
        return self.adam_steps(state, images, weights, iterations, lam, learning_rate)

    @tf.function(reduce_retracing=True)
    def finish(self, state, images, weights, lam, restarts):
        """`select_best` as a graph."""
        return self.select_best(state, images, weights, lam, restarts)

    def run(self, images, masks, settings=SearchSettings(), chunk=100, progress=None, initial_z=None):
        """The search in chunks of `chunk` iterations, calling `progress(done, total)`.

        Same arguments and result as `search` (eager tensors), with settings from a
        `SearchSettings`; each chunk is still one graph, so the cost of chunking is
        a few graph calls.
        """
        images = tf.convert_to_tensor(images, tf.float32)
        masks = tf.convert_to_tensor(masks, tf.float32)
        lam = tf.constant(settings.lam, tf.float32)
        lr = tf.constant(settings.learning_rate, tf.float32)
        restarts = tf.constant(settings.restarts, tf.int32)
        tiled, weights, state = self.start(images, masks, restarts, tf.constant(settings.seed), initial_z)
        history, done = [], 0
        while done < settings.iterations:
            n = min(chunk, settings.iterations - done)
            state, losses = self.advance(state, tiled, weights, tf.constant(n), lam, lr)
            history.append(losses)
            done += n
            if progress is not None:
                progress(done, settings.iterations)
        result = self.finish(state, tiled, weights, lam, restarts)
        result["history"] = (
            tf.concat(history, axis=0) if history else tf.zeros([0, tf.shape(tiled)[0]])
        )
        return result
