"""`tfinpaint serve`, the development stand-in for TF Serving: every answer against the same
signature called in this process, JSON errors for every client mistake, and the bounds a
hostile client meets (timeouts, connection and queue limits, oversized bodies).

One server on a loopback ephemeral port serves the tiny export for the whole module.
"""

import base64
import concurrent.futures
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from tf_semantic_inpaint import devserver
from tf_semantic_inpaint.images import encode_png
from tf_semantic_inpaint.masks import make_mask

SCALARS = dict(iterations=5, lam=0.1, learning_rate=0.02, restarts=3, seed=7)


@pytest.fixture(scope="module")
def loaded(tiny_export):
    """The same SavedModel, loaded in this process: the reference answers."""
    return tf.saved_model.load(tiny_export + "/1")


def call(loaded, signature, **inputs):
    """A signature called in-process; NumPy outputs."""
    spec = loaded.signatures[signature].structured_input_signature[1]
    outputs = loaded.signatures[signature](**{k: tf.constant(v, spec[k].dtype) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in outputs.items()}


def fetch(method, url, body=None, headers=None):
    """(status, decoded JSON) of one request; `body` a dict (sent as JSON) or bytes."""
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def raw_exchange(server, data, pause=None):
    """Send raw bytes (a list is sent piece by piece, `pause` s apart); (status, JSON body, headers)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        for piece in data if isinstance(data, list) else [data]:
            sock.sendall(piece)
            if pause:
                time.sleep(pause)
        answer = b""
        while chunk := sock.recv(65536):  # these answers all close the connection
            answer += chunk
    head, _, body = answer.decode().partition("\r\n\r\n")
    return int(head.split()[1]), (json.loads(body) if body else None), head


def assert_close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual, np.float32), expected, rtol=0, atol=1e-6)


def model_url(server):
    return f"{server.url}/v1/models/tiny"


# --- status and metadata -----------------------------------------------------------------


def test_status_of_the_newest_version_and_404_for_others(server):
    expected = {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert fetch("GET", model_url(server)) == (200, expected)
    assert fetch("GET", model_url(server) + "/versions/1") == (200, expected)
    status, answer = fetch("GET", model_url(server) + "/versions/2")
    assert status == 404 and "tiny" in answer["error"]
    status, answer = fetch("POST", model_url(server) + "/versions/2:predict", {"inputs": {}})
    assert status == 404


def test_metadata_describes_every_signature_like_the_export(server, loaded):
    status, answer = fetch("GET", model_url(server) + "/metadata")
    assert status == 200
    assert answer["model_spec"] == {"name": "tiny", "signature_name": "", "version": "1"}
    defs = answer["metadata"]["signature_def"]["signature_def"]
    for name, function in loaded.signatures.items():
        for key, spec in function.structured_input_signature[1].items():
            entry = defs[name]["inputs"][key]
            assert entry["dtype"] == types_pb2.DataType.Name(spec.dtype.as_datatype_enum)
            assert [d["size"] for d in entry["tensor_shape"]["dim"]] == [
                str(d if d is not None else -1) for d in spec.shape.as_list()]
            assert entry["name"]
        assert set(defs[name]["outputs"]) == set(function.structured_outputs)
    images = defs["inpaint"]["inputs"]["images"]
    dims = [d["size"] for d in images["tensor_shape"]["dim"]]
    assert (images["dtype"], dims) == ("DT_FLOAT", ["-1", "28", "28", "1"])
    assert defs["inpaint_with_settings"]["inputs"]["iterations"]["dtype"] == "DT_INT32"
    assert defs["inpaint_png"]["inputs"]["image_png"]["dtype"] == "DT_STRING"


# --- predict ------------------------------------------------------------------------------


def test_inpaint_row_and_columnar_formats_equal_the_in_process_call(server, loaded, batch):
    images, masks = batch
    expected = call(loaded, "inpaint", images=images, masks=masks)

    row = {"signature_name": "inpaint",
           "instances": [{"images": i.tolist(), "masks": m.tolist()} for i, m in zip(images, masks)]}
    status, answer = fetch("POST", model_url(server) + ":predict", row)
    assert status == 200 and len(answer["predictions"]) == 3
    for k, prediction in enumerate(answer["predictions"]):
        assert set(prediction) == set(expected)
        for key in expected:
            assert_close(prediction[key], expected[key][k])

    columnar = {"signature_name": "inpaint", "inputs": {"images": images.tolist(), "masks": masks.tolist()}}
    status, answer = fetch("POST", model_url(server) + ":predict", columnar)
    assert status == 200 and set(answer["outputs"]) == set(expected)
    for key in expected:
        assert_close(answer["outputs"][key], expected[key])

    # serving_default is `inpaint`, and the version may be named.
    columnar.pop("signature_name")
    status, answer = fetch("POST", model_url(server) + "/versions/1:predict", columnar)
    assert status == 200
    assert_close(answer["outputs"]["completed"], expected["completed"])


def test_inpaint_with_settings_takes_scalars_in_the_columnar_format(server, loaded, batch):
    images, masks = batch
    scalars = SCALARS
    expected = call(loaded, "inpaint_with_settings", images=images, masks=masks, **scalars)
    body = {"signature_name": "inpaint_with_settings",
            "inputs": {"images": images.tolist(), "masks": masks.tolist(), **scalars}}
    status, answer = fetch("POST", model_url(server) + ":predict", body)
    assert status == 200
    for key in expected:
        assert_close(answer["outputs"][key], expected[key])

    # Per-request scalars cannot ride in rows: TF Serving stacks them into [b].
    rows = {"signature_name": "inpaint_with_settings",
            "instances": [{"images": images[0].tolist(), "masks": masks[0].tolist(), **scalars}]}
    status, answer = fetch("POST", model_url(server) + ":predict", rows)
    assert status == 400 and "shape" in answer["error"]


def test_generate_with_bare_inputs_answers_bare_outputs(server, loaded):
    z = np.random.default_rng(0).uniform(-1, 1, (2, 100)).astype(np.float32)
    expected = call(loaded, "generate", z=z)["images"]
    status, answer = fetch("POST", model_url(server) + ":predict", {"signature_name": "generate", "inputs": z.tolist()})
    assert status == 200
    assert_close(answer["outputs"], expected)
    status, answer = fetch("POST", model_url(server) + ":predict",
                          {"signature_name": "generate", "instances": z.tolist()})
    assert status == 200
    assert_close(answer["predictions"], expected)


def test_inpaint_png_with_b64_pngs_keeps_size_and_known_pixels(server, loaded, fashion_mnist_test_images):
    pictures = [fashion_mnist_test_images[0],
                cv2.resize(fashion_mnist_test_images[1], (42, 56), interpolation=cv2.INTER_AREA)[..., None]]
    pngs, mask_pngs, knowns = [], [], []
    for picture in pictures:
        known = make_mask("center", *picture.shape[:2])
        pngs.append(encode_png(picture))
        # Mask files: white = missing.
        mask_pngs.append(cv2.imencode(".png", ((1 - known[..., 0]) * 255).astype(np.uint8))[1].tobytes())
        knowns.append(known[..., 0] > 0)
    b64 = lambda data: {"b64": base64.b64encode(data).decode()}  # noqa: E731
    body = {"signature_name": "inpaint_png",
            "inputs": {"image_png": [b64(p) for p in pngs], "mask_png": [b64(m) for m in mask_pngs]}}
    status, answer = fetch("POST", model_url(server) + ":predict", body)
    assert status == 200
    expected = call(loaded, "inpaint_png", image_png=pngs, mask_png=mask_pngs)
    for k, picture in enumerate(pictures):
        completed = base64.b64decode(answer["outputs"]["completed_png_bytes"][k]["b64"])
        assert completed == expected["completed_png_bytes"][k]
        pixels = cv2.imdecode(np.frombuffer(completed, np.uint8), cv2.IMREAD_UNCHANGED)
        original = cv2.imdecode(np.frombuffer(pngs[k], np.uint8), cv2.IMREAD_UNCHANGED)
        assert pixels.shape == picture.shape[:2] == original.shape
        np.testing.assert_array_equal(pixels[knowns[k]], original[knowns[k]])
        assert base64.b64decode(answer["outputs"]["generated_png_bytes"][k]["b64"]).startswith(b"\x89PNG")


# --- errors -----------------------------------------------------------------------------------


def test_bad_requests_get_json_errors(server, batch):
    url = model_url(server)
    status, answer = fetch("POST", url + ":predict", b"{not json")
    assert status == 400 and "JSON" in answer["error"]

    wrong = {"inputs": {"images": np.zeros((1, 27, 28, 1)).tolist(), "masks": np.ones((1, 28, 28, 1)).tolist()}}
    status, answer = fetch("POST", url + ":predict", wrong)
    assert status == 400 and "shape" in answer["error"] and "images" in answer["error"]

    status, answer = fetch("POST", url + ":predict", {"inputs": {"images": [[[[0.5]]]]}})
    assert status == 400 and "masks" in answer["error"]

    status, answer = fetch("POST", url + ":predict", {"signature_name": "nope", "inputs": {}})
    assert status == 404 and "nope" in answer["error"]

    status, answer = fetch("POST", f"{server.url}/v1/models/other:predict", {"inputs": {}})
    assert status == 404 and "other" in answer["error"]

    status, answer = fetch("GET", url + ":predict")
    assert status == 405 and "error" in answer

    status, answer = fetch("GET", f"{server.url}/v2/anything")
    assert status == 404

    # A broken PNG is refused by the graph: 400 with its message, without TensorFlow's noise.
    bad_png = {"signature_name": "inpaint_png",
               "inputs": {"image_png": [{"b64": "eHg="}], "mask_png": [{"b64": "eHg="}]}}
    status, answer = fetch("POST", url + ":predict", bad_png)
    assert status == 400 and answer["error"].startswith("image_png[0] is not a PNG file")
    assert "node" not in answer["error"] and "assertion" not in answer["error"]


def test_the_model_limits_refuse_work_and_the_server_keeps_answering(server, batch):
    """The hardening probes over HTTP: each a 400 naming the input and the limit."""
    images, masks = batch
    url = model_url(server) + ":predict"
    base = {"images": images.tolist(), "masks": masks.tolist(), **SCALARS}
    probes = [
        (dict(iterations=2147483647), "iterations = 2147483647 is over the limit of 3000"),
        (dict(restarts=20000), "restarts = 20000 is over the limit of 64"),
        (dict(restarts=0), "restarts must be >= 1"),
        (dict(iterations=4294967306), "iterations' of 'inpaint_with_settings' is not a int32 tensor "
                                      "(4294967306 does not fit a 32-bit integer)"),
        (dict(seed=-2**40), "-1099511627776 does not fit a 32-bit integer"),
        (dict(images=(images * 5).tolist()), "images must hold finite values in [0, 1]"),
    ]
    for change, message in probes:
        status, answer = fetch("POST", url, {"signature_name": "inpaint_with_settings", "inputs": {**base, **change}})
        assert status == 400 and message in answer["error"], (change, answer)
    # NaN is not JSON; Python's json writes it anyway: the graph refuses it, no bare NaN comes back.
    nan = json.dumps({"signature_name": "inpaint_with_settings", "inputs": {**base, "lam": float("nan")}}).encode()
    status, answer = fetch("POST", url, nan)
    assert status == 400 and "lam must be a finite number" in answer["error"]
    status, answer = fetch("POST", url, {"signature_name": "inpaint_with_settings", "inputs": base})
    assert status == 200 and len(answer["outputs"]["z"]) == 3


@pytest.mark.parametrize("body, message", [
    ({"signature_name": ["inpaint"], "inputs": {}}, "signature_name\" must be a string"),
    (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
    ({"signature_name": "generate", "inputs": [[{"nested": 1}]]}, "is not a float32 tensor"),
    (b"[1, 2]", "must be a JSON object"),
])
def test_client_mistakes_are_400_with_json_not_500(server, body, message):
    status, answer = fetch("POST", model_url(server) + ":predict", body)
    assert status == 400 and message in answer["error"]


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "PUT", "DELETE", "PATCH", "BREW"])
def test_every_method_gets_a_json_answer(server, method):
    status, answer, head = raw_exchange(
        server, f"{method} /v1/models/tiny HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert status == 405 and f"{method} is not allowed" in answer["error"]
    assert "Allow: GET" in head and "application/json" in head and "405 Method Not Allowed" in head


def test_head_gets_the_status_line_and_headers_only(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"HEAD /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 405") and answer.endswith(b"\r\n\r\n")


def test_malformed_http_is_a_json_400(server):
    status, answer, _ = raw_exchange(server, b"this is not HTTP\r\n\r\n")
    assert status == 400 and "malformed HTTP request" in answer["error"]


def test_oversized_bodies_get_413_and_the_server_keeps_answering(server, batch):
    # A Content-Length above the limit is refused before any body is read.
    status, answer, _ = raw_exchange(
        server, b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n{")
    assert status == 413 and "limit" in answer["error"]
    # A chunked body that grows past the limit, without a Content-Length.
    limit, server.max_body_bytes = server.max_body_bytes, 2000
    try:
        chunk = b"x" * 1500
        status, answer, _ = raw_exchange(server, [
            b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"%x\r\n%s\r\n" % (len(chunk), chunk), b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk)])
        assert status == 413
    finally:
        server.max_body_bytes = limit
    assert fetch("GET", model_url(server))[0] == 200


def test_a_request_that_trickles_in_is_cut_off_after_the_read_timeout(tiny_export):
    """One byte at a time (a slow-loris client) cannot hold a connection past the deadline."""
    srv = devserver.make_server(tiny_export, port=0, quiet=True, read_timeout=1.0).start()
    try:
        request = b"GET /v1/models/tiny HTTP/1.1\r\nHost: x\r\n\r\n"
        with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as sock:
            sock.settimeout(0.2)
            sent, answer = 0, b""
            for byte in request[:-4]:  # never finishes the headers
                sock.sendall(bytes([byte]))
                sent += 1
                try:
                    answer = sock.recv(65536)  # waits 0.2 s: the pace of the trickle
                except TimeoutError:
                    continue
                break
            sock.settimeout(10)
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408") and b"within 1 s" in answer
        assert sent < len(request) - 4
    finally:
        srv.stop()


def test_connections_beyond_the_limit_get_503_at_once(tiny_export):
    srv = devserver.make_server(tiny_export, port=0, quiet=True, max_connections=3, read_timeout=30).start()
    held = [socket.create_connection(("127.0.0.1", srv.port), timeout=30) for _ in range(3)]
    try:
        time.sleep(0.5)  # let the server accept them
        status, answer, _ = raw_exchange(srv, b"GET /v1/models/tiny HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 503 and "3 connections" in answer["error"]
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.5)
    assert fetch("GET", f"{srv.url}/v1/models/tiny")[0] == 200
    srv.stop()


def test_a_full_queue_answers_503_and_the_rest_are_served(tiny_export, batch):
    """One worker, no queue: while a call runs, the next is refused; then all is well again."""
    srv = devserver.make_server(tiny_export, port=0, quiet=True, workers=1, max_queue=0).start()
    release, entered = threading.Event(), threading.Event()
    real_run = srv.model.run

    def held_run(*args):  # the real model call, held until the test lets it go
        entered.set()
        release.wait(60)
        return real_run(*args)

    srv.model.run = held_run
    images, masks = batch
    body = {"inputs": {"images": images.tolist(), "masks": masks.tolist()}}
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(fetch, "POST", f"{srv.url}/v1/models/tiny:predict", body)
            assert entered.wait(60)
            status, answer = fetch("POST", f"{srv.url}/v1/models/tiny:predict", body)
            assert status == 503 and "busy" in answer["error"]
            release.set()
            assert first.result()[0] == 200
        srv.model.run = real_run
        assert fetch("POST", f"{srv.url}/v1/models/tiny:predict", body)[0] == 200
    finally:
        release.set()
        srv.stop()


# --- concurrency ---------------------------------------------------------------------


def test_a_burst_of_concurrent_requests_is_all_answered_correctly(server, loaded, fashion_mnist_test_images):
    rng = np.random.default_rng(1)
    cases = []
    for k in range(16):
        n = 1 + k % 3
        images = fashion_mnist_test_images[[(k + j) % 16 for j in range(n)]]
        masks = np.stack([make_mask("pattern", 28, 28, seed=int(s)) for s in rng.integers(1000, size=n)])
        cases.append((images, masks, call(loaded, "inpaint", images=images, masks=masks)))
    start = threading.Barrier(16)

    def send(k):
        images, masks, _ = cases[k]
        if k % 2:
            body = {"inputs": {"images": images.tolist(), "masks": masks.tolist()}}
        else:
            body = {"instances": [{"images": i.tolist(), "masks": m.tolist()} for i, m in zip(images, masks)]}
        start.wait()
        return fetch("POST", model_url(server) + ":predict", body)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, range(16)))
    for k, (status, answer) in enumerate(answers):
        assert status == 200
        expected = cases[k][2]
        if k % 2:
            got = answer["outputs"]
        else:
            got = {key: [p[key] for p in answer["predictions"]] for key in expected}
        for key in expected:
            assert_close(got[key], expected[key])
