"""The SavedModel for TF Serving: layout, every signature, both loaders, exporting an export
again, and every request refused in the graph before it costs anything (versions on disk:
test_export_versions.py)."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tf_semantic_inpaint import export as exporting
from tf_semantic_inpaint.contract import Limits, SearchSettings
from tf_semantic_inpaint.errors import InpaintError
from tf_semantic_inpaint.images import decode_image, encode_png
from tf_semantic_inpaint.masks import make_mask, mask_png

SETTINGS = SearchSettings(iterations=25, restarts=2, learning_rate=0.05, seed=5)
SIGNATURES = ["discriminate", "generate", "inpaint", "inpaint_png", "inpaint_png_with_options",
              "inpaint_png_with_refinement", "inpaint_png_with_settings", "inpaint_with_options",
              "inpaint_with_refinement", "inpaint_with_settings", "limits", "serving_default"]


@pytest.fixture(scope="module")
def exported(tiny_run_dir, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("models") / "fmnist")
    path = exporting.export(tiny_run_dir, base, settings=SETTINGS, notes={"training_time_s": 12.5})
    return base, path


def _images_and_masks(images, kind="center"):
    masks = np.stack([make_mask(kind, 28, 28, seed=i) for i in range(len(images))])
    return images.astype(np.float32), masks


def test_layout_and_model_card(exported):
    base, path = exported
    assert path == os.path.join(base, "1")
    assert sorted(os.listdir(base)) == ["1"]  # no temporary directories left behind
    assert {"saved_model.pb", "variables", "model_card.json"} <= set(os.listdir(path))
    card = exporting.read_card(path)
    assert card["resolution"] == 28 and card["channels"] == 1 and card["z_dim"] == 100
    assert card["dataset"] == "fashion_mnist" and card["epochs"] == 3
    assert card["training_command"].startswith("tfinpaint train")
    assert card["search_defaults"] == dataclasses.asdict(SETTINGS)
    assert card["search_fixed"] == {"prior": "paper", "encoder": False, "refine_layer": 0,
                                    "refine_learning_rate": 0.01, "mean_mix": None}
    assert card["limits"] == dataclasses.asdict(Limits.for_resolution(28))
    assert card["training_time_s"] == 12.5
    assert card["signatures"] == SIGNATURES
    mode = os.stat(path).st_mode & 0o777
    assert mode == 0o777 & ~_umask(), oct(mode)  # readable by a serving process of another user


def test_every_signature_in_process(exported, tiny_models, fashion_mnist_test_images):
    _, path = exported
    generator, discriminator = tiny_models
    loaded = tf.saved_model.load(path)
    assert sorted(loaded.signatures.keys()) == SIGNATURES
    images, masks = _images_and_masks(fashion_mnist_test_images[:3])
    out = loaded.signatures["inpaint"](images=tf.constant(images), masks=tf.constant(masks))
    assert sorted(out) == ["completed", "context_loss", "generated", "mean", "prior_loss", "z"]
    completed, generated = out["completed"].numpy(), out["generated"].numpy()
    assert completed.shape == generated.shape == (3, 28, 28, 1)
    np.testing.assert_array_equal(completed[masks == 1], images[masks == 1])
    np.testing.assert_array_equal(completed[masks == 0], generated[masks == 0])
    # serving_default is inpaint; inpaint_with_settings with the baked defaults is too.
    default = loaded.signatures["serving_default"](images=tf.constant(images), masks=tf.constant(masks))
    np.testing.assert_array_equal(default["z"].numpy(), out["z"].numpy())
    explicit = loaded.signatures["inpaint_with_settings"](
        images=tf.constant(images), masks=tf.constant(masks), iterations=tf.constant(25),
        lam=tf.constant(0.003), learning_rate=tf.constant(0.05), restarts=tf.constant(2), seed=tf.constant(5),
    )
    np.testing.assert_array_equal(explicit["z"].numpy(), out["z"].numpy())
    # generate and discriminate are G and D in [0, 1] image space.
    z = out["z"]
    np.testing.assert_allclose(
        loaded.signatures["generate"](z=z)["images"].numpy(), generated, atol=1e-6
    )
    logits = loaded.signatures["discriminate"](images=tf.constant(images))["logits"].numpy()
    np.testing.assert_allclose(logits, discriminator(images * 2 - 1).numpy()[:, 0], rtol=1e-4, atol=1e-5)


def test_png_signature_keeps_size_channels_alpha_and_bit_depth(exported, fashion_mnist_test_images):
    import cv2

    _, path = exported
    loaded = tf.saved_model.load(path)
    grey = np.clip(cv2.resize(fashion_mnist_test_images[0], (45, 60), interpolation=cv2.INTER_CUBIC), 0, 1)
    alpha = np.linspace(0.2, 1, 60 * 45, dtype=np.float32).reshape(60, 45, 1)
    mask = make_mask("center", 60, 45, seed=0)
    known = mask[..., 0] == 1
    for image, depth in ((grey[..., None], 8), (np.dstack([grey] * 3 + [alpha[..., 0]]), 16)):
        out = loaded.signatures["inpaint_png"](image_png=tf.constant([encode_png(image, depth)]),
                                               mask_png=tf.constant([mask_png(mask)]))
        raw = cv2.imdecode(np.frombuffer(out["completed_png_bytes"].numpy()[0], np.uint8), cv2.IMREAD_UNCHANGED)
        assert raw.dtype == (np.uint16 if depth == 16 else np.uint8)
        completed = decode_image(out["completed_png_bytes"].numpy()[0])
        generated = decode_image(out["generated_png_bytes"].numpy()[0])
        assert completed.shape == generated.shape == image.shape
        scale = 2**depth - 1
        np.testing.assert_array_equal(np.round(completed[known] * scale), np.round(image[known] * scale))
        np.testing.assert_array_equal(completed[..., 3:], np.round(image[..., 3:] * scale) / scale)  # alpha
        assert np.abs(completed[~known] - image[~known]).mean() > 0  # the hole was filled anew
        assert out["z"].shape == (1, 100) and out["context_loss"].shape == (1,)


def _bomb(width, height):
    """A valid PNG of width x height black pixels: a few KB on disk, width * height bytes decoded."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\0" * (width + 1) * height, 9)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def _grey_pair_with_a_center_hole():
    """Two mid-grey 28x28 images and their masks (1 = known) with a 14x14 central hole."""
    masks = np.ones((2, 28, 28, 1), np.float32)
    masks[:, 7:21, 7:21] = 0
    return np.full((2, 28, 28, 1), 0.5, np.float32), masks


def _refused(fn, match, **inputs):
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        fn(**{k: tf.constant(v) for k, v in inputs.items()})


def test_every_input_is_checked_before_any_work(exported):
    """The probes of the hardening issue: each refused with the input, its value and the limit."""
    _, path = exported
    loaded = tf.saved_model.load(path)
    images, masks = _grey_pair_with_a_center_hole()
    fn = loaded.signatures["inpaint_with_settings"]
    ok = dict(images=images, masks=masks, iterations=np.int32(2), lam=np.float32(0.003),
              learning_rate=np.float32(0.03), restarts=np.int32(2), seed=np.int32(0))
    limits = Limits.for_resolution(28)
    probes = [
        (dict(iterations=np.int32(2**31 - 1)), "iterations = 2147483647 is over the limit of 3000"),
        (dict(iterations=np.int32(-1)), "iterations must be >= 0"),
        (dict(restarts=np.int32(20000)), "restarts = 20000 is over the limit of 64"),
        (dict(restarts=np.int32(0)), "restarts must be >= 1, got 0"),
        (dict(restarts=np.int32(-1)), "restarts must be >= 1, got -1"),
        (dict(lam=np.float32("nan")), "lam must be a finite number >= 0, got nan"),
        (dict(lam=np.float32(-1)), "lam must be a finite number >= 0"),
        (dict(learning_rate=np.float32("nan")), "learning_rate must be a finite number > 0"),
        (dict(learning_rate=np.float32(0)), "learning_rate must be a finite number > 0"),
        (dict(images=images * 10), "images must hold finite values in .0, 1.; got values from 5 to 5"),
        (dict(images=np.where(masks > 0, np.nan, images).astype(np.float32)), "images must hold finite"),
        (dict(masks=masks * 2), "masks must hold finite values in .0, 1."),
        (dict(masks=masks[:1]), "same batch size, got 2 and 1"),
        (dict(images=np.zeros((300, 28, 28, 1), np.float32), masks=np.ones((300, 28, 28, 1), np.float32)),
         "batch = 300 is over the limit of 256"),
        (dict(images=np.zeros((40, 28, 28, 1), np.float32), masks=np.ones((40, 28, 28, 1), np.float32),
              restarts=np.int32(64)), f"batch x restarts = 2560 is over the limit of {limits.max_candidates}"),
        (dict(restarts=np.int32(64), iterations=np.int32(3000)),
         f"batch x restarts x iterations = 384000 is over the limit of {limits.max_candidate_steps}"),
        (dict(masks=np.zeros_like(masks)), "no context"),
    ]
    for change, message in probes:
        _refused(fn, message, **{**ok, **change})
    fn(**{k: tf.constant(v) for k, v in ok.items()})  # and the model still answers

    png = loaded.signatures["inpaint_png"]
    small, hole = encode_png(np.zeros((10, 10, 1), np.float32)), mask_png(make_mask("center", 10, 10))
    import cv2

    jpeg = cv2.imencode(".jpg", np.zeros((10, 10), np.uint8))[1].tobytes()
    _refused(png, r"image_png\[1\] is not a PNG file \(its first bytes are \[255 216 255 224\]",
             image_png=[small, jpeg], mask_png=[hole, hole])
    _refused(png, r"mask_png\[0\] is not a PNG file", image_png=[small], mask_png=[b"nor this"])
    _refused(png, "not a PNG", image_png=[b""], mask_png=[hole])
    _refused(png, "image_png and mask_png must have the same length", image_png=[small, small], mask_png=[hole])
    _refused(png, r"mask_png\[0\] is 10x12 but image_png\[0\] is 10x10", image_png=[small],
             mask_png=[mask_png(np.ones((12, 10, 1)))])
    bomb = _bomb(20000, 20000)
    assert len(bomb) < 1_000_000  # 400 million pixels in under a megabyte
    _refused(png, "image_png holds an image of 400000000 pixels, over the limit of 16777216",
             image_png=[bomb], mask_png=[bomb])
    four = _bomb(4000, 4000)
    _refused(png, "the PNGs of the request hold 80000000 pixels in all, over the limit of 67108864",
             image_png=[four] * 5, mask_png=[four] * 5)
    assert png(image_png=tf.constant([small]), mask_png=tf.constant([hole]))["z"].shape == (1, 100)


def test_limits_signature_lists_the_limits_and_defaults(exported):
    _, path = exported
    values = {k: v.numpy().item() for k, v in tf.saved_model.load(path).signatures["limits"]().items()}
    limits = Limits.for_resolution(28)
    assert {k: values[k] for k in dataclasses.asdict(limits)} == dataclasses.asdict(limits)
    assert values["default_iterations"] == 25 and values["default_restarts"] == 2 and values["default_seed"] == 5
    assert values["default_learning_rate"] == pytest.approx(0.05)
    assert values["default_refine_steps"] == 0 and values["default_refine_radius"] == pytest.approx(0.1)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


STANDALONE = textwrap.dedent(
    """
    import sys
    sys.modules["tf_semantic_inpaint"] = None  # this package must not be needed
    import numpy as np, tensorflow as tf
    path = sys.argv[1]
    try:
        import tf_semantic_inpaint  # noqa
        raise SystemExit("the package was importable")
    except ImportError:
        pass
    images = np.random.default_rng(0).uniform(0, 1, (2, 28, 28, 1)).astype(np.float32)
    masks = np.ones((2, 28, 28, 1), np.float32); masks[:, 7:21, 7:21] = 0

    # TF2 loading
    loaded = tf.saved_model.load(path)
    out2 = loaded.signatures["inpaint"](images=tf.constant(images), masks=tf.constant(masks))
    print("tf2", sorted(loaded.signatures.keys()))

    # The TF1 session loader, which TensorFlow Serving uses.
    tf.compat.v1.disable_eager_execution()
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        meta = tf.compat.v1.saved_model.load(sess, ["serve"], path)
        sig = meta.signature_def["inpaint"]
        fetch = {k: v.name for k, v in sig.outputs.items()}
        feed = {sig.inputs["images"].name: images, sig.inputs["masks"].name: masks}
        out1 = sess.run(fetch, feed)
        for name in ("generate", "discriminate", "inpaint_with_settings", "inpaint_png", "limits"):
            assert name in meta.signature_def, name
        bad = {sig.inputs["images"].name: images, sig.inputs["masks"].name: np.zeros_like(masks)}
        try:
            sess.run(fetch, bad)
            raise SystemExit("an all-missing mask was accepted")
        except tf.errors.InvalidArgumentError as error:
            assert "no context to condition on" in error.message
        settings = meta.signature_def["inpaint_with_settings"]
        feed = {settings.inputs[k].name: v for k, v in dict(
            images=images, masks=masks, iterations=2**31 - 1, lam=0.003, learning_rate=0.03, restarts=1,
            seed=0).items()}
        try:
            sess.run({k: v.name for k, v in settings.outputs.items()}, feed)
            raise SystemExit("2**31 - 1 iterations were accepted")
        except tf.errors.InvalidArgumentError as error:
            assert "iterations = 2147483647 is over the limit of 3000" in error.message
        out_again = sess.run(fetch, {sig.inputs["images"].name: images, sig.inputs["masks"].name: masks})
        assert np.array_equal(out_again["z"], out1["z"]), "the session broke after a refusal"
        limits = meta.signature_def["limits"]
        assert sess.run(limits.outputs["max_iterations"].name) == 3000
    assert np.array_equal(out1["z"], out2["z"].numpy()), "TF1 and TF2 loaders disagree"
    print("tf1 ok", out1["completed"].shape)
    """
)


def test_loads_and_runs_without_this_package_under_both_loaders(exported):
    _, path = exported
    result = subprocess.run([sys.executable, "-c", STANDALONE, path], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tf1 ok (2, 28, 28, 1)" in result.stdout


def _saved_model_cli():
    return os.path.join(os.path.dirname(sys.executable), "saved_model_cli")


def test_saved_model_cli_show_and_run(exported, tmp_path, fashion_mnist_test_images):
    _, path = exported
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    show = subprocess.run([_saved_model_cli(), "show", "--dir", path, "--all"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert show.returncode == 0, show.stderr[-2000:]
    for name in SIGNATURES:
        assert f"signature_def['{name}']" in show.stdout
    assert "inputs['image_png'] tensor_info:\n        dtype: DT_STRING" in show.stdout
    images, masks = _images_and_masks(fashion_mnist_test_images[:2])
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "masks.npy", masks)
    run = subprocess.run(
        [_saved_model_cli(), "run", "--dir", path, "--tag_set", "serve", "--signature_def", "inpaint",
         "--inputs", f"images={tmp_path / 'images.npy'};masks={tmp_path / 'masks.npy'}",
         "--outdir", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    completed = np.load(tmp_path / "out" / "completed.npy")
    assert completed.shape == (2, 28, 28, 1)
    np.testing.assert_array_equal(completed[masks == 1], images[masks == 1])
    refused = subprocess.run(
        [_saved_model_cli(), "run", "--dir", path, "--tag_set", "serve", "--signature_def", "inpaint_with_settings",
         "--inputs", f"images={tmp_path / 'images.npy'};masks={tmp_path / 'masks.npy'}",
         "--input_exprs", "iterations=2147483647;lam=0.003;learning_rate=0.03;restarts=1;seed=0",
         "--outdir", str(tmp_path / "refused")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert refused.returncode != 0
    assert "iterations = 2147483647 is over the limit of 3000" in refused.stderr


def _refinement_inputs(images, masks, steps, radius=0.3, **change):
    """The inputs of inpaint_with_refinement: SETTINGS, the exported defaults, and a refinement."""
    options = dict(images=images, masks=masks, iterations=np.int32(SETTINGS.iterations),
                   lam=np.float32(SETTINGS.lam), learning_rate=np.float32(SETTINGS.learning_rate),
                   restarts=np.int32(SETTINGS.restarts), seed=np.int32(SETTINGS.seed), samples=np.int32(1),
                   window=np.int32(SETTINGS.window), warm_start=np.int32(0), refine_steps=np.int32(steps),
                   refine_radius=np.float32(radius))
    return {k: tf.constant(v) for k, v in {**options, **change}.items()}


def test_the_refinement_signature_equals_the_library_search(exported, tiny_models, fashion_mnist_test_images):
    """inpaint_with_refinement runs search.LatentSearch's search and refinement, nothing else:
    same z, same refined G output, same losses; known pixels kept in `completed`."""
    from tf_semantic_inpaint.search import LatentSearch

    _, path = exported
    loaded = tf.saved_model.load(path)
    images, masks = _images_and_masks(fashion_mnist_test_images[:3], "pattern")
    out = loaded.signatures["inpaint_with_refinement"](**_refinement_inputs(images, masks, 15))
    search = LatentSearch(*tiny_models, window=15)  # held: tf.function methods keep a weak reference
    library = search.search(
        tf.constant(images * 2 - 1), tf.constant(masks), tf.constant(25), tf.constant(SETTINGS.lam),
        tf.constant(0.05), tf.constant(2), tf.constant(5), tf.constant(15), tf.constant(0.3))
    np.testing.assert_allclose(out["z"].numpy(), library["z"].numpy(), atol=1e-5)
    np.testing.assert_allclose(out["generated"].numpy(), library["generated"].numpy() * 0.5 + 0.5, atol=1e-4)
    np.testing.assert_allclose(out["context_loss"].numpy(), library["context_loss"].numpy(), rtol=1e-4)
    completed = out["completed"].numpy()
    np.testing.assert_array_equal(completed[masks == 1], images[masks == 1])
    # Without refinement it is inpaint_with_options; with it the context loss is lower.
    plain = loaded.signatures["inpaint_with_refinement"](**_refinement_inputs(images, masks, 0))
    options = loaded.signatures["inpaint_with_options"](**{
        k: v for k, v in _refinement_inputs(images, masks, 0).items() if not k.startswith("refine")})
    np.testing.assert_array_equal(plain["generated"].numpy(), options["generated"].numpy())
    assert np.mean(out["context_loss"].numpy()) < np.mean(plain["context_loss"].numpy())


def test_refinement_requests_are_checked_before_any_work(exported):
    _, path = exported
    loaded = tf.saved_model.load(path)
    images, masks = _grey_pair_with_a_center_hole()
    fn = loaded.signatures["inpaint_with_refinement"]
    limits = Limits.for_resolution(28)
    for change, message in [
        (dict(refine_steps=np.int32(2**31 - 1)), "refine_steps = 2147483647 is over the limit of 3000"),
        (dict(refine_steps=np.int32(-1)), "refine_steps must be >= 0, got -1"),
        (dict(refine_radius=np.float32("inf")), "refine_radius must be a finite number >= 0, got inf"),
        (dict(refine_radius=np.float32(-0.5)), "refine_radius must be a finite number >= 0"),
        (dict(restarts=np.int32(64), iterations=np.int32(1000), refine_steps=np.int32(2000)),
         f"batch x restarts x \\(iterations \\+ refine_steps\\) = 384000 is over the limit of "
         f"{limits.max_candidate_steps}"),
    ]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            fn(**_refinement_inputs(images, masks, 1, **change))
    assert fn(**_refinement_inputs(images, masks, 2))["z"].shape == (2, 100)  # and it still answers


def test_exporting_again_keeps_the_refinement_fixed_in_the_earlier_export(exported, tiny_models, tmp_path,
                                                                          fashion_mnist_test_images):
    """The refinement's layer and rate are fixed in an export's graph and its card: exporting it
    again keeps the card's, not this code's defaults, and the new graph refines with them."""
    import shutil

    from tf_semantic_inpaint.search import LatentSearch

    _, path = exported
    earlier = str(tmp_path / "earlier" / "1")
    shutil.copytree(path, earlier)
    card = exporting.read_card(earlier)
    card["search_fixed"].update(refine_layer=1, refine_learning_rate=0.05)  # as if exported with other constants
    with open(os.path.join(earlier, "model_card.json"), "w") as f:
        json.dump(card, f)
    again = exporting.export(earlier, str(tmp_path / "m"), settings=SETTINGS)
    assert exporting.read_card(again)["search_fixed"] == {"prior": "paper", "encoder": False, "refine_layer": 1,
                                                          "refine_learning_rate": 0.05, "mean_mix": None}
    images, masks = _images_and_masks(fashion_mnist_test_images[:2])
    out = tf.saved_model.load(again).signatures["inpaint_with_refinement"](**_refinement_inputs(images, masks, 10))
    y, m = tf.constant(images * 2 - 1), tf.constant(masks)
    args = (tf.constant(25), tf.constant(SETTINGS.lam), tf.constant(0.05), tf.constant(2), tf.constant(5),
            tf.constant(10), tf.constant(0.3))
    kept = LatentSearch(*tiny_models, window=15, refine_layer=1, refine_learning_rate=0.05)
    np.testing.assert_allclose(out["generated"].numpy(), kept.search(y, m, *args)["generated"].numpy() * 0.5 + 0.5,
                               atol=1e-4)
    default = LatentSearch(*tiny_models, window=15)  # layer 0, rate 0.01: a different answer
    other = default.search(y, m, *args)["generated"].numpy() * 0.5 + 0.5
    assert np.abs(out["generated"].numpy() - other).max() > 1e-3


def test_an_export_exported_again_keeps_its_networks_and_takes_new_defaults(exported, tmp_path,
                                                                            fashion_mnist_test_images):
    """The shipped model gains a newer contract without its training run: same G and D, same
    answers for the same settings, new defaults, the card's training record kept."""
    _, path = exported
    refined = dataclasses.replace(SETTINGS, refine_steps=10, refine_radius=0.2)
    again = exporting.export(path, str(tmp_path / "m"), settings=refined)
    card, old = exporting.read_card(again), exporting.read_card(path)
    assert card["search_defaults"] == dataclasses.asdict(refined)
    assert os.path.samefile(os.path.join(again, card["exported_again_from"]["path"]), path)
    assert (card["training_command"], card["epochs"], card["training_time_s"]) == (
        old["training_command"], old["epochs"], old["training_time_s"])
    first, second = tf.saved_model.load(path), tf.saved_model.load(again)
    images, masks = _images_and_masks(fashion_mnist_test_images[:2])
    a = first.signatures["inpaint_with_refinement"](**_refinement_inputs(images, masks, 10, 0.2))
    b = second.signatures["inpaint"](images=tf.constant(images), masks=tf.constant(masks))
    np.testing.assert_allclose(b["generated"].numpy(), a["generated"].numpy(), atol=1e-5)
    with pytest.raises(InpaintError, match="is the model being exported again"):
        exporting.export(path, os.path.dirname(path), version=1, force=True, settings=refined)
