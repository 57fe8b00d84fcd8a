"""Landlock (Linux 5.13+, unprivileged): a wall a process puts around itself and everything it will start, which
nothing inside can lift. The uid-walled worker (contain.py) uses it for two things its uid cannot give:
- it may open files for writing only beneath the places it was given (its scratch, /dev). So it cannot write
  /proc/self/oom_score_adj: the 1000 it set while still root stays (a process that makes itself dumpable
  again, or execs, could otherwise lower it back and let the OOM killer choose the harness instead);
- from ABI 6 (Linux 6.12) it cannot signal any process outside its own domain (the supervisor, the guard).
Where the kernel lacks it (or a seccomp profile refuses it) the call reports that and changes nothing."""
import ctypes
import os

_CREATE, _ADD_RULE, _RESTRICT = 444, 445, 446  # the generic syscall table: the same on x86_64 and aarch64
_VERSION = 1  # LANDLOCK_CREATE_RULESET_VERSION
_PATH_BENEATH = 1
WRITE_FILE, TRUNCATE = 1 << 1, 1 << 14  # TRUNCATE from ABI 3
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1, 2  # from ABI 6
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _Ruleset(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi() -> int:
    """The kernel's Landlock ABI version, 0 where there is none."""
    version = _libc.syscall(_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(_VERSION))
    return max(0, int(version))


def restrict(writable: list[str]) -> str:
    """Writes only beneath `writable` from now on, for this process and all it starts (no-new-privileges must
    be set). Returns what holds, for the diagnostics."""
    version = abi()
    if version < 1:
        return f"unavailable ({os.strerror(ctypes.get_errno())})"
    access = WRITE_FILE | (TRUNCATE if version >= 3 else 0)
    attr = _Ruleset(access, 0, SCOPE_SIGNAL | SCOPE_ABSTRACT_UNIX_SOCKET if version >= 6 else 0)
    size = ctypes.sizeof(_Ruleset) if version >= 6 else 8
    ruleset = _libc.syscall(_CREATE, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        return f"unavailable (create: {os.strerror(ctypes.get_errno())})"
    try:
        for path in writable:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneath(access, fd)
                if _libc.syscall(_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_PATH_BENEATH), ctypes.byref(rule),
                                 ctypes.c_uint32(0)) != 0:
                    return f"unavailable (rule for {path}: {os.strerror(ctypes.get_errno())})"
            finally:
                os.close(fd)
        if _libc.syscall(_RESTRICT, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            return f"unavailable (restrict: {os.strerror(ctypes.get_errno())})"
    finally:
        os.close(ruleset)
    return f"landlock abi {version}" + (", signals scoped" if version >= 6 else "")
