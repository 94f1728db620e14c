"""Putting G(z*) into the hole: the plain composite and Poisson blending (the paper's last step).

The composite M ⊙ y + (1 - M) ⊙ G(z*) keeps the known pixels but shows a seam where
G(z*)'s colours differ from y's. Poisson blending (Pérez et al., 2003) instead fills the
hole Ω = {M == 0} with the f whose gradients are G(z*)'s and whose values meet y at the
hole's boundary:

    for p in Ω, N_p = the 4-neighbours of p inside the image,
    |N_p| f_p - Σ_{q ∈ N_p ∩ Ω} f_q = Σ_{q ∈ N_p ∖ Ω} y_q + Σ_{q ∈ N_p} (g_p - g_q).

Neighbours outside the image are dropped (a zero-gradient, Neumann border), so holes
that touch the border are fine. NumPy/SciPy only, no TensorFlow.
"""

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from tf_semantic_inpaint.errors import InpaintError

# Neighbour offsets (row, column) of the 4-neighbourhood.
NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


class BlendError(InpaintError):
    """The image and mask cannot be blended; the message says why and what to pass instead."""


def composite(image, generated, mask):
    """M ⊙ y + (1 - M) ⊙ G(z): known pixels from the image, the rest from G.

    Args:
        image: y, float [H, W, C] in [0, 1].
        generated: G(z), float [H, W, C] in [0, 1], already at the image's size.
        mask: M, float [H, W, 1] or [H, W], 1 = known, 0 = missing.

    Returns:
        float32 [H, W, C]; for a binary M the known pixels equal the image's exactly.
    """
    image, generated, mask = _checked(image, generated, mask)
    return (mask * image + (1.0 - mask) * generated).astype(np.float32)


def poisson_blend(image, generated, mask):
    """Poisson blending of G(z*) into the hole of y, all channels at once.

    Solves the equation in the module docstring in float64 with one sparse LU
    factorisation per mask, shared by the channels. The pixels of y inside the hole are
    never read.

    Args:
        image: y, float [H, W, C] in [0, 1]; its known pixels are kept.
        generated: g = G(z*), float [H, W, C], already resized to the image's size.
        mask: M, float [H, W, 1] or [H, W], 1 = known; the hole Ω is where M == 0.

    Returns:
        float32 [H, W, C]: the known pixels bit for bit as in image.astype(float32),
        the hole filled and clipped to [0, 1]. With no missing pixel, a copy of the image.

    Raises:
        BlendError: every pixel is missing (there is no context to blend into).
        ValueError: the shapes of image, generated and mask disagree.
    """
    image, generated, mask = _checked(image, generated, mask)
    hole = mask[..., 0] == 0
    blended = image.copy()
    if not hole.any():
        return blended
    if hole.all():
        raise BlendError(
            "every pixel of the mask is missing, so there is no context to blend into; "
            "pass a mask with known pixels (1 = known) or use the composite."
        )
    height, width, _ = image.shape
    rows, cols = np.nonzero(hole)
    n = rows.size
    index = np.full((height, width), -1, np.int32)
    index[rows, cols] = np.arange(n)
    g_p = generated[rows, cols].astype(np.float64)

    # One pass per direction gathers |N_p|, the couplings inside Ω and the right-hand side.
    degree = np.zeros(n)
    rhs = np.zeros((n, image.shape[-1]))
    coupled_p, coupled_q = [], []
    for dr, dc in NEIGHBOURS:
        q_rows, q_cols = rows + dr, cols + dc
        inside = (q_rows >= 0) & (q_rows < height) & (q_cols >= 0) & (q_cols < width)
        p = np.nonzero(inside)[0]
        q_rows, q_cols = q_rows[inside], q_cols[inside]
        degree[p] += 1
        rhs[p] += g_p[p] - generated[q_rows, q_cols]
        q = index[q_rows, q_cols]
        in_hole = q >= 0
        coupled_p.append(p[in_hole])
        coupled_q.append(q[in_hole])
        rhs[p[~in_hole]] += image[q_rows[~in_hole], q_cols[~in_hole]]
    diagonal = np.arange(n)
    coupled_p = np.concatenate(coupled_p)
    system = scipy.sparse.csc_matrix(
        (
            np.concatenate([degree, np.full(coupled_p.size, -1.0)]),
            (np.concatenate([diagonal, coupled_p]), np.concatenate([diagonal, *coupled_q])),
        ),
        shape=(n, n),
    )
    # Every part of Ω borders a known pixel, so the system is symmetric positive definite:
    # LU without pivoting on a symmetric ordering is stable and the fastest SuperLU mode.
    lu = scipy.sparse.linalg.splu(
        system, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True}
    )
    solution = lu.solve(rhs)
    blended[rows, cols] = np.clip(solution, 0.0, 1.0)
    return blended


def _checked(image, generated, mask):
    """float32 image [H, W, C], generated [H, W, C], mask [H, W, 1]; ValueError on a mismatch."""
    image = np.asarray(image, np.float32)
    generated = np.asarray(generated, np.float32)
    mask = np.asarray(mask, np.float32)
    if image.ndim != 3:
        raise ValueError(f"image must be [H, W, C], got shape {image.shape}.")
    if generated.shape != image.shape:
        raise ValueError(
            f"generated has shape {generated.shape} but image has shape {image.shape}; "
            "resize G(z*) to the image first."
        )
    if mask.shape not in (image.shape[:2], image.shape[:2] + (1,)):
        raise ValueError(
            f"mask has shape {mask.shape} but image has shape {image.shape}; "
            "a mask is [H, W, 1] or [H, W] at the image's size."
        )
    return image, generated, mask.reshape(image.shape[:2] + (1,))
