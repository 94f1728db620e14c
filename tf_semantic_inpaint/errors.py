"""The one exception type for problems the user can fix (bad input, missing data).

The CLI prints its message as a one-line error and exits non-zero; anything else
is a bug and keeps its traceback.
"""

import re

_TF_ERROR_NOISE = re.compile(
    r"^(Graph execution error:|Detected at node .*|<stack traces unavailable>|\s*\[\[\{\{.*)$"
)


class InpaintError(Exception):
    """Bad input or state; the message names the problem and the fix."""


def short_tf_message(error):
    """The useful line(s) of a TensorFlow error, without node names and op ids.

    For the model's refusals (its Asserts), the refusal's own message; at most 500
    characters. Used wherever one is shown to a user (REST answers, dead letters).
    """
    text = getattr(error, "message", None) or str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not _TF_ERROR_NOISE.match(line)]
    message = re.sub(r"\s*\[Op:[^\]]*\]", "", " ".join(lines)).strip()
    return re.sub(r"^assertion failed: \[(.*)\]$", r"\1", message)[:500]
