"""The only process that runs miner code. It is forked from the supervisor before any secret exists, drops
privileges, then obeys commands on a private pipe: import the submission, run the warm-up, run the timed
call and write what verification reads (each tensor's update W - W0 and the final logits) into the shared
hand-over buffer.

Nothing here is trusted once the submission is imported: the miner can patch this very module. Reports
of failure are believed (they only hurt the miner); reports of success are only claims the supervisor
verifies. The checks below exist to give honest mistakes and known cheats a precise error code."""
import base64
import builtins
import gc
import importlib.util
import inspect
import math
import os
import sys
import time
import traceback

import numpy as np
import torch
import torch.nn.functional as F
import channel
import workload
from handover import Handover

RESULT_FIELDS = ("final_logits", "total_tokens", "final_loss")
# What a worker may report; anything else in a report is itself a sign of tampering.
REJECTION_CODES = {"syntax_error", "import_error", "missing_inner_steps", "bad_signature", "crash", "bad_return",
                   "deferred_work", "tampering", "out_of_memory"}

# Where a patch would let the same interpreter's measurement or arithmetic lie. Patching any of these is
# refused even though the supervisor never shares an interpreter with the miner: it has no honest use.
_WATCHED = {
    "time": time, "math": math, "builtins": builtins, "torch.nn.functional": F, "torch.Tensor": torch.Tensor,
    "torch.nn.Parameter": torch.nn.Parameter, "torch.cuda": torch.cuda, "torch.optim.AdamW": torch.optim.AdamW,
    "torch.optim.Optimizer": torch.optim.Optimizer, "torch.autograd": torch.autograd, "numpy": np,
}
_TORCH_FNS = ("manual_seed", "cross_entropy", "autocast", "no_grad", "enable_grad", "set_grad_enabled",
              "inference_mode", "isfinite", "allclose", "equal", "randint", "synchronize")


class Rejected(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _snapshot() -> dict:
    """Identity of every watched attribute. Classes are taken along their MRO, so a patch that shadows an
    inherited method (Tensor.__sub__ lives on the C base until patched) shows up as a new name."""
    snap = {}
    for label, obj in _WATCHED.items():
        if isinstance(obj, type):
            for klass in obj.__mro__[:-1]:
                snap.update({f"{label}<{klass.__name__}>.{k}": v for k, v in vars(klass).items()})
        else:
            snap.update({f"{label}.{k}": v for k, v in vars(obj).items() if callable(v)})
    snap.update({f"torch.{k}": getattr(torch, k) for k in _TORCH_FNS if hasattr(torch, k)})
    return snap


def _tampered(before: dict) -> list[str]:
    now = _snapshot()
    changed = [k for k, v in before.items() if now.get(k, _MISSING) is not v]
    added = [k for k in now.keys() - before.keys() if "<" in k]  # new names on a class shadow inherited ones
    return sorted(changed + added)


_MISSING = object()


def _tasks() -> set[str]:
    return set(os.listdir("/proc/self/task"))


def _children() -> set[str]:
    kids = set()
    for tid in _tasks():
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                kids.update(f.read().split())
        except OSError:
            pass
    return kids


class Worker:
    def __init__(self, config, device: torch.device, optimizer: dict, batch: int, seq: int, layout, handover):
        self.config, self.device, self.opt_settings = config, device, optimizer
        self.layout, self.handover = layout, handover
        self.model = workload.build_model(config, device)
        self.pinned = handover.pin(device)
        self._prewarm(batch, seq)
        self.inner_steps = None
        self.guard = _snapshot()

    def _prewarm(self, batch: int, seq: int) -> None:
        # Start torch's own thread pools and autograd threads now, so threads alive after the timed call
        # can be told apart as the submission's.
        # Building an optimizer also lets torch wrap AdamW.step once, before the tampering snapshot.
        x = torch.zeros(batch, seq - 1, dtype=torch.long, device=self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=workload.use_autocast(self.device)):
            logits = self.model(input_ids=x).logits
        logits.float().mean().backward()
        del logits
        workload.make_optimizer(self.model, self.opt_settings)
        self.model.zero_grad(set_to_none=True)

    def load(self, code_path: str) -> None:
        spec = importlib.util.spec_from_file_location("train", code_path)
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
        self._check_tampering("importing train.py")
        self.inner_steps = fn

    def _check_tampering(self, when: str) -> None:
        changed = _tampered(self.guard)
        if changed:
            raise Rejected("tampering", f"{when} replaced {', '.join(changed[:8])}; the harness's clock, "
                                        "framework and math functions must not be patched")

    def call(self, msg: dict, timed: bool) -> dict:
        """One inner_steps call on freshly initialised weights and fresh data. For the timed call this whole
        method runs inside the supervisor's window, from the seed arriving to the hand-over being written."""
        tokens = np.frombuffer(base64.b64decode(msg["tokens"]), dtype="<i4").reshape(msg["shape"])
        batches = [torch.from_numpy(b.astype(np.int64)) for b in tokens]
        workload.init_weights(self.model, msg["init_seed"], self.config.initializer_range)
        optimizer = workload.make_optimizer(self.model, self.opt_settings)
        tasks, children = _tasks(), _children()
        try:
            result = self.inner_steps(self.model, iter(batches), optimizer, len(batches), self.device)
        except (torch.OutOfMemoryError, MemoryError) as e:
            raise Rejected("out_of_memory", f"inner_steps ran out of memory: {e}") from None
        except BaseException as e:  # noqa: BLE001
            raise Rejected("crash", f"inner_steps raised {_describe(e)}") from None
        where = "the timed call" if timed else "the warm-up call"
        self._check_tampering(f"inner_steps ({where})")
        if timed:
            extra = (_tasks() - tasks, _children() - children)
            if extra[0] or extra[1]:
                raise Rejected("deferred_work", f"{len(extra[0])} thread(s) and {len(extra[1])} process(es) "
                                                "started by inner_steps were still running after it returned; "
                                                "all work must finish before inner_steps returns")
        logits, total_tokens, final_loss = _read_result(result)
        out = {"total_tokens": total_tokens, "final_loss": final_loss if math.isfinite(final_loss) else None}
        if timed:
            started = time.perf_counter()
            self.handover.put(None, logits)
            updates = workload.updates(self.model, self.layout, msg["init_seed"], self.config.initializer_range)
            out.update(logits_shape=list(logits.shape),
                       absent=[name for name, delta in updates if not self.handover.put(name, delta)],
                       handover_s=time.perf_counter() - started)
        return out


def _read_result(result):
    """Reads the three fields as plain values, refusing anything that could compute on access."""
    cls = type(result)
    hooks = [k.__name__ + "." + h for k in cls.__mro__ if k.__module__ != "builtins"
             for h in ("__getattr__", "__getattribute__") if h in vars(k)]
    lazy = [f for f in RESULT_FIELDS for k in cls.__mro__
            if f in vars(k) and hasattr(type(vars(k)[f]), "__get__")
            and not isinstance(vars(k)[f], _PLAIN_SLOTS)]
    if hooks or lazy:
        raise Rejected("deferred_work", f"the result's class computes attributes on access ({', '.join(hooks + lazy)}); "
                                        "return plain values (e.g. a dataclass) computed inside inner_steps")
    missing = [f for f in RESULT_FIELDS if not hasattr(result, f)]
    if missing:
        raise Rejected("bad_return", f"inner_steps returned {cls.__name__} without {', '.join(missing)}")
    logits, tokens, loss = (getattr(result, f) for f in RESULT_FIELDS)
    if type(logits) is not torch.Tensor or not logits.is_floating_point():
        raise Rejected("bad_return", f"final_logits must be a floating-point torch.Tensor, got {_type_name(logits)}")
    return logits, _scalar(tokens, "total_tokens", int), _scalar(loss, "final_loss", float)


_PLAIN_SLOTS = (type(type("S", (), {"__slots__": ("x",)}).x),)  # slot descriptors only read stored values


def _scalar(value, name: str, kind):
    if type(value) is torch.Tensor and value.numel() == 1:
        value = value.item()
    if kind is int and type(value) is int:
        return value
    if kind is float and type(value) in (int, float):
        return float(value)
    raise Rejected("bad_return", f"{name} must be a Python {kind.__name__} (or one-element tensor), got {_type_name(value)}")


def _type_name(value) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _describe(e: BaseException) -> str:
    tb = "".join(traceback.format_exception(type(e), e, e.__traceback__)[-6:])
    return f"{type(e).__name__}: {e}\n{tb}"[:4000]


def serve(cmd_fd: int, msg_fd: int, device: torch.device, handover_fd: int) -> None:
    # "setup" names the model and shapes; on one GPU it comes only once the reference has freed its memory.
    setup = channel.recv(cmd_fd)
    config = workload.config_from(setup["model_config"])
    layout = workload.param_layout(config)
    handover = Handover(layout, setup["logits_shape"], handover_fd)
    worker = Worker(config, device, setup["optimizer"], setup["batch_size"], setup["sequence_length"], layout,
                    handover)
    channel.send(msg_fd, {"ok": True, "op": "setup", "handover": worker.pinned})
    while True:
        msg = channel.recv(cmd_fd)
        try:
            if msg["op"] == "load":
                worker.load(msg["code_path"])
                reply = {}
            else:
                reply = worker.call(msg, timed=msg["op"] == "run")
            reply.update(ok=True, op=msg["op"])
        except Rejected as r:
            reply = {"ok": False, "op": msg["op"], "code": r.code, "message": r.message}
        if msg["op"] != "run":
            # Everything alive now (torch, transformers, the submission's module) moves out of the
            # collector's reach, so a full collection inside the timed window costs little (it took
            # 0.25-0.3 s here: as long as the whole tiny window). Freezing without collecting costs nothing.
            gc.freeze()
        channel.send(msg_fd, reply)
