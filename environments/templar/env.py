#!/usr/bin/env python3
"""Crusades evaluation harness: how many tokens per second does a miner's train.py train at, and does it
train correctly?

    python3 environments/templar/env.py --request req.json --result res.json

This process is the supervisor. It never imports miner code. It forks one worker (worker.py) before it
reads the request (and before it touches the GPU), runs the reference training itself, then hands the
worker the warm-up and the timed call over a private pipe. The clock is the supervisor's; the window
closes only once the worker has written the updates and logits into the shared hand-over buffer and it
and everything it started are frozen (SIGSTOP) and, on a GPU, also dead (killed and reaped), so no kernel
or copy it queued can still be running. Only then are its outputs read and compared. The result document
is written here, only to --result. Exit status: 0 when a result document was written (also for rejected
submissions and harness errors, which the document names), 2 for a bad command line or request, 1 when
no document could be written at all."""
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
import stat
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
WORKER_UID = int(os.environ.get("CRUSADES_WORKER_UID", "65534"))

sys.path.insert(0, str(HERE))
# torch.cuda.is_available() must not initialise CUDA here: a process forked after that cannot use the GPU.
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")

import jsonschema  # noqa: E402
import torch  # noqa: E402

import channel  # noqa: E402
import checks  # noqa: E402
import handover as handover_mod  # noqa: E402
import worker as worker_mod  # noqa: E402
import workload  # noqa: E402

workload.preload_model_code()  # before main forks the worker, which then needs no import of its own

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 1, 4, 36


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
# The worker process: forked early, stripped down, frozen and killed as a group.

class WorkerProcess:
    def __init__(self, device, run_dir: Path, handover_fd: int):
        cmd_r, self.cmd_w = os.pipe()
        self.msg_r, msg_w = os.pipe()
        log_r, log_w = os.pipe()
        drop = os.geteuid() == 0 and _others_can_read(Path(torch.__file__).parent)
        self.uid = WORKER_UID if drop else os.geteuid()
        if drop:
            os.chown(run_dir, WORKER_UID, WORKER_UID)
        home = run_dir / "home"
        home.mkdir()
        if drop:
            os.chown(home, WORKER_UID, WORKER_UID)
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:  # the worker: never returns
            try:
                os.setsid()
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(log_w, 1)
                os.dup2(log_w, 2)
                keep = sorted({0, 1, 2, cmd_r, msg_w, handover_fd})
                for lo, hi in zip(keep, keep[1:] + [os.sysconf("SC_OPEN_MAX")]):
                    os.closerange(lo + 1, hi)
                _confine(drop, home)
                worker_mod.serve(cmd_r, msg_w, device, handover_fd)
            except BaseException:  # noqa: BLE001 — the worker must never fall back into supervisor code
                import traceback
                traceback.print_exc()
            finally:
                os._exit(1)
        for fd in (cmd_r, msg_w, log_w):
            os.close(fd)
        self.status, self.frozen, self.dead = None, False, False
        self.log = _LogPump(log_r)

    def send(self, message: dict) -> None:
        try:
            channel.send(self.cmd_w, message)
        except BrokenPipeError:
            pass  # the worker is gone; the next recv reports how it ended

    def quiet(self) -> bool:
        """Nothing unread from the worker: a frame queued ahead of a command would answer it early."""
        return not select.select([self.msg_r], [], [], 0)[0]

    def recv(self, op: str, deadline: float, phase: str, timeout_s: float) -> dict:
        try:
            reply = channel.recv(self.msg_r, deadline)
        except channel.ChannelTimeout:
            raise Fail("timeout", f"the submission did not finish {phase} within the {timeout_s:g}s limit") from None
        except channel.ChannelClosed:
            self.freeze()
            raise Fail("crash", f"the worker process ended during {phase} ({self.describe_exit()}) before "
                                "reporting back; inner_steps must return normally") from None
        except channel.BadFrame as e:
            raise Fail("tampering", f"unreadable message from the worker during {phase}: {e}") from None
        if reply.get("ok") is not True:
            code, message = reply.get("code"), reply.get("message")
            if code not in worker_mod.REJECTION_CODES or not isinstance(message, str):
                raise Fail("tampering", f"malformed report from the worker during {phase}")
            raise Fail(code, message)
        if reply.get("op") != op:
            raise Fail("tampering", f"the worker answered {reply.get('op')!r} during {phase}")
        return reply

    def describe_exit(self) -> str:
        if self.status is None:
            return "still running"
        if os.WIFEXITED(self.status):
            return f"exit status {os.WEXITSTATUS(self.status)}"
        if os.WIFSIGNALED(self.status):
            sig = os.WTERMSIG(self.status)
            hint = ", possibly out of memory" if sig == signal.SIGKILL else ""
            return f"killed by signal {signal.Signals(sig).name}{hint}"
        return "stopped"

    def stop(self) -> None:
        """Freezes, then kills the worker and every process it started, and returns once none of them exists
        any more (gone or a zombie): their files are closed, so on a GPU their contexts, and any kernel or
        copy they queued, are finished or torn down. Records when they were frozen and when dead."""
        if self.dead:
            return
        self.dead = True
        self.freeze()
        self.frozen_at = time.perf_counter()
        victims = _descendants()
        _signal_group(self.pid, signal.SIGKILL)
        for pid in victims:
            _signal(pid, signal.SIGKILL)
        if self.status is None:
            _, self.status = os.waitpid(self.pid, 0)
        for pid in victims:
            while _alive(pid):
                time.sleep(0.001)
        self.dead_at = time.perf_counter()

    def close(self) -> None:
        self.stop()
        if self.cmd_w is None:
            return
        _reap_orphans()
        for fd in (self.cmd_w, self.msg_r):
            os.close(fd)
        self.cmd_w = self.msg_r = None
        self.log.join()

    def freeze(self) -> None:
        """Stops the worker and every process it started, wherever they moved (we are their subreaper), and
        returns once the worker itself is stopped or gone: after this nothing of the miner's runs."""
        if self.frozen:
            return
        self.frozen = True
        _signal_group(self.pid, signal.SIGSTOP)
        for pid in _descendants():
            _signal(pid, signal.SIGSTOP)
        _, status = os.waitpid(self.pid, os.WUNTRACED)
        if not os.WIFSTOPPED(status):
            self.status = status


def _confine(drop: bool, home: Path) -> None:
    """In the freshly forked worker: another uid when we can, no core dumps, no secrets in the environment,
    and death when the supervisor dies."""
    import resource
    if drop:
        os.setgroups([])
        os.setgid(WORKER_UID)
        os.setuid(WORKER_UID)
        resource.setrlimit(resource.RLIMIT_NPROC, (4096, 4096))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    keep = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
                                       "OMP_NUM_THREADS", "LD_LIBRARY_PATH") if k in os.environ}
    os.environ.clear()
    os.environ.update(keep, HOME=str(home), TMPDIR=str(home), TORCHINDUCTOR_CACHE_DIR=str(home / "inductor"),
                      TRITON_CACHE_DIR=str(home / "triton"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                      PYTHONDONTWRITEBYTECODE="1")
    tempfile.tempdir = None
    os.chdir(home)


def _others_can_read(path: Path) -> bool:
    """A worker under another uid can only import what every user may read (an interpreter installed under
    /root, say, stays out of its reach); if it could not, it keeps our uid and the container is the wall."""
    modes = [p.stat().st_mode for p in [path, *path.parents]]
    return bool(modes[0] & stat.S_IROTH) and all(m & stat.S_IXOTH for m in modes)


def _alive(pid: int) -> bool:
    """True while the process exists and is not yet a zombie (a zombie has released its files)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _descendants() -> list[int]:
    """Every process below us: the worker's group and anything that left it (setsid, double fork), which
    as our subreaper's orphans are our children too. Reads only our own subtree's children lists."""
    found, todo = [], [os.getpid()]
    while todo:
        pid = todo.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def _reap_orphans() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


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

def _tokens_message(op: str, seed_hex: str, purpose: str, steps: int, bench: dict, vocab: int) -> tuple[dict, "torch.Tensor"]:
    tokens = workload.make_tokens(workload.derive_seed(seed_hex, purpose + "-data"), steps, bench["batch_size"],
                                  bench["sequence_length"], vocab, _data_path(bench))
    return {"op": op, "init_seed": workload.derive_seed(seed_hex, purpose + "-init"), "shape": list(tokens.shape),
            "tokens": base64.b64encode(tokens.numpy().astype("<i4").tobytes()).decode()}, tokens


def _data_path(bench: dict) -> str | None:
    return None if bench["data_path"] is None else workload.resolve_path(bench["data_path"], str(ROOT))


def _reference(config, device, request, tokens, init_seed: int, layout) -> dict:
    """The plain loop on the timed run's inputs; keeps the final loss, the logits and the fp32 update of
    every tensor (in host memory: the worker needs the whole GPU next)."""
    model = workload.build_model(config, device)
    workload.init_weights(model, init_seed, config.initializer_range)
    optimizer = workload.make_optimizer(model, request["optimizer"])
    logits, loss = workload.reference_steps(model, tokens, optimizer, device)
    ref = {"logits": logits.to("cpu"), "loss": loss,
           "deltas": {n: d.to("cpu") for n, d in workload.updates(model, layout, init_seed, config.initializer_range)}}
    del model, optimizer, logits
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return ref


def _candidate(reported: dict, handover, layout, logits_shape) -> dict:
    """What the worker left in the hand-over buffer, trusting its report only for which slots it filled
    (a false claim leaves a slot zero: frozen weights, wrong logits)."""
    shape, absent = reported.get("logits_shape"), reported.get("absent")
    names = {n for n, _ in layout}
    if not (isinstance(shape, list) and all(type(d) is int for d in shape)
            and isinstance(absent, list) and set(absent) <= names):
        raise Fail("tampering", "malformed report from the worker after the timed call")
    return {"logits_shape": tuple(shape),
            "logits": handover.view(None) if tuple(shape) == tuple(logits_shape) else None,
            "deltas": {n: handover.view(n) for n in names - set(absent)}}


def choose_device() -> torch.device:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        # One thread per process: the CPU profile checks correctness on shared machines, where OpenMP
        # threads spinning against other load made timings several times slower and far noisier.
        torch.set_num_threads(1)
    return device


def evaluate(request: dict, result_path: Path, started: float, worker: WorkerProcess, device: torch.device,
             run_dir: Path, handover_fd: int) -> dict:
    """One run, with the worker already forked (see main): from here on this process holds the seed."""
    bench = request["benchmark"]
    ident = {k: request[k] for k in ("task_id", "submission_id", "run_index")}
    base = dict(schema_version=1, **ident, success=False, tps=0.0, mfu=None, total_tokens=0,
                wall_time_seconds=0.0, total_time_seconds=0.0, error=None, checks=[],
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
        raw_config = workload.read_config(workload.resolve_path(bench["model_config"], str(ROOT)))
        config = workload.config_from(raw_config)
    except (OSError, ValueError, KeyError) as e:
        return finish({"code": "harness_error", "message": f"cannot load the model config: {e}"})
    vocab, steps = config.vocab_size, bench["eval_steps"]
    expected_tokens = bench["batch_size"] * bench["sequence_length"] * steps
    logits_shape = (bench["batch_size"], bench["sequence_length"] - 1, vocab)
    result_before = _stat(result_path)
    diag["worker_uid"] = worker.uid
    try:
        code_path = run_dir / "train.py"
        code_path.write_text(request["code"], encoding="utf-8")
        code_path.chmod(0o444)
        layout = workload.param_layout(config)
        n_params = sum(math.prod(shape) for _, shape in layout)
        # The reference keeps an fp32 update per parameter beside the bf16 hand-over.
        need, free = handover_mod.size_of(layout, logits_shape) + 4 * n_params, handover_mod.free_memory()
        if free is not None and free < need:
            raise Fail("harness_error", f"the evaluation needs {need / 2**30:.1f} GiB of memory for its outputs "
                                        f"and has {free / 2**30:.1f} GiB; give the sandbox more memory")
        handover = handover_mod.Handover(layout, logits_shape, handover_fd)
        timings["prepare_s"] = time.perf_counter() - started
        setup = {"op": "setup", "model_config": raw_config, "optimizer": request["optimizer"],
                 "batch_size": bench["batch_size"], "sequence_length": bench["sequence_length"],
                 "logits_shape": list(logits_shape)}
        if device.type == "cpu":
            worker.send(setup)  # builds its model while we run the reference
        device_name, peak = workload.peak_flops(device)  # may initialise CUDA: only after the fork
        base["device"].update(name=device_name, peak_flops=peak)

        t = time.perf_counter()
        run_msg, tokens = _tokens_message("run", request["seed"], "timed", steps, bench, vocab)
        ref = _reference(config, device, request, tokens, run_msg["init_seed"], layout)
        timings["reference_s"] = time.perf_counter() - t
        if device.type == "cuda":
            worker.send(setup)  # one GPU does not hold two 3B training states side by side

        deadline = time.monotonic() + bench["timeout_seconds"]
        limit = bench["timeout_seconds"]
        t = time.perf_counter()
        try:
            diag["handover"] = worker.recv("setup", deadline, "setting up", limit).get("handover")
        except Fail as f:
            raise Fail("harness_error", f"the worker failed before any miner code ran: {f.message}") from None
        timings["setup_wait_s"] = time.perf_counter() - t
        t = time.perf_counter()
        worker.send({"op": "load", "code_path": str(code_path)})
        worker.recv("load", deadline, "importing train.py", limit)
        timings["import_s"] = time.perf_counter() - t
        if bench["warmup_steps"] > 0:
            t = time.perf_counter()
            warm_msg, _ = _tokens_message("warmup", request["seed"], "warmup", bench["warmup_steps"], bench, vocab)
            worker.send(warm_msg)
            worker.recv("warmup", deadline, "the warm-up call", limit)
            timings["warmup_s"] = time.perf_counter() - t

        if not worker.quiet():
            raise Fail("tampering", "the worker sent a message nobody asked for before the timed call")
        gc.freeze()  # a full collection costs ~0.3 s; between the report and the freeze it would be timed
        t0 = time.perf_counter()
        worker.send(run_msg)
        try:
            reported = worker.recv("run", deadline, "the timed call", limit)
            t_reported = time.perf_counter()
        finally:
            worker.stop()
        # A frozen process computes nothing more on a CPU; a GPU runs what it queued until its context dies.
        window = (worker.frozen_at if device.type == "cpu" else worker.dead_at) - t0
        timings.update(window_s=window, freeze_s=worker.frozen_at - t_reported, kill_s=worker.dead_at - worker.frozen_at)
        worker.close()

        t = time.perf_counter()
        cand = _candidate(reported, handover, layout, logits_shape)
        result_checks, error, vdiag = checks.verify(
            expected_tokens=expected_tokens, logits_shape=logits_shape, reported=reported, cand=cand, ref=ref,
            tol=request["verification"], device=device)
        timings["verify_s"] = time.perf_counter() - t
        diag.update(vdiag, expected_tokens=expected_tokens, reported_total_tokens=reported.get("total_tokens"),
                    n_params=n_params)
        if type(reported.get("handover_s")) is float:  # the worker's own claim: a diagnostic, never a score
            timings["worker_handover_s"] = reported["handover_s"]
        if error:
            return finish(error, checks=result_checks, wall_time_seconds=window)
        tps = expected_tokens / window
        mfu = 6 * n_params * tps / peak if peak else None
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
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--request", required=True, type=Path, help="evaluation request (JSON)")
    parser.add_argument("--result", required=True, type=Path, help="where to write the result document")
    args = parser.parse_args(argv)
    _libc.prctl(PR_SET_DUMPABLE, 0)
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1)
    if not args.result.parent.is_dir():
        print(f"env.py: the result directory {args.result.parent} does not exist", file=sys.stderr)
        return 2
    # The worker is forked before the request is read: a forked child holds a copy of everything in our
    # memory, and a submission can search its own (gc.get_objects(), /proc/self/mem) for the seed and
    # compute the timed run at import time. Nothing of the request exists in this process yet.
    device = choose_device()
    run_dir = Path(tempfile.mkdtemp(prefix="crusades-run-"))
    handover_fd = handover_mod.new_fd()
    worker = WorkerProcess(device, run_dir, handover_fd)
    try:
        return _run(args, started, worker, device, run_dir, handover_fd)
    finally:
        worker.close()
        os.close(handover_fd)
        shutil.rmtree(run_dir, ignore_errors=True)


def _run(args, started: float, worker: WorkerProcess, device, run_dir: Path, handover_fd: int) -> int:
    try:
        request = json.loads(args.request.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        print(f"env.py: cannot read the request {args.request}: {e}", file=sys.stderr)
        return 2
    problems = schema_errors(request, "evaluation-request.schema.json")
    if problems:
        print("env.py: the request does not match evaluation-request.schema.json:\n  " + "\n  ".join(problems[:10]),
              file=sys.stderr)
        return 2
    try:
        doc = evaluate(request, args.result, started, worker, device, run_dir, handover_fd)
    except Exception as e:  # noqa: BLE001 — our own bug: still answer with a document
        doc = {"schema_version": 1, **{k: request[k] for k in ("task_id", "submission_id", "run_index")},
               "success": False, "tps": 0.0, "mfu": None, "total_tokens": 0, "wall_time_seconds": 0.0,
               "total_time_seconds": time.perf_counter() - started, "checks": [], "diagnostics": {},
               "device": {"type": "unknown", "name": "unknown", "peak_flops": None},
               "error": {"code": "harness_error", "message": f"{type(e).__name__}: {e}"}}
    problems = schema_errors(doc, "evaluation-result.schema.json")
    if problems:
        doc.update(success=False, tps=0.0, mfu=None, checks=[], diagnostics={}, error={
            "code": "harness_error", "message": "result failed its own schema: " + "; ".join(problems[:3])})
    try:
        write_result(args.result, doc)
    except OSError as e:
        print(f"env.py: cannot write the result to {args.result}: {e}", file=sys.stderr)
        return 1
    err = doc["error"]
    print(f"env.py: {'verified' if doc['success'] else 'rejected'} tps={doc['tps']:.1f}"
          + (f" error={err['code']}: {err['message'].splitlines()[0]}" if err else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
