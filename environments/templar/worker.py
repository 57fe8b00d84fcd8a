"""The only process that runs miner code. It is forked from the supervisor before any secret exists, behind
the wall of contain.py, then obeys commands on a private pipe: import the submission, run the warm-up, run
the timed call, and on the key that follows the call's return, write the sketches verification reads into
the hand-over buffer (sketch.py).

Nothing here is trusted once the submission is imported: the miner can patch this very module, torch, or
anything else in this interpreter. That is harmless by construction: the clock, the reference and the
comparison live in the supervisor, and sketches that match the reference's can only come from weights and
optimizer state that match it. So nothing here polices the submission's Python; reports of failure are
believed (they only hurt the miner), everything else is a claim the supervisor checks."""
import base64
import gc
import importlib.util
import inspect
import math
import numbers
import os
import sys
import traceback

import numpy as np
import torch

import channel
import contain
import sketch
import workload
from handover import WorkerBuffer

RESULT_FIELDS = ("final_logits", "total_tokens", "final_loss")
# What a worker may report; anything else in a report is itself a sign of tampering.
REJECTION_CODES = {"syntax_error", "import_error", "missing_inner_steps", "bad_signature", "crash", "bad_return",
                   "out_of_memory"}


class Rejected(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class Worker:
    def __init__(self, setup: dict, device: torch.device, handover_fd: int):
        self.config = workload.config_from(setup["model_config"])
        self.device, self.opt_settings, self.autocast = device, setup["optimizer"], setup["autocast"]
        # The profile's precision, told rather than imposed: autocast around the whole call would also cast
        # parts of optimizer.step (5.6% off the update on tiny-bf16); the template wraps its forward only.
        os.environ["CRUSADES_AUTOCAST"] = "bf16" if self.autocast else "off"
        self.layout = workload.param_layout(self.config)
        self.logits_shape = tuple(setup["logits_shape"])
        self.buffer = WorkerBuffer(handover_fd, self.layout, self.logits_shape)
        self.model = workload.build_model(self.config, device)
        self.pinned = self.buffer.pin(device)
        self._prewarm(setup["batch_size"], setup["sequence_length"])
        self.inner_steps = self.pending = None

    def _prewarm(self, batch: int, seq: int) -> None:
        # torch's thread pools, autograd threads and the allocator's first blocks exist before miner code.
        x = torch.zeros(batch, seq - 1, dtype=torch.long, device=self.device)
        with workload.autocast(self.device, self.autocast):
            logits = self.model(input_ids=x).logits
        logits.float().mean().backward()
        del logits
        workload.make_optimizer(self.model, self.opt_settings)
        self.model.zero_grad(set_to_none=True)

    def load(self, code: str) -> None:
        path = os.path.join(os.environ["HOME"], "train.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(code)
        spec = importlib.util.spec_from_file_location("train", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["train"] = module
        try:
            spec.loader.exec_module(module)
        except SyntaxError as e:
            raise Rejected("syntax_error", f"train.py does not compile: {e}") from None
        except BaseException as e:  # noqa: BLE001 — SystemExit and friends at import are the miner's too
            raise Rejected("import_error", f"importing train.py raised {_describe(e)}") from None
        fn = vars(module).get("inner_steps")
        if not callable(fn):
            raise Rejected("missing_inner_steps", "train.py defines no callable inner_steps")
        try:
            inspect.signature(fn).bind(None, None, None, None, None)
        except (TypeError, ValueError) as e:
            raise Rejected("bad_signature", "inner_steps must accept (model, data_iterator, optimizer, "
                                            f"num_steps, device) positionally: {e}") from None
        self.inner_steps = fn

    def call(self, msg: dict) -> dict:
        """One inner_steps call on freshly initialised weights and fresh data. For the timed call this runs
        inside the supervisor's window, from the seed arriving to the report."""
        tokens = np.frombuffer(base64.b64decode(msg["tokens"]), dtype="<i4").reshape(msg["shape"])
        batches = [torch.from_numpy(b.astype(np.int64)) for b in tokens]
        workload.init_weights(self.model, msg["init_seed"], self.config.initializer_range)
        optimizer = workload.make_optimizer(self.model, self.opt_settings)
        try:
            result = self.inner_steps(self.model, iter(batches), optimizer, len(batches), self.device)
            logits, total_tokens, final_loss = _read_result(result)
        except Rejected:
            raise
        except (torch.OutOfMemoryError, MemoryError) as e:
            raise Rejected("out_of_memory", f"inner_steps ran out of memory: {e}") from None
        except BaseException as e:  # noqa: BLE001
            raise Rejected("crash", f"inner_steps raised {_describe(e)}") from None
        self.pending = optimizer, logits
        return {"total_tokens": total_tokens, "final_loss": final_loss if math.isfinite(final_loss) else None,
                "logits_shape": list(logits.shape)}

    def hand_over(self, key: int) -> dict:
        """The sketches of this call's outcome, keyed by a secret sent only now, into the shared buffer."""
        optimizer, logits = self.pending
        self.pending = None
        sketch.collect(self.model, optimizer, logits, self.layout, self.logits_shape, key, self.buffer.flat)
        return {}


def _read_result(result):
    """The three fields, read inside the window (so a lazily computed one is computed on the clock), from an
    object's attributes or a mapping's keys. Only the values count; the type of the container does not."""
    get = result.get if isinstance(result, dict) else lambda f: getattr(result, f)
    try:
        logits, tokens, loss = (get(f) for f in RESULT_FIELDS)
    except (AttributeError, KeyError) as e:
        raise Rejected("bad_return", f"inner_steps returned {_type_name(result)} without {e}") from None
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise Rejected("bad_return", f"final_logits must be a floating-point torch.Tensor, got {_type_name(logits)}")
    # A tensor subclass could answer our own arithmetic on it; its plain data cannot.
    logits = logits.detach().as_subclass(torch.Tensor)
    return logits, _scalar(tokens, "total_tokens", int), _scalar(loss, "final_loss", float)


def _scalar(value, name: str, kind):
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    elif isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if kind is int and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if kind is float and isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    raise Rejected("bad_return", f"{name} must be a Python {kind.__name__} (or one-element tensor), got {_type_name(value)}")


def _type_name(value) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _describe(e: BaseException) -> str:
    tb = "".join(traceback.format_exception(type(e), e, e.__traceback__)[-6:])
    return f"{type(e).__name__}: {e}\n{tb}"[:4000]


def serve(cmd_fd: int, msg_fd: int, device: torch.device, handover_fd: int) -> None:
    # "setup" names the model and shapes; on one GPU it comes only once the reference has freed its memory.
    worker = Worker(channel.recv(cmd_fd), device, handover_fd)
    channel.send(msg_fd, {"ok": True, "op": "setup", "handover": worker.pinned, "landlock": contain.landlocked})
    while True:
        msg = channel.recv(cmd_fd)
        op = msg["op"]
        try:
            if op == "load":
                reply = worker.load(msg["code"]) or {}
            elif op == "sketch":
                reply = worker.hand_over(msg["key"])
            else:
                reply = worker.call(msg)
            reply.update(ok=True, op=op)
        except Rejected as r:
            reply = {"ok": False, "op": op, "code": r.code, "message": r.message}
        if op in ("load", "sketch"):
            # Everything alive now (torch, transformers, the submission's module) moves out of the
            # collector's reach, so a full collection inside the timed window costs little (it took
            # 0.25-0.3 s here: as long as the whole tiny window). Freezing without collecting costs nothing.
            gc.freeze()
        channel.send(msg_fd, reply)
