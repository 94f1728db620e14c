"""Progress of long work: a bar on a terminal, plain log lines when output goes to a file.

`tfinpaint evaluate ... > log` runs for an hour; a tqdm bar on stderr would leave the
log empty until the end, so without a terminal on stdout this prints a line to stdout
every `every` seconds (and at the end) instead.
"""

import sys
import time


class Progress:
    """Counts work done toward `total`; call `update(done)` with the absolute count.

    Args:
        total: units of work in all.
        desc: what is being done, e.g. "latent search".
        unit: what a unit is, e.g. "step".
        every: seconds between log lines when stdout is not a terminal.
        enabled: False shows nothing.
    """

    def __init__(self, total, desc, unit="step", every=30.0, enabled=True, stream=None):
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.stream = stream or sys.stdout
        self.done, self.started, self.last = 0, time.monotonic(), None
        self.bar = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False)
        self.log = enabled and self.bar is None

    def update(self, done, note=None):
        """Set the count of units done (absolute, not an increment)."""
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            if note:
                self.bar.set_postfix_str(note)
        self.done = done
        now = time.monotonic()
        if self.log and (self.last is None or now - self.last >= self.every or done >= self.total):
            self.last = now
            elapsed = now - self.started
            left = elapsed / done * (self.total - done) if done else float("nan")
            units = self.unit + ("es" if self.unit.endswith("h") else "s")
            print(f"{self.desc}: {done}/{self.total} {units} ({100 * done / max(self.total, 1):.0f}%), "
                  f"{elapsed:.0f} s elapsed, ~{left:.0f} s left" + (f"; {note}" if note else ""),
                  file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
