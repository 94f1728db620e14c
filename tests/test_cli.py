"""`tfinpaint` end to end: train -> export -> inpaint -> serve, and its refusals."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from tf_semantic_inpaint.cli import main
from tf_semantic_inpaint.masks import make_mask, read_mask, write_mask

FAST = ["--iterations", "20", "--restarts", "2"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_help_answers_without_importing_tensorflow():
    code = (
        "import sys\n"
        "from tf_semantic_inpaint.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
        "assert 'keras' not in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout and "inpaint" in result.stdout and "export" in result.stdout


def test_masks_command(tmp_path):
    out = tmp_path / "m.png"
    result = invoke("masks", "--type", "random", "--size", "28x32", "--seed", "3", "-o", out)
    assert result.exit_code == 0, result.output
    mask = read_mask(str(out))
    assert mask.shape == (28, 32, 1)
    assert abs((mask == 0).mean() - 0.8) < 0.01
    assert invoke("masks", "--size", "28x28", "-o", out).exit_code == 1  # exists, no --force
    assert invoke("masks", "--type", "moon", "--size", "28x28", "-o", tmp_path / "x.png").exit_code == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["--resolution", "30"], "4, 5, 6 or 7 times a power of two"),
        (["--dataset", "/no/such/folder"], "does not exist"),
        (["--init-from", os.path.dirname(__file__)], "is not a SavedModel version folder"),
        (["--init-from", os.path.join(os.path.dirname(os.path.dirname(__file__)), "saved_models", "fashion_mnist",
                                      "4"), "--width", "32", "--epochs", "50"], "not a DCGAN of this run's"),
    ],
)
def test_train_refuses_bad_input_with_one_line(tmp_path, args, message):
    result = invoke("train", *args, "--out", tmp_path / "run")
    assert result.exit_code == 1
    assert message in result.output and result.output.startswith("Error:")
    assert "Traceback" not in result.output
    assert not os.path.exists(tmp_path / "run")


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """`tfinpaint train` (1 epoch, then --resume to 2) and `tfinpaint export` of a tiny model."""
    root = tmp_path_factory.mktemp("cli")
    run = root / "run"
    common = ["--width", "8", "--batch-size", "16", "--steps-per-epoch", "3"]
    first = invoke("train", *common, "--epochs", "1", "--out", run)
    assert first.exit_code == 0, first.output
    resumed = invoke("train", "--epochs", "2", "--resume", "--out", run)  # settings from run.json
    assert resumed.exit_code == 0, resumed.output
    result = invoke("export", run, "--out", root / "models" / "tiny", *FAST, "--window", "7")
    assert result.exit_code == 0, result.output
    return root


def test_train_resume_and_export_write_what_they_say(cli_run):
    import json

    run = cli_run / "run"
    assert sorted(os.listdir(run / "samples")) == ["epoch_001.png", "epoch_002.png"]
    assert (cli_run / "models" / "tiny" / "1" / "saved_model.pb").is_file()
    card = json.loads((cli_run / "models" / "tiny" / "1" / "model_card.json").read_text())
    assert card["search_defaults"]["window"] == 7 and card["search_defaults"]["iterations"] == 20
    assert card["epochs"] == 2 and [s["epochs"] for s in card["training_sessions"]] == [[0, 1], [1, 2]]
    bad = invoke("export", run, "--out", cli_run / "models" / "bad", "--window", "4")
    assert bad.exit_code == 1 and "odd" in bad.output
    assert not (cli_run / "models" / "bad").exists()
    again = invoke("train", "--width", "16", "--resume", "--out", run)
    assert again.exit_code == 1 and "holds a different run" in again.output


@pytest.mark.slow
def test_train_encoder_against_a_trained_run(cli_run):
    run, out = cli_run / "run", cli_run / "encoder"
    args = ["--generator", run, "--width", "8", "--batch-size", "16", "--steps-per-epoch", "2", "--out", out]
    result = invoke("train-encoder", *args, "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert (out / "encoder.keras").is_file() and (out / "samples" / "epoch_001.png").is_file()
    again = invoke("train-encoder", *args)
    assert again.exit_code == 1 and "--resume" in again.output and "Traceback" not in again.output
    missing = invoke("train-encoder", "--generator", cli_run / "nothing", "--out", cli_run / "e2")
    assert missing.exit_code == 1 and "neither a GAN run" in missing.output
    assert not (cli_run / "e2").exists()


def _real_image(tmp_path, fashion_mnist_test_images, index=0, size=None):
    image = (fashion_mnist_test_images[index, ..., 0] * 255).astype(np.uint8)
    if size:
        image = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
    path = tmp_path / f"img{index}.png"
    cv2.imwrite(str(path), image)
    return path, image


def test_inpaint_end_to_end_on_a_real_test_image(cli_run, tmp_path, fashion_mnist_test_images):
    image_path, image = _real_image(tmp_path, fashion_mnist_test_images, 0, size=(56, 42))
    mask_path = tmp_path / "hole.png"
    write_mask(str(mask_path), make_mask("center", 42, 56))
    out = tmp_path / "out.png"
    result = invoke("inpaint", image_path, mask_path, "-o", out, "--model", cli_run / "models" / "tiny",
                    "--compare", tmp_path / "cmp.png", *FAST)
    assert result.exit_code == 0, result.output
    written = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert written.shape == image.shape
    known = make_mask("center", 42, 56)[..., 0] == 1
    np.testing.assert_array_equal(written[known], image[known])
    assert not np.array_equal(written[~known], image[~known])
    compare = cv2.imread(str(tmp_path / "cmp.png"))
    assert compare.shape[1] > 4 * 56  # four panels side by side
    assert "remapper" not in result.output and "E0000" not in result.output


def test_export_of_an_export_takes_refinement_defaults_and_inpaint_uses_them(cli_run, tmp_path,
                                                                             fashion_mnist_test_images):
    """`tfinpaint export` of a SavedModel folder: its own defaults, plus a refinement; the
    inpaint that uses it keeps the known pixels, and differs from the unrefined one."""
    import json

    base = cli_run / "models" / "tiny"
    result = invoke("export", base / "1", "--out", base, "--version", "7", "--refine-steps", "10",
                    "--refine-radius", "0.3")
    assert result.exit_code == 0, result.output
    card = json.loads((base / "7" / "model_card.json").read_text())
    assert card["search_defaults"]["window"] == 7 and card["search_defaults"]["iterations"] == 20  # kept
    assert (card["search_defaults"]["refine_steps"], card["search_defaults"]["refine_radius"]) == (10, 0.3)
    image_path, image = _real_image(tmp_path, fashion_mnist_test_images, 3)
    known = make_mask("center", 28, 28)[..., 0] == 1
    outputs = {}
    for name, extra in (("refined", []), ("plain", ["--refine-steps", "0"])):
        out = tmp_path / f"{name}.png"
        done = invoke("inpaint", image_path, "--mask-type", "center", "--model", base / "7", "-o", out,
                      "--no-blend", *extra)
        assert done.exit_code == 0, done.output
        outputs[name] = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(outputs[name][known], image[known])
    assert np.abs(outputs["refined"].astype(int) - outputs["plain"]).max() > 0
    again = invoke("export", base / "7", "--out", base, "--version", "7", "--force")
    assert again.exit_code == 1 and "is the model being exported again" in again.output


def test_inpaint_with_a_mask_type_and_defaults_beside_the_input(cli_run, tmp_path, fashion_mnist_test_images):
    image_path, _ = _real_image(tmp_path, fashion_mnist_test_images, 1)
    result = invoke("inpaint", image_path, "--mask-type", "half", "--model", cli_run / "models" / "tiny", *FAST)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "img1_inpainted.png").is_file()


def test_inpaint_estimate_typical_writes_one_of_the_samples(cli_run, tmp_path, fashion_mnist_test_images):
    image_path, _ = _real_image(tmp_path, fashion_mnist_test_images, 2)
    out = tmp_path / "typical.png"
    args = [image_path, "--mask-type", "half", "--model", cli_run / "models" / "tiny", *FAST, "--no-blend"]
    result = invoke("inpaint", *args, "--estimate", "typical", "--samples", "2", "-o", out)
    assert result.exit_code == 0, result.output
    written = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    samples = [cv2.imread(str(tmp_path / f"typical_sample{k}.png"), cv2.IMREAD_UNCHANGED) for k in (1, 2)]
    assert any(np.array_equal(written, sample) for sample in samples)  # restarts = samples = 2: it is one of them


def test_inpaint_refusals_write_nothing(cli_run, tmp_path, fashion_mnist_test_images):
    model = cli_run / "models" / "tiny"
    image_path, _ = _real_image(tmp_path, fashion_mnist_test_images, 2)
    small_mask = tmp_path / "small.png"
    write_mask(str(small_mask), make_mask("center", 20, 20))
    full = tmp_path / "full.png"
    write_mask(str(full), np.zeros((28, 28, 1)))
    out = tmp_path / "out.png"
    cases = [
        ([image_path, small_mask], "small.png is 20x20 but image"),
        ([image_path, full], "no context to condition on"),
        ([image_path, tmp_path / "missing.png"], "does not exist"),
        ([tmp_path / "small.png", small_mask, "--model", tmp_path], "not a SavedModel"),
    ]
    for args, message in cases:
        args = list(args) + (["--model", model] if "--model" not in args else []) + ["-o", out]
        result = invoke("inpaint", *args)
        assert result.exit_code != 0 and message in result.output, (args, result.output)
        assert not out.exists()
    assert invoke("inpaint", image_path, small_mask, "--resize-mask", "-o", out, "--model", model, *FAST).exit_code == 0
    before = out.read_bytes()
    refused = invoke("inpaint", image_path, "--mask-type", "center", "-o", out, "--model", model, *FAST)
    assert refused.exit_code == 1 and "--force" in refused.output
    assert out.read_bytes() == before
    same = invoke("inpaint", image_path, "--mask-type", "center", "-o", image_path, "--force", "--model", model)
    assert same.exit_code == 1 and "is one of the inputs" in same.output


@pytest.mark.parametrize("args, message", [
    (["--lr", "nan"], "'nan' must be a finite number > 0"),
    (["--lam", "nan"], "'nan' must be a finite number >= 0"),
    (["--lam", "-1"], "must be a finite number >= 0"),
    (["--lr", "inf"], "must be a finite number > 0"),
    (["--restarts", "0"], "0 is not in the range 1<=x"),
    (["--iterations", "4294967306"], "4294967306 is not in the range"),
    (["--seed", "4294967306"], "4294967306 is not in the range"),
    (["--restarts", "100"], "restarts = 100 is over the limit of 64"),
    (["-o", "out.xyz"], "no image format has the suffix '.xyz'"),
    (["-o", "afile/out.png"], "is a file, not a folder"),
    (["--mask-type", "moon"], "'moon'; use one of center"),
    (["--refine-steps", "-1"], "-1 is not in the range 0<=x"),
    (["--refine-radius", "nan"], "'nan' must be a finite number >= 0"),
    (["--refine-steps", "5000"], "refine_steps = 5000 is over the limit of 3000"),
])
def test_bad_options_are_refused_before_any_work(cli_run, tmp_path, fashion_mnist_test_images, args, message,
                                                monkeypatch):
    image_path, _ = _real_image(tmp_path, fashion_mnist_test_images, 2)
    (tmp_path / "afile").write_text("not a folder")
    if "--mask-type" not in args:
        args = ["--mask-type", "center"] + args
    monkeypatch.chdir(tmp_path)
    result = invoke("inpaint", image_path, "--model", cli_run / "models" / "tiny", *args)
    assert result.exit_code != 0 and message in result.output, result.output
    assert "Traceback" not in result.output
    assert sorted(os.listdir(tmp_path)) == ["afile", "img2.png"]


def test_mismatched_input_gets_a_warning_that_says_what_to_do(cli_run, tmp_path):
    photo = np.random.default_rng(0).integers(0, 256, (256, 256, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "photo.png"), photo)
    result = CliRunner().invoke(main, ["inpaint", str(tmp_path / "photo.png"), "--mask-type", "center",
                                       "--model", str(cli_run / "models" / "tiny"), *FAST])
    assert result.exit_code == 0, result.output
    assert "warning: the image is in colour but the model" in result.output
    assert "shrunk 9.1x" in result.output and "Crop the image" in result.output


def test_help_texts_name_every_option_and_its_default():
    for command in ("inpaint", "export", "evaluate", "serve"):
        result = invoke(command, "--help")
        for option in ("--iterations", "--restarts", "--lam", "--lr", "--seed", "--window"):
            if command == "serve":
                break
            options = result.output.split("Options:", 1)[1]  # not the examples above it
            block = options.split(option, 1)[1].split("\n  -")[0]
            assert "default" in block, (command, option, block)


def test_evaluate_keeps_the_mask_seed_apart_from_the_search_seed(cli_run, tmp_path):
    import json

    from tf_semantic_inpaint.evaluate import FILES

    out = tmp_path / "results"
    result = invoke("evaluate", "--model", cli_run / "models" / "tiny", "--n", "2", "--masks", "half",
                    "--methods", "ours_blend,ours_mean,telea", "--context-encoder", "none", "--judge", "none",
                    *FAST, "--mask-seed", "3", "--seed", "5", "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(out)) == sorted(FILES)
    written = json.loads((out / "results.json").read_text())
    assert written["seed"] == 3 and written["search_settings"]["seed"] == 5
    assert list(written["results"]) == ["ours_blend", "ours_mean", "telea"]
    assert "| ours_mean |" in result.output


def test_a_forced_folder_run_that_fails_one_write_changes_nothing(cli_run, tmp_path, fashion_mnist_test_images):
    """The README's promise, kept with --force: a file that cannot be written (here: over the
    process's file-size limit) leaves every earlier output as it was."""
    import resource
    import signal

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"a{i}.png"), (fashion_mnist_test_images[i, ..., 0] * 255).astype(np.uint8))
    noise = np.random.default_rng(0).integers(0, 256, (300, 300, 3), np.uint8)  # a large PNG output
    cv2.imwrite(str(folder / "b.png"), noise)
    model, out = cli_run / "models" / "tiny", tmp_path / "out"
    first = invoke("inpaint", folder, "--mask-type", "center", "-o", out, "--model", model, *FAST)
    assert first.exit_code == 0, first.output
    before = {name: (out / name).read_bytes() for name in sorted(os.listdir(out))}
    assert list(before) == ["a0.png", "a1.png", "b.png"]

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, resource.RLIM_INFINITY))

    exe = os.path.join(os.path.dirname(sys.executable), "tfinpaint")
    # Another search seed: every output would change, were any written.
    again = subprocess.run([exe, "inpaint", str(folder), "--mask-type", "center", "-o", str(out), "--force",
                            "--model", str(model), *FAST, "--seed", "9"], preexec_fn=small_files,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode != 0
    assert {name: (out / name).read_bytes() for name in sorted(os.listdir(out))} == before
    unlimited = subprocess.run([exe, "inpaint", str(folder), "--mask-type", "center", "-o", str(out), "--force",
                                "--model", str(model), *FAST, "--seed", "9"], capture_output=True, text=True,
                               timeout=600)
    assert unlimited.returncode == 0, unlimited.stderr
    after = {name: (out / name).read_bytes() for name in sorted(os.listdir(out))}
    assert all(after[name] != before[name] for name in before)  # the seed did change every output


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_and_the_rest_client_give_the_local_result(cli_run, tmp_path, fashion_mnist_test_images):
    model = cli_run / "models" / "tiny"
    port = _free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "tfinpaint")
    server = subprocess.Popen([exe, "serve", model, "--port", str(port), "--quiet", "--host", "0.0.0.0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/v1/models/tiny", timeout=1)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()
                time.sleep(0.5)
        image_path, _ = _real_image(tmp_path, fashion_mnist_test_images, 3)
        local = invoke("inpaint", image_path, "--mask-type", "pattern", "-o", tmp_path / "local.png",
                       "--model", model, *FAST)
        remote = invoke("inpaint", image_path, "--mask-type", "pattern", "-o", tmp_path / "remote.png",
                        "--server", url, "--model-name", "tiny", *FAST)
        assert local.exit_code == 0 and remote.exit_code == 0, remote.output
        assert (tmp_path / "local.png").read_bytes() == (tmp_path / "remote.png").read_bytes()
        wrong = invoke("inpaint", image_path, "--mask-type", "pattern", "-o", tmp_path / "x.png",
                       "--server", url, "--model-name", "nope")
        assert wrong.exit_code == 1 and "404" in wrong.output
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert "warning: listening on 0.0.0.0" in stderr and "no authentication" in stderr
    gone = invoke("inpaint", image_path, "--mask-type", "pattern", "-o", tmp_path / "y.png",
                  "--server", url, "--model-name", "tiny")
    assert gone.exit_code == 1 and "not reachable" in gone.output
