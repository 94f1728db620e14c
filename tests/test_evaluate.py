"""The Table 1 evaluation on real Fashion-MNIST test images with the tiny real model."""

import json
import math
import os

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds

from tf_semantic_inpaint import data, evaluate, metrics
from tf_semantic_inpaint.errors import InpaintError
from tf_semantic_inpaint.masks import MASK_TYPES, make_mask

N, BATCH = 5, 2  # three search batches per mask kind, the last partial; examples span two


@pytest.fixture(scope="module")
def truth():
    """The first N real Fashion-MNIST test images as the evaluation sees them, [N, 28, 28, 1]."""
    data.prepare("fashion_mnist")
    return evaluate.evaluation_images("fashion_mnist", "test", N, 28, 1)


@pytest.fixture(scope="module")
def searches():
    return []


@pytest.fixture(scope="module")
def report(tiny_export, tiny_context_encoder_export, tiny_judge_export, truth, searches):
    """Every method (the tiny context encoder's too) on every mask kind, plus an oracle that
    returns the ground truth; judged by the tiny judge."""
    from tf_semantic_inpaint.local import LocalModel

    model = LocalModel(tiny_export)
    search = model.inpaint_png

    def counted(images, masks, settings=None, **options):
        searches.append((len(images), settings.samples))
        return search(images, masks, settings, **options)

    model.inpaint_png = counted

    def oracle(image, mask):
        # It sees the hole zeroed, so it finds its image by the known pixels.
        matches = [t for t in truth if np.array_equal(t * mask, image)]
        assert len(matches) == 1
        return matches[0]

    return evaluate.evaluate(model, n=N, batch_size=BATCH, train_images_limit=500,
                             extra_methods={"oracle": oracle}, progress=False,
                             context_encoder=tiny_context_encoder_export[0], judge=tiny_judge_export)


ALL = evaluate.METHODS + ("oracle",)


def _table(markdown):
    """The first Markdown table as (header cells, {method: row cells})."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    header, rows = cells[0], {}
    for row in cells[2:]:
        if row[0] == "method":  # the second table starts
            break
        rows[row[0]] = row[1:]
    return header, rows


def test_markdown_has_a_row_per_method_and_a_column_per_mask(report):
    markdown = report.to_markdown()
    header, rows = _table(markdown)
    assert header == ["method", *MASK_TYPES]
    assert list(rows) == list(ALL)
    for cells in rows.values():
        assert len(cells) == len(MASK_TYPES)
        assert all(" dB" not in c and " / " in c for c in cells)
    assert "fashion_mnist" in markdown and "split test" in markdown
    assert f"n = {N}" in markdown and "28x28x1" in markdown and report.model_path in markdown
    assert "30 iterations, 2 restarts" in markdown  # the tiny model's search defaults
    assert "500 of the 57,000 training images" in markdown


def test_json_has_every_method_and_mask_with_finite_scores(report):
    result = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert result["n"] == N and result["seed"] == 0 and result["resolution"] == 28
    assert result["search_settings"]["iterations"] == 30
    assert result["model"]["card"]["search_defaults"]["restarts"] == 2
    assert {"tensorflow", "keras"} <= set(result["versions"]) and result["date"]
    assert set(result["results"]) == set(ALL)
    for method in ALL:
        assert set(result["results"][method]) == set(MASK_TYPES)
        for cell in result["results"][method].values():
            assert math.isfinite(cell["psnr"]) and math.isfinite(cell["ssim"])
            assert len(cell["psnr_per_image"]) == len(cell["ssim_per_image"]) == N
            assert cell["psnr"] == pytest.approx(np.mean(cell["psnr_per_image"]), abs=1e-3)
        # Timings are reported, never judged: a fast machine may finish in microseconds.
        assert math.isfinite(result["seconds"][method]) and result["seconds"][method] >= 0


def test_the_oracle_scores_highest_in_every_column(report):
    for kind in MASK_TYPES:
        oracle = report.scores["oracle"][kind]
        assert oracle.psnr == metrics.PSNR_CAP and oracle.ssim == pytest.approx(1.0)
        for method in evaluate.METHODS:
            other = report.scores[method][kind]
            assert other.psnr < oracle.psnr and other.ssim < oracle.ssim, (method, kind)
            assert other.psnr > 5.0, (method, kind)  # a real completion, not garbage
    _, rows = _table(report.to_markdown())
    assert all(cell.startswith("**100.00** / **1.000**") for cell in rows["oracle"])


def test_every_method_keeps_the_known_pixels(report, truth):
    for kind in MASK_TYPES:
        example = report.examples[kind]
        known = np.broadcast_to(example["mask"] > 0.5, example["truth"].shape)
        np.testing.assert_array_equal(example["truth"], truth[:evaluate.EXAMPLES])
        for method in ALL:
            assert report.scores[method][kind].known_kept, (method, kind)
            output = example["outputs"][method]
            assert output.shape == (evaluate.EXAMPLES, 28, 28, 1)
            np.testing.assert_array_equal(output[known], example["truth"][known])


def test_masks_are_seeded_per_image_and_searches_batched(report, searches):
    for kind in MASK_TYPES:
        expected = [make_mask(kind, 28, 28, seed=i) for i in range(evaluate.EXAMPLES)]
        np.testing.assert_array_equal(report.examples[kind]["mask"], np.stack(expected))
    pattern = report.examples["pattern"]["mask"]
    assert not np.array_equal(pattern[0], pattern[1])
    # One search per mask kind and batch gives "ours", "ours_blend", "ours_mean" and "ours_typical".
    assert [images for images, _ in searches] == [2, 2, 1] * len(MASK_TYPES)
    # ours_typical chooses among every restart's completion: each search asks for all 2.
    assert [samples for _, samples in searches] == [2, 2, 2] * len(MASK_TYPES)


def test_too_many_images_names_the_split_size(tiny_export, truth):
    with pytest.raises(InpaintError, match="has 10,000 images"):
        evaluate.evaluate(tiny_export, n=10_001, methods=["telea"], progress=False)


@pytest.mark.parametrize("kwargs, message", [
    (dict(methods=["ours", "poisson"]), "unknown method.*'poisson'.*telea"),
    (dict(masks=["center", "square"]), "unknown mask.*'square'.*pattern"),
    (dict(extra_methods={"telea": lambda image, mask: image}), "must be a new name"),
    (dict(split="train"), "nearest_neighbour draw on the training images"),
    (dict(n=0), "at least 1"),
])
def test_bad_requests_fail_before_any_work(kwargs, message):
    # A model that does not exist: the check must come before loading it.
    with pytest.raises(InpaintError, match=message):
        evaluate.evaluate("/nonexistent/model", progress=False, **kwargs)


def test_write_refuses_to_overwrite_without_force(report, tmp_path):
    out = tmp_path / "results"
    paths = evaluate.write(report, str(out))
    assert sorted(os.listdir(out)) == sorted(evaluate.FILES)  # no temporary files left
    assert [os.path.basename(p) for p in paths] == list(evaluate.FILES)
    umask = os.umask(0)
    os.umask(umask)
    assert all(os.stat(p).st_mode & 0o777 == 0o666 & ~umask for p in paths)  # not mkstemp's 0600
    assert (out / "results.md").read_text() == report.to_markdown()
    assert json.loads((out / "results.json").read_text())["n"] == N
    (out / "results.md").write_text("mine")
    with pytest.raises(InpaintError, match="--force"):
        evaluate.write(report, str(out))
    assert (out / "results.md").read_text() == "mine"
    evaluate.write(report, str(out), force=True)
    assert (out / "results.md").read_text() == report.to_markdown()
    assert sorted(os.listdir(out)) == sorted(evaluate.FILES)


def test_figure_is_a_labelled_grid_of_enlarged_examples(report, tmp_path):
    report.figure(str(tmp_path / "examples.png"))
    figure = cv2.imread(str(tmp_path / "examples.png"), cv2.IMREAD_UNCHANGED)
    columns = 2 + len(ALL)  # masked | methods | truth
    tile = 28 * 4  # enlarged to at least 112 pixels
    assert figure.shape[0] == 24 + len(MASK_TYPES) * (evaluate.EXAMPLES * (tile + 2) + 2)
    label_column = figure.shape[1] - (columns * (tile + 2) + 2)
    assert 40 <= label_column <= 120
    assert figure[:24].min() < 128  # the header holds dark text


def test_channel_conversion_is_reported():
    assert evaluate._channel_note("fashion_mnist", 1) is None
    assert "replicated to RGB" in evaluate._channel_note("fashion_mnist", 3)
    assert "luminance" in evaluate._channel_note("celeb_a", 1)


def test_other_datasets_at_the_models_resolution(tiny_export, tmp_path, monkeypatch):
    """CelebA (tfds mock records) through the grey 28x28 tiny model: cropped, resized, grey."""
    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
    with tfds.testing.mock_data(num_examples=4, data_dir=str(tmp_path)):
        result = evaluate.evaluate(tiny_export, dataset="celeb_a", n=2, masks=["center"],
                                   methods=["ours", "telea", "train_mean"], data_dir=str(tmp_path),
                                   progress=False)
    assert result.examples["center"]["truth"].shape == (2, 28, 28, 1)
    assert "luminance" in result.to_markdown()
    assert result.train_images == (4, 4)
    assert all(math.isfinite(result.scores[m]["center"].psnr) for m in result.methods)
    assert not result.has_semantics  # CelebA has no class labels: evaluated without a judge


# --- Semantic metrics (the judge) ------------------------------------------------------


def _tables(markdown):
    """Every Markdown table as a list of rows of cells (header first, separator dropped)."""
    tables, current = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            current.append([c.strip() for c in line.strip("|").split("|")])
        elif current:
            tables.append([current[0]] + current[2:])
            current = []
    return tables


def test_semantic_accuracy_and_frechet_distance_per_method_and_mask(report, truth, tiny_judge_export):
    from tf_semantic_inpaint.judge import LoadedJudge

    judge = LoadedJudge(tiny_judge_export)
    labels = evaluate.evaluation_labels("fashion_mnist", "test", N)
    logits, _ = judge.classify(truth)
    ceiling = report.semantic_bounds["uncorrupted"]
    assert ceiling["accuracy"] == pytest.approx(metrics.semantic_accuracy(logits, labels), abs=1e-4)
    assert report.reference_images == (N, evaluate.REFERENCE_IMAGES)  # real test images never evaluated
    for method in ALL:
        for kind in MASK_TYPES:
            cell = report.scores[method][kind]
            assert len(cell.correct_per_image) == N
            assert cell.semantic_accuracy == pytest.approx(np.mean(cell.correct_per_image), abs=1e-4)
            assert math.isfinite(cell.frechet_distance) and cell.frechet_distance >= 0
    # The oracle returns the truth: exactly the ceiling's accuracy and distance.
    for kind in MASK_TYPES:
        assert report.scores["oracle"][kind].semantic_accuracy == ceiling["accuracy"]
        assert report.scores["oracle"][kind].frechet_distance == ceiling["frechet_distance"]


def test_semantic_table_and_json(report):
    tables = _tables(report.to_markdown())
    semantic = next(t for t in tables if t[0] == ["method", *MASK_TYPES] and "/" in t[1][1] and "." in t[1][1]
                    and t is not tables[0])
    rows = {row[0]: row[1:] for row in semantic[1:]}
    assert list(rows) == list(ALL) + ["*uncorrupted (ceiling)*", "*masked input, hole black*"]
    oracle = report.scores["oracle"]["center"]
    assert rows["oracle"][0] == f"{100 * oracle.semantic_accuracy:.1f} / {oracle.frechet_distance:.2f}"
    assert "not Inception FID" in report.to_markdown()
    result = json.loads(json.dumps(report.to_json(), allow_nan=False))
    assert result["judge"]["card"]["kind"] == "judge"
    assert result["frechet_reference_images"] == {"first": N, "count": evaluate.REFERENCE_IMAGES}
    cell = result["results"]["ours"]["half"]
    assert {"semantic_accuracy", "frechet_distance", "correct_per_image"} <= set(cell)
    assert set(result["semantic_bounds"]["masked"]) == set(MASK_TYPES)


def test_paired_differences_against_the_context_encoder_and_nearest_neighbour(report):
    assert report.pairs == (("ours_blend", "context_encoder"), ("ours_blend", "nearest_neighbour"),
                            ("ours_mean", "context_encoder"), ("ours_mean", "nearest_neighbour"),
                            ("ours_typical", "context_encoder"), ("ours_typical", "nearest_neighbour"),
                            ("ours_mean", "ours_blend"))
    first, second = report.pairs[-1]
    a = np.array(report.scores[first]["pattern"].psnr_per_image)
    b = np.array(report.scores[second]["pattern"].psnr_per_image)
    mean, error, share = report.paired(first, second, "pattern")
    assert mean == pytest.approx(np.mean(a - b)) and share == pytest.approx(np.mean(a > b))
    assert error == pytest.approx(np.std(a - b, ddof=1) / np.sqrt(N))
    assert f"{mean:+.2f} ± {error:.2f}" in report.to_markdown()
    assert set(report.to_json()["paired_psnr"]) == {f"{a} - {b}" for a, b in report.pairs}
    assert "| ours_blend − context_encoder |" in report.to_markdown()


def test_without_a_judge_there_are_no_semantic_columns(tiny_export, tmp_path):
    result = evaluate.evaluate(tiny_export, n=3, masks=["center"], methods=["telea"], judge=False,
                               context_encoder=False, progress=False)
    assert not result.has_semantics and result.scores["telea"]["center"].semantic_accuracy is None
    assert "Semantic accuracy" not in result.to_markdown()
    assert "semantic_accuracy" not in result.to_json()["results"]["telea"]["center"]
    # Without the latent search there are no alternatives to draw.
    assert result.alternatives is None and result.to_json()["alternatives"] is None
    evaluate.write(result, str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == sorted(f for f in evaluate.FILES if f != "alternatives.png")


# --- The context encoder's rows ------------------------------------------------------------


def test_context_encoder_rows_are_its_exported_completions(report, tiny_context_encoder_export):
    from tf_semantic_inpaint.inpaint import inpaint_batch
    from tf_semantic_inpaint.local import LocalModel

    base, _ = tiny_context_encoder_export
    model = LocalModel(base)
    assert report.context_encoder["card"]["model"] == "context-encoder"
    assert report.context_encoder["path"].endswith(os.path.join("ce", "1"))
    for kind in MASK_TYPES:
        example = report.examples[kind]
        given = list(example["truth"] * example["mask"])
        expected = inpaint_batch(given, list(example["mask"]), model, blend=False)
        # Up to one 16-bit level: the two graphs may round a value on the other side of a step.
        np.testing.assert_allclose(example["outputs"]["context_encoder"], np.stack([r.completed for r in expected]),
                                   rtol=0, atol=1.01 / 65535)
        assert report.scores["context_encoder"][kind].known_kept
    assert report.seconds["context_encoder"] > 0


def test_the_shipped_context_encoder_is_the_default_rival():
    model = evaluate._context_encoder(None, "fashion_mnist")
    assert model.card["model"] == "context-encoder" and model.card["dataset"] == "fashion_mnist"
    assert os.path.basename(os.path.dirname(model.path)) == "fashion_mnist_ce"
    assert evaluate._context_encoder(None, "celeb_a") is None  # none shipped: its rows are left out


def test_context_encoder_asked_for_but_missing_or_not_one(tiny_export):
    with pytest.raises(InpaintError, match="no context encoder for fashion_mnist"):
        evaluate.evaluate(tiny_export, n=2, methods=["context_encoder"], context_encoder=False, progress=False)
    with pytest.raises(InpaintError, match="is a dcgan model, not a context encoder"):
        evaluate.evaluate(tiny_export, n=2, methods=["context_encoder"], context_encoder=tiny_export,
                          progress=False)


# --- The latent search's sample and mean ----------------------------------------------------


def test_sample_and_mean_rows_on_every_metric(report):
    tables = _tables(report.to_markdown())
    for table in tables[:2]:  # PSNR / SSIM, then semantic accuracy / Fréchet distance
        rows = {row[0]: row[1:] for row in table[1:]}
        assert {"ours_blend", "ours_mean"} <= set(rows)
    result = json.loads(json.dumps(report.to_json(), allow_nan=False))
    for kind in MASK_TYPES:
        for method in ("ours_blend", "ours_mean"):
            cell = result["results"][method][kind]
            assert all(math.isfinite(cell[k]) for k in ("psnr", "ssim", "semantic_accuracy", "frechet_distance"))
            assert cell["known_pixels_kept"]
        # Two estimates from one search, not one output twice.
        outputs = report.examples[kind]["outputs"]
        assert np.abs(outputs["ours_mean"] - outputs["ours_blend"]).max() > 1e-3
    assert result["seconds"]["ours_mean"] == result["seconds"]["ours_blend"]  # one search, one time
    assert "ours, ours_blend, ours_mean and ours_typical come from one latent search" in report.to_markdown()
    assert "posterior mean" in report.to_markdown()


def test_scored_rows_do_not_depend_on_the_samples_asked_for(report, tiny_export):
    """The figure's images were searched with samples = K, the others with 1: the same outputs."""
    from tf_semantic_inpaint.inpaint import inpaint_batch
    from tf_semantic_inpaint.local import LocalModel

    model = LocalModel(tiny_export)
    for kind in ("half", "pattern"):  # with K samples, and without
        example = report.examples[kind]
        results = inpaint_batch(list(example["truth"] * example["mask"]), list(example["mask"]), model)
        typical = inpaint_batch(list(example["truth"] * example["mask"]), list(example["mask"]), model,
                                estimate="typical")
        for method, attribute in (("ours", "completed"), ("ours_blend", "blended"), ("ours_mean", "mean")):
            np.testing.assert_allclose(example["outputs"][method], np.stack([getattr(r, attribute) for r in results]),
                                       atol=1e-5, err_msg=f"{method} on {kind}")
            np.testing.assert_allclose(example["outputs"][method], np.stack([getattr(r, attribute) for r in typical]),
                                       atol=1e-5, err_msg=f"{method} on {kind}")


def test_alternatives_are_the_searchs_samples_and_mean(report):
    found = report.alternatives
    samples = found["samples"]
    assert found["mask"] == "half" and samples.shape == (evaluate.EXAMPLES, 2, 28, 28, 1)  # K = restarts = 2
    example = report.examples["half"]
    np.testing.assert_array_equal(found["truth"], example["truth"])
    np.testing.assert_allclose(samples[:, 0], example["outputs"]["ours_blend"], atol=1e-6)  # the best sample first
    np.testing.assert_allclose(found["mean"], example["outputs"]["ours_mean"], atol=1e-6)
    typical = example["outputs"]["ours_typical"]  # one of the restarts' samples (all K = 2 here)
    assert all(any(np.allclose(typical[i], samples[i, k], atol=1e-6) for k in range(2)) for i in range(len(typical)))
    known = np.broadcast_to(example["mask"] > 0.5, example["truth"].shape)
    for k in range(samples.shape[1]):
        np.testing.assert_array_equal(samples[:, k][known], example["truth"][known])
    assert np.all(np.abs(samples[:, 0] - samples[:, 1]).max(axis=(1, 2, 3)) > 0.05)  # distinct alternatives
    losses = found["sample_losses"]
    assert losses.shape == (evaluate.EXAMPLES, 2) and np.all(losses[:, 0] <= losses[:, 1])
    assert report.to_json()["alternatives"] == {
        "mask": "half", "images": evaluate.EXAMPLES, "samples": 2, "mean": True,
        "sample_losses": [[round(float(v), 5) for v in row] for row in losses]}


def test_alternatives_figure_is_a_labelled_grid(report, tmp_path):
    from tf_semantic_inpaint.images import text_width

    evaluate.write(report, str(tmp_path))
    figure = cv2.imread(str(tmp_path / "alternatives.png"), cv2.IMREAD_UNCHANGED)
    tile = 28 * 4
    columns = 2 + 2 + 1  # masked | K = 2 samples | mean | truth
    assert figure.shape[0] == 24 + evaluate.EXAMPLES * (tile + 2) + 2
    label_column = figure.shape[1] - (columns * (tile + 2) + 2)
    assert label_column == text_width("half") + 12  # the mask kind's name on the left
    assert figure[:24].min() < 128  # the header holds dark text
    # The body is the report's images, enlarged 4x: the first row's mean tile is the mean.
    top, left = 24 + 2, label_column + 2 + 3 * (tile + 2)
    mean = figure[top:top + tile:4, left:left + tile:4] / 255.0
    np.testing.assert_allclose(mean, report.alternatives["mean"][0, ..., 0], atol=1 / 255)
