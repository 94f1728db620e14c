"""The TF Serving REST API: the development server against in-process calls, and RestModel.

One server on a loopback ephemeral port serves the tiny export for the whole module;
every answer is compared with the same signature called in this process.
"""

import base64
import concurrent.futures
import http.client
import json
import socket
import threading
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from tf_semantic_inpaint import inpaint, serving
from tf_semantic_inpaint.errors import InpaintError
from tf_semantic_inpaint.images import encode_png, resize
from tf_semantic_inpaint.masks import make_mask
from tf_semantic_inpaint.search import SearchSettings

SETTINGS = SearchSettings(iterations=20, restarts=2, learning_rate=0.05, lam=0.01, seed=3)


@pytest.fixture(scope="module")
def server(tiny_export):
    srv = serving.make_server(tiny_export, port=0, quiet=True)
    thread = serving.start_in_thread(srv)
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def loaded(tiny_export):
    """The same SavedModel, loaded in this process: the reference answers."""
    return tf.saved_model.load(tiny_export + "/1")


@pytest.fixture(scope="module")
def batch(fashion_mnist_test_images):
    """Three real images [3, 28, 28, 1] with center, pattern and random masks."""
    images = fashion_mnist_test_images[:3]
    masks = np.stack([make_mask(kind, 28, 28, seed=i) for i, kind in enumerate(["center", "pattern", "random"])])
    return images, masks


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


def test_metadata_sizes_may_be_strings_or_numbers():
    assert serving._dims({"tensor_shape": {"dim": [{"size": "-1"}, {"size": 28}]}}) == [-1, 28]
    assert serving._dims({"tensor_shape": {"dim": []}}) == []


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
    scalars = dict(iterations=5, lam=0.1, learning_rate=0.02, restarts=3, seed=7)
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
    pictures = [fashion_mnist_test_images[0], resize(fashion_mnist_test_images[1], 56, 42)]
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


# --- RestModel: the same result as the local path ------------------------------------------------


def test_rest_model_search_equals_local_model_search(server, tiny_export, batch):
    images, masks = batch
    rest = serving.RestModel(server.url, "tiny")
    local = inpaint.LocalModel(tiny_export)
    assert (rest.resolution, rest.channels, rest.z_dim) == (local.resolution, local.channels, local.z_dim)
    done = []
    for settings in (SETTINGS, None):  # explicit settings, then the model's baked-in defaults
        remote = rest.search(images, masks, settings, progress=lambda d, t: done.append((d, t)))
        here = local.search(images, masks, settings)
        for key in ("generated", "z", "context_loss", "prior_loss"):
            assert remote[key].shape == here[key].shape
            assert_close(remote[key], here[key])
    assert done == [(SETTINGS.iterations, SETTINGS.iterations)]


def test_inpaint_batch_through_rest_equals_local(server, tiny_export, fashion_mnist_test_images):
    pictures = [fashion_mnist_test_images[4], resize(fashion_mnist_test_images[5], 40, 36)]
    masks = [make_mask("center", 28, 28), make_mask("half-left", 40, 36)]
    remote = inpaint.inpaint_batch(pictures, masks, model=serving.RestModel(server.url, "tiny", version=1))
    here = inpaint.inpaint_batch(pictures, masks, model=inpaint.LocalModel(tiny_export))
    for r, h in zip(remote, here):
        assert r.output.shape == h.output.shape
        np.testing.assert_allclose(r.output, h.output, rtol=0, atol=1e-5)
        assert_close(r.z, h.z)


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
    assert status in (400, 404) and "nope" in answer["error"]

    status, answer = fetch("POST", f"{server.url}/v1/models/other:predict", {"inputs": {}})
    assert status == 404 and "other" in answer["error"]

    status, answer = fetch("GET", url + ":predict")
    assert status == 405 and "error" in answer

    status, answer = fetch("GET", f"{server.url}/v2/anything")
    assert status == 404

    # A broken PNG fails inside the graph: 400 with TensorFlow's message, shortened.
    bad_png = {"signature_name": "inpaint_png",
               "inputs": {"image_png": [{"b64": "eHg="}], "mask_png": [{"b64": "eHg="}]}}
    status, answer = fetch("POST", url + ":predict", bad_png)
    assert status == 400 and "image" in answer["error"] and "node" not in answer["error"]


def test_missing_content_length_is_411(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.putrequest("POST", "/v1/models/tiny:predict")
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 411 and "Content-Length" in json.loads(response.read())["error"]
    connection.close()


def test_oversized_bodies_get_413_and_the_server_keeps_answering(server, batch):
    # A Content-Length above the limit is refused before any body is read.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(b"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n{")
        answer = b""
        while chunk := raw.recv(65536):  # the server closes the connection after a 413
            answer += chunk
    head, body = answer.decode().split("\r\n\r\n", 1)
    assert head.startswith("HTTP/1.1 413") and "limit" in json.loads(body)["error"]

    # A real body over a (lowered) limit: the client names the status and the fix.
    limit, server.max_body_bytes = server.max_body_bytes, 2000
    try:
        rest = serving.RestModel(server.url, "tiny")
        with pytest.raises(InpaintError, match="413.*fewer images"):
            rest.search(*batch, SETTINGS)
    finally:
        server.max_body_bytes = limit
    assert fetch("GET", model_url(server))[0] == 200


def test_client_reports_an_unreachable_server():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(InpaintError, match="not reachable.*tfinpaint serve"):
        serving.RestModel(f"http://127.0.0.1:{port}", "tiny")


def test_client_reports_a_timeout(server, batch):
    rest = serving.RestModel(server.url, "tiny")
    # A listener that accepts and never answers: the timeout fires however fast the machine.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        rest.url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1/models/tiny"
        rest.timeout = 0.5
        with pytest.raises(InpaintError, match="timeout.*--timeout"):
            rest.search(batch[0][:1], batch[1][:1], SearchSettings(iterations=3, restarts=1))


def test_client_reports_server_errors_with_their_message(server):
    with pytest.raises(InpaintError, match="404.*other"):
        serving.RestModel(server.url, "other")


# --- concurrency ---------------------------------------------------------------------------


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
