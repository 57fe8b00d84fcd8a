"""The worker's wall: every process a submission starts lives where the kernel can kill it as one, and the
supervisor learns that they are gone from the kernel, not from a walk over /proc that a fast fork outruns.

Two mechanisms, chosen by what this kernel and sandbox allow:
- "namespaces" (the process executor, verify.py, ssh direct mode, any host): the worker is the init of a PID
  namespace of its own, with IPC and mount namespaces beside it, and a user namespace when we are not root
  (then it keeps our uid and holds no capability outside it; as root it becomes nobody, 65534). In its
  mount namespace the whole filesystem is read-only (one recursive mount_setattr), the directories holding
  the request and the result are covered by an empty tmpfs nobody may enter, and its only writable places
  are a private /tmp and /dev/shm; a /proc of its own shows it no process outside. Those mounts are locked
  for any namespace it could make itself, so it can neither remount them writable nor lift the covers.
  Killing the init kills every process of the namespace, and its wait returns only after they are all gone;
  its SysV objects and private tmpfs vanish with the namespaces.
- "uid" (the docker sandbox, whose seccomp profile refuses namespaces): the worker runs under a uid that no
  other process of this PID namespace uses (the container's); kill(-1, SIGKILL) sent under that uid reaches
  every process of it, including children being forked at that moment (the kernel delivers a signal sent
  to many to the forks in flight), and with no-new-privileges none of them can change uid. Afterwards the
  set can only shrink, so waiting for it to empty is not a race. The kill is sent, and what the worker left
  (files, SysV and POSIX IPC) removed, by a guard forked before the worker, which the worker can neither
  signal nor starve of a pid (see _Guard); the worker may start only part of the container's pids limit,
  is the OOM killer's first choice, and can write files only beneath /tmp and /dev (landlock.py).
Where neither holds the evaluation is refused: a run that could outlive its clock is never scored.

CRUSADES_CONTAINMENT=uid (as root) skips the namespaces and walls the worker by uid alone, as in docker."""
import ctypes
import fcntl
import os
import resource
import signal
import site
import socket
import stat
import struct
import sys
import tempfile
import time
from pathlib import Path

import channel
import landlock
import sweep as sweep_mod

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.syscall.restype = ctypes.c_long
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x08000000, 0x10000000, 0x20000000, \
    0x40000000
SIOCSIFFLAGS, IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x8914, 0x1, 0x8, 0x40
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 0x1, 0x2, 0x4, 0x8, 0x4000, 0x40000
# The mount API's syscalls have one number on every architecture (asm-generic table, Linux >= 5.12).
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442
AT_FDCWD, AT_EMPTY_PATH, AT_RECURSIVE = -100, 0x1000, 0x8000
OPEN_TREE_CLONE, MOVE_MOUNT_F_EMPTY_PATH, MOUNT_ATTR_RDONLY = 1, 0x4, 0x1
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER = 1, 4, 38, 36
PRIVATE_DIRS = ("/tmp", "/dev/shm")
WRITABLE = ["/tmp", "/dev"]  # beneath these only may a root-started worker open files for writing
HARNESS_TASK_SHARE = 4  # a quarter of the container's pids limit stays the harness's (threads included)
DEFAULT_NPROC = 4096  # the worker's processes where no pids limit applies
GUARD_KILL_S, GUARD_SWEEP_S = 10.0, 300.0
# Our own caches and config, moved where no worker can write (see private_home); relative to our HOME.
CACHE_DIRS = {"XDG_CACHE_HOME": ".cache", "XDG_CONFIG_HOME": ".config", "XDG_DATA_HOME": ".local/share",
              "TORCH_HOME": ".cache/torch", "HF_HOME": ".cache/huggingface", "TRITON_CACHE_DIR": ".triton/cache",
              "TORCHINDUCTOR_CACHE_DIR": ".cache/inductor", "TORCH_EXTENSIONS_DIR": ".cache/torch_extensions",
              "CUDA_CACHE_PATH": ".nv/ComputeCache", "MPLCONFIGDIR": ".config/matplotlib"}
landlocked = "not used"  # in the worker, after confine: what landlock.restrict said


class Uncontainable(Exception):
    """This machine offers no wall the worker cannot get over: refuse to evaluate."""


class Wall:
    """One contained worker: its pid (our child: we are the subreaper), the mechanism, and its exit status
    once reaped."""

    def __init__(self, pid: int, mechanism: str, uid: int | None, guard: "_Guard | None" = None):
        self.pid, self.mechanism, self.uid, self.status, self.guard = pid, mechanism, uid, None, guard

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
            else:  # verified, and sent again until none is left
                self.guard.kill()
                self.poll()
                _reap_any()
                if self.status is not None and not _processes_of(self.uid):
                    return True
            time.sleep(pause)
            pause = min(2 * pause, 0.05)  # a process stuck in a driver call must not cost a kill a millisecond
        return False

    def sweep(self) -> tuple[int, list[str]]:
        """What a uid-walled worker left (files below /tmp, /dev/shm, /dev/mqueue; SysV objects), removed by
        the guard as the worker's uid (a namespaced worker's went with its namespaces). Returns how many
        objects were removed and what could not be, for the diagnostics; then the guard exits."""
        if self.mechanism != "uid":
            return 0, []
        try:
            return self.guard.sweep()
        finally:
            self.guard.close()


def fork(child, drop_uid: int | None, hide: list[str] = ()) -> Wall:
    """Forks `child()` (which must never return) behind a wall. With `drop_uid` the child moves to that
    uid itself, after the wall is up (see confine). `hide`: directories the worker must not see at all (those
    holding the request and the result); without a mount namespace its uid must keep it out of them."""
    stack = python_stack()
    hide = [p for p in hide if not any(p.startswith(q.rstrip("/") + "/") for q in hide)]  # a cover covers all below
    for path in hide:
        inside = [p for p in stack if p == path or p.startswith(path.rstrip("/") + "/")]
        if inside:
            raise Uncontainable(f"{path} holds a request or a result, which the worker must not see, and also the "
                                f"Python stack it needs ({inside[0]}): give requests and results a directory of their own")
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # the namespace's init is handed to us when mid exits
    if drop_uid is not None and os.environ.get("CRUSADES_CONTAINMENT") == "uid":
        return _uid_walled(child, drop_uid, "CRUSADES_CONTAINMENT=uid")
    # A network namespace of its own: no route anywhere (ssh direct mode runs on GPU hosts whose firewall is
    # not ours to trust), only a loopback of its own.
    flags = CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWNS | CLONE_NEWNET | (CLONE_NEWUSER if drop_uid is None else 0)
    r, w = os.pipe()
    go_r, go_w = os.pipe()  # "you are ours now": the init may tie its life to ours only after mid is gone
    mid = os.fork()
    if mid == 0:  # the intermediate: makes the namespaces, forks their init, and leaves it to us
        try:
            os.close(r)
            os.close(go_w)
            os.write(w, _namespaced(flags, child, w, go_r, hide, stack if drop_uid is not None else []))
        finally:
            os._exit(0)
    os.close(w)
    os.close(go_r)
    os.waitpid(mid, 0)
    with os.fdopen(r, "rb") as f:
        answer = f.read(4096).decode(errors="replace")
    if answer.startswith("pid "):
        os.write(go_w, b"g")
        os.close(go_w)
        return Wall(int(answer[4:]), "namespaces", drop_uid)
    os.close(go_w)
    return _uid_walled(child, drop_uid, answer or "the intermediate process died")


def _uid_walled(child, drop_uid: int | None, refused: str) -> Wall:
    if drop_uid is None or os.geteuid() != 0:
        raise Uncontainable(f"cannot put the worker in namespaces of its own ({refused}) and, not being root, "
                            "cannot give it a uid of its own either; run where user namespaces are allowed "
                            "(kernel.unprivileged_userns_clone=1) or in the evaluation image")
    closed = [p for p in python_stack() if not _others_can_read(p)]
    if closed:
        raise Uncontainable(f"namespaces are refused here ({refused}) and uid {drop_uid} cannot read the Python "
                            f"stack at {closed[0]}: install it where every user may read it")
    if _processes_of(drop_uid) or _processes_of(drop_uid - 1):
        raise Uncontainable(f"namespaces are refused here ({refused}) and uid {drop_uid} or {drop_uid - 1} is "
                            "already used by other processes, so it cannot serve as the worker's wall")
    guard = _Guard(drop_uid)  # before the worker: it must never need a fork the worker could deny it
    pid = os.fork()
    if pid == 0:
        try:
            _die_with_parent()
            child()
        finally:
            os._exit(1)
    return Wall(pid, "uid", drop_uid, guard)


class _Guard:
    """The uid wall's hands, forked before the worker: real and saved uid `uid - 1` (no one else's), effective
    uid `uid`. kill(2) lets a sender signal a target when the sender's real or effective uid is the target's
    real or saved uid, so the guard's kill(-1) reaches every process of the worker's uid and no root process,
    and no process of the worker's uid can signal (stop) the guard: it holds `uid` only. Being there already,
    it needs no fork when the worker has taken every pid the container allows. As the worker's uid it owns
    everything the worker made, whatever modes were set on it, and removes it (sweep.py)."""

    def __init__(self, uid: int):
        cmd_r, self.cmd_w = os.pipe()
        self.ans_r, ans_w = os.pipe()
        parent = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                keep = [cmd_r, ans_w] if cmd_r < ans_w else [ans_w, cmd_r]
                for lo, hi in zip([2, *keep], [*keep, os.sysconf("SC_OPEN_MAX")]):
                    os.closerange(lo + 1, hi)
                os.setgroups([])
                os.setresgid(uid - 1, uid, uid - 1)
                os.setresuid(uid - 1, uid, uid - 1)
                _die_with_parent()  # after the uid change, which clears it
                if os.getppid() == parent:
                    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
                    _guard_serve(cmd_r, ans_w, uid)
            finally:
                os._exit(0)
        os.close(cmd_r)
        os.close(ans_w)

    def _ask(self, op: bytes, seconds: float) -> dict:
        try:
            os.write(self.cmd_w, op)
            return channel.recv(self.ans_r, time.monotonic() + seconds)
        except (OSError, channel.ChannelClosed, channel.ChannelTimeout, channel.BadFrame) as e:
            raise Uncontainable(f"the guard that kills the worker's processes failed ({type(e).__name__})") from None

    def kill(self) -> None:
        self._ask(b"k", GUARD_KILL_S)

    def sweep(self) -> tuple[int, list[str]]:
        answer = self._ask(b"s", GUARD_SWEEP_S)
        return answer["removed"], answer["errors"]

    def close(self) -> None:
        for fd in (self.cmd_w, self.ans_r):
            os.close(fd)  # the guard reads end-of-file and exits
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def _guard_serve(cmd_r: int, ans_w: int, uid: int) -> None:
    while op := os.read(cmd_r, 1):
        if op == b"k":
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:  # none left to signal
                pass
            channel.send(ans_w, {})
        elif op == b"s":
            removed, errors = sweep_mod.sweep(uid)
            channel.send(ans_w, {"removed": removed, "errors": errors[:20] + ([f"and {len(errors) - 20} more"]
                                                                             if len(errors) > 20 else [])})


def _namespaced(flags: int, child, w: int, go_r: int, hide, bridge) -> bytes:
    uid, gid = os.geteuid(), os.getegid()
    if _libc.unshare(flags) != 0:
        return f"unshare: {os.strerror(ctypes.get_errno())}".encode()
    if flags & CLONE_NEWUSER:  # the same ids inside, so files look as they did; no power outside
        for path, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{path}", "w") as f:
                f.write(text)
    try:
        _wall_mounts(hide, bridge)  # here, where a failure can still be told, not in the init
        _loopback_up()
    except OSError as e:
        return str(e).encode()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        try:
            if os.read(go_r, 1) != b"g":  # the supervisor died before adopting us
                os._exit(1)
            os.close(go_r)
            _die_with_parent()
            _own_proc()
            child()
        finally:
            os._exit(1)
    return f"pid {pid}".encode()


def _loopback_up() -> None:
    """A new network namespace's `lo` is down; code that talks to itself over 127.0.0.1 expects it up."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", IFF_UP | IFF_LOOPBACK | IFF_RUNNING))


def _die_with_parent() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    if _libc.mount(source.encode(), target.encode(), fstype and fstype.encode(), flags,
                   data and data.encode()) != 0:
        raise OSError(ctypes.get_errno(), f"mount {target}: {os.strerror(ctypes.get_errno())}")


def _syscall(name: str, number: int, *args) -> int:
    result = _libc.syscall(ctypes.c_long(number), *args)
    if result < 0:
        raise OSError(ctypes.get_errno(), f"{name}: {os.strerror(ctypes.get_errno())}")
    return result


def _wall_mounts(hide, bridge) -> None:
    """In the new mount namespace, before any process of the worker exists. Nothing propagates back; each
    directory of `hide` is covered by an empty read-only tmpfs nobody may enter; the way to each directory
    of `bridge` is opened (see _bridge); then every mount becomes read-only, recursively, and a private /tmp
    and /dev/shm, mounted after, are the only places the worker can write, gone with it. Mounts made here
    are locked for any user namespace the worker makes: it can neither lift a cover nor remount writable."""
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    for path in hide:
        _mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0,size=4k")
    _bridge(bridge)
    attr = (ctypes.c_uint64 * 4)(MOUNT_ATTR_RDONLY, 0, 0, 0)  # struct mount_attr: set, clear, propagation, userns
    _syscall("mount_setattr / read-only", SYS_MOUNT_SETATTR, ctypes.c_int(AT_FDCWD), b"/",
             ctypes.c_uint(AT_RECURSIVE), attr, ctypes.c_size_t(ctypes.sizeof(attr)))
    for path in PRIVATE_DIRS:
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")


def _bridge(paths) -> None:
    """As root, for a worker about to become another uid: a directory on the way to one of `paths` that
    others may not pass (/root holding a pyenv, say) is covered by a tmpfs holding only the next steps of
    those ways, each the original bind-mounted there. The worker reaches the Python stack and nothing else
    of such a directory."""
    ways: dict[str, set[str]] = {}
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts) - 1):
            step = "/".join(parts[:i]) or "/"
            if not os.stat(step).st_mode & stat.S_IXOTH:
                ways.setdefault(step, set()).add(parts[i])
    for step in sorted(ways, key=len):  # outer first: an inner one is then reached through the outer's bridge
        clones = {name: _syscall("open_tree", SYS_OPEN_TREE, ctypes.c_int(AT_FDCWD), os.path.join(step, name).encode(),
                                 ctypes.c_uint(OPEN_TREE_CLONE | AT_RECURSIVE | os.O_CLOEXEC))
                  for name in sorted(ways[step])}
        _mount("tmpfs", step, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
        for name, fd in clones.items():
            os.mkdir(os.path.join(step, name))
            _syscall("move_mount", SYS_MOVE_MOUNT, ctypes.c_int(fd), b"", ctypes.c_int(AT_FDCWD),
                     os.path.join(step, name).encode(), ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH))
            os.close(fd)


def _own_proc() -> None:
    """In the init of the new PID namespace: a /proc of its own, read-only, showing no process outside."""
    try:
        _mount("proc", "/proc", "proc", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        pass  # a sandbox that masks parts of /proc forbids a fresh one; the PID namespace still hides pids


def python_stack() -> list[str]:
    """What a worker must be able to read: the interpreter's prefixes and its site-packages directories."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *site.getsitepackages()}
    user = site.getusersitepackages()
    if user in sys.path:
        paths.add(user)
    return sorted({os.path.realpath(p) for p in paths if os.path.isdir(p)})


def _others_can_read(path: str) -> bool:
    """Whether a uid of no group of ours reaches `path` and lists it."""
    modes = [os.stat(p).st_mode for p in [path, *(str(a) for a in Path(path).parents)]]
    return bool(modes[0] & stat.S_IROTH) and all(m & stat.S_IXOTH for m in modes)


def confine(drop_uid: int | None) -> None:
    """In the worker, before any miner code: its uid, a process count that leaves the harness room, first in
    line for the OOM killer, no new privileges, no capabilities, and (moved from root) writes only beneath
    WRITABLE."""
    global landlocked
    if drop_uid is not None:
        limit = process_limit()
        resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))
        try:  # raising needs no privilege; landlock keeps any process of the worker from lowering it
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("1000")
        except OSError:
            pass
        os.setgroups([])
        os.setgid(drop_uid)
        os.setuid(drop_uid)
        # A slot's uid may have no passwd entry; getpass.getuser() (torch's inductor cache) reads these first.
        os.environ["USER"] = os.environ["LOGNAME"] = f"crusades-worker-{drop_uid}"
        _die_with_parent()  # the uid change cleared it
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _drop_capabilities()
    if drop_uid is not None:
        landlocked = landlock.restrict(WRITABLE)
        if landlocked.startswith("landlock"):
            # The uid change made the worker undumpable: its /proc/self (mem, fd/, maps) became root's and
            # honest code that reads it failed. Dumpable again, only processes of its own uid may trace it (the
            # guard keeps another real uid), and no core file leaves through the host's core_pattern. Only
            # under Landlock: a dumpable worker owns /proc/self/oom_score_adj, and Landlock is what keeps it
            # from lowering it.
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)


def process_limit(cgroups=("/sys/fs/cgroup", "/sys/fs/cgroup/pids")) -> int:
    """The worker's RLIMIT_NPROC: what the cgroup's pids limit (v2 or v1) leaves after the tasks running now and
    a quarter of the limit kept for the harness (its threads, the guard), so the worker can never take the
    pid the harness needs next."""
    for d in cgroups:
        try:
            with open(f"{d}/pids.max") as f:
                text = f.read().strip()
            with open(f"{d}/pids.current") as f:
                current = int(f.read())
        except (OSError, ValueError):
            continue
        if text == "max":
            break
        limit = int(text)
        return max(1, limit - current - limit // HARNESS_TASK_SHARE)
    return DEFAULT_NPROC


def private_home() -> str | None:
    """As root, where a worker may run under another uid beside us: our HOME, TMPDIR and every cache
    directory our libraries write and later read back (CUDA's JIT cache, Triton's, Inductor's, XDG's) move
    into a fresh directory only we can enter. With HOME=/tmp (the image's), they would resolve into places a
    worker can write, and a miner could leave compiled kernels there for the reference run to load. Returns
    the directory, for the caller to remove (None when not root)."""
    if os.geteuid() != 0:
        return None
    home = tempfile.mkdtemp(prefix="crusades-harness-")  # 0700; in a sticky /tmp no one else can rename it
    os.environ["HOME"] = os.environ["TMPDIR"] = home
    for var, sub in CACHE_DIRS.items():
        os.environ[var] = os.path.join(home, sub)
    tempfile.tempdir = None
    return home


def _drop_capabilities() -> None:
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    _libc.capset(header, data)


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

