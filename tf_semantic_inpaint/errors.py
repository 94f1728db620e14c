"""The one exception type for problems the user can fix (bad input, missing data).

The CLI prints its message as a one-line error and exits non-zero; anything else
is a bug and keeps its traceback.
"""


class InpaintError(Exception):
    """Bad input or state; the message names the problem and the fix."""
