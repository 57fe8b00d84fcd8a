"""The worker's wall: every process a submission starts lives where the kernel can kill it as one, and the
supervisor learns that they are gone from the kernel, not from a walk over /proc that a fast fork outruns.

Two mechanisms, chosen by what this kernel and sandbox allow:
- "namespaces" (the process executor, verify.py, any host): the worker is the init of a PID namespace of its
  own, with IPC and mount namespaces beside it (a private /tmp, /dev/shm and /proc), and a user namespace
  when the worker keeps our uid (then it holds no capability outside it). Killing the init kills every
  process of the namespace, and its wait returns only after they are all gone; its SysV objects and private
  tmpfs vanish with the namespaces. A process in the namespace cannot even name one outside it.
- "uid" (the docker sandbox, whose seccomp profile refuses namespaces): the worker runs under a uid that no
  other process of this PID namespace uses (the container's); kill(-1, SIGKILL) sent under that uid reaches
  every process of it, including children being forked at that moment (the kernel delivers a signal sent
  to many to the forks in flight), and with no-new-privileges none of them can change uid. Afterwards the
  set can only shrink, so waiting for it to empty is not a race. What it left in /tmp, /dev/shm and SysV
  IPC is removed by owner.
Where neither holds the evaluation is refused: a run that could outlive its clock is never scored."""
import ctypes
import os
import signal
import stat
import time

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID = 0x00020000, 0x08000000, 0x10000000, 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x8, 0x4000, 0x40000
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER = 1, 38, 36
IPC_RMID = 0
PRIVATE_DIRS = ("/tmp", "/dev/shm")


class Uncontainable(Exception):
    """This machine offers no wall the worker cannot get over: refuse to evaluate."""


class Wall:
    """One contained worker: its pid (our child: we are the subreaper), the mechanism, and its exit status
    once reaped."""

    def __init__(self, pid: int, mechanism: str, uid: int | None):
        self.pid, self.mechanism, self.uid, self.status = pid, mechanism, uid, None

    def poll(self) -> bool:
        """True once the worker itself is reaped (its status kept)."""
        if self.status is None:
            try:
                done, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                done, status = self.pid, 0
            if done == self.pid:
                self.status = status
        return self.status is not None

    def kill(self, timeout: float = 30.0) -> bool:
        """Kills the worker and everything it started; True once none of them exists (False after `timeout`,
        e.g. a process stuck in the GPU driver)."""
        deadline, pause = time.monotonic() + timeout, 0.001
        if self.status is None:
            _signal(self.pid, signal.SIGKILL)
        while time.monotonic() < deadline:
            if self.mechanism == "namespaces":  # the init's exit waits for the whole namespace
                if self.poll():
                    return True
            else:
                _kill_uid(self.uid)
                self.poll()
                _reap_any()
                if self.status is not None and not _processes_of(self.uid):
                    return True
            time.sleep(pause)
            pause = min(2 * pause, 0.05)  # a process stuck in a driver call must not cost us a fork a millisecond
        return False

    def sweep(self) -> list[str]:
        """What a uid-walled worker left in the shared writable places and SysV IPC, removed by owner (a
        namespaced worker's went with its namespaces). Returns what was removed, for the diagnostics."""
        return _sweep_uid(self.uid) if self.mechanism == "uid" else []


def fork(child, drop_uid: int | None) -> Wall:
    """Forks `child()` (which must never return) behind a wall. With `drop_uid` the child moves to that
    uid itself, after the wall is up (see confine)."""
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # the namespace's init is handed to us when mid exits
    flags = CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWNS | (CLONE_NEWUSER if drop_uid is None else 0)
    r, w = os.pipe()
    go_r, go_w = os.pipe()  # "you are ours now": the init may tie its life to ours only after mid is gone
    mid = os.fork()
    if mid == 0:  # the intermediate: makes the namespaces, forks their init, and leaves it to us
        try:
            os.close(r)
            os.close(go_w)
            os.write(w, _namespaced(flags, child, w, go_r))
        finally:
            os._exit(0)
    os.close(w)
    os.close(go_r)
    os.waitpid(mid, 0)
    with os.fdopen(r, "rb") as f:
        answer = f.read(64).decode()
    if answer.startswith("pid "):
        os.write(go_w, b"g")
        os.close(go_w)
        return Wall(int(answer[4:]), "namespaces", drop_uid)
    os.close(go_w)
    refused = answer or "the intermediate process died"
    if drop_uid is None or os.geteuid() != 0:
        raise Uncontainable(f"cannot put the worker in namespaces of its own ({refused}) and, not being root, "
                            "cannot give it a uid of its own either; run where user namespaces are allowed "
                            "(kernel.unprivileged_userns_clone=1) or in the evaluation image")
    if _processes_of(drop_uid):
        raise Uncontainable(f"namespaces are refused here ({refused}) and uid {drop_uid} is already used by other "
                            "processes, so it cannot serve as the worker's wall")
    pid = os.fork()
    if pid == 0:
        try:
            _die_with_parent()
            child()
        finally:
            os._exit(1)
    return Wall(pid, "uid", drop_uid)


def _namespaced(flags: int, child, w: int, go_r: int) -> bytes:
    uid, gid = os.geteuid(), os.getegid()
    if _libc.unshare(flags) != 0:
        return f"unshare: {os.strerror(ctypes.get_errno())}".encode()
    if flags & CLONE_NEWUSER:  # the same ids inside, so files look as they did; no power outside
        for path, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{path}", "w") as f:
                f.write(text)
    pid = os.fork()
    if pid == 0:
        os.close(w)
        try:
            if os.read(go_r, 1) != b"g":  # the supervisor died before adopting us
                os._exit(1)
            os.close(go_r)
            _die_with_parent()
            _private_mounts()
            child()
        finally:
            os._exit(1)
    return f"pid {pid}".encode()


def _die_with_parent() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    if _libc.mount(source.encode(), target.encode(), fstype and fstype.encode(), flags,
                   data and data.encode()) != 0:
        raise OSError(ctypes.get_errno(), f"mount {target}: {os.strerror(ctypes.get_errno())}")


def _private_mounts() -> None:
    """In the new mount namespace: nothing propagates back, and the writable shared places are the
    worker's own, gone with it. A /proc of its own PID namespace shows it no process outside."""
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    for path in PRIVATE_DIRS:
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    try:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        pass  # a sandbox that masks parts of /proc forbids a fresh one; the PID namespace still hides pids


def confine(drop_uid: int | None) -> None:
    """In the worker, before any miner code: its uid, no new privileges, no capabilities."""
    if drop_uid is not None:
        os.setgroups([])
        os.setgid(drop_uid)
        os.setuid(drop_uid)
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _drop_capabilities()


def _drop_capabilities() -> None:
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    _libc.capset(header, data)


def _sweep_uid(uid: int) -> list[str]:
    removed = []
    for top in PRIVATE_DIRS:
        for root, dirs, files in os.walk(top, topdown=False):
            for name in files + dirs:
                path = os.path.join(root, name)
                try:
                    st = os.lstat(path)
                    if st.st_uid == uid:
                        (os.rmdir if stat.S_ISDIR(st.st_mode) else os.unlink)(path)
                        removed.append(path)
                except OSError:
                    pass
    for kind, ctl in (("shm", _libc.shmctl), ("msg", _libc.msgctl), ("sem", _libc.semctl)):
        for ident, owner in _sysv(kind):
            if owner == uid and ctl(ident, IPC_RMID, None) == 0:
                removed.append(f"sysv {kind} {ident}")
    return removed


def _sysv(kind: str) -> list[tuple[int, int]]:
    try:
        with open(f"/proc/sysvipc/{kind}") as f:
            header, *rows = [line.split() for line in f]
    except OSError:
        return []
    i, u = header.index(next(h for h in header if h in ("shmid", "msqid", "semid"))), header.index("uid")
    return [(int(r[i]), int(r[u])) for r in rows if len(r) > u]


def _kill_uid(uid: int) -> None:
    """kill(-1, SIGKILL) under `uid`, from a short-lived child that takes that uid (we keep ours)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def _processes_of(uid: int) -> list[int]:
    """Live (non-zombie) processes whose real uid is `uid`. Only for waiting once they can no longer fork."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except (OSError, ValueError):
            continue
        if int(fields.get("Uid", "-1 ").split()[0]) == uid and not fields.get("State", "").strip().startswith(("Z", "X")):
            found.append(int(entry))
    return found


def _reap_any() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError as e:  # cannot happen for our own child; say so rather than hang
        raise Uncontainable(f"cannot signal the worker: {e}") from None

