"""TF Serving's REST API: a client (`RestModel`) and a development server (`serve`).

Production serving is the `tensorflow/serving` program; it loads the model base
written by `tfinpaint export` unchanged:

    docker run -p 8501:8501 \\
        --mount type=bind,source=$PWD/saved_models/fashion_mnist,target=/models/fashion_mnist \\
        -e MODEL_NAME=fashion_mnist -t tensorflow/serving

The server here (`serve`, `make_server`) is for development without Docker: it
answers the same REST API (status, metadata, predict; row and columnar formats;
{"b64": ...} binary values) for the newest version of one model base, from the
same SavedModel, with the standard library's http.server. It is not a production
server: one process, no batching, no model reloading, no gRPC.

    curl http://localhost:8501/v1/models/fashion_mnist/metadata
    curl -d '{"signature_name": "inpaint_png", "inputs": {
               "image_png": [{"b64": "'$(base64 -w0 shirt.png)'"}],
               "mask_png": [{"b64": "'$(base64 -w0 mask.png)'"}]}}' \\
        http://localhost:8501/v1/models/fashion_mnist:predict
    # -> {"outputs": {"completed_png_bytes": [{"b64": ...}], "generated_png_bytes": [...]}}

`RestModel` talks to either server and is a drop-in for `inpaint.LocalModel`:

    model = RestModel("http://localhost:8501", "fashion_mnist")
    results = inpaint.inpaint_batch(images, masks, model=model)
"""

import base64
import binascii
import http.client
import http.server
import json
import os
import re
import socket
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request

import numpy as np

from tf_semantic_inpaint.errors import InpaintError
from tf_semantic_inpaint.search import SearchSettings

DEFAULT_PORT = 8501  # TF Serving's REST port
DEFAULT_TIMEOUT = 60.0  # seconds; TF Serving's own REST timeout is 30 s
DEFAULT_MAX_BODY_BYTES = 32 * 2**20  # 64 images at 64x64x3 with masks are about 21 MiB of JSON
DOCKER_COMMAND = (
    "docker run -p 8501:8501 --mount type=bind,source=$PWD/saved_models/fashion_mnist,"
    "target=/models/fashion_mnist -e MODEL_NAME=fashion_mnist -t tensorflow/serving"
)


class ServingError(InpaintError):
    """The server is unreachable, too slow, or answered with an error."""


# --- The client --------------------------------------------------------------------


def _base_url(server):
    """'localhost:8501' or 'http://host:port/' -> 'http://host:port'."""
    server = server.strip().rstrip("/")
    return server if re.match(r"^https?://", server) else "http://" + server


def model_url(server, model_name, version=None):
    """The REST URL of a model (or one version of it), without a verb."""
    url = f"{_base_url(server)}/v1/models/{model_name}"
    return url if version is None else f"{url}/versions/{int(version)}"


def _request(url, payload=None, timeout=DEFAULT_TIMEOUT):
    """GET (payload None) or POST JSON to `url`; the decoded JSON answer.

    Raises ServingError for an unreachable server, a timeout, an HTTP error
    (with the server's {"error": ...} message) or an answer that is not JSON.
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
        raise _unreachable_error(url, error.reason) from None
    except (ConnectionError, http.client.HTTPException) as error:
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


def _unreachable_error(url, reason):
    return ServingError(
        f"the server is not reachable at {url} ({reason}); start it with "
        "`tfinpaint serve MODEL_BASE` or TF Serving (docker run ... tensorflow/serving)."
    )


def predict(server, model_name, payload, version=None, timeout=DEFAULT_TIMEOUT):
    """POST `payload` (a TF Serving predict request, a dict) and return the JSON answer.

    Args:
        server: base URL, e.g. "http://localhost:8501" (the scheme may be left out).
        model_name: the model's name on the server.
        payload: {"signature_name": ..., "instances": [...]} or {..., "inputs": {...}}.
        version: an integer version, or None for the newest.
        timeout: seconds to wait for the answer.

    Returns:
        the decoded answer: {"predictions": ...} or {"outputs": ...}.
    """
    return _request(model_url(server, model_name, version) + ":predict", payload, timeout)


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
        resolution, channels, z_dim: read from the model's metadata.
        defaults: `SearchSettings()`, the library defaults. TF Serving's metadata
            does not carry the search settings baked in at export, so these may
            differ from the model's own; `search(settings=None)` uses the model's own.
    """

    def __init__(self, server, model_name, version=None, timeout=DEFAULT_TIMEOUT):
        self.server = _base_url(server)
        self.model_name = model_name
        self.version = version
        self.timeout = timeout
        self.url = model_url(self.server, model_name, version)
        metadata = _request(self.url + "/metadata", timeout=timeout)
        try:
            signatures = metadata["metadata"]["signature_def"]["signature_def"]
        except (KeyError, TypeError):
            raise ServingError(f"{self.url}/metadata is not TF Serving model metadata.") from None
        if not {"inpaint", "inpaint_with_settings", "generate"} <= set(signatures):
            raise ServingError(
                f"model {model_name!r} at {self.server} is not a tf-semantic-inpaint export "
                "(no inpaint / inpaint_with_settings / generate signatures); export one with "
                "`tfinpaint export`."
            )
        _, self.resolution, _, self.channels = _dims(signatures["inpaint"]["inputs"]["images"])
        self.z_dim = _dims(signatures["generate"]["inputs"]["z"])[-1]
        self.defaults = SearchSettings()

    def search(self, images, masks, settings=None, progress=None):
        """The latent search on the server, at the model's resolution.

        Args:
            images: float32 [b, R, R, C] in [0, 1].
            masks: float32 [b, R, R, 1], 1 = known.
            settings: SearchSettings, sent to the `inpaint_with_settings` signature;
                None calls `inpaint`, i.e. the settings baked into the model at export.
                `window` and `prior` are fixed at export and are not sent.
            progress: optional callable(done, total); one request cannot report
                steps, so it is called once, at the end, and only when settings are given.

        Returns:
            dict of NumPy arrays: completed and generated [b, R, R, C] float32 in
            [0, 1], z [b, z_dim], context_loss [b], prior_loss [b]. (No history or
            best_restart: the signatures do not return them.)
        """
        inputs = {
            "images": np.asarray(images, np.float32).tolist(),
            "masks": np.asarray(masks, np.float32).tolist(),
        }
        if settings is None:
            signature = "inpaint"
        else:
            signature = "inpaint_with_settings"
            # Per-request scalars: only the columnar ("inputs") format carries them.
            inputs.update(
                iterations=int(settings.iterations), lam=float(settings.lam),
                learning_rate=float(settings.learning_rate), restarts=int(settings.restarts),
                seed=int(settings.seed),
            )
        answer = _request(self.url + ":predict", {"signature_name": signature, "inputs": inputs},
                          self.timeout)
        outputs = answer.get("outputs") if isinstance(answer, dict) else None
        if not isinstance(outputs, dict) or not {"generated", "z"} <= set(outputs):
            raise ServingError(f"{self.url}:predict answered without the outputs of {signature!r}.")
        if progress is not None and settings is not None:
            progress(settings.iterations, settings.iterations)
        return {name: np.asarray(value, np.float32) for name, value in outputs.items()}


# --- The development server -----------------------------------------------------------

# /v1/models/NAME[/versions/N][/metadata|:predict|...], TF Serving's REST paths.
_ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
    r"(?P<verb>/metadata|:predict|:classify|:regress)?$"
)
_TF_ERROR_NOISE = re.compile(
    r"^(Graph execution error:|Detected at node .*|<stack traces unavailable>|\s*\[\[\{\{node .*)$"
)


class RequestError(Exception):
    """A request the server refuses: HTTP `status` and a one-line message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def _short_tf_message(error):
    """The useful line(s) of a TensorFlow error, without node names and op ids."""
    text = getattr(error, "message", None) or str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not _TF_ERROR_NOISE.match(line)]
    message = re.sub(r"\s*\[Op:[^\]]*\]", "", " ".join(lines)).strip()
    return message[:500]


def _newest_version(model_base):
    """(version, path) of the newest integer version folder holding a saved_model.pb."""
    if os.path.isfile(os.path.join(model_base, "saved_model.pb")):
        raise InpaintError(
            f"{model_base} is a single SavedModel; serve its parent model base (TF Serving's "
            "layout BASE/<version>/saved_model.pb), e.g. the folder given to `tfinpaint export`."
        )
    found = []
    if os.path.isdir(model_base):
        found = sorted(int(d) for d in os.listdir(model_base)
                       if re.fullmatch(r"\d+", d)
                       and os.path.isfile(os.path.join(model_base, d, "saved_model.pb")))
    if not found:
        raise InpaintError(
            f"{model_base} holds no version folder with a saved_model.pb (TF Serving's layout "
            "BASE/<version>/); pass a directory written by `tfinpaint export`."
        )
    return found[-1], os.path.join(model_base, str(found[-1]))


class ServedModel:
    """One version of a SavedModel and the TF Serving REST semantics of its signatures.

    Args:
        name: the model name in URLs.
        version: its integer version.
        path: the SavedModel directory.
    """

    def __init__(self, name, version, path):
        import tensorflow as tf
        from google.protobuf import json_format
        from tensorflow.core.protobuf import saved_model_pb2

        self.name, self.version, self.path = name, version, path
        try:
            self.loaded = tf.saved_model.load(path)
        except (OSError, ValueError, tf.errors.OpError) as error:
            raise InpaintError(f"cannot load the SavedModel in {path}: {error}") from None
        self.signatures = dict(self.loaded.signatures)
        # The metadata is the SignatureDef protos as JSON, exactly what TF Serving sends.
        proto = saved_model_pb2.SavedModel()
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            proto.ParseFromString(f.read())
        graph = next((g for g in proto.meta_graphs if "serve" in g.meta_info_def.tags), proto.meta_graphs[0])
        self.signature_defs = {
            key: json_format.MessageToDict(value, always_print_fields_with_no_presence=True,
                                           preserving_proto_field_name=True)
            for key, value in graph.signature_def.items()
        }

    def status(self):
        """TF Serving's GetModelStatusResponse JSON."""
        return {"model_version_status": [{
            "version": str(self.version), "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        }]}

    def metadata(self):
        """TF Serving's GetModelMetadataResponse JSON."""
        return {
            "model_spec": {"name": self.name, "signature_name": "", "version": str(self.version)},
            "metadata": {"signature_def": {
                "signature_def": self.signature_defs,
                "@type": "type.googleapis.com/tensorflow.serving.SignatureDefMap",
            }},
        }

    def predict(self, request):
        """Answer a decoded predict request body (a dict); the answer as a JSON-ready dict.

        Raises RequestError (400 bad input, 404 unknown signature).
        """
        import tensorflow as tf

        if not isinstance(request, dict):
            raise RequestError(400, "the request body must be a JSON object with \"instances\" or \"inputs\".")
        name = request.get("signature_name") or "serving_default"
        if name not in self.signatures:
            raise RequestError(404, f"serving signature name {name!r} not found; this model has "
                                    f"{', '.join(sorted(self.signatures))}.")
        function = self.signatures[name]
        specs = function.structured_input_signature[1]
        if ("instances" in request) == ("inputs" in request):
            raise RequestError(400, "the request must have exactly one of \"instances\" (row format) "
                                    "and \"inputs\" (columnar format).")
        row = "instances" in request
        values = self._rows_to_columns(request["instances"], specs) if row else self._columns(request["inputs"], specs)
        tensors = {key: self._tensor(key, values[key], specs[key], name) for key in specs}
        try:
            outputs = function(**tensors)
        except tf.errors.InvalidArgumentError as error:
            raise RequestError(400, _short_tf_message(error)) from None
        except (TypeError, ValueError) as error:
            raise RequestError(400, str(error).splitlines()[0][:500]) from None
        outputs = {key: value.numpy() for key, value in outputs.items()}
        return {"predictions": self._to_rows(outputs)} if row else {"outputs": self._to_columns(outputs)}

    @staticmethod
    def _rows_to_columns(instances, specs):
        """Row format: a list of per-instance objects (or bare values for one input) -> columns."""
        if not isinstance(instances, list) or not instances:
            raise RequestError(400, "\"instances\" must be a non-empty list.")
        names = sorted(specs)
        by_name = all(isinstance(i, dict) and "b64" not in i for i in instances)
        if not by_name:
            if len(names) != 1:
                raise RequestError(400, f"each instance must be an object with the inputs {', '.join(names)}.")
            return {names[0]: instances}
        for instance in instances:
            if sorted(instance) != names:
                raise RequestError(400, f"each instance must have exactly the inputs {', '.join(names)}; "
                                        f"got {', '.join(sorted(instance)) or 'none'}.")
        return {key: [instance[key] for instance in instances] for key in names}

    @staticmethod
    def _columns(inputs, specs):
        """Columnar format: an object of named inputs, or a bare value for one input."""
        names = sorted(specs)
        if isinstance(inputs, dict) and "b64" not in inputs:
            if sorted(inputs) != names:
                raise RequestError(400, f"\"inputs\" must have exactly the inputs {', '.join(names)}; "
                                        f"got {', '.join(sorted(inputs)) or 'none'}.")
            return inputs
        if len(names) != 1:
            raise RequestError(400, f"\"inputs\" must be an object with the inputs {', '.join(names)}.")
        return {names[0]: inputs}

    @staticmethod
    def _tensor(key, value, spec, signature):
        """A JSON value -> a tensor of the signature input's dtype and shape."""
        import tensorflow as tf

        try:
            if spec.dtype == tf.string:
                array = np.array(_decode_strings(value), dtype=object)
                if array.dtype != object or any(not isinstance(v, bytes) for v in array.flat):
                    raise ValueError("expected strings or {\"b64\": ...} objects")
            else:
                array = np.asarray(value)
                if array.dtype.kind not in "biuf":
                    raise ValueError("expected numbers")
                if spec.dtype.is_integer and array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0):
                    raise ValueError("expected integers")
                array = array.astype(spec.dtype.as_numpy_dtype)
        except (ValueError, TypeError, binascii.Error) as error:
            raise RequestError(400, f"input {key!r} of {signature!r} is not a {spec.dtype.name} "
                                    f"tensor ({str(error).splitlines()[0][:200]}).") from None
        if not spec.shape.is_compatible_with(array.shape):
            expected = [d if d is not None else -1 for d in spec.shape.as_list()]
            raise RequestError(400, f"input {key!r} of {signature!r} has shape {list(array.shape)} "
                                    f"but the signature expects shape {expected} (-1 = any).")
        return tf.constant(array, dtype=spec.dtype)

    @staticmethod
    def _to_columns(outputs):
        """Columnar answer: an object of named outputs, or the bare value of a single one."""
        encoded = {key: _encode(key, value) for key, value in outputs.items()}
        return next(iter(encoded.values())) if len(encoded) == 1 else encoded

    @staticmethod
    def _to_rows(outputs):
        """Row answer: one object per instance, or bare values for a single output."""
        if any(value.ndim == 0 or len(value) != len(next(iter(outputs.values()))) for value in outputs.values()):
            raise RequestError(400, "the outputs do not share a batch dimension; use the columnar "
                                    "\"inputs\" format.")
        if len(outputs) == 1:
            key, value = next(iter(outputs.items()))
            return _encode(key, value)
        batch = len(next(iter(outputs.values())))
        return [{key: _encode(key, value[i]) for key, value in outputs.items()} for i in range(batch)]


def _decode_strings(value):
    """Nested JSON strings / {"b64": ...} objects -> the same nesting of bytes."""
    if isinstance(value, list):
        return [_decode_strings(v) for v in value]
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"], validate=True)
    if isinstance(value, str):
        return value.encode()
    raise ValueError(f"expected a string, got {type(value).__name__}")


def _encode(key, value):
    """A NumPy output -> JSON; `*_bytes` strings as {"b64": ...} (TF Serving's convention)."""
    value = np.asarray(value)
    if value.dtype != object and value.dtype.kind != "S":
        return value.tolist()

    def one(item):
        if key.endswith("_bytes"):
            return {"b64": base64.b64encode(item).decode("ascii")}
        return item.decode("utf-8", "replace")

    return np.vectorize(one, otypes=[object])(value).tolist() if value.ndim else one(value.item())


class _Handler(http.server.BaseHTTPRequestHandler):
    """TF Serving's REST routes over one ServedModel; JSON in, JSON out."""

    protocol_version = "HTTP/1.1"
    server_version = "tfinpaint-dev-serving"
    timeout = 120  # seconds a connection may stay silent, so stalled clients free their thread

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")

    def do_PATCH(self):
        self._handle("PATCH")

    def _handle(self, method):
        start = time.perf_counter()
        self._body_read, self._drain = False, 0
        try:
            status, answer = self._route(method)
        except RequestError as error:
            status, answer = error.status, {"error": str(error)}
        except Exception as error:  # a bug: answer 500 and keep serving
            traceback.print_exc(file=sys.stderr)
            status, answer = 500, {"error": f"internal server error: {type(error).__name__}: {error}"[:500]}
        if not self._body_read and self.headers.get("Content-Length", "0").strip() not in ("", "0"):
            self.close_connection = True  # an unread body would be parsed as the next request
        self._send(status, answer)
        if self._drain:
            self._discard_body(self._drain)
        self._log(method, status, start)

    def _log(self, method, status, start):
        if not self.server.quiet:
            ms = (time.perf_counter() - start) * 1000
            print(f"{self.address_string()} {method} {self.path} {status} {ms:.0f} ms", file=sys.stderr)

    def handle_expect_100(self):
        """Refuse an oversized body before the client sends it (curl asks first for big bodies)."""
        length = self.headers.get("Content-Length", "")
        if length.strip().isdigit() and int(length) > self.server.max_body_bytes:
            self.close_connection = True
            self._send(413, {"error": self._too_large(int(length))})
            self._log(self.command, 413, time.perf_counter())
            return False
        return super().handle_expect_100()

    def _too_large(self, length):
        return (f"the request body has {length} bytes, more than the limit of "
                f"{self.server.max_body_bytes}; send fewer images per request.")

    def _route(self, method):
        served = self.server.model
        match = _ROUTE.match(self.path.split("?", 1)[0])
        if not match:
            raise RequestError(404, f"unknown path {self.path}; use /v1/models/{served.name}[/versions/N]"
                                    "[/metadata|:predict].")
        verb = match["verb"] or ""
        allowed = "POST" if verb in (":predict", ":classify", ":regress") else "GET"
        if method != allowed:
            self._allow = allowed
            raise RequestError(405, f"{method} is not allowed on {self.path}; use {allowed}.")
        version = match["version"]
        if match["name"] != served.name:
            raise RequestError(404, f"Servable not found for request: Latest({match['name']}); "
                                    f"this server serves {served.name!r}.")
        if version is not None and version != str(served.version):
            raise RequestError(404, f"Servable not found for request: Specific({match['name']}, {version}); "
                                    f"this server serves version {served.version} only.")
        if verb in (":classify", ":regress"):
            raise RequestError(404, f"{verb[1:]} is not supported by this development server; use :predict.")
        if verb == "":
            return 200, served.status()
        if verb == "/metadata":
            return 200, served.metadata()
        request = self._read_json()
        return 200, served.predict(request)

    def _read_json(self):
        """The request body as JSON, refusing oversized bodies before reading them."""
        length = self.headers.get("Content-Length")
        if length is None or not length.strip().isdigit():
            self.close_connection = True
            raise RequestError(411, "a Content-Length header is required.")
        length = int(length)
        if length > self.server.max_body_bytes:
            self._drain = length
            raise RequestError(413, self._too_large(length))
        body = self.rfile.read(length)
        self._body_read = True
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            raise RequestError(400, f"the request body is not valid JSON: {error}") from None

    def _discard_body(self, length, seconds=2.0):
        """Read and drop an oversized body for a moment, so the client reads our 413, not a reset."""
        deadline = time.monotonic() + seconds
        self.connection.settimeout(0.2)
        try:
            while length > 0 and time.monotonic() < deadline:
                chunk = self.rfile.read1(min(length, 1 << 16))
                if not chunk:
                    break
                length -= len(chunk)
        except OSError:
            pass

    def _send(self, status, answer):
        body = json.dumps(answer).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if status == 405:
                self.send_header("Allow", self._allow)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout); nothing to tell it

    def log_request(self, code="-", size="-"):
        pass  # _handle logs one line with the time taken

    def log_error(self, format, *args):
        if not self.server.quiet:
            super().log_error(format, *args)


class DevServer(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer holding the ServedModel; `port` and `url` say where it listens."""

    daemon_threads = True
    request_queue_size = 128  # the default 5 drops connections in a burst of requests

    def __init__(self, address, model, max_body_bytes=DEFAULT_MAX_BODY_BYTES, quiet=False):
        self.model = model
        self.max_body_bytes = max_body_bytes
        self.quiet = quiet
        super().__init__(address, _Handler)

    @property
    def port(self):
        return self.server_address[1]

    @property
    def url(self):
        host = self.server_address[0]
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"


def make_server(model_base, host="127.0.0.1", port=DEFAULT_PORT, max_body_bytes=DEFAULT_MAX_BODY_BYTES,
                quiet=False):
    """A development TF Serving REST server for a model base, bound but not yet serving.

    Args:
        model_base: TF Serving's layout BASE/<integer version>/saved_model.pb; the
            newest version is served, under the model name basename(BASE).
        host, port: where to listen; port 0 picks a free port (see `.port`).
        max_body_bytes: larger request bodies are refused with 413 before being read.
        quiet: no per-request log lines on stderr.

    Returns:
        a DevServer (an http.server.ThreadingHTTPServer); call `serve_forever()`
        (e.g. in a thread), then `shutdown()` and `server_close()`.
    """
    model_base = os.path.normpath(os.path.abspath(model_base))
    version, path = _newest_version(model_base)
    model = ServedModel(os.path.basename(model_base), version, path)
    try:
        return DevServer((host, port), model, max_body_bytes, quiet)
    except OSError as error:
        raise InpaintError(f"cannot listen on {host}:{port} ({error.strerror}); pass another --port.") from None


def serve(model_base, host="127.0.0.1", port=DEFAULT_PORT, max_body_bytes=DEFAULT_MAX_BODY_BYTES,
          ready=None, quiet=False):
    """Serve TF Serving's REST API for a model base until interrupted (Ctrl-C). Development only.

    This is for development without Docker. Production serving is TF Serving itself,
    which loads the same model base:

        docker run -p 8501:8501 \\
          --mount type=bind,source=$PWD/saved_models/fashion_mnist,target=/models/fashion_mnist \\
          -e MODEL_NAME=fashion_mnist -t tensorflow/serving

    Either way, try it with

        curl http://localhost:8501/v1/models/fashion_mnist/metadata

    and inpaint with `tfinpaint inpaint --server http://localhost:8501 --model-name
    fashion_mnist ...` or a predict call (see the module docstring).

    Args:
        model_base: TF Serving's layout BASE/<integer version>/saved_model.pb; the
            newest version is served as model basename(BASE), also at /versions/N.
        host: the interface; the default 127.0.0.1 accepts local clients only.
        port: TCP port (TF Serving's REST default 8501; 0 = any free port).
        max_body_bytes: larger request bodies get 413.
        ready: optional callable(server) called once listening (e.g. to print the URL).
        quiet: no per-request log lines on stderr.
    """
    server = make_server(model_base, host, port, max_body_bytes, quiet)
    if ready is None:
        model = server.model
        print(f"Serving {model.name} version {model.version} from {model.path} at "
              f"{server.url}/v1/models/{model.name} (development server; Ctrl-C stops it).",
              file=sys.stderr)
    else:
        ready(server)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def start_in_thread(server):
    """Run `server.serve_forever()` in a daemon thread; returns the thread."""
    thread = threading.Thread(target=server.serve_forever, name="tfinpaint-serving", daemon=True)
    thread.start()
    return thread
