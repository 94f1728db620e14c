"""Server-side batching: concurrent requests to one signature run as one model call.

TF Serving's answer to many small requests (`--enable_batching` with a
`--batching_parameters_file`), here for `tfinpaint serve` with the same file format and
meaning: requests wait up to `batch_timeout_micros` for others, up to `max_batch_size`
rows, and run as one batch; each client gets exactly its own rows back.

Only signatures whose inputs all carry the batch dimension can be batched (`inpaint`,
`inpaint_png`, `generate`, `discriminate`); TF Serving refuses the others while batching
is on (`inpaint_with_settings` and `inpaint_png_with_settings` take scalars, `limits`
takes nothing), and so does this server. A batch that the model refuses (one request in
it is bad) is run again one request at a time, so the error stays with its request.
"""

import asyncio
import dataclasses
import re

import numpy as np

from tf_semantic_inpaint.errors import InpaintError

NOT_BATCHABLE = ("Batching session Run() input tensors must have at least one dimension: signature {name!r} "
                 "takes scalars or no inputs, which TF Serving cannot batch. With batching on, use inpaint "
                 "or inpaint_png (the model's own search settings); serve per-request settings from a "
                 "server without batching.")


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's BatchingParameters (the fields this server honours).

    Attributes:
        max_batch_size: most rows in one batch.
        batch_timeout_micros: how long the first request of a batch waits for others.
        max_enqueued_batches: full batches that may wait for a thread (503 beyond).
        num_batch_threads: batches run at once.
        allowed_batch_sizes: accepted for TF Serving's format; this server never pads.
    """

    max_batch_size: int = 8
    batch_timeout_micros: int = 5000
    max_enqueued_batches: int = 16
    num_batch_threads: int = 1
    allowed_batch_sizes: tuple = ()

    @classmethod
    def parse(cls, text):
        """Parse TF Serving's text format, e.g. `max_batch_size { value: 8 }` per line.

        Raises InpaintError naming an unknown field or a value that is not a positive integer.
        """
        values, allowed = {}, []
        body = re.sub(r"#[^\n]*", "", text)
        for match in re.finditer(r"(\w+)\s*(?:\{\s*value\s*:\s*([^\s}]+)\s*\}|:\s*([^\s}]+))", body):
            name, number = match[1], match[2] if match[2] is not None else match[3]
            if name == "pad_variable_length_inputs":
                continue  # TF Serving's option for ragged inputs; ours have fixed shapes
            if name not in cls.__dataclass_fields__:
                raise InpaintError(f"unknown batching parameter {name!r}; this server reads "
                                   f"{', '.join(cls.__dataclass_fields__)}.")
            if not number.isdigit() or int(number) < 1:
                raise InpaintError(f"batching parameter {name} must be a positive integer, got {number!r}.")
            if name == "allowed_batch_sizes":
                allowed.append(int(number))
            else:
                values[name] = int(number)
        leftover = re.sub(r"(\w+)\s*(\{\s*value\s*:\s*[^\s}]+\s*\}|:\s*[^\s}]+)", "", body).strip()
        if leftover:
            raise InpaintError(f"cannot read the batching parameters near {leftover[:40]!r}; write lines such "
                               "as `max_batch_size { value: 8 }`.")
        params = cls(**values, allowed_batch_sizes=tuple(allowed))
        if allowed and (allowed != sorted(allowed) or allowed[-1] != params.max_batch_size):
            raise InpaintError("allowed_batch_sizes must increase and end at max_batch_size (TF Serving's rule).")
        return params

    @classmethod
    def read(cls, path):
        try:
            with open(path) as f:
                return cls.parse(f.read())
        except OSError as error:
            raise InpaintError(f"cannot read the batching parameters file {path}: {error.strerror}.") from None


def batchable(function):
    """Whether every input of a concrete function has an unknown leading (batch) dimension."""
    specs = function.structured_input_signature[1].values()
    return bool(specs) and all(spec.shape.rank and spec.shape[0] is None for spec in specs)


@dataclasses.dataclass
class _Batch:
    name: str
    requests: list = dataclasses.field(default_factory=list)  # (tensors, rows, future)
    rows: int = 0
    timer: asyncio.TimerHandle | None = None


class Batcher:
    """Gathers concurrent requests per signature into batches and runs them.

    Args:
        run: callable(name, {input: tensor}) -> {output: array}, the model call (blocking).
        params: BatchingParameters.
        executor: where `run` executes (the server's model threads).
        busy: exception to raise when `max_enqueued_batches` are already waiting.
    """

    def __init__(self, run, params, executor, busy):
        self.run, self.params, self.executor, self.busy = run, params, executor, busy
        self.open = {}  # signature -> the batch still gathering
        self.waiting = 0  # closed batches not yet running
        self.threads = asyncio.Semaphore(params.num_batch_threads)

    async def submit(self, name, tensors):
        """This request's outputs, after it ran inside some batch."""
        rows = len(next(iter(tensors.values())))
        if rows > self.params.max_batch_size:  # too big to share: it runs as its own batch
            return await self._call(name, tensors)
        batch = self.open.get(name)
        if batch is not None and batch.rows + rows > self.params.max_batch_size:
            self._close(batch)
            batch = None
        if batch is None:
            if self.waiting >= self.params.max_enqueued_batches:
                raise self.busy
            batch = self.open[name] = _Batch(name)
            batch.timer = asyncio.get_running_loop().call_later(
                self.params.batch_timeout_micros / 1e6, self._close, batch)
        future = asyncio.get_running_loop().create_future()
        batch.requests.append((tensors, rows, future))
        batch.rows += rows
        if batch.rows >= self.params.max_batch_size:
            self._close(batch)
        return await future

    def _close(self, batch):
        """Stop gathering `batch` and schedule its run."""
        if self.open.get(batch.name) is not batch:
            return  # closed already (full before its timer fired)
        del self.open[batch.name]
        batch.timer.cancel()
        self.waiting += 1
        asyncio.get_running_loop().create_task(self._execute(batch))

    async def _call(self, name, tensors):
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.run, name, tensors)

    async def _execute(self, batch):
        async with self.threads:
            self.waiting -= 1
            requests = batch.requests
            try:
                if len(requests) == 1:
                    merged = requests[0][0]
                else:
                    merged = {key: np.concatenate([np.asarray(t[key]) for t, _, _ in requests])
                              for key in requests[0][0]}
                outputs = await self._call(batch.name, merged)
            except Exception as error:  # noqa: BLE001  (isolate: each request again, alone)
                if len(requests) == 1:
                    _settle(requests[0][2], error=error)
                    return
                for tensors, _, future in requests:
                    try:
                        _settle(future, await self._call(batch.name, tensors))
                    except Exception as alone:  # noqa: BLE001
                        _settle(future, error=alone)
                return
            start = 0
            for _, rows, future in requests:
                _settle(future, {key: value[start:start + rows] for key, value in outputs.items()})
                start += rows


def _settle(future, result=None, error=None):
    if future.done():  # the client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
