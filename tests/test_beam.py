"""Batch inpainting on Apache Beam (DirectRunner) over a few hundred real Fashion-MNIST images."""

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

from tf_semantic_inpaint.errors import InpaintError
from tf_semantic_inpaint.images import read_image, write_image
from tf_semantic_inpaint.masks import make_mask, write_mask

N_GOOD = 200
MASK_KINDS = ("center", "pattern", "random", "half")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """images/ and masks/ of 200 real Fashion-MNIST test images with the paper's four masks,
    plus three bad pairs (an unreadable file, a size mismatch, a missing mask) and a text
    file beside the masks; good/ holds
    the 200 good images only (what `tfinpaint inpaint` on a folder accepts)."""
    from tf_semantic_inpaint.data import DEBIAN_FASHION_MNIST, read_idx

    root = tmp_path_factory.mktemp("pairs")
    for folder in ("images", "masks", "good"):
        (root / folder).mkdir()
    garments = read_idx(DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz")[1000:1000 + N_GOOD]
    for i, garment in enumerate(garments):
        name = f"{i:04d}.png"
        write_image(str(root / "images" / name), garment[..., np.newaxis] / np.float32(255))
        write_mask(str(root / "masks" / name), make_mask(MASK_KINDS[i % 4], 28, 28, seed=i))
        os.link(root / "images" / name, root / "good" / name)
    (root / "images" / "unreadable.png").write_bytes(b"\x89PNG but not really")
    write_mask(str(root / "masks" / "unreadable.png"), make_mask("center", 28, 28))
    write_image(str(root / "images" / "wide.png"), np.zeros((28, 40, 1), np.float32))
    write_mask(str(root / "masks" / "wide.png"), make_mask("center", 28, 28))
    write_image(str(root / "images" / "maskless.png"), np.zeros((28, 28, 1), np.float32))
    (root / "masks" / "0000.txt").write_text("not a mask: a folder's non-image files are ignored")
    return root


def _run(pairs, out, tiny_export, *pipeline_args, **options):
    from tf_semantic_inpaint import beam as inpaint_beam

    return inpaint_beam.run(str(pairs / "images"), str(pairs / "masks"), str(out), model=tiny_export,
                     pipeline_args=["--runner", "DirectRunner", *pipeline_args], **options)


@pytest.fixture(scope="module")
def beam_run(pairs, tiny_export, tmp_path_factory):
    out = tmp_path_factory.mktemp("beam") / "completed"
    return out, _run(pairs, out, tiny_export)


def _assert_same_images(ours, theirs):
    """The same images, up to float rounding: the search's arithmetic differs in the last bits
    between batch sizes (oneDNN), so a few 8-bit pixels may round the other way (1/255)."""
    assert sorted(ours) == sorted(theirs)
    differ = 0
    for name in theirs:
        np.testing.assert_allclose(ours[name], theirs[name], atol=1 / 255 + 1e-6, rtol=0, err_msg=name)
        differ += int(np.sum(ours[name] != theirs[name]))
    pixels = sum(image.size for image in theirs.values())
    print(f"{differ} of {pixels} pixels differ by 1/255")
    assert differ <= 0.001 * pixels


def _outputs(folder):
    return {name: read_image(str(folder / name)) for name in sorted(os.listdir(folder)) if name.endswith(".png")}


@pytest.mark.slow
def test_beam_gives_what_tfinpaint_inpaint_gives_on_the_folder(pairs, beam_run, tiny_export, tmp_path):
    from tf_semantic_inpaint.files import inpaint_files

    out, report = beam_run
    assert (report.inpainted, report.skipped, report.failed) == (N_GOOD, 0, 3)
    folder_out = tmp_path / "folder"
    inpaint_files(str(pairs / "good"), str(pairs / "masks"), str(folder_out), model=tiny_export, progress=False)
    ours, theirs = _outputs(out), _outputs(folder_out)
    assert sorted(ours) == [f"{i:04d}.png" for i in range(N_GOOD)]
    _assert_same_images(ours, theirs)


@pytest.mark.slow
def test_manifest_has_one_line_per_image_and_dead_letters_say_why(pairs, beam_run, tiny_export):
    from tf_semantic_inpaint import beam as inpaint_beam

    out, report = beam_run
    lines = inpaint_beam.read_lines(report.manifest)
    assert sorted(line["output"] for line in lines) == [str(out / f"{i:04d}.png") for i in range(N_GOOD)]
    for line in lines:
        assert set(line) == {"input", "mask", "output", "context_loss", "prior_loss", "model", "model_version"}
        assert os.path.basename(line["input"]) == os.path.basename(line["output"])
        assert line["model_version"] == 1 and line["model"].endswith(os.path.join("tiny", "1"))
        assert np.isfinite(line["context_loss"]) and line["context_loss"] > 0
    reasons = {os.path.basename(d["input"]): d["reason"] for d in inpaint_beam.read_lines(report.dead_letter)}
    assert set(reasons) == {"unreadable.png", "wide.png", "maskless.png"}
    assert "cannot read" in reasons["unreadable.png"]
    assert "28x28 but image" in reasons["wide.png"] and "--resize-mask" in reasons["wide.png"]
    assert "no mask for maskless.png" in reasons["maskless.png"]


@pytest.mark.slow
def test_multi_process_direct_runner_on_both_cores_gives_the_same_images(pairs, beam_run, tiny_export, tmp_path):
    out = tmp_path / "completed"
    report = _run(pairs, out, tiny_export, "--direct_num_workers", "2", "--direct_running_mode", "multi_processing")
    assert (report.inpainted, report.failed) == (N_GOOD, 3)
    _assert_same_images(_outputs(out), _outputs(beam_run[0]))


def test_a_pattern_matching_nothing_is_refused_before_the_pipeline(tmp_path):
    from tf_semantic_inpaint import beam as inpaint_beam

    with pytest.raises(InpaintError, match="no file matches"):
        inpaint_beam.run(str(tmp_path / "nothing" / "*.png"), str(tmp_path / "*.png"), str(tmp_path / "out"),
                  model=str(tmp_path / "no model: never looked at"))
    assert not (tmp_path / "out").exists()


def test_the_core_install_works_without_beam_and_says_how_to_get_it(tmp_path):
    """Beam blocked as if not installed: the package imports and the CLI answers; only
    `inpaint-beam` needs it, and says which extra to install."""
    code = (
        "import sys; sys.modules['apache_beam'] = None\n"
        "import tf_semantic_inpaint.inpaint, tf_semantic_inpaint.export, tf_semantic_inpaint.train\n"
        "from tf_semantic_inpaint.cli import main\n"
        "sys.argv = ['tfinpaint', 'inpaint-beam', 'a/*.png', 'b/*.png', '--out', 'o']\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    assert 'pip install "tf-semantic-inpaint[beam]"' in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "o")


@pytest.mark.slow
def test_a_batch_the_model_refuses_is_searched_again_image_by_image(tiny_models, fashion_mnist_test_images,
                                                                    tmp_path):
    """A model that takes one 28x28 image per request and none larger, five pairs in one
    batch: the model refuses the batch, then each image alone; the four it takes are
    inpainted, the 30x30 one is a dead letter with the model's own reason, one line."""
    from tf_semantic_inpaint import beam as inpaint_beam
    from tf_semantic_inpaint.contract import Limits, SearchSettings
    from tf_semantic_inpaint.export import InpaintingModule, SearchCompleter, write_savedmodel

    limits = dataclasses.replace(Limits.for_resolution(28), max_image_pixels=28 * 28, max_request_pixels=28 * 28)
    module = InpaintingModule(SearchCompleter(*tiny_models), SearchSettings(iterations=5, restarts=1), limits)
    write_savedmodel(module, str(tmp_path / "strict" / "1"), module.card())
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    for i, garment in enumerate(fashion_mnist_test_images[:4]):
        write_image(str(tmp_path / "images" / f"{i}.png"), garment)
        write_mask(str(tmp_path / "masks" / f"{i}.png"), make_mask("center", 28, 28))
    write_image(str(tmp_path / "images" / "big.png"), np.pad(fashion_mnist_test_images[4], ((1, 1), (1, 1), (0, 0))))
    write_mask(str(tmp_path / "masks" / "big.png"), make_mask("center", 30, 30))

    report = inpaint_beam.run(str(tmp_path / "images"), str(tmp_path / "masks"), str(tmp_path / "out"),
                              model=str(tmp_path / "strict"), batch_size=5, pipeline_args=["--runner", "DirectRunner"])
    assert (report.inpainted, report.failed) == (4, 1)
    assert sorted(_outputs(tmp_path / "out")) == ["0.png", "1.png", "2.png", "3.png"]
    (dead,) = inpaint_beam.read_lines(report.dead_letter)
    assert os.path.basename(dead["input"]) == "big.png"
    assert dead["reason"] == ("inference failed: image_png holds an image of 900 pixels, over the limit of 784 "
                              "per image of this model; send smaller images.")


def test_pairs_are_found_by_stem_and_bad_pairings_are_dead_letters():
    """The pairing step alone: a stem with two images, one with two masks, a mask without image."""
    from tf_semantic_inpaint import beam as inpaint_beam
    from tf_semantic_inpaint.contract import SearchSettings

    job = inpaint_beam.BeamJob(images="i/*", masks="m/*", out="o", model="x", model_version={},
                               settings=SearchSettings())
    sort = inpaint_beam._Pair(job, None).sort
    assert sort("a", {"image": ["i/a.png"], "mask": ["m/a.png"], "record": []}) == [
        (None, {"stem": "a", "image": "i/a.png", "mask": "m/a.png", "output": os.path.join("o", "a.png")})]
    assert [tag for tag, _ in sort("b", {"image": ["i/b.png", "i/b.jpg"], "mask": ["m/b.png"]})] == ["failed"] * 2
    ((tag, dead),) = sort("c", {"image": ["i/c.png"], "mask": ["m/c.png", "m/c.bmp"]})
    assert tag == "failed" and "2 masks have the stem 'c'" in dead["reason"]
    assert sort("d", {"image": [], "mask": ["m/d.png"]}) == []


def test_the_command_passes_search_options_to_the_model_and_beam_options_to_beam(pairs, tiny_export, tmp_path):
    """`tfinpaint inpaint-beam` on four pairs: its own options reach the search, the ones it
    does not know (here the DirectRunner's) reach the pipeline, and it says what it did."""
    from click.testing import CliRunner

    from tf_semantic_inpaint import beam as inpaint_beam
    from tf_semantic_inpaint.cli import main

    out = tmp_path / "completed"
    result = CliRunner().invoke(main, [
        "inpaint-beam", str(pairs / "images" / "000[0-3].png"), str(pairs / "masks"), "--out", str(out),
        "--model", tiny_export, "--iterations", "7", "--restarts", "2", "--no-blend", "--estimate", "mean",
        "--direct_num_workers", "1", "--direct_running_mode", "in_memory",
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "4 inpainted, 0 done before, 0 failed." in result.output
    assert sorted(_outputs(out)) == ["0000.png", "0001.png", "0002.png", "0003.png"]
    record = inpaint_beam.read_lines(str(out / ".records" / "0002.json"))[0]
    assert record["job"]["settings"]["iterations"] == 7 and record["job"]["settings"]["restarts"] == 2
    assert record["job"]["blend"] is False and record["job"]["estimate"] == "mean"

    unknown = CliRunner().invoke(main, ["inpaint-beam", str(pairs / "images" / "0000.png"), str(pairs / "masks"),
                                        "--out", str(tmp_path / "o2"), "--model", tiny_export,
                                        "--direct_num_workerz", "2"])
    assert unknown.exit_code == 1  # Beam alone would drop it with a log line and run on
    assert "unknown option --direct_num_workerz (did you mean --direct_num_workers?)" in unknown.output
    assert not (tmp_path / "o2").exists()


@pytest.mark.slow
def test_re_running_skips_what_is_done_and_redoes_only_what_was_interrupted(pairs, beam_run, tiny_export):
    """Run again over the module's finished run; then as if interrupted: three records lost,
    an output torn, a killed writer's temporary file left behind. (Last in the file: it
    rewrites the module run's outputs, to the same pixels.)"""
    from tf_semantic_inpaint import beam as inpaint_beam

    out, first = beam_run
    before = _outputs(out)
    stamps = {name: os.path.getmtime(out / name) for name in before}
    again = _run(pairs, out, tiny_export)
    assert (again.inpainted, again.skipped, again.failed) == (0, N_GOOD, 3)
    assert {name: os.path.getmtime(out / name) for name in before} == stamps  # nothing rewritten
    lines = lambda report: sorted(map(str, inpaint_beam.read_lines(report.manifest)))  # noqa: E731
    assert lines(again) == lines(first)

    for name in ("0003", "0100", "0199"):
        os.remove(out / ".records" / f"{name}.json")
    (out / "0100.png").write_bytes(b"torn")  # as if killed while writing, before the rename
    (out / ".tmp-deadbeef-0042.png").write_bytes(b"half")
    resumed = _run(pairs, out, tiny_export)
    assert (resumed.inpainted, resumed.skipped) == (3, N_GOOD - 3)
    _assert_same_images(_outputs(out), before)
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]
    assert len(inpaint_beam.read_lines(resumed.manifest)) == N_GOOD  # no duplicate lines
