"""Server-side batching: the parameters file, gathered requests, isolation of errors, and an
image's result not depending on the requests it shares a batch with."""

import base64
import concurrent.futures
import json
import os
import urllib.error
import urllib.request

import numpy as np
import pytest

from tf_semantic_inpaint import batching, devserver
from tf_semantic_inpaint.client import RestModel
from tf_semantic_inpaint.contract import Limits, SearchSettings
from tf_semantic_inpaint.errors import InpaintError
from tf_semantic_inpaint.images import decode_image, encode_png
from tf_semantic_inpaint.local import LocalModel, shipped_model_dir
from tf_semantic_inpaint.masks import make_mask, mask_png

SHIPPED_PARAMETERS = os.path.join(shipped_model_dir(), "batching_parameters.txt")


def test_the_shipped_parameters_parse_and_fit_the_models_limits():
    params = batching.BatchingParameters.read(SHIPPED_PARAMETERS)
    card = json.load(open(os.path.join(shipped_model_dir(), "1", "model_card.json")))
    limits, defaults = Limits(**card["limits"]), SearchSettings(**card["search_defaults"])
    # A full batch of default requests must pass the model's own checks.
    assert params.max_batch_size <= limits.max_batch
    assert defaults.check(limits, batch=params.max_batch_size)
    assert params.num_batch_threads >= 1 and params.batch_timeout_micros < 100_000
    assert params.allowed_batch_sizes == ()  # no padding: the graph takes any batch size


def test_tf_servings_text_format_and_its_mistakes():
    text = """
    # comments are fine
    max_batch_size { value: 16 }
    batch_timeout_micros { value: 2000 }
    num_batch_threads { value: 2 }
    allowed_batch_sizes: 4
    allowed_batch_sizes: 16
    pad_variable_length_inputs: true
    """
    params = batching.BatchingParameters.parse(text)
    assert (params.max_batch_size, params.batch_timeout_micros, params.num_batch_threads) == (16, 2000, 2)
    assert params.allowed_batch_sizes == (4, 16)
    with pytest.raises(InpaintError, match="unknown batching parameter 'max_batch'"):
        batching.BatchingParameters.parse("max_batch { value: 8 }")
    with pytest.raises(InpaintError, match="must be a positive integer, got '-1'"):
        batching.BatchingParameters.parse("max_batch_size { value: -1 }")
    with pytest.raises(InpaintError, match="end at max_batch_size"):
        batching.BatchingParameters.parse("max_batch_size { value: 8 } allowed_batch_sizes: 4")
    with pytest.raises(InpaintError, match="cannot read"):
        batching.BatchingParameters.parse("max_batch_size = 8")


@pytest.fixture(scope="module")
def gathered(tiny_export):
    """A batching server that closes a batch only when 4 rows are in (a long timeout), and
    records the rows of every model call."""
    params = batching.BatchingParameters(max_batch_size=4, batch_timeout_micros=60_000_000)
    server = devserver.make_server(tiny_export, port=0, quiet=True, batching=params).start()
    calls, run = [], server.model.run

    def counted(name, tensors):
        calls.append((name, len(next(iter(tensors.values())))))
        return run(name, tensors)

    server.model.run = counted
    server.batcher.run = counted
    yield server, calls
    server.stop()


def _post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def _png_request(image, mask):
    b64 = lambda data: {"b64": base64.b64encode(data).decode()}  # noqa: E731
    return {"signature_name": "inpaint_png", "instances": [{"image_png": b64(encode_png(image)),
                                                            "mask_png": b64(mask_png(mask))}]}


def _concurrently(url, bodies):
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(lambda body: _post(url, body), bodies))


def test_four_clients_share_one_batch_and_each_gets_its_own_rows(gathered, tiny_export, fashion_mnist_test_images):
    server, calls = gathered
    url = f"{server.url}/v1/models/tiny:predict"
    images = fashion_mnist_test_images[:4]
    masks = [make_mask(kind, 28, 28, seed=3) for kind in ("center", "pattern", "random", "half")]
    calls.clear()
    answers = _concurrently(url, [_png_request(i, m) for i, m in zip(images, masks)])
    assert calls == [("inpaint_png", 4)]  # one model call for the four requests
    alone = LocalModel(tiny_export)
    for (status, answer), image, mask in zip(answers, images, masks):
        assert status == 200
        mine = decode_image(base64.b64decode(answer["predictions"][0]["generated_png_bytes"]["b64"]))
        expected = alone.inpaint_png([encode_png(image)], [mask_png(mask)])
        # Alone or in a batch of others: the same completion (to float rounding of the batch).
        assert np.abs(mine - decode_image(expected["generated_png"][0])).max() <= 2 / 255
        np.testing.assert_allclose(answer["predictions"][0]["z"], expected["z"][0], atol=1e-3)


def test_a_bad_request_fails_alone_and_the_batch_is_served(gathered, fashion_mnist_test_images):
    server, calls = gathered
    url = f"{server.url}/v1/models/tiny:predict"
    good = [_png_request(fashion_mnist_test_images[i], make_mask("center", 28, 28)) for i in range(3)]
    bad = _png_request(fashion_mnist_test_images[3], np.zeros((28, 28, 1)))  # no known pixel
    calls.clear()
    answers = _concurrently(url, good[:2] + [bad] + good[2:])
    statuses = [status for status, _ in answers]
    assert statuses == [200, 200, 400, 200]
    assert "no context to condition on" in answers[2][1]["error"]
    assert calls[0] == ("inpaint_png", 4) and sorted(calls[1:]) == [("inpaint_png", 1)] * 4  # then one by one


def test_signatures_with_scalars_are_refused_as_tf_serving_does(gathered, batch):
    server, _ = gathered
    images, masks = batch
    status, answer = _post(f"{server.url}/v1/models/tiny:predict", {"signature_name": "inpaint_with_settings",
                           "inputs": {"images": images.tolist(), "masks": masks.tolist(), "iterations": 5,
                                      "lam": 0.0, "learning_rate": 0.03, "restarts": 1, "seed": 0}})
    assert status == 400 and "cannot batch" in answer["error"] and "inpaint_png" in answer["error"]


def test_the_rest_client_works_with_a_batching_server(tiny_export, fashion_mnist_test_images):
    params = batching.BatchingParameters(max_batch_size=8, batch_timeout_micros=1000)
    server = devserver.make_server(tiny_export, port=0, quiet=True, batching=params).start()
    try:
        rest = RestModel(server.url, "tiny")
        assert rest.defaults is None and rest.limits is None  # the limits signature cannot be batched
        images = fashion_mnist_test_images[:2]
        masks = np.stack([make_mask("center", 28, 28)] * 2)
        remote = rest.search(images, masks)  # the model's own settings, through `inpaint`
        here = LocalModel(tiny_export).search(images, masks)
        np.testing.assert_allclose(remote["generated"], here["generated"], atol=2e-3)
        with pytest.raises(InpaintError, match="cannot batch"):
            rest.search(images, masks, SearchSettings(iterations=5))
    finally:
        server.stop()
