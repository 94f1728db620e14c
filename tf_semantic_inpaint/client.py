"""A client of TF Serving's REST API for an exported model (`RestModel`). No TensorFlow.

Production serving is the `tensorflow/serving` program on the model base that
`tfinpaint export` writes (see README, Serving); `tfinpaint serve` answers the same
API for development. `RestModel` is a drop-in for `local.LocalModel`:

    model = RestModel("http://localhost:8501", "fashion_mnist")
    result = inpaint.inpaint(image, mask, model=model)

It imports only the standard library, NumPy and the package's TensorFlow-free
modules, so an application that calls a served model needs no TensorFlow.
"""

import base64
import dataclasses
import json
import re
import socket
import urllib.error
import urllib.request

import numpy as np

from tf_semantic_inpaint.contract import Limits, SearchSettings, before_refinement
from tf_semantic_inpaint.errors import InpaintError

DEFAULT_TIMEOUT = 60.0  # seconds; TF Serving's own REST timeout is 30 s


class ServingError(InpaintError):
    """The server is unreachable, too slow, or answered with an error; worth a retry or a fix."""


def _base_url(server):
    """'localhost:8501' or 'http://host:port/' -> 'http://host:port'."""
    server = server.strip().rstrip("/")
    return server if re.match(r"^https?://", server) else "http://" + server


def model_url(server, model_name, version=None):
    """The REST URL of a model (or one version of it), without a verb."""
    url = f"{_base_url(server)}/v1/models/{model_name}"
    return url if version is None else f"{url}/versions/{int(version)}"


def request_json(url, payload=None, timeout=DEFAULT_TIMEOUT):
    """GET (payload None) or POST JSON to `url`; the decoded JSON answer.

    Raises ServingError for an unreachable server, a timeout, an HTTP error (with the
    server's {"error": ...} message) or an answer that is not JSON.
    """
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            message = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            message = body.decode("utf-8", "replace").strip()[:300] or error.reason
        raise ServingError(f"{url} answered HTTP {error.code}: {message}") from None
    except TimeoutError:
        raise _timeout_error(url, timeout) from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, (TimeoutError, socket.timeout)):
            raise _timeout_error(url, timeout) from None
        raise ServingError(
            f"the server is not reachable at {url} ({error.reason}); start it with "
            "`tfinpaint serve MODEL_BASE` or TF Serving (docker run ... tensorflow/serving)."
        ) from None
    except (ConnectionError, OSError) as error:
        raise ServingError(f"the connection to {url} broke ({error}); is it a TF Serving REST port?") from None
    try:
        return json.loads(body)
    except ValueError:
        raise ServingError(f"{url} did not answer JSON; is it a TF Serving REST port (default 8501)?") from None


def _timeout_error(url, timeout):
    return ServingError(
        f"no answer from {url} within the timeout of {timeout:g} s; pass a larger --timeout "
        "or fewer --iterations / --restarts."
    )


def _dims(tensor_info):
    """Dimension sizes of a metadata tensor entry as ints (-1 unknown); sizes may be strings."""
    return [int(d.get("size", -1)) for d in tensor_info.get("tensor_shape", {}).get("dim", [])]


class RestModel:
    """An exported model behind a TF Serving REST endpoint; a drop-in for LocalModel.

    Args:
        server: base URL of TF Serving or `tfinpaint serve`, e.g. "http://localhost:8501".
        model_name: the model's name there (TF Serving's MODEL_NAME; for
            `tfinpaint serve` the base directory's name).
        version: an integer version, or None for the newest.
        timeout: seconds to wait for each answer.

    Attributes:
        resolution, channels, z_dim: from the model's metadata.
        defaults, limits: from the model's `limits` signature; None behind a server that
            batches requests (it cannot run that signature, nor per-request settings).
    """

    def __init__(self, server, model_name, version=None, timeout=DEFAULT_TIMEOUT):
        self.server = _base_url(server)
        self.model_name = model_name
        self.timeout = timeout
        self.url = model_url(self.server, model_name, version)
        metadata = request_json(self.url + "/metadata", timeout=timeout)
        try:
            signatures = metadata["metadata"]["signature_def"]["signature_def"]
        except (KeyError, TypeError):
            raise ServingError(f"{self.url}/metadata is not TF Serving model metadata.") from None
        wanted = {"inpaint", "inpaint_with_options", "inpaint_png", "inpaint_png_with_options", "limits"}
        if not wanted <= set(signatures):
            raise ServingError(
                f"model {model_name!r} at {self.server} is not a current tf-semantic-inpaint export "
                f"(it lacks {', '.join(sorted(wanted - set(signatures)))}); export it with `tfinpaint export`."
            )
        _, self.resolution, _, self.channels = _dims(signatures["inpaint"]["inputs"]["images"])
        self.z_dim = _dims(signatures["inpaint"]["outputs"]["z"])[-1]
        try:
            values = self._predict("limits", {})
        except ServingError as error:
            if "HTTP 400" not in str(error):
                raise
            # A server that batches (TF Serving's --enable_batching) cannot run the limits
            # signature: the model's own settings still apply, through inpaint / inpaint_png.
            self.defaults = self.limits = None
        else:
            # An export from before the refinement has no refine_* defaults (and no refinement).
            self.defaults = SearchSettings(**{k: _scalar(values[f"default_{k}"], SearchSettings, k)
                                              for k in SearchSettings.__dataclass_fields__
                                              if f"default_{k}" in values})
            self.limits = Limits(**{k: int(values[k]) for k in Limits.__dataclass_fields__})
        self.refinement = "inpaint_with_refinement" in signatures

    def _predict(self, signature, inputs):
        answer = request_json(self.url + ":predict", {"signature_name": signature, "inputs": inputs}, self.timeout)
        outputs = answer.get("outputs") if isinstance(answer, dict) else None
        if not isinstance(outputs, dict):
            raise ServingError(f"{self.url}:predict answered without the outputs of {signature!r}.")
        return outputs

    def _call(self, signature, inputs, settings, batch, progress):
        """POST to `signature` (or its _with_refinement / _with_options twin when settings are given)."""
        if settings is not None:
            settings.check(self.limits, batch)  # fail here rather than after the upload
            # Per-request scalars: only the columnar ("inputs") format carries them.
            fields = {**dataclasses.asdict(settings), "warm_start": int(settings.warm_start)}
            if self.refinement:
                signature += "_with_refinement"
            elif settings.refine_steps:
                raise ServingError(before_refinement(f"model {self.model_name!r}"))
            else:
                signature += "_with_options"
                fields = {k: v for k, v in fields.items() if not k.startswith("refine_")}
            inputs = {**inputs, **fields}
        outputs = self._predict(signature, inputs)
        known = settings or self.defaults
        if progress is not None and known is not None:  # one request cannot report steps: once, at the end
            progress(known.iterations, known.iterations, None)
        return outputs

    def search(self, images, masks, settings=None, progress=None):
        """The search on arrays at the model's size; as LocalModel.search.

        settings None uses the model's own defaults (the `inpaint` signature);
        progress is called once, at the end, with losses None.
        """
        images, masks = np.asarray(images, np.float32), np.asarray(masks, np.float32)
        outputs = self._call("inpaint", {"images": images.tolist(), "masks": masks.tolist()}, settings,
                             len(images), progress)
        result = {key: np.asarray(value, np.float32) for key, value in outputs.items()}
        if "samples" not in result:  # `inpaint` answers the best sample only: K = 1
            result["samples"] = result["generated"][:, np.newaxis]
            result["sample_losses"] = (result["context_loss"] + result["prior_loss"])[:, np.newaxis]
        return result

    def inpaint_png(self, image_pngs, mask_pngs, settings=None, progress=None):
        """The search on PNGs of any size; as LocalModel.inpaint_png."""
        b64 = lambda data: {"b64": base64.b64encode(data).decode("ascii")}  # noqa: E731
        inputs = {"image_png": [b64(p) for p in image_pngs], "mask_png": [b64(p) for p in mask_pngs]}
        outputs = self._call("inpaint_png", inputs, settings, len(image_pngs), progress)
        decode = lambda item: base64.b64decode(item["b64"])  # noqa: E731
        result = {}
        for key, value in outputs.items():
            if key == "samples_png_bytes":
                result["samples_png"] = [[decode(item) for item in row] for row in value]
            elif key.endswith("_png_bytes"):
                result[key.replace("_png_bytes", "_png")] = [decode(item) for item in value]
            else:
                result[key] = np.asarray(value, np.float32)
        if "samples_png" not in result:  # `inpaint_png` answers the best sample only: K = 1
            result["samples_png"] = [[png] for png in result["generated_png"]]
            result["sample_losses"] = (result["context_loss"] + result["prior_loss"])[:, np.newaxis]
        return result


def _scalar(value, cls, name):
    """A JSON number as the type of `cls`'s field `name`."""
    kind = cls.__dataclass_fields__[name].type
    if kind in (bool, "bool"):
        return bool(value)
    return int(value) if kind in (int, "int") else float(value)
