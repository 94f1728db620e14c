"""Progress of long work: log lines when the output is a file, nothing when disabled."""

import io

from tf_semantic_inpaint.progress import Progress


def test_without_a_terminal_progress_is_logged_as_lines():
    out = io.StringIO()  # not a TTY, like `tfinpaint evaluate ... > log`
    bar = Progress(4, "evaluate", unit="batch", every=0.0, stream=out)
    for done in range(1, 5):
        bar.update(done, note=f"center: step {done}")
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("evaluate: 1/4 batches (25%)") and "s elapsed" in lines[0]
    assert lines[-1].startswith("evaluate: 4/4 batches (100%)") and lines[-1].endswith("center: step 4")


def test_log_lines_are_spaced_but_the_last_always_comes():
    out = io.StringIO()
    bar = Progress(100, "latent search", every=3600.0, stream=out)
    for done in range(1, 101):
        bar.update(done)
    assert [line.split(" (")[0] for line in out.getvalue().splitlines()] == [
        "latent search: 1/100 steps", "latent search: 100/100 steps"]


def test_disabled_progress_prints_nothing():
    out = io.StringIO()
    bar = Progress(3, "x", enabled=False, stream=out)
    bar.update(3)
    assert out.getvalue() == ""
