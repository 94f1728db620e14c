"""Image quality metrics for inpainting results: PSNR (the paper's) and SSIM.

Both compare a completed image with the uncorrupted original over the WHOLE image,
as Yeh et al. report PSNR, so known pixels (equal in both) count too. Images are
float [H, W, C] in [0, 1] (C = 1 or 3), or batches [N, H, W, C] giving one value
per image.

Identical images have PSNR = +inf. Averages go through `mean_psnr`, which caps each
value at `PSNR_CAP` dB first: a perfect completion then counts as very good rather
than turning the whole mean into inf (or being dropped, which would reward failures).
"""

import warnings

import numpy as np

from tf_semantic_inpaint.errors import InpaintError

# 100 dB is MSE 1e-10: far beyond 8-bit quantisation (about 59 dB), so only exact
# reconstructions reach the cap.
PSNR_CAP = 100.0


class MetricError(InpaintError):
    """Images cannot be compared (shape mismatch, wrong rank); the message says which."""


def _pair(prediction, target):
    """Both as float64 arrays of one shape [H, W, C] or [N, H, W, C]."""
    prediction = np.asarray(prediction, np.float64)
    target = np.asarray(target, np.float64)
    if prediction.shape != target.shape:
        raise MetricError(
            f"cannot compare images of shape {prediction.shape} and {target.shape}; "
            "resize the prediction to the original's size first."
        )
    if prediction.ndim not in (3, 4):
        raise MetricError(
            f"images must be [H, W, C] or [N, H, W, C], got shape {prediction.shape}; "
            "add a channel axis to grayscale images."
        )
    return prediction, target


def psnr(prediction, target, data_range=1.0):
    """Peak signal-to-noise ratio in dB, 10 log10(data_range^2 / MSE), per image.

    Args:
        prediction: float [H, W, C] or [N, H, W, C], values in [0, data_range].
        target: the uncorrupted original(s), same shape.
        data_range: the largest possible pixel value (1.0 for our images).

    Returns:
        A Python float for one image, float64 [N] for a batch. +inf where the
        images are identical (MSE 0); average with `mean_psnr`.
    """
    prediction, target = _pair(prediction, target)
    axes = (-3, -2, -1)
    mse = np.mean((prediction - target) ** 2, axis=axes)
    with np.errstate(divide="ignore"):  # MSE 0 -> inf is the documented answer
        values = 10.0 * np.log10(data_range**2 / mse)
    return float(values) if values.ndim == 0 else values


def mean_psnr(values, cap=PSNR_CAP):
    """Mean of per-image PSNRs in dB, each capped at `cap` so +inf stays finite.

    Args:
        values: per-image PSNRs (a sequence or array, may hold +inf).
        cap: the largest value an image contributes, in dB.

    Returns:
        A Python float (nan for no values).
    """
    values = np.asarray(values, np.float64).ravel()
    if values.size == 0:
        return float("nan")
    return float(np.mean(np.minimum(values, cap)))


def ssim(prediction, target):
    """Structural similarity (Wang et al. 2004) per image, via scikit-image.

    scikit-image's defaults: a uniform 7x7 window (shrunk to the largest odd size
    that fits images smaller than 7 pixels), data_range 1, colour channels averaged.

    Args:
        prediction: float [H, W, C] or [N, H, W, C] in [0, 1], C = 1 or 3.
        target: the uncorrupted original(s), same shape.

    Returns:
        A Python float in [-1, 1] (1 = identical) for one image, float64 [N] for a batch.
    """
    try:
        from skimage.metrics import structural_similarity
    except ImportError as error:  # scikit-image is an optional dependency
        raise MetricError(
            "SSIM needs scikit-image: `pip install scikit-image` "
            "(or `pip install tf-semantic-inpaint[evaluate]`)."
        ) from error
    prediction, target = _pair(prediction, target)
    side = min(prediction.shape[-3:-1])
    if side < 3:
        raise MetricError(f"SSIM needs images of at least 3x3 pixels, got {side} on a side.")
    win_size = min(7, side if side % 2 else side - 1)

    def one(p, t):
        return float(structural_similarity(
            p, t, data_range=1.0, channel_axis=-1, win_size=win_size
        ))

    if prediction.ndim == 3:
        return one(prediction, target)
    return np.array([one(p, t) for p, t in zip(prediction, target)])


# --- Semantic metrics (on a judge's outputs; see judge.py) ------------------------


def semantic_accuracy(logits, labels):
    """The share of images whose highest logit is their true class, a float in [0, 1].

    Args:
        logits: float [N, classes], a classifier's (the judge's) outputs.
        labels: int [N], the true classes.
    """
    logits, labels = np.asarray(logits), np.asarray(labels)
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise MetricError(f"need logits [N, classes] and labels [N], got {logits.shape} and {labels.shape}.")
    if labels.size == 0:
        return float("nan")
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def frechet_distance(features, reference):
    """The Fréchet distance between Gaussians fitted to two sets of features.

    d² = |μ₁ − μ₂|² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½), FID's formula (Heusel et al., 2017)
    applied to whatever features are given; evaluate gives it the judge's penultimate
    features, so its values are NOT comparable with Inception FID.

    The estimate is biased upwards by finite samples, roughly in proportion to 1/n
    (Chong and Forsyth, 2020): two samples of the same distribution do not give 0.
    Compare values only at the same n and against the same reference set.

    Args:
        features: float [N1, d], N1 >= 2.
        reference: float [N2, d], N2 >= 2.

    Returns:
        A Python float >= 0 (squared distance units of the features).
    """
    import scipy.linalg

    a, b = np.asarray(features, np.float64), np.asarray(reference, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise MetricError(f"need feature matrices [N, d] of one width, got {a.shape} and {b.shape}.")
    if len(a) < 2 or len(b) < 2:
        raise MetricError("a Fréchet distance needs at least two feature vectors on each side.")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", scipy.linalg.LinAlgWarning)
        try:
            root = scipy.linalg.sqrtm(cov_a @ cov_b)
            singular = not np.all(np.isfinite(root))
        except scipy.linalg.LinAlgWarning:
            singular = True
    if singular:
        # Singular covariances (fewer samples than dimensions): offset both, as FID's code does.
        offset = np.eye(len(cov_a)) * 1e-6
        root = scipy.linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    # sqrtm of a product of PSD matrices has real eigenvalues; drop round-off imaginary parts.
    distance = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(root.real)
    return float(max(distance, 0.0))
