"""The REST client: the same answers as the in-process model, its errors, and no TensorFlow."""

import dataclasses
import os
import socket
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from tf_semantic_inpaint import client, inpaint
from tf_semantic_inpaint.contract import SearchSettings
from tf_semantic_inpaint.errors import InpaintError
from tf_semantic_inpaint.local import LocalModel
from tf_semantic_inpaint.masks import make_mask

SETTINGS = SearchSettings(iterations=20, restarts=2, learning_rate=0.05, lam=0.01, seed=3)


def test_metadata_sizes_may_be_strings_or_numbers():
    assert client._dims({"tensor_shape": {"dim": [{"size": "-1"}, {"size": 28}]}}) == [-1, 28]
    assert client._dims({"tensor_shape": {"dim": []}}) == []


def test_rest_model_is_local_model_over_http(server, tiny_export, batch):
    images, masks = batch
    rest = client.RestModel(server.url, "tiny")
    local = LocalModel(tiny_export)
    for name in ("resolution", "channels", "z_dim", "defaults", "limits"):
        assert getattr(rest, name) == getattr(local, name), name
    done = []
    refined = dataclasses.replace(SETTINGS, refine_steps=5, refine_radius=0.3)
    for settings in (SETTINGS, None, refined):  # explicit settings, the model's defaults, a refinement
        remote = rest.search(images, masks, settings, progress=lambda d, t, losses: done.append((d, t, losses)))
        here = local.search(images, masks, settings)
        assert set(remote) == set(here)
        for key in here:
            np.testing.assert_allclose(remote[key], here[key], rtol=0, atol=1e-6)
    assert done == [(20, 20, None), (30, 30, None), (20, 20, None)]


def test_inpaint_batch_through_rest_equals_local(server, tiny_export, fashion_mnist_test_images):
    pictures = [fashion_mnist_test_images[4],
                np.dstack([cv2.resize(fashion_mnist_test_images[5], (36, 40), interpolation=cv2.INTER_AREA)] * 3)]
    masks = [make_mask("center", 28, 28), make_mask("half-left", 40, 36)]
    remote = inpaint.inpaint_batch(pictures, masks, model=client.RestModel(server.url, "tiny", version=1))
    here = inpaint.inpaint_batch(pictures, masks, model=LocalModel(tiny_export))
    for r, h in zip(remote, here):
        assert r.output.shape == h.output.shape
        np.testing.assert_array_equal(r.output, h.output)
        np.testing.assert_array_equal(r.z, h.z)


def test_settings_over_the_model_limits_fail_before_sending(server, batch):
    rest = client.RestModel(server.url, "tiny")
    with pytest.raises(InpaintError, match="restarts = 100 is over the limit of 64"):
        rest.search(*batch, SearchSettings(restarts=100))


def test_oversized_bodies_name_the_status_and_the_fix(server, batch):
    limit, server.max_body_bytes = server.max_body_bytes, 2000
    try:
        rest = client.RestModel(server.url, "tiny")
        with pytest.raises(InpaintError, match="413.*fewer images"):
            rest.search(*batch, SETTINGS)
    finally:
        server.max_body_bytes = limit


def test_client_reports_an_unreachable_server():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(InpaintError, match="not reachable.*tfinpaint serve"):
        client.RestModel(f"http://127.0.0.1:{port}", "tiny")


def test_client_reports_a_timeout(server, batch):
    rest = client.RestModel(server.url, "tiny")
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
        client.RestModel(server.url, "other")


NO_TENSORFLOW = textwrap.dedent(
    """
    import sys
    sys.modules["tensorflow"] = None  # importing TensorFlow now fails
    sys.modules["keras"] = None
    import numpy as np
    from tf_semantic_inpaint.client import RestModel
    from tf_semantic_inpaint.inpaint import inpaint
    from tf_semantic_inpaint.masks import make_mask
    model = RestModel(sys.argv[1], "tiny")
    image = np.random.default_rng(0).uniform(0, 1, (40, 30, 3)).astype(np.float32)
    result = inpaint(image, make_mask("center", 40, 30), model=model)
    assert result.output.shape == (40, 30, 3)
    assert "tensorflow" not in [m.split(".")[0] for m in sys.modules if sys.modules[m] is not None]
    print("ok without tensorflow")
    """
)


def test_the_client_works_where_tensorflow_cannot_be_imported(server):
    result = subprocess.run([sys.executable, "-c", NO_TENSORFLOW, server.url], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ok without tensorflow" in result.stdout


def test_an_export_from_before_the_refinement_still_serves_and_refuses_it_clearly(tmp_path, batch):
    """Version 2 of the shipped model has no refine_* inputs: both clients still search with
    its defaults and with options, and a refinement request names the fix."""
    import shutil

    from tf_semantic_inpaint import devserver

    base = tmp_path / "old"
    shutil.copytree(os.path.join(os.path.dirname(os.path.dirname(__file__)), "saved_models", "fashion_mnist", "2"),
                    base / "2")
    images, masks = batch
    quick = SearchSettings(iterations=3, restarts=2, learning_rate=0.05, seed=1, window=7)
    local = LocalModel(str(base / "2"))
    assert local.defaults.refine_steps == 0 and "inpaint_with_refinement" not in local.signatures
    server = devserver.make_server(str(base), port=0, quiet=True).start()
    try:
        rest = client.RestModel(server.url, "old")
        assert rest.defaults == local.defaults and not rest.refinement
        np.testing.assert_allclose(rest.search(images, masks, quick)["generated"],
                                   local.search(images, masks, quick)["generated"], atol=1e-6)
        wanted = dataclasses.replace(quick, refine_steps=5)
        with pytest.raises(InpaintError, match="exported before the refinement existed.*export it again"):
            local.search(images, masks, wanted)
        with pytest.raises(InpaintError, match="exported before the refinement existed.*export it again"):
            rest.search(images, masks, wanted)
    finally:
        server.stop()
