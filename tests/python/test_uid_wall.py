"""The docker sandbox's wall (contain.py's "uid" mechanism), driven directly on this host as root with
CRUSADES_CONTAINMENT=uid. The "worker" here is a forked function, so it needs nothing from disk that its uid
could not read; tests/executors/docker.test.ts runs the same wall in the real container with env.py."""
import ctypes
import json
import os
import secrets
import select
import signal
import subprocess
import sys
import time
import traceback

import pytest

import contain

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the uid wall needs root")
libc = ctypes.CDLL(None, use_errno=True)


def _uid() -> int:
    """A worker uid no one else on this machine uses (its guard takes the one below)."""
    return 300_000 + 2 * secrets.randbelow(50_000)


def _walled(uid: int, body, settle: float = 1.0, limit: float = 90.0) -> dict:
    """Forks a supervisor that walls `body` (run as the worker after contain.confine), lets it run `settle`
    seconds, kills and sweeps; returns what it saw. A supervisor still busy after `limit` s is a hang."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        out = {}
        try:
            os.close(r)
            os.environ["CRUSADES_CONTAINMENT"] = "uid"
            contain.python_stack = list  # this worker imports nothing: it may not read our interpreter's files

            def child():
                contain.confine(uid)
                body()
                while True:
                    time.sleep(1)

            wall = contain.fork(child, uid)
            time.sleep(settle)
            t = time.monotonic()
            out.update(mechanism=wall.mechanism, dead=wall.kill(timeout=30))
            out["kill_s"] = time.monotonic() - t
            out["removed"], out["errors"] = wall.sweep()
            out["left"] = contain._processes_of(uid)
        except BaseException:  # noqa: BLE001
            out["exception"] = traceback.format_exc()
        finally:
            os.write(w, json.dumps(out).encode())
            os._exit(0)
    os.close(w)
    ready, _, _ = select.select([r], [], [], limit)
    if not ready:
        os.kill(pid, signal.SIGKILL)
    data = os.read(r, 1 << 20) if ready else b""
    os.close(r)
    os.waitpid(pid, 0)
    for stray in contain._processes_of(uid) + contain._processes_of(uid - 1):
        os.kill(stray, signal.SIGKILL)
    return json.loads(data) if data else {"hung": True}


def _watchers(n: int = 6):
    """SIGSTOP every pid the kernel hands out after them: whatever the supervisor starts to kill them."""
    def watch(skip):
        while True:
            with open("/proc/sys/kernel/ns_last_pid") as f:
                last = int(f.read())
            for pid in range(last - 2, last + 3):
                if pid > 1 and pid not in skip:
                    try:
                        os.kill(pid, signal.SIGSTOP)
                    except OSError:
                        pass

    def body():
        skip = {os.getpid()}
        for _ in range(n):
            pid = os.fork()
            if pid == 0:
                watch(skip | {os.getpid()})
            skip.add(pid)
    return body


def test_processes_that_stop_new_pids_cannot_stop_the_killer():
    uid = _uid()
    for _ in range(3):
        seen = _walled(uid, _watchers())
        assert "hung" not in seen, "the supervisor waited on a stopped killer"
        assert "exception" not in seen, seen.get("exception")
        assert seen["mechanism"] == "uid" and seen["dead"] and seen["left"] == [], seen
        assert seen["kill_s"] < 10


def test_what_the_worker_leaves_is_removed_however_deep_or_locked(tmp_path):
    uid, tag = _uid(), "lv" + secrets.token_hex(5)
    top = f"/dev/shm/{tag}"  # a tmpfs, as in the container (rmdir on this host's ext4 costs ms)
    key = int.from_bytes(tag[-4:].encode(), "big")

    def body():
        os.mkdir(top)
        fd = os.open(top, os.O_RDONLY)
        for _ in range(3000):  # past the recursion limit and PATH_MAX
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.close(fd)
        os.makedirs(f"{top}-locked/sticky/inner")
        open(f"{top}-locked/sticky/inner/f", "w").close()
        os.chmod(f"{top}-locked/sticky", 0o1000)
        os.chmod(f"{top}-locked", 0)
        os.makedirs(f"/tmp/{tag}/.cache/triton")
        assert libc.shmget(key, 4096, 0o1600) >= 0 and libc.msgget(key + 1, 0o1600) >= 0
        assert libc.semget(key + 2, 1, 0o1600) >= 0

    seen = _walled(uid, body, settle=3.0)
    assert "exception" not in seen, seen.get("exception")
    assert seen["errors"] == [] and seen["removed"] >= 3000 + 4 + 3 + 3, seen
    assert not any(os.path.lexists(p) for p in (top, f"{top}-locked", f"/tmp/{tag}"))
    for kind in ("shm", "msg", "sem"):
        with open(f"/proc/sysvipc/{kind}") as f:
            assert str(key) not in f.read().split(), f"its SysV {kind} survived"


def test_the_worker_is_the_oom_killers_choice_and_cannot_change_that():
    uid = _uid()
    r, w = os.pipe()

    def body():
        libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: its /proc/self files are its own again
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("0")
            lowered = "lowered"
        except OSError as e:
            lowered = e.strerror
        with open("/proc/self/oom_score_adj") as f:
            os.write(w, f"{f.read().strip()} {lowered}".encode())

    seen = _walled(uid, body)
    os.close(w)
    adj, outcome = os.read(r, 100).decode().split(" ", 1)
    os.close(r)
    assert seen["dead"], seen
    assert adj == "1000" and outcome != "lowered"


def test_the_worker_leaves_the_harness_a_share_of_the_pids_limit(tmp_path):
    (tmp_path / "pids.max").write_text("1024\n")
    (tmp_path / "pids.current").write_text("40\n")
    assert contain.process_limit([str(tmp_path)]) == 1024 - 40 - 256
    (tmp_path / "pids.max").write_text("max\n")
    assert contain.process_limit([str(tmp_path)]) == contain.DEFAULT_NPROC


def test_the_harness_keeps_its_caches_where_no_worker_can_write():
    code = ("import json, os, sys; sys.path.insert(0, %r); import contain; home = contain.private_home(); "
            "print(json.dumps({k: os.environ[k] for k in ['HOME', 'TMPDIR', *contain.CACHE_DIRS]}))"
            % str(contain.__file__.rsplit("/", 1)[0]))
    env = {**os.environ, "HOME": "/tmp", "TMPDIR": "/tmp"}
    paths = json.loads(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                      check=True).stdout)
    home = paths["HOME"]
    try:
        assert home.startswith("/tmp/crusades-harness-") and all(p == home or p.startswith(home + "/")
                                                                 for p in paths.values()), paths
        st = os.stat(home)
        assert st.st_uid == 0 and st.st_mode & 0o777 == 0o700
        uid, r, w = _uid(), *os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker's uid tries to plant a cache entry where the harness would read it
            try:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
                os.makedirs(paths["TRITON_CACHE_DIR"])
                os.write(w, b"planted")
            except OSError as e:
                os.write(w, e.strerror.encode())
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert os.read(r, 100) == b"Permission denied"
    finally:
        os.rmdir(home)
