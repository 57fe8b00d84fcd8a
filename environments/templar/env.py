#!/usr/bin/env python3
"""Crusades evaluation harness: how many tokens per second does a miner's train.py train at, and does it
train correctly?

    python3 environments/templar/env.py --request req.json --result res.json
    python3 environments/templar/env.py --request - --result res.json < req.json
    python3 environments/templar/env.py --serve IN_DIR --results OUT_DIR [--idle-seconds S]   (warm server)

This process is the supervisor. It never imports miner code. It forks one worker (worker.py), behind the
wall of contain.py, before it reads the request (and before it touches the GPU), runs the reference training
itself, then hands the worker the warm-up and the timed call over a private pipe. The clock is the
supervisor's: it starts when the timed inputs are sent and stops when the supervisor holds its own
snapshot of the sketches the worker computed after the call returned (sketch.py), with a key sent only
then. Whatever the worker, or a process it left, does after that moment changes nothing that is read;
then all of them are killed, through the kernel, and the snapshot is compared with the reference's.
The result document is written here, only to --result. Exit status: 0 when a result document was
written (also for rejected submissions and harness errors, which the document names), 2 for a bad
command line or request, 1 when no document could be written at all."""
import argparse
import base64
import ctypes
import gc
import hashlib
import json
import math
import os
import select
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCHEMA_DIR = HERE / "schema"
LOG_FORWARD_LIMIT = 1 << 20
LOG_TAIL = 4096
LOG_JOIN_S = 5.0
REPORT_LIMIT = 1 << 20  # bytes of one frame from the worker: reports are small
REQUEST_LIMIT = 64 << 20
WALL_WAIT_S = 60.0  # for the worker's first report, from behind its wall, before any miner code
WORKER_UID = int(os.environ.get("CRUSADES_WORKER_UID", "65534"))

sys.path.insert(0, str(HERE))
# torch.cuda.is_available() must not initialise CUDA here: a process forked after that cannot use the GPU.
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")

import jsonschema  # noqa: E402
import torch  # noqa: E402

import channel  # noqa: E402
import checks  # noqa: E402
import contain  # noqa: E402
import handover as handover_mod  # noqa: E402
import report  # noqa: E402
import server  # noqa: E402
import sketch  # noqa: E402
import worker as worker_mod  # noqa: E402
import workload  # noqa: E402

workload.preload_model_code()  # before main forks the worker, which then needs no import of its own

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_DUMPABLE = 4


class Fail(Exception):
    """Ends the evaluation with a failed result carrying this code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _validator(name: str):
    schema = json.loads((SCHEMA_DIR / name).read_text())
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def schema_errors(doc, name: str) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in _validator(name).iter_errors(doc)]


# ---------------------------------------------------------------------------------------------------
# The worker process: forked early, behind the wall of contain.py, killed as one with all it started.

class WorkerProcess:
    def __init__(self, device, handover_fd: int, secret: list[str]):
        """`secret`: the request file (when there is one) and the directories holding it and the result. The
        worker's mount namespace covers the directories; before any miner code it reports which of the
        paths it can still open (see exposed)."""
        cmd_r, self.cmd_w = os.pipe()
        self.msg_r, msg_w = os.pipe()
        log_r, log_w = os.pipe()
        # As root the worker becomes nobody outside, whatever it is inside: DAC refuses it what is ours.
        drop = WORKER_UID if os.geteuid() == 0 else None
        self.uid = os.geteuid() if drop is None else drop
        self.refused = None
        sys.stdout.flush()
        sys.stderr.flush()

        def child():  # the worker: never returns
            try:
                os.setsid()
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(log_w, 1)
                os.dup2(log_w, 2)
                keep = sorted({0, 1, 2, cmd_r, msg_w, handover_fd})
                for lo, hi in zip(keep, keep[1:] + [os.sysconf("SC_OPEN_MAX")]):
                    os.closerange(lo + 1, hi)
                _confine(_home(drop))
                contain.confine(drop)
                channel.send(msg_w, {"op": "wall", "exposed": [p for p in secret if _opens(p)]})
                worker_mod.serve(cmd_r, msg_w, device, handover_fd)
            except BaseException:  # noqa: BLE001 — the worker must never fall back into supervisor code
                import traceback
                traceback.print_exc()
            finally:
                os._exit(1)

        try:
            self.wall = contain.fork(child, drop, sorted({p for p in secret if os.path.isdir(p)}))
        except contain.Uncontainable as e:
            self.wall, self.refused = None, str(e)
        for fd in (cmd_r, msg_w, log_w):
            os.close(fd)
        self.log = _LogPump(log_r)
        self.gone, self.left_behind, self.sweep_errors = False, 0, []

    def send(self, message: dict) -> None:
        try:
            channel.send(self.cmd_w, message)
        except BrokenPipeError:
            pass  # the worker is gone; the next recv reports how it ended

    def quiet(self) -> bool:
        """Nothing unread from the worker: a frame queued ahead of a command would answer it early."""
        return not select.select([self.msg_r], [], [], 0)[0]

    def recv(self, op: str, deadline: float, phase: str, timeout_s: float, fields: dict | None = None) -> dict:
        """The worker's answer to `op`: a rejection it reports becomes ours; anything malformed, of the wrong
        op or with fields of the wrong type is `tampering`, never our own error."""
        try:
            reply = channel.recv(self.msg_r, deadline, REPORT_LIMIT)
        except channel.ChannelTimeout:
            raise Fail("timeout", f"the submission did not finish {phase} within the {timeout_s:g}s limit") from None
        except channel.ChannelClosed:
            self.close()
            raise Fail("crash", f"the worker process ended during {phase} ({self.describe_exit()}) before "
                                "reporting back; inner_steps must return normally") from None
        except channel.BadFrame as e:
            raise Fail("tampering", f"unreadable message from the worker during {phase}: {e}") from None
        try:
            return report.parse(reply, op, fields or {}, worker_mod.REJECTION_CODES)
        except report.Rejection as r:
            raise Fail(r.code, r.message) from None
        except report.Malformed as e:
            raise Fail("tampering", f"malformed report from the worker during {phase}: {e}") from None

    def exposed(self, timeout_s: float) -> list[str]:
        """What of the secret paths the worker could open, as it reported with its final credentials before any
        miner code ran: anything wrong here is ours."""
        try:
            wall = channel.recv(self.msg_r, time.monotonic() + timeout_s, REPORT_LIMIT)
        except (channel.ChannelTimeout, channel.ChannelClosed, channel.BadFrame) as e:
            raise Fail("harness_error", f"the worker did not come up behind its wall ({type(e).__name__}, "
                                        f"{self.describe_exit()})") from None
        if wall.get("op") != "wall" or not isinstance(wall.get("exposed"), list):
            raise Fail("harness_error", "the worker's first report is not the wall's")
        return [str(p) for p in wall["exposed"]]

    def describe_exit(self) -> str:
        status = self.wall.status if self.wall else None
        if status is None:
            return "still running"
        if os.WIFEXITED(status):
            return f"exit status {os.WEXITSTATUS(status)}"
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            hint = ", possibly out of memory" if sig == signal.SIGKILL else ""
            return f"killed by signal {signal.Signals(sig).name}{hint}"
        return "stopped"

    def close(self) -> None:
        """Kills the worker and all it started, waits (bounded) until none exists, removes what a uid-walled
        one left, and closes our ends; a descriptor a process of the worker's holds never blocks us."""
        if self.gone:
            return
        self.gone = True
        if self.wall:
            if not self.wall.kill():
                print("env.py: a process of the worker did not die within 30 s", file=sys.stderr)
            self.left_behind, self.sweep_errors = self.wall.sweep()
            if self.sweep_errors:
                print("env.py: could not remove what the worker left: " + "; ".join(self.sweep_errors), file=sys.stderr)
        for fd in (self.cmd_w, self.msg_r):
            os.close(fd)
        self.log.join(LOG_JOIN_S)


def _home(drop: int | None) -> Path:
    """The worker's home and temp dir: in its private /tmp when namespaced, else a fresh one it owns (the
    sweep removes it with everything else of its uid)."""
    home = Path(tempfile.mkdtemp(prefix="crusades-worker-", dir="/tmp"))
    if drop is not None:
        os.chown(home, drop, drop)
    return home


def _confine(home: Path) -> None:
    """In the freshly forked worker: no core dumps, no secrets in the environment (its process count is
    contain.confine's)."""
    import resource
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    keep = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
                                       "OMP_NUM_THREADS", "LD_LIBRARY_PATH") if k in os.environ}
    os.environ.clear()
    os.environ.update(keep, HOME=str(home), TMPDIR=str(home), TORCHINDUCTOR_CACHE_DIR=str(home / "inductor"),
                      TRITON_CACHE_DIR=str(home / "triton"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                      PYTHONDONTWRITEBYTECODE="1")
    tempfile.tempdir = None
    os.chdir(home)


def _opens(path: str) -> bool:
    try:
        os.close(os.open(path, os.O_RDONLY))
    except OSError:
        return False
    return True


class _LogPump(threading.Thread):
    """Worker stdout/stderr are logs only: forwarded to our stderr up to a cap, the tail kept for the result."""

    def __init__(self, fd: int):
        super().__init__(daemon=True)
        self.fd, self.tail, self.forwarded = fd, b"", 0
        self.start()

    def run(self) -> None:
        while chunk := os.read(self.fd, 65536):
            if self.forwarded < LOG_FORWARD_LIMIT:
                part = chunk[:LOG_FORWARD_LIMIT - self.forwarded]
                sys.stderr.buffer.write(part)
                sys.stderr.flush()
                self.forwarded += len(part)
            self.tail = (self.tail + chunk)[-LOG_TAIL:]
        os.close(self.fd)

    def text(self) -> str:
        return self.tail.decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------------
# One evaluation.

def _tokens_message(op: str, seed_hex: str, purpose: str, steps: int, bench: dict, vocab: int,
                    shard) -> tuple[dict, "torch.Tensor"]:
    tokens = workload.make_tokens(workload.derive_seed(seed_hex, purpose + "-data"), steps, bench["batch_size"],
                                  bench["sequence_length"], vocab, shard)
    return {"op": op, "init_seed": workload.derive_seed(seed_hex, purpose + "-init"), "shape": list(tokens.shape),
            "tokens": base64.b64encode(tokens.numpy().astype("<i4").tobytes()).decode()}, tokens


def _data_path(bench: dict) -> str | None:
    return None if bench["data_path"] is None else workload.resolve_path(bench["data_path"], str(ROOT))


def _reference(config, device, bench: dict, request: dict, tokens, init_seed: int, layout, logits_shape,
               key: int) -> dict:
    """The plain loop on the timed run's inputs; keeps only its sketches (and S(W0), taken before training)
    and the final loss, then frees the model: the worker needs the device next."""
    _, total = sketch.slots(layout, logits_shape)
    model = workload.build_model(config, device)
    workload.init_weights(model, init_seed, config.initializer_range)
    optimizer = workload.make_optimizer(model, request["optimizer"])
    w0, out = torch.zeros(total), torch.zeros(total)
    sketch.collect(model, optimizer, None, layout, logits_shape, key, w0)
    logits, loss = workload.reference_steps(model, tokens, optimizer, device, bench["autocast"])
    sketch.collect(model, optimizer, logits, layout, logits_shape, key, out)
    del model, optimizer, logits
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"w0": w0, "sketches": out, "loss": loss}


def choose_device() -> torch.device:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        # One thread per process: the CPU profile checks correctness on shared machines, where OpenMP
        # threads spinning against other load made timings several times slower and far noisier.
        torch.set_num_threads(1)
    return device


def evaluate(request: dict, result_path: Path, started: float, worker: WorkerProcess, device: torch.device,
             handover_fd: int, request_links: int) -> dict:
    """One run, with the worker already forked (see main): from here on this process holds the seed."""
    bench = request["benchmark"]
    ident = {k: request[k] for k in ("task_id", "submission_id", "run_index")}
    base = dict(schema_version=1, **ident, success=False, tps=0.0, mfu=None, total_tokens=0,
                wall_time_seconds=0.0, total_time_seconds=0.0, error=None, checks=[], data_sha256=None,
                device={"type": device.type, "name": device.type, "peak_flops": None}, diagnostics={})
    diag = base["diagnostics"]
    timings = diag.setdefault("timings", {})

    def finish(error: dict | None, **fields) -> dict:
        base.update(fields, error=error, total_time_seconds=time.perf_counter() - started)
        return base

    if hashlib.sha256(request["code"].encode()).hexdigest() != request["code_sha256"]:
        return finish({"code": "harness_error", "message": "code_sha256 does not match the code in the request"})
    try:
        compile(request["code"], "train.py", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:
        return finish({"code": "syntax_error", "message": f"train.py does not compile: {e}"})

    try:
        raw_config = workload.read_config(workload.resolve_path(bench["model_config"], str(ROOT)),
                                          bench["model_config_sha256"])
        config = workload.config_from(raw_config)
    except (OSError, ValueError, KeyError) as e:
        return finish({"code": "harness_error", "message": f"cannot load the model config: {e}"})
    shard, shard_path = None, _data_path(bench)
    if shard_path is not None:
        # Read whole, before any miner code runs; every batch of the run is cut from these bytes.
        try:
            shard, base["data_sha256"] = workload.read_shard(shard_path)
        except FileNotFoundError:
            return finish({"code": "harness_error", "message": f"the token shard {shard_path} does not exist: write it "
                                                               "with python3 local_test/setup_benchmark.py (real text; "
                                                               "with synthetic tokens the loss check sees nothing)"})
        except (OSError, ValueError) as e:
            return finish({"code": "harness_error", "message": f"cannot read the token shard {shard_path}: {e}"})
        pin = bench.get("data_sha256")
        if pin is not None and pin != base["data_sha256"]:
            return finish({"code": "harness_error", "message": f"the token shard {shard_path} has sha256 "
                                                               f"{base['data_sha256']}, not the {pin} hparams pins: "
                                                               "this validator's shard is not the competition's"})
    vocab, steps = config.vocab_size, bench["eval_steps"]
    expected_tokens = bench["batch_size"] * bench["sequence_length"] * steps
    logits_shape = (bench["batch_size"], bench["sequence_length"] - 1, vocab)
    result_before = _stat(result_path)
    diag.update(worker_uid=worker.uid, containment=worker.wall.mechanism if worker.wall else None,
                request_readable_by_worker=request_links > 1)
    try:
        if worker.refused:
            raise Fail("harness_error", f"refusing to evaluate: {worker.refused}")
        if request_links > 1:
            raise Fail("harness_error", f"refusing to evaluate: the request file has {request_links} names, and "
                                        "the worker could read another one; give it one name (or pass it on stdin)")
        exposed = worker.exposed(WALL_WAIT_S)
        if exposed:
            diag["request_readable_by_worker"] = True
            raise Fail("harness_error", f"refusing to evaluate: the worker could open {exposed[0]}, which holds a "
                                        "request or a result")
        layout = workload.param_layout(config)
        n_params = sum(math.prod(shape) for _, shape in layout)
        nbytes = handover_mod.seal(handover_fd, layout, logits_shape)
        diag["handover_bytes"] = nbytes
        timings["prepare_s"] = time.perf_counter() - started
        setup = {"op": "setup", "model_config": raw_config, "optimizer": request["optimizer"],
                 "batch_size": bench["batch_size"], "sequence_length": bench["sequence_length"],
                 "logits_shape": list(logits_shape), "autocast": bench["autocast"]}
        if device.type == "cpu":
            worker.send(setup)  # builds its model while we run the reference
        device_name, peak = workload.peak_flops(device)  # may initialise CUDA: only after the fork
        base["device"].update(name=device_name, peak_flops=peak)
        # The measured honest band of this profile on this device class judges the run (checks.judging).
        tol, base["calibration"] = checks.judging(bench, raw_config, request["optimizer"],
                                                  checks.device_class(device.type, device_name), request["verification"])

        t = time.perf_counter()
        run_msg, tokens = _tokens_message("run", request["seed"], "timed", steps, bench, vocab, shard)
        key = workload.derive_seed(request["seed"], "timed-sketch")
        ref = _reference(config, device, bench, request, tokens, run_msg["init_seed"], layout, logits_shape, key)
        timings["reference_s"] = time.perf_counter() - t
        if device.type == "cuda":
            worker.send(setup)  # one GPU does not hold two 3B training states side by side

        deadline = time.monotonic() + bench["timeout_seconds"]
        limit = bench["timeout_seconds"]
        t = time.perf_counter()
        try:
            ready = worker.recv("setup", deadline, "setting up", limit, report.SETUP_FIELDS)
            diag.update(handover=ready["handover"], landlock=ready["landlock"])
        except Fail as f:
            raise Fail("harness_error", f"the worker failed before any miner code ran: {f.message}") from None
        timings["setup_wait_s"] = time.perf_counter() - t
        t = time.perf_counter()
        worker.send({"op": "load", "code": request["code"]})
        worker.recv("load", deadline, "importing train.py", limit)
        timings["import_s"] = time.perf_counter() - t
        if bench["warmup_steps"] > 0:  # the whole protocol once, sketches included, on other weights and data
            t = time.perf_counter()
            warm_msg, _ = _tokens_message("warmup", request["seed"], "warmup", bench["warmup_steps"], bench, vocab,
                                          shard)
            worker.send(warm_msg)
            worker.recv("warmup", deadline, "the warm-up call", limit, report.RUN_FIELDS)
            worker.send({"op": "sketch", "key": workload.derive_seed(request["seed"], "warmup-sketch")})
            worker.recv("sketch", deadline, "the warm-up hand-over", limit)
            timings["warmup_s"] = time.perf_counter() - t

        if not worker.quiet():
            raise Fail("tampering", "the worker sent a message nobody asked for before the timed call")
        gc.freeze()  # a full collection costs ~0.3 s; between the report and the snapshot it would be timed
        t0 = time.perf_counter()
        worker.send(run_msg)
        reported = worker.recv("run", deadline, "the timed call", limit, report.RUN_FIELDS)
        t_returned = time.perf_counter()
        # The key exists only now that the call has returned: nothing in it could aim at the projection.
        worker.send({"op": "sketch", "key": key})
        worker.recv("sketch", deadline, "the hand-over", limit)
        snap = handover_mod.snapshot(handover_fd, nbytes)
        window = time.perf_counter() - t0  # what the worker does from here on changes nothing we read
        timings.update(window_s=window, handover_s=t0 + window - t_returned)
        t = time.perf_counter()
        worker.close()
        timings["kill_s"] = time.perf_counter() - t
        diag.update(left_behind_removed=worker.left_behind, left_behind_errors=worker.sweep_errors)

        t = time.perf_counter()
        result_checks, error, vdiag = checks.verify(
            expected_tokens=expected_tokens, expected_steps=steps, logits_shape=logits_shape, reported=reported,
            cand=checks.candidate_sketches(snap, ref["w0"], layout, logits_shape),
            ref=checks.reference_sketches(ref["sketches"], ref["w0"], layout, logits_shape, ref["loss"]),
            tol=tol, layout=layout)
        timings["verify_s"] = time.perf_counter() - t
        diag.update(vdiag, expected_tokens=expected_tokens, reported_total_tokens=reported["total_tokens"],
                    n_params=n_params)
        if error:
            return finish(error, checks=result_checks, wall_time_seconds=window)
        tps = expected_tokens / window
        mfu = 6 * n_params * tps / peak if peak else None
        ceiling, error = checks.mfu_ceiling(mfu)
        result_checks += [ceiling] if ceiling else []
        if error:
            return finish(error, checks=result_checks, wall_time_seconds=window)
        return finish(None, success=True, tps=tps, mfu=mfu, total_tokens=expected_tokens,
                      wall_time_seconds=window, checks=result_checks)
    except Fail as f:
        return finish({"code": f.code, "message": f.message})
    finally:
        worker.close()
        diag["worker_log_tail"] = worker.log.text()
        if _stat(result_path) != result_before:
            base.update(success=False, tps=0.0, mfu=None, total_tokens=0, error={
                "code": "tampering", "message": "the submission wrote to the result location"})


def _stat(path: Path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns)


def write_result(path: Path, doc: dict) -> None:
    """Atomic replace, so a reader never sees half a document and whatever sat at the path is gone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".result-")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)


def main(argv=None) -> int:
    home = contain.private_home()  # before any library of ours writes a cache
    try:
        return _main(argv)
    finally:  # a supervisor forked by the server never gets here (it leaves with os._exit)
        if home:
            shutil.rmtree(home, ignore_errors=True)


def _main(argv) -> int:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--request", help="evaluation request (JSON): a file, or - for stdin "
                                           "(a worker under our own uid could read a file)")
    parser.add_argument("--result", type=Path, help="where to write the result document")
    parser.add_argument("--serve", type=Path, metavar="IN_DIR", help="warm server: evaluate IN_DIR/request-<n>.json "
                                                                     "for n = 0, 1, … (see server.py)")
    parser.add_argument("--results", type=Path, metavar="OUT_DIR", help="with --serve: where result-<n>.json and "
                                                                        "status-<n> go")
    parser.add_argument("--idle-seconds", type=float, default=300.0, help="with --serve: exit after this long "
                                                                          "without a request (default 300)")
    args = parser.parse_args(argv)
    if args.serve is not None:
        if args.results is None or args.request or args.result:
            parser.error("--serve takes --results (and --idle-seconds), not --request/--result")
        for d in (args.serve, args.results):
            if not d.is_dir():
                print(f"env.py: {d} is not a directory", file=sys.stderr)
                return 2
        return server.serve(args.serve, args.results, args.idle_seconds, _one_run)
    if not args.request or not args.result:
        parser.error("--request and --result are required (or --serve)")
    return _one_run(args.request, args.result, started)


def _one_run(source: str, result: Path, started: float) -> int:
    _libc.prctl(PR_SET_DUMPABLE, 0)
    if not result.parent.is_dir():
        print(f"env.py: the result directory {result.parent} does not exist", file=sys.stderr)
        return 2
    # The worker is forked before the request is read: a forked child holds a copy of everything in our
    # memory, and a submission can search its own (gc.get_objects(), /proc/self/mem) for the seed and
    # compute the timed run at import time. Nothing of the request exists in this process yet.
    device = choose_device()
    handover_fd = handover_mod.new_fd()
    request = None if source == "-" else os.path.realpath(source)
    secret = [os.path.realpath(result.parent)] + ([request, os.path.dirname(request)] if request else [])
    worker = WorkerProcess(device, handover_fd, secret)
    try:
        return _run(source, result, started, worker, device, handover_fd)
    finally:
        worker.close()
        os.close(handover_fd)


def _read_request(source: str) -> tuple[dict, int]:
    """The request, and how many names its file has (0 on stdin): a second name may lie where the worker sees."""
    if source == "-":
        data = sys.stdin.buffer.read(REQUEST_LIMIT + 1)
        if len(data) > REQUEST_LIMIT:
            raise ValueError(f"more than {REQUEST_LIMIT} bytes on stdin")
        return json.loads(data.decode("utf-8")), 0
    with open(source, "rb") as f:
        links = os.fstat(f.fileno()).st_nlink
        data = f.read(REQUEST_LIMIT + 1)
    if len(data) > REQUEST_LIMIT:
        raise ValueError(f"more than {REQUEST_LIMIT} bytes")
    return json.loads(data.decode("utf-8")), links


def _run(source: str, result: Path, started: float, worker: WorkerProcess, device, handover_fd: int) -> int:
    try:
        request, links = _read_request(source)
    except (OSError, ValueError) as e:
        print(f"env.py: cannot read the request {source}: {e}", file=sys.stderr)
        return 2
    problems = schema_errors(request, "evaluation-request.schema.json")
    if problems:
        print("env.py: the request does not match evaluation-request.schema.json:\n  " + "\n  ".join(problems[:10]),
              file=sys.stderr)
        return 2
    try:
        doc = evaluate(request, result, started, worker, device, handover_fd, links)
    except Exception as e:  # noqa: BLE001 — our own bug: still answer with a document
        doc = {"schema_version": 1, **{k: request[k] for k in ("task_id", "submission_id", "run_index")},
               "success": False, "tps": 0.0, "mfu": None, "total_tokens": 0, "wall_time_seconds": 0.0,
               "total_time_seconds": time.perf_counter() - started, "checks": [], "diagnostics": {},
               "data_sha256": None,
               "device": {"type": "unknown", "name": "unknown", "peak_flops": None},
               "error": {"code": "harness_error", "message": f"{type(e).__name__}: {e}"}}
    problems = schema_errors(doc, "evaluation-result.schema.json")
    if problems:
        doc.update(success=False, tps=0.0, mfu=None, checks=[], diagnostics={}, error={
            "code": "harness_error", "message": "result failed its own schema: " + "; ".join(problems[:3])})
    try:
        write_result(result, doc)
    except (OSError, ValueError) as e:
        print(f"env.py: cannot write the result to {result}: {e}", file=sys.stderr)
        return 1
    err = doc["error"]
    print(f"env.py: {'verified' if doc['success'] else 'rejected'} tps={doc['tps']:.1f}"
          + (f" error={err['code']}: {err['message'].splitlines()[0]}" if err else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
