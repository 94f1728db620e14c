"""The latent search: z* = argmin_z L_c(z) + L_p(z) (Yeh et al., 2017, eq. 4-5).

    L_c(z) = || W ⊙ (G(z) - y) ||_1        context loss, W the importance weights
    L_p(z) = λ log(1 - D(G(z)))            prior loss ("paper"), or λ (-log D(G(z)))
                                           ("nonsaturating"), both from D's logit

Adam on z, z clipped to [-1, 1] after every step. Each candidate keeps the best
z it has visited (Adam at a useful learning rate still jitters at the end, by as
much as the gaps between restarts). Several random restarts per image run
together in the batch dimension; the candidate with the lowest L_c + L_p wins.

The whole optimisation is one `tf.while_loop` (a Python loop of eager steps is
4x-10x slower on CPU; XLA is slower too), so it exports into a SavedModel and runs
in TF Serving unchanged. The pieces (`prepare`, `adam_steps`, `select_best`) are
what export.py wraps, whole or in chunks.

After the search, an optional refinement (intermediate-layer optimisation, Daras et
al., 2021) gives G more range where z alone cannot reach the answer: it moves G's
feature map h = features(z*) within a small ball around h itself, by Adam on the same
L_c + L_p, and draws the completion from the moved h.

The posterior-mean estimate (`alternatives`) averages the candidates; with a DepthMix
it leans, deep in the hole, on draws around an encoder's guess instead.

Images here are in G's range [-1, 1], at G's resolution; preprocess.py converts.
"""

import dataclasses

import tensorflow as tf

from tf_semantic_inpaint.masks import hole_depth, importance_weights

PRIORS = ("paper", "nonsaturating")
WINDOW = 15  # contract.SearchSettings.window says why not the paper's 7
PAPER_WINDOW = 7
# Spread of the warm starts around the encoder's guess (restart 0 starts exactly there):
# on 32 validation images, σ 0.25 gave 4 restarts x 25 steps 22.56 dB on center masks,
# against 22.46 for one start (benchmarks/results/warm_start/).
WARM_SPREAD = 0.25
# Two samples count as the same answer below this mean absolute difference over the hole
# (in [-1, 1]; 0.05 is 1.3% of the range on [0, 255] images).
DISTINCT = 0.05
# The refinement: which feature map it moves (0 = G's projection, 7x7x128 at 28x28) and
# Adam's step on it; chosen on validation images (benchmarks/refinement.py).
REFINE_LAYER = 0
REFINE_LEARNING_RATE = 0.01
# The draws' forward passes run in chunks of at most this many images (a search's own
# candidates are bounded by the limits' batch x restarts).
DRAW_CHUNK = 1024
# Adam's moment decay rates, as in the paper's Adam.
_BETA_1, _BETA_2, _EPSILON = 0.9, 0.999, 1e-8


def context_loss(generated, images, weights):
    """L_c = || W ⊙ (G(z) - y) ||_1 per image: the sum over the last three axes [..., H, W, C];
    leading axes broadcast (e.g. draws [count, batch, ...] against images [batch, ...])."""
    return tf.reduce_sum(weights * tf.abs(generated - images), axis=[-3, -2, -1])


def check_fixed(window, prior):
    """Raise ValueError unless `window` (a default) is an odd positive integer and `prior`
    one of PRIORS."""
    if prior not in PRIORS:
        raise ValueError(f"unknown prior {prior!r}: use one of {', '.join(PRIORS)}.")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise ValueError(f"the weight window must be an odd positive integer (the paper's is "
                         f"{PAPER_WINDOW}), got {window!r}.")


@dataclasses.dataclass(frozen=True)
class DepthMix:
    """The posterior mean's mixture by depth in the hole, fixed at export (model card: `mean_mix`).

    Deep in a hole the search's candidates over-fit the known pixels around it (on half
    images the search's mean is 0.3 dB below that of draws around the encoder's guess),
    while near the known pixels the search is the better estimate (0.6 dB on center blocks). So per missing pixel i,

        mean_i = (1 - β_i) mean_search_i + β_i mean_draws_i,  β_i = ceiling min(d_i / slope, 1),

    d_i the chessboard distance to the nearest known pixel (masks.hole_depth), and
    mean_draws the exp(-(L - L_min) / (temperature s)) average of G(clip(E(y) + spread ε_r))
    over `draws` draws (ε_0 = 0), s the spread of the image's context losses L_c.
    Chosen on 256 validation images (benchmarks/hole_depth.py: +0.6 dB on half images,
    +0.14 on center blocks, +0.02 to +0.08 on the others); 64 draws score no better than 32.
    """

    draws: int = 32
    spread: float = 0.15
    temperature: float = 1.0
    slope: int = 6
    ceiling: float = 0.75

    def __post_init__(self):
        if not (isinstance(self.draws, int) and isinstance(self.slope, int) and self.draws >= 1
                and self.slope >= 1 and self.spread >= 0 and self.temperature > 0 and 0 <= self.ceiling <= 1):
            raise ValueError(f"a DepthMix needs draws, slope >= 1 (integers), spread >= 0, temperature > 0 "
                             f"and ceiling in [0, 1], got {self}.")


class LatentSearch:
    """Searches G's latent space for the z whose G(z) best completes masked images.

    Args:
        generator: a Generator (G), called in inference mode.
        discriminator: a Discriminator (D), called in inference mode.
        window: side of the window N(i) of the importance weights (odd).
        prior: "paper" for λ log(1 - D(G(z))), "nonsaturating" for -λ log D(G(z)).
        refine_layer: the feature map `refine` moves (Generator.features).
        refine_learning_rate: Adam's step size in `refine`.
        mix: optional DepthMix: the posterior mean mixes in draws around an encoder's
            guess (`alternatives` given `draw_z`); None = the search's candidates only.

    Window, prior, the mixture and the refinement's layer and step size are fixed when a model is
    exported; what a caller may change per request (iterations, restarts, λ, learning
    rate, seed, refinement steps and radius) is passed to each call.
    """

    def __init__(self, generator, discriminator, window=WINDOW, prior="paper", refine_layer=REFINE_LAYER,
                 refine_learning_rate=REFINE_LEARNING_RATE, mix=None):
        check_fixed(window, prior)
        if not 0 <= refine_layer < generator.feature_layers:
            raise ValueError(f"refine_layer must be in 0..{generator.feature_layers - 1} for this G, "
                             f"got {refine_layer}.")
        self.generator = generator
        self.discriminator = discriminator
        self.window = window
        self.prior = prior
        self.refine_layer = refine_layer
        self.refine_learning_rate = refine_learning_rate
        self.mix = mix
        self.z_dim = generator.z_dim

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
        return self.image_losses(self.generator(z, training=False), images, weights, lam)

    def image_losses(self, generated, images, weights, lam):
        """`losses` of images G drew: (context_loss [n], prior_loss [n], generated)."""
        logits = tf.reshape(self.discriminator(generated, training=False), [-1])
        context = context_loss(generated, images, weights)
        if self.prior == "paper":
            prior = -tf.nn.softplus(logits)  # log(1 - sigmoid(l)) = -softplus(l), stable
        else:
            prior = tf.nn.softplus(-logits)  # -log sigmoid(l)
        return context, lam * prior, generated

    def initial_z(self, batch, restarts, seed, guess=None):
        """z_0, float32 [batch * restarts, z_dim] in [-1, 1].

        Without a guess, uniform in [-1, 1]^z_dim (the paper's random start). With a
        guess (an encoder's z [batch, z_dim], a warm start), restart 0 starts at the
        guess and restart r > 0 at guess + WARM_SPREAD * noise_r, clipped.

        Restart r of EVERY image gets the same draw, from (seed, r): an image's result
        depends on its own inputs and the seed, never on which other images share its
        batch (a server may batch requests together).
        """
        if guess is None:
            starts = tf.random.stateless_uniform(
                [restarts, self.z_dim], seed=tf.stack([seed, 0]), minval=-1.0, maxval=1.0
            )
            return tf.reshape(tf.tile(starts[tf.newaxis], [batch, 1, 1]), [-1, self.z_dim])
        noise = tf.random.stateless_normal([restarts, self.z_dim], seed=tf.stack([seed, 1]))
        noise = WARM_SPREAD * tf.concat([tf.zeros_like(noise[:1]), noise[1:]], axis=0)
        return tf.reshape(tf.clip_by_value(guess[:, tf.newaxis] + noise, -1.0, 1.0), [-1, self.z_dim])

    def draw_z(self, guess, seed):
        """The DepthMix draws around an encoder's guess [batch, z_dim]: float32
        [batch * draws, z_dim] in [-1, 1], draw 0 the guess itself; like `initial_z`, draw r
        of every image comes from (seed, r) alone."""
        noise = tf.random.stateless_normal([self.mix.draws, self.z_dim], seed=tf.stack([seed, 2]))
        noise = self.mix.spread * tf.concat([tf.zeros_like(noise[:1]), noise[1:]], axis=0)
        return tf.reshape(tf.clip_by_value(guess[:, tf.newaxis] + noise, -1.0, 1.0), [-1, self.z_dim])

    def draws_mean(self, images, weights, z, chunk=DRAW_CHUNK):
        """mean_draws of DepthMix: the context-loss-weighted average of G over each image's draws.

        Weighted by L_c alone: with D's prior term as well the validation scores agree to
        0.001 dB (benchmarks/results/hole_depth/), and D's forward pass doubles the draws' cost.

        Args:
            images, weights: float32 [batch, H, W, C] in [-1, 1] and [batch, H, W, 1] (W).
            z: float32 [batch * draws, z_dim] of `draw_z`.
            chunk: images per forward pass (memory), at least one draw per image.

        Returns:
            float32 [batch, H, W, C] in [-1, 1].
        """
        draws = self.mix.draws
        batch = tf.shape(images)[0]
        z = tf.transpose(tf.reshape(z, [batch, draws, self.z_dim]), [1, 0, 2])  # draw-major
        chunk = tf.clip_by_value(chunk // tf.maximum(batch, 1), 1, draws)  # draws per forward pass

        def step(start, losses, fills):
            stop = tf.minimum(start + chunk, draws)
            count = stop - start
            generated = self.generator(tf.reshape(z[start:stop], [-1, self.z_dim]), training=False)
            generated = tf.reshape(generated, tf.concat([[count, batch], tf.shape(generated)[1:]], 0))
            context = context_loss(generated, images, weights)  # [count, batch]
            return stop, losses.write(losses.size(), context), fills.write(fills.size(), generated)

        array = lambda: tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False)  # noqa: E731
        _, losses, fills = tf.while_loop(lambda start, *_: start < draws, step, (tf.constant(0), array(), array()))
        losses = tf.transpose(tf.reshape(losses.concat(), [draws, batch]))  # [batch, draws]
        fills = tf.reshape(fills.concat(), tf.concat([[draws], tf.shape(images)], 0))  # [draws, batch, H, W, C]
        spread = tf.maximum(tf.math.reduce_std(losses, axis=1, keepdims=True), 1e-6)
        weight = tf.nn.softmax(-(losses - tf.reduce_min(losses, axis=1, keepdims=True))
                               / (self.mix.temperature * spread), axis=1)
        return tf.einsum("br,rb...->b...", weight, fills)

    def depth_mixed(self, search_mean, draws_mean, masks):
        """DepthMix's per-pixel mixture of the two means [batch, H, W, C]; masks [batch, H, W, 1]."""
        beta = self.mix.ceiling * hole_depth(masks, self.mix.slope) / self.mix.slope  # 0 on known pixels
        return search_mean + beta * (draws_mean - search_mean)

    def prepare(self, images, masks, restarts, seed, window=None, guess=None):
        """W, the inputs repeated per restart, and Adam's starting state.

        Args:
            images: float32 [batch, H, W, C] in [-1, 1].
            masks: float32 [batch, H, W, 1] in {0, 1}, 1 = known.
            restarts, seed: int32 scalars, already checked (restarts >= 1).
            window: int32 scalar, odd: N(i) of the importance weights (default: the
                searcher's).
            guess: optional z [batch, z_dim] to start near (see `initial_z`).

        Returns:
            (tiled images [batch * restarts, ...], tiled W, state): rows
            b * restarts ... (b + 1) * restarts - 1 are the restarts of image b.
        """
        no_context = tf.debugging.assert_greater(
            tf.reduce_sum(masks, axis=[1, 2, 3]), 0.0,
            message="a mask has no known pixel: there is no context to condition on",
        )
        with tf.control_dependencies([no_context]):
            weights = importance_weights(masks, self.window if window is None else window)
        images = tf.repeat(images, restarts, axis=0)
        weights = tf.repeat(weights, restarts, axis=0)
        z = self.initial_z(tf.shape(masks)[0], restarts, seed, guess)
        never = tf.fill([tf.shape(z)[0]], float("inf"))  # no z visited yet
        return images, weights, (z, tf.zeros_like(z), tf.zeros_like(z), tf.constant(0), z, never)

    def adam_steps(self, state, images, weights, iterations, lam, learning_rate, record_history=False):
        """Run `iterations` Adam steps on z inside one tf.while_loop.

        Args:
            state: (z, m, v [n, z_dim]: Adam's iterate and moments; t: int32 step count;
                best_z [n, z_dim], best_loss [n]: the lowest-loss z visited so far).
            images, weights: as in `losses`, already repeated per restart.
            record_history: also return every step's losses (memory grows with
                iterations, so only callers that bound iterations ask for it).

        Returns:
            the new state, or (new state, history float32 [iterations, n]: the loss
            L_c + L_p of every candidate at the z each step started from).
        """

        def step(i, z, m, v, t, best_z, best_loss, *history):
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
            update, m, v = _adam(grad, m, v, t, learning_rate)
            z = tf.clip_by_value(z - update, -1.0, 1.0)
            history = tuple(h.write(i, total) for h in history)
            return (i + 1, z, m, v, t, best_z, best_loss, *history)

        history = ()
        if record_history:
            history = (tf.TensorArray(tf.float32, size=iterations, element_shape=tf.TensorShape([None])),)
        _, *loop = tf.while_loop(
            lambda i, *_: i < iterations, step, (tf.constant(0), *state, *history)
        )
        state = tuple(loop[:6])
        if not record_history:
            return state
        # Stacking an empty TensorArray fails; zero iterations give an empty history.
        stacked = tf.cond(
            iterations > 0, loop[6].stack, lambda: tf.zeros([0, tf.shape(state[0])[0]], tf.float32)
        )
        return state, stacked

    def candidates(self, state, images, weights, lam, refine_steps=0, refine_radius=0.0):
        """Every candidate's answer: the better of its final and best visited z, then refined.

        Args:
            state: the search state of `adam_steps`.
            images, weights: repeated per restart, [batch * restarts, ...].
            refine_steps: int32 scalar, Adam steps of `refine` (0: none, the paper's method).
            refine_radius: float32 scalar, `refine`'s ball as a fraction of ||h||.

        Returns:
            (z [n, z_dim], context_loss [n], prior_loss [n], generated [n, H, W, C] in
            [-1, 1]); with refinement, generated comes from the refined features of G at z.
        """
        z, _, _, _, best_z, best_loss = state
        context, prior, _ = self.losses(z, images, weights, lam)
        z = tf.where((context + prior < best_loss)[:, tf.newaxis], z, best_z)
        if isinstance(refine_steps, int) and refine_steps == 0:  # no refinement in the graph
            return (z, *self.losses(z, images, weights, lam))
        context, prior, generated = tf.cond(
            tf.convert_to_tensor(refine_steps, tf.int32) > 0,
            lambda: self.refine(z, images, weights, lam, refine_steps, refine_radius),
            lambda: self.losses(z, images, weights, lam))
        return z, context, prior, generated

    def refine(self, z, images, weights, lam, steps, radius):
        """Intermediate-layer optimisation: move G's features h_0 = features(z) to lower L_c + L_p.

        Adam on h within the ball ||h - h_0|| <= radius * ||h_0|| (per candidate) and
        h >= 0 (h_0 is a ReLU's output: G never sees negative features), so the completion
        stays close to what G draws. Each candidate keeps the best h it visits, h_0
        included: the loss never rises.

        Args:
            z: float32 [n, z_dim], the candidates' latents.
            images, weights, lam: as in `losses`.
            steps: int32 scalar >= 0; radius: float32 scalar >= 0.

        Returns:
            (context_loss [n], prior_loss [n], generated [n, H, W, C] in [-1, 1]).
        """
        layer = self.refine_layer
        h0 = self.generator.features(z, layer, training=False)
        axes = list(range(1, len(h0.shape)))
        bound = radius * tf.sqrt(tf.reduce_sum(tf.square(h0), axis=axes, keepdims=True))

        def answer(delta):
            """(context_loss, prior_loss, generated) of the features h0 + delta."""
            generated = self.generator.from_features(h0 + delta, layer, training=False)
            return self.image_losses(generated, images, weights, lam)

        def keep_better(found, best):
            """Per candidate, `found` where its L_c + L_p is lower than `best`'s, else `best`."""
            better = found[0] + found[1] < best[0] + best[1]
            return tuple(tf.where(tf.reshape(better, [-1] + [1] * (len(x.shape) - 1)), x, y)
                         for x, y in zip(found, best))

        def step(t, delta, m, v, best):
            with tf.GradientTape() as tape:
                tape.watch(delta)
                found = answer(delta)
                summed = tf.reduce_sum(found[0] + found[1])  # candidates are independent: one gradient call
            grad = tape.gradient(summed, delta)
            best = keep_better(found, best)  # the answers themselves: smaller than the features
            update, m, v = _adam(grad, m, v, t + 1, self.refine_learning_rate)
            delta = delta - update
            norm = tf.sqrt(tf.reduce_sum(tf.square(delta), axis=axes, keepdims=True))
            delta = delta * tf.minimum(1.0, bound / tf.maximum(norm, 1e-12))
            delta = tf.nn.relu(h0 + delta) - h0  # h0 >= 0, so this stays inside the ball
            return t + 1, delta, m, v, best

        zeros = tf.zeros_like(h0)
        never = tf.fill([tf.shape(h0)[0]], float("inf"))
        _, delta, _, _, best = tf.while_loop(
            lambda t, *_: t < steps, step, (tf.constant(0), zeros, zeros, zeros, (never, never, tf.zeros_like(images))))
        return keep_better(answer(delta), best)  # the last step's move was not yet scored

    def select_best(self, state, images, weights, lam, restarts, refine_steps=0, refine_radius=0.0):
        """Per image the best restart (of `candidates`, refined when refine_steps > 0).

        Args:
            state, images, weights, lam, refine_steps, refine_radius: as in `candidates`.

        Returns:
            dict: z [batch, z_dim], generated [batch, H, W, C] in [-1, 1],
            context_loss [batch], prior_loss [batch], best_restart int32 [batch].
        """
        z, context, prior, generated = self.candidates(state, images, weights, lam, refine_steps, refine_radius)
        best = tf.argmin(tf.reshape(context + prior, [-1, restarts]), axis=1, output_type=tf.int32)
        rows = tf.range(tf.shape(best)[0]) * restarts + best
        return {
            "z": tf.gather(z, rows),
            "generated": tf.gather(generated, rows),
            "context_loss": tf.gather(context, rows),
            "prior_loss": tf.gather(prior, rows),
            "best_restart": best,
        }

    def alternatives(self, state, images, weights, masks, lam, restarts, samples, refine_steps=0,
                     refine_radius=0.0, draw_z=None):
        """K distinct good completions per image, and the loss-weighted mean of all candidates.

        A hole usually has several right answers. The candidates (one per restart, each
        at its best visited z) are taken in order of loss; a candidate joins the K
        samples unless its hole is within DISTINCT of one already taken (mean absolute
        difference over the hole, in [-1, 1]); if fewer than K are that distinct, the
        next best fill the rest. The mean weights candidate i by exp(-(L_i - L_min) / s),
        s the spread (standard deviation) of the image's losses: an estimate of the
        posterior mean, the best single guess under squared error (what a Context
        Encoder trained with L2 predicts), blurrier than any one sample. With a DepthMix
        and draws around an encoder's guess, the mean deep in the hole leans on the draws.

        Args:
            state, images, weights, lam, restarts: as in `select_best`.
            masks: float32 [batch, H, W, 1] in {0, 1} (not repeated).
            samples: int32 scalar K, 1 <= K <= restarts.
            refine_steps, refine_radius: as in `candidates`.
            draw_z: optional float32 [batch * draws, z_dim] of `draw_z` (0 rows: none, a
                cold start), for the DepthMix of the mean.

        Returns:
            dict: samples [batch, K, H, W, C] in [-1, 1], sample_losses [batch, K]
            (L_c + L_p; the first is the best of all, as `select_best`), mean
            [batch, H, W, C] in [-1, 1]; and of the best candidate, as `select_best`:
            z [batch, z_dim], generated, context_loss, prior_loss [batch].
        """
        z, context, prior, generated = self.candidates(state, images, weights, lam, refine_steps, refine_radius)
        shape = tf.shape(generated)
        batch = shape[0] // restarts
        per_image = lambda x: tf.reshape(x, tf.concat([[batch, restarts], tf.shape(x)[1:]], 0))  # noqa: E731
        losses = per_image(context + prior)
        order = tf.argsort(losses, axis=1, stable=True)
        losses = tf.gather(losses, order, batch_dims=1)
        candidates = tf.gather(per_image(generated), order, batch_dims=1)
        best = {key: tf.gather(per_image(x), order[:, 0], batch_dims=1)
                for key, x in (("z", z), ("context_loss", context), ("prior_loss", prior))}

        # Pairwise distances over the hole: [batch, R, R].
        hole = (1.0 - masks)[:, tf.newaxis]
        flat = tf.reshape(candidates * hole, [batch, restarts, -1])
        area = tf.maximum(tf.reshape(tf.reduce_sum(hole, axis=[2, 3, 4]) * tf.cast(shape[3], tf.float32),
                                     [batch, 1, 1]), 1.0)
        distance = tf.reduce_sum(tf.abs(flat[:, :, tf.newaxis] - flat[:, tf.newaxis]), axis=-1) / area

        def pick(i, chosen):
            near = tf.reduce_any(tf.logical_and(chosen, distance[:, i] < DISTINCT), axis=1)
            room = tf.reduce_sum(tf.cast(chosen, tf.int32), axis=1) < samples
            take = tf.logical_and(room, tf.logical_not(near))
            return i + 1, tf.tensor_scatter_nd_update(
                chosen, tf.stack([tf.range(batch), tf.fill([batch], i)], axis=1), take)

        chosen = tf.zeros([batch, restarts], tf.bool)
        _, chosen = tf.while_loop(lambda i, _: i < restarts, pick, (tf.constant(0), chosen))
        # Distinct ones first, in loss order, then the rest in loss order: take the first K.
        rank = tf.argsort(tf.cast(tf.logical_not(chosen), tf.int32) * restarts + tf.range(restarts), axis=1,
                          stable=True)[:, :samples]
        spread = tf.maximum(tf.math.reduce_std(losses, axis=1, keepdims=True), 1e-6)
        weight = tf.nn.softmax(-(losses - losses[:, :1]) / spread, axis=1)
        mean = tf.einsum("br,br...->b...", weight, candidates)
        if self.mix is not None and draw_z is not None:
            mean = tf.ensure_shape(tf.cond(tf.shape(draw_z)[0] > 0, lambda: self.depth_mixed(
                mean, self.draws_mean(images[::restarts], weights[::restarts], draw_z), masks),
                lambda: mean), mean.shape)
        return {"samples": tf.gather(candidates, rank, batch_dims=1),
                "sample_losses": tf.gather(losses, rank, batch_dims=1), "mean": mean,
                "generated": candidates[:, 0], **best}

    @tf.function(reduce_retracing=True)
    def search(self, images, masks, iterations, lam, learning_rate, restarts, seed, refine_steps=0,
               refine_radius=0.0):
        """The whole latent search in one graph, for settings already checked.

        Args:
            images: float32 [batch, H, W, C] in [-1, 1] (y).
            masks: float32 [batch, H, W, 1] in {0, 1}, 1 = known (M).
            iterations, restarts, seed: int32 scalars; lam, learning_rate: float32 scalars.
            refine_steps, refine_radius: the refinement (`candidates`); 0 steps: none.

        Returns:
            dict as `select_best`.
        """
        tiled, weights, state = self.prepare(images, masks, restarts, seed)
        state = self.adam_steps(state, tiled, weights, iterations, lam, learning_rate)
        return self.select_best(state, tiled, weights, lam, restarts, refine_steps, refine_radius)


def _adam(grad, m, v, t, learning_rate):
    """One Adam update (to subtract), and the new moments; t is the int32 step count from 1."""
    m = _BETA_1 * m + (1.0 - _BETA_1) * grad
    v = _BETA_2 * v + (1.0 - _BETA_2) * tf.square(grad)
    t = tf.cast(t, tf.float32)
    m_hat = m / (1.0 - tf.pow(_BETA_1, t))
    v_hat = v / (1.0 - tf.pow(_BETA_2, t))
    return learning_rate * m_hat / (tf.sqrt(v_hat) + _EPSILON), m, v
