"""`tfinpaint serve`: a development stand-in for TF Serving's REST API.

Production serving is the `tensorflow/serving` program on the same model base (see
README, Serving). This answers the same REST API for the newest version of one model
base: model status, metadata, and predict in the row ("instances") and columnar
("inputs") formats with {"b64": ...} binary values; errors as {"error": ...}.

HTTP parsing and framing are h11's (a small, well-kept HTTP/1.1 state machine);
this module adds only TF Serving's semantics and the bounds a public port needs,
each answered in JSON like the rest:

- a request must arrive whole within `read_timeout` seconds (408), bodies over
  `max_body_bytes` are refused from their Content-Length before being read (413);
- at most `max_connections` connections (503 beyond, at once);
- at most `workers` model calls run at once and `max_queue` wait (503 beyond, as TF
  Serving answers when its queue is full);
- the model's own limits (contract.Limits) are checked in its graph (400).

It is one process with no authentication: keep it on loopback (the default).
"""

import asyncio
import base64
import binascii
import concurrent.futures
import http
import json
import os
import re
import sys
import threading
import time

import h11
import numpy as np

from tf_semantic_inpaint.contract import versions
from tf_semantic_inpaint.errors import InpaintError

DEFAULT_PORT = 8501  # TF Serving's REST port
DEFAULT_MAX_BODY_BYTES = 32 * 2**20  # 64 images at 64x64x3 with masks are about 21 MiB of JSON
DEFAULT_READ_TIMEOUT = 30.0  # seconds for a whole request to arrive
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_WORKERS = 2  # model calls at once: each already uses every core
DEFAULT_MAX_QUEUE = 32  # model calls waiting for a worker
_MAX_HEADER_BYTES = 64 * 1024

# /v1/models/NAME[/versions/N][/metadata|:predict|...], TF Serving's REST paths.
_ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
    r"(?P<verb>/metadata|:predict|:classify|:regress)?$"
)
_TF_ERROR_NOISE = re.compile(
    r"^(Graph execution error:|Detected at node .*|<stack traces unavailable>|\s*\[\[\{\{.*)$"
)
_INT32 = (-(2**31), 2**31 - 1)


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
    return re.sub(r"^assertion failed: \[(.*)\]$", r"\1", message)[:500]


# --- TF Serving's REST semantics over one SavedModel ---------------------------------------


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

    def parse(self, request):
        """A decoded predict body -> (signature name, {input: tensor}, row format?).

        Raises RequestError (400 bad input, 404 unknown signature).
        """
        if not isinstance(request, dict):
            raise RequestError(400, "the request body must be a JSON object with \"instances\" or \"inputs\".")
        name = request.get("signature_name") or "serving_default"
        if not isinstance(name, str):
            raise RequestError(400, "\"signature_name\" must be a string.")
        if name not in self.signatures:
            raise RequestError(404, f"serving signature name {name!r} not found; this model has "
                                    f"{', '.join(sorted(self.signatures))}.")
        specs = self.signatures[name].structured_input_signature[1]
        if ("instances" in request) == ("inputs" in request):
            raise RequestError(400, "the request must have exactly one of \"instances\" (row format) "
                                    "and \"inputs\" (columnar format).")
        row = "instances" in request
        values = _rows_to_columns(request["instances"], specs) if row else _columns(request["inputs"], specs)
        return name, {key: _tensor(key, values[key], specs[key], name) for key in specs}, row

    def run(self, name, tensors):
        """Call signature `name`; NumPy outputs. Raises RequestError 400 for refused inputs."""
        import tensorflow as tf

        try:
            outputs = self.signatures[name](**tensors)
        except tf.errors.InvalidArgumentError as error:
            raise RequestError(400, _short_tf_message(error)) from None
        return {key: value.numpy() for key, value in outputs.items()}

    @staticmethod
    def answer(outputs, row):
        """NumPy outputs -> TF Serving's {"predictions": ...} or {"outputs": ...}."""
        return {"predictions": _to_rows(outputs)} if row else {"outputs": _to_columns(outputs)}


def _rows_to_columns(instances, specs):
    """Row format: a list of per-instance objects (or bare values for one input) -> columns."""
    if not isinstance(instances, list) or not instances:
        raise RequestError(400, "\"instances\" must be a non-empty list.")
    names = sorted(specs)
    if not all(isinstance(i, dict) and "b64" not in i for i in instances):
        if len(names) != 1:
            raise RequestError(400, f"each instance must be an object with the inputs {', '.join(names)}.")
        return {names[0]: instances}
    for instance in instances:
        if sorted(instance) != names:
            raise RequestError(400, f"each instance must have exactly the inputs {', '.join(names)}; "
                                    f"got {', '.join(sorted(instance)) or 'none'}.")
    return {key: [instance[key] for instance in instances] for key in names}


def _columns(inputs, specs):
    """Columnar format: an object of named inputs, or a bare value for one input."""
    names = sorted(specs)
    if isinstance(inputs, dict) and "b64" not in inputs:
        if sorted(inputs) != names:
            raise RequestError(400, f"\"inputs\" must have exactly the inputs {', '.join(names) or '(none)'}; "
                                    f"got {', '.join(sorted(inputs)) or 'none'}.")
        return inputs
    if len(names) != 1:
        raise RequestError(400, f"\"inputs\" must be an object with the inputs {', '.join(names)}.")
    return {names[0]: inputs}


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
            if spec.dtype.is_integer:
                if array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0):
                    raise ValueError("expected integers")
                if array.size and (array.min() < _INT32[0] or array.max() > _INT32[1]):
                    raise ValueError(f"{array.max() if array.max() > _INT32[1] else array.min()} does not "
                                     "fit a 32-bit integer")
            array = array.astype(spec.dtype.as_numpy_dtype)
    except (ValueError, TypeError, OverflowError, binascii.Error) as error:
        raise RequestError(400, f"input {key!r} of {signature!r} is not a {spec.dtype.name} "
                                f"tensor ({str(error).splitlines()[0][:200]}).") from None
    if not spec.shape.is_compatible_with(array.shape):
        expected = [d if d is not None else -1 for d in spec.shape.as_list()]
        raise RequestError(400, f"input {key!r} of {signature!r} has shape {list(array.shape)} "
                                f"but the signature expects shape {expected} (-1 = any).")
    return tf.constant(array, dtype=spec.dtype)


def _decode_strings(value):
    """Nested JSON strings / {"b64": ...} objects -> the same nesting of bytes."""
    if isinstance(value, list):
        return [_decode_strings(v) for v in value]
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
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


def _to_columns(outputs):
    """Columnar answer: an object of named outputs, or the bare value of a single one."""
    encoded = {key: _encode(key, value) for key, value in outputs.items()}
    return next(iter(encoded.values())) if len(encoded) == 1 else encoded


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


# --- HTTP --------------------------------------------------------------------------------------


class _Refused(Exception):
    """A request refused before it was read whole: answer `status` and close the connection."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class DevServer:
    """TF Serving's REST routes over one ServedModel, on an asyncio loop in a thread.

    Use `start()` (returns once listening; `.port` and `.url` tell where) and `stop()`,
    or `serve_forever()` in the foreground. Arguments as in `make_server`.
    """

    def __init__(self, model, host="127.0.0.1", port=DEFAULT_PORT, max_body_bytes=DEFAULT_MAX_BODY_BYTES,
                 read_timeout=DEFAULT_READ_TIMEOUT, max_connections=DEFAULT_MAX_CONNECTIONS,
                 workers=DEFAULT_WORKERS, max_queue=DEFAULT_MAX_QUEUE, quiet=False):
        self.model, self.host, self.requested_port = model, host, port
        self.max_body_bytes, self.read_timeout = max_body_bytes, read_timeout
        self.max_connections, self.max_queue, self.quiet = max_connections, max_queue, quiet
        self.pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="tfinpaint-model")
        self.workers = workers
        self.connections = 0
        self.pending = 0  # model calls running or waiting
        self.loop = self.server = self.thread = None
        self.port = None

    @property
    def url(self):
        host = self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    # -- lifecycle --

    async def _listen(self):
        try:
            self.server = await asyncio.start_server(self._connection, self.host, self.requested_port,
                                                     backlog=128, limit=_MAX_HEADER_BYTES)
        except OSError as error:
            raise InpaintError(f"cannot listen on {self.host}:{self.requested_port} ({error.strerror}); "
                               "pass another --port.") from None
        self.port = self.server.sockets[0].getsockname()[1]

    def start(self):
        """Listen and serve in a background thread; return once listening."""
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._listen())
        self.thread = threading.Thread(target=self.loop.run_forever, name="tfinpaint-serving", daemon=True)
        self.thread.start()
        return self

    async def _shutdown(self):
        """Stop listening and end every open connection."""
        self.server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self):
        """Stop listening, close every connection, the loop and the model pool."""
        if self.loop is not None and self.thread is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(timeout=30)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def serve_forever(self, ready=None):
        """Serve in the foreground until interrupted (Ctrl-C)."""
        self.loop = asyncio.new_event_loop()
        try:
            self.loop.run_until_complete(self._listen())
            if ready is not None:
                ready(self)
            self.loop.run_until_complete(self.server.serve_forever())
        except KeyboardInterrupt:
            pass
        finally:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.loop.close()

    # -- one connection --

    async def _connection(self, reader, writer):
        self.connections += 1
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEADER_BYTES)
        try:
            if self.connections > self.max_connections:
                await self._send(writer, conn, 503, {"error": f"the server has {self.max_connections} "
                                                              "connections open, its limit; retry later."})
                await self._discard(reader, writer)
                return
            while True:
                started = time.perf_counter()
                try:
                    request, body = await asyncio.wait_for(self._read(reader, conn), self.read_timeout)
                except (asyncio.TimeoutError, TimeoutError):
                    if conn.their_state is h11.IDLE and not conn.trailing_data[0]:
                        return  # an idle keep-alive connection, not a slow request: just close it
                    await self._send(writer, conn, 408, {"error": f"the request did not arrive within "
                                                                  f"{self.read_timeout:g} s."}, close=True)
                    await self._discard(reader, writer)
                    return
                except _Refused as refused:
                    await self._send(writer, conn, refused.status, {"error": str(refused)}, close=True)
                    await self._discard(reader, writer)
                    return
                except h11.RemoteProtocolError as error:
                    await self._send(writer, conn, 400, {"error": f"malformed HTTP request ({error})."}, close=True)
                    await self._discard(reader, writer)
                    return
                if request is None:
                    return  # the client closed the connection
                status, answer, extra = await self._answer(request, body)
                method = request.method.decode("ascii", "replace")
                await self._send(writer, conn, status, answer, extra, head=method == "HEAD")
                self._log(method, request.target.decode("ascii", "replace"), status, started)
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.LocalProtocolError):
            pass  # the client went away mid-answer
        finally:
            self.connections -= 1
            writer.close()

    async def _read(self, reader, conn):
        """(h11.Request, body bytes) of the next request, or (None, None) when the client closed."""
        request, body = None, bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.ConnectionClosed) or (request is None and event is h11.PAUSED):
                return None, None
            if isinstance(event, h11.Request):
                request = event
                length = dict(event.headers).get(b"content-length")
                if length is not None and int(length) > self.max_body_bytes:
                    raise _Refused(413, self._too_large(int(length)))
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self.max_body_bytes:
                    raise _Refused(413, self._too_large(len(body)))
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body)

    @staticmethod
    async def _discard(reader, writer, seconds=2.0, most=64 * 2**20):
        """Close our side, then read and drop what the client still sends, for a moment.

        Closing with unread data would reset the connection, and the client would lose
        the answer just sent (a 413 or a 503) before reading it.
        """
        deadline = time.monotonic() + seconds
        try:
            if writer.can_write_eof():
                writer.write_eof()
            while most > 0 and time.monotonic() < deadline:
                chunk = await asyncio.wait_for(reader.read(65536), max(deadline - time.monotonic(), 0.01))
                if not chunk:
                    return
                most -= len(chunk)
        except (asyncio.TimeoutError, TimeoutError, ConnectionError, OSError):
            pass

    def _too_large(self, length):
        return (f"the request body has {length} bytes, more than the limit of "
                f"{self.max_body_bytes}; send fewer images per request.")

    async def _send(self, writer, conn, status, answer, extra=(), close=False, head=False):
        body = json.dumps(answer).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *extra]
        if close:
            headers.append(("Connection", "close"))
        try:
            reason = http.HTTPStatus(status).phrase.encode()
            data = conn.send(h11.Response(status_code=status, headers=headers, reason=reason))
            if not head:
                data += conn.send(h11.Data(data=body))
            data += conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:  # e.g. the request could not even be parsed
            data = (f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
        writer.write(data)
        await writer.drain()

    def _log(self, method, path, status, started):
        if not self.quiet:
            ms = (time.perf_counter() - started) * 1000
            print(f"{method} {path} {status} {ms:.0f} ms", file=sys.stderr)

    # -- routing --

    async def _answer(self, request, body):
        """(status, JSON answer, extra headers) of one whole request."""
        try:
            return (200, await self._route(request, body), ())
        except RequestError as error:
            allow = (("Allow", error.allow),) if getattr(error, "allow", None) else ()
            return error.status, {"error": str(error)}, allow
        except Exception as error:  # a bug: answer 500 and keep serving
            import traceback

            traceback.print_exc(file=sys.stderr)
            return 500, {"error": f"internal server error: {type(error).__name__}: {error}"[:500]}, ()

    async def _route(self, request, body):
        served = self.model
        path = request.target.decode("ascii", "replace").split("?", 1)[0]
        match = _ROUTE.match(path)
        if not match:
            raise RequestError(404, f"unknown path {path}; use /v1/models/{served.name}[/versions/N]"
                                    "[/metadata|:predict].")
        verb = match["verb"] or ""
        allowed = "POST" if verb in (":predict", ":classify", ":regress") else "GET"
        method = request.method.decode("ascii", "replace")
        if method != allowed:
            error = RequestError(405, f"{method} is not allowed on {path}; use {allowed}.")
            error.allow = allowed
            raise error
        if match["name"] != served.name:
            raise RequestError(404, f"Servable not found for request: Latest({match['name']}); "
                                    f"this server serves {served.name!r}.")
        version = match["version"]
        if version is not None and version != str(served.version):
            raise RequestError(404, f"Servable not found for request: Specific({match['name']}, {version}); "
                                    f"this server serves version {served.version} only.")
        if verb in (":classify", ":regress"):
            raise RequestError(404, f"{verb[1:]} is not supported by this development server; use :predict.")
        if verb == "":
            return served.status()
        if verb == "/metadata":
            return served.metadata()
        try:
            decoded = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as error:
            raise RequestError(400, f"the request body is not valid JSON: {str(error)[:200]}") from None
        name, tensors, row = served.parse(decoded)
        outputs = await self._run(served.run, name, tensors)
        return served.answer(outputs, row)

    async def _run(self, fn, *args):
        """`fn(*args)` on the model pool; 503 when `max_queue` calls already wait."""
        if self.pending >= self.workers + self.max_queue:
            raise RequestError(503, f"the server is busy ({self.pending} requests running or queued, its "
                                    "limit); retry later.")
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        finally:
            self.pending -= 1


def make_server(model_base, host="127.0.0.1", port=DEFAULT_PORT, **options):
    """A development TF Serving REST server for a model base, not yet listening.

    Args:
        model_base: TF Serving's layout BASE/<integer version>/saved_model.pb; the
            newest version is served, under the model name basename(BASE).
        host, port: where to listen; port 0 picks a free port (see `.port` after start).
        options: max_body_bytes, read_timeout, max_connections, workers, max_queue, quiet.

    Returns:
        a DevServer; `start()` it (background thread) or `serve_forever()`.
    """
    model_base = os.path.normpath(os.path.abspath(model_base))
    if os.path.isfile(os.path.join(model_base, "saved_model.pb")):
        raise InpaintError(
            f"{model_base} is a single SavedModel; serve its parent model base (TF Serving's "
            "layout BASE/<version>/saved_model.pb), e.g. the folder given to `tfinpaint export`."
        )
    found = versions(model_base)
    if not found:
        raise InpaintError(
            f"{model_base} holds no version folder with a saved_model.pb (TF Serving's layout "
            "BASE/<version>/); pass a directory written by `tfinpaint export`."
        )
    path = os.path.join(model_base, str(found[-1]))
    return DevServer(ServedModel(os.path.basename(model_base), found[-1], path), host, port, **options)


def is_loopback(host):
    """Whether `host` names only this machine (127.0.0.0/8, ::1, localhost)."""
    return host in ("localhost", "::1") or host.startswith("127.")


def serve(model_base, host="127.0.0.1", port=DEFAULT_PORT, ready=None, **options):
    """Serve TF Serving's REST API for a model base until interrupted (Ctrl-C). Development only.

    Production serving is TF Serving itself on the same model base (README, Serving).
    Arguments as in `make_server`; `ready(server)` is called once listening (default:
    print where). A host other than loopback gets a warning: there is no authentication.
    """
    server = make_server(model_base, host, port, **options)
    if not is_loopback(host):
        print(f"warning: listening on {host}, reachable from other machines. This development server "
              "has no authentication and is not for untrusted networks; use TF Serving behind your "
              "own access control in production.", file=sys.stderr)

    def announce(srv):
        model = srv.model
        print(f"Serving {model.name} version {model.version} from {model.path} at "
              f"{srv.url}/v1/models/{model.name} (development server; Ctrl-C stops it).", file=sys.stderr)

    server.serve_forever(ready or announce)
