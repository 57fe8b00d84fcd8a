"""The warm server (`env.py --serve IN_DIR --results OUT_DIR`): torch and transformers are imported once,
then every request gets a fresh supervisor forked from this process, which forks a fresh worker before it
reads its request, exactly as the one-shot command line does.

This process never reads a request, a model config or a result: nothing of one run is in the memory the
next run's supervisor and worker are copied from, and nothing a worker could have touched is read here.

Protocol (plugins/executors/session.ts is the other side): requests are IN_DIR/request-<n>.json for
n = 0, 1, …, written atomically (rename) one at a time; for each, the supervisor writes
OUT_DIR/result-<n>.json and then this process OUT_DIR/status-<n> (the supervisor's exit status: 0 a document
was written, 2 unreadable request, 1 no document, else it died). OUT_DIR/ready appears once the imports are
done. IN_DIR/stop, or idle_seconds without a request, ends the server (exit 0)."""
import ctypes
import gc
import os
import sys
import time
import traceback
from pathlib import Path

POLL_S = 0.005
PR_SET_DUMPABLE = 4
_libc = ctypes.CDLL(None, use_errno=True)


def serve(in_dir: Path, out_dir: Path, idle_seconds: float, run_one) -> int:
    """Serves requests until told to stop. `run_one(request_path, result_path, started)` is one evaluation
    (env.py's)."""
    _libc.prctl(PR_SET_DUMPABLE, 0)
    gc.collect()
    gc.freeze()  # what the imports made is shared copy-on-write by every supervisor forked from here
    (out_dir / "ready").touch()
    n, idle_since = 0, time.monotonic()
    while True:
        request = in_dir / f"request-{n}.json"
        if not request.exists():
            if (in_dir / "stop").exists() or time.monotonic() - idle_since > idle_seconds:
                return 0
            time.sleep(POLL_S)
            continue
        code = _supervise(run_one, str(request), out_dir / f"result-{n}.json")
        tmp = out_dir / f".status-{n}.tmp"
        tmp.write_text(str(code))
        os.replace(tmp, out_dir / f"status-{n}")
        n, idle_since = n + 1, time.monotonic()


def _supervise(run_one, request: str, result: Path) -> int:
    """One evaluation in a supervisor forked from here; its exit status (minus the signal that killed it)."""
    started = time.perf_counter()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        status = 70
        try:
            status = run_one(request, result, started)
        except BaseException:  # noqa: BLE001 — the supervisor must never fall back into the server loop
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
