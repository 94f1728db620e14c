"""The SavedModel contract shared by the exporter and every client: per-request search
settings, the limits every request is held to, and TF Serving's folder layout.

Pure Python (no TensorFlow), so REST clients import it. The exported graph checks the
same limits itself, before it allocates anything (export.py), so TF Serving,
`saved_model_cli run` and `tfinpaint serve` all refuse an oversized request with the
same message; `SearchSettings.check` lets a client fail before sending.
"""

import dataclasses
import math
import os
import re

from tf_semantic_inpaint.errors import InpaintError


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """What a caller may change per request (the `inpaint_with_options` inputs; the first
    five are also `inpaint_with_settings`'s).

    Defaults measured on 32 Fashion-MNIST VALIDATION images x the four masks with the
    first shipped model (benchmarks/search_defaults.py -> results/search_defaults.json),
    as mean PSNR of the blended completion over the four masks, one setting varied at a
    time from 400 steps, 2 restarts, lr 0.03, λ 0.003.
    """

    # PSNR peaks at 200-300 steps (center 22.07 dB at 300), then slowly falls as G(z)
    # over-fits the context (21.33 dB at 1500).
    iterations: int = 300
    restarts: int = 4  # 1 / 2 / 4 / 8: 19.78 / 20.39 / 20.48 / 20.61 dB (8 costs twice 4)
    learning_rate: float = 0.03  # 0.01 / 0.03 / 0.1: 20.27 / 20.39 / 20.41 dB
    lam: float = 0.003  # the paper's λ; 0 / 0.003 / 0.03 / 0.3: 20.36 / 20.39 / 20.52 / 19.68 dB
    seed: int = 0
    samples: int = 1  # K distinct completions returned per image (1 <= K <= restarts)
    # The paper's N(i) is 7x7; weights then cover only a 3-pixel band around the hole,
    # too little context for half-image holes: 3 / 7 / 15 / 27 gave 19.88 / 20.39 / 20.61 /
    # 20.61 dB overall and 15.40 / 16.09 / 17.02 / 17.32 dB on half masks.
    window: int = 15
    warm_start: bool = False  # start from the model's encoder E(y ⊙ M, M) (models that have one)
    # After the search, Adam steps on G's features within a ball of this radius (relative
    # to their norm) around G's own: search.LatentSearch.refine. 0 steps: none (the paper).
    refine_steps: int = 0
    refine_radius: float = 0.1

    def check(self, limits=None, batch=1):
        """Raise InpaintError naming the first setting out of range (or over `limits`)."""
        for name in ("iterations", "restarts", "seed", "samples", "window", "refine_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not INT32[0] <= value <= INT32[1]:
                raise InpaintError(f"{name} must be a 32-bit integer, got {value!r}.")
        for name in ("learning_rate", "lam", "refine_radius"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InpaintError(f"{name} must be a finite number, got {value!r}.")
        if self.iterations < 0:
            raise InpaintError(f"iterations must be >= 0, got {self.iterations}.")
        if self.restarts < 1:
            raise InpaintError(f"restarts must be >= 1, got {self.restarts}.")
        if self.learning_rate <= 0:
            raise InpaintError(f"learning_rate must be > 0, got {self.learning_rate}.")
        if self.lam < 0:
            raise InpaintError(f"lam (λ) must be >= 0, got {self.lam}.")
        if self.refine_steps < 0:
            raise InpaintError(f"refine_steps must be >= 0, got {self.refine_steps}.")
        if self.refine_radius < 0:
            raise InpaintError(f"refine_radius must be >= 0, got {self.refine_radius}.")
        if not 1 <= self.samples <= self.restarts:
            raise InpaintError(f"samples must be in 1..restarts ({self.restarts}), got {self.samples}; "
                               "each sample comes from its own restart.")
        if self.window < 1 or self.window % 2 == 0:
            raise InpaintError(f"window must be an odd number >= 1 (the paper's is 7), got {self.window}.")
        if not isinstance(self.warm_start, bool):
            raise InpaintError(f"warm_start must be true or false, got {self.warm_start!r}.")
        if limits is not None:
            for message in limits.violations(batch, self.restarts, self.iterations, self.window, self.refine_steps):
                raise InpaintError(message)
        return self


# The paper's own search (Yeh et al., 2017, section 4): 7x7 window, λ = 0.003, 1500
# iterations from one random start, no refinement. Its learning rate is not stated: ours.
PAPER = SearchSettings(iterations=1500, restarts=1, lam=0.003, window=7, warm_start=False, refine_steps=0)


INT32 = (-(2**31), 2**31 - 1)


@dataclasses.dataclass(frozen=True)
class Limits:
    """The most one request may ask of an exported model; refused beyond, before any work.

    Attributes:
        max_iterations: Adam steps of the search, and of the refinement (the paper's 1500 fit).
        max_restarts: random starts per image.
        max_batch: images per request.
        max_candidates: batch x restarts, the search's real batch; memory grows with it
            (about 0.2 MB per candidate at 28x28).
        max_candidate_steps: batch x restarts x (iterations + refine_steps), the search's work.
        max_image_pixels: width x height of one PNG of `inpaint_png`, read from its
            header before decoding (a 20000x20000 PNG is a 400 KB file but 4.8 GB decoded).
        max_request_pixels: the pixels of all PNGs of one request together.
        max_window: the importance weights' window (any larger sees the whole image).
    """

    max_iterations: int = 3000
    max_restarts: int = 64
    max_batch: int = 256
    max_candidates: int = 1024
    max_candidate_steps: int = 131072
    max_image_pixels: int = 4096 * 4096
    max_request_pixels: int = 4 * 4096 * 4096
    max_window: int = 255

    @classmethod
    def for_resolution(cls, resolution):
        """Defaults scaled to the model's size: candidates and work shrink as 1 / pixels.

        28x28: 1337 candidates and 171,196 candidate-steps (about a minute at batch 64
        with 4 restarts on 2 cores); 64x64: 256 and 32,768.
        """
        pixels = resolution * resolution
        return cls(max_candidates=max(1, 2**20 // pixels), max_candidate_steps=max(1, 2**27 // pixels),
                   max_window=2 * resolution + 1)

    def violations(self, batch, restarts, iterations, window=1, refine_steps=0):
        """Messages for every limit (batch, restarts, iterations, window, refine_steps) a request
        would break."""
        found = []
        for name, value, limit in (("iterations", iterations, self.max_iterations),
                                   ("refine_steps", refine_steps, self.max_iterations),
                                   ("restarts", restarts, self.max_restarts),
                                   ("batch", batch, self.max_batch),
                                   ("window", window, self.max_window)):
            if value > limit:
                found.append(over_limit(name, value, limit))
        if batch * restarts > self.max_candidates:
            found.append(over_limit("batch x restarts", batch * restarts, self.max_candidates))
        steps = iterations + refine_steps
        if batch * restarts * steps > self.max_candidate_steps:
            found.append(over_limit("batch x restarts x " + ("(iterations + refine_steps)" if refine_steps else
                                                             "iterations"), batch * restarts * steps,
                                    self.max_candidate_steps))
        return found


def before_refinement(model):
    """The one wording of a refinement asked of an export from before it (`model` names it)."""
    return (f"{model} was exported before the refinement existed: ask for refine_steps = 0, or export it "
            "again (`tfinpaint export` takes its folder).")


def over_limit(name, value, limit):
    """The one wording of a refused request, also used inside the exported graph."""
    # No quotes: TensorFlow escapes them in an Assert's message.
    return (f"{name} = {value} is over the limit of {limit} of this model (listed in its "
            "model_card.json and its limits signature); ask for less or split the request.")


# --- TF Serving's folder layout: BASE/<integer version>/saved_model.pb ---------------


def versions(base):
    """The integer versions in a model base holding a saved_model.pb, ascending."""
    if not os.path.isdir(base):
        return []
    return sorted(int(d) for d in os.listdir(base)
                  if re.fullmatch(r"\d+", d) and os.path.isfile(os.path.join(base, d, "saved_model.pb")))


def resolve_model_dir(path):
    """A SavedModel directory: `path` itself, or the newest integer version under it."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    found = versions(path)
    if not found:
        raise InpaintError(
            f"{path} is not a SavedModel (no saved_model.pb in it or in a numbered version "
            "folder); pass a directory written by `tfinpaint export`."
        )
    return os.path.join(path, str(found[-1]))
