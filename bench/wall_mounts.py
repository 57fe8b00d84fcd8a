#!/usr/bin/env python3
"""What the namespace wall's filesystem costs per run: the worker's mount namespace as before issue 19
(private /tmp and /dev/shm only) against the wall (covers over the request's and result's directories, the
bridge to the Python stack when root, everything read-only, then the private tmpfs), in the same process.

    python3 bench/wall_mounts.py [--runs 40]

Each sample forks a child that unshares its namespaces and makes the mounts, timed from before the unshare;
the two kinds alternate, so machine load falls on both alike. Prints the medians, their difference and
ratio, and the median of each step of the wall."""
import argparse
import ctypes
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "environments" / "templar"))

import contain  # noqa: E402

FLAGS = contain.CLONE_NEWNS | contain.CLONE_NEWIPC | contain.CLONE_NEWPID
STEPS = ("unshare", "private", "covers", "bridge", "read-only", "tmpfs")


def _sample(wall: bool, hide: list[str], stack: list[str]) -> list[float]:
    """Seconds per step in a fresh child: the wall's steps, or the old mounts (as "private" and "tmpfs")."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        marks = [time.perf_counter()]
        flags = FLAGS | (contain.CLONE_NEWUSER if os.geteuid() != 0 else 0)
        if contain._libc.unshare(flags) != 0:
            os._exit(1)
        if flags & contain.CLONE_NEWUSER:
            for name, text in (("setgroups", "deny"), ("uid_map", f"0 {os.geteuid()} 1"), ("gid_map", f"0 {os.getegid()} 1")):
                Path(f"/proc/self/{name}").write_text(text)
        marks.append(time.perf_counter())
        contain._mount("none", "/", None, contain.MS_REC | contain.MS_PRIVATE)
        marks.append(time.perf_counter())
        if wall:
            for path in hide:
                contain._mount("tmpfs", path, "tmpfs", contain.MS_RDONLY | contain.MS_NOSUID | contain.MS_NODEV
                               | contain.MS_NOEXEC, "mode=0,size=4k")
            marks.append(time.perf_counter())
            contain._bridge(stack if os.geteuid() == 0 else [])
            marks.append(time.perf_counter())
            attr = (ctypes.c_uint64 * 4)(contain.MOUNT_ATTR_RDONLY, 0, 0, 0)
            contain._syscall("mount_setattr", contain.SYS_MOUNT_SETATTR, ctypes.c_int(contain.AT_FDCWD), b"/",
                             ctypes.c_uint(contain.AT_RECURSIVE), attr, ctypes.c_size_t(ctypes.sizeof(attr)))
        else:
            marks += [marks[-1], marks[-1]]
        marks.append(time.perf_counter())
        for path in contain.PRIVATE_DIRS:
            contain._mount("tmpfs", path, "tmpfs", contain.MS_NOSUID | contain.MS_NODEV, "mode=1777")
        marks.append(time.perf_counter())
        os.write(w, repr([b - a for a, b in zip(marks, marks[1:])]).encode())
        os._exit(0)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    data = os.read(r, 4096)
    os.close(r)
    if status != 0 or not data:
        sys.exit("bench: the child could not make its namespaces here")
    return [float(x) for x in data.decode().strip("[]").split(",")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    stack = contain.python_stack()
    with tempfile.TemporaryDirectory(prefix="crusades-wall-bench-", dir="/var/tmp") as d:
        hide = [os.path.join(d, "in"), os.path.join(d, "out")]
        for path in hide:
            os.mkdir(path)
        old, new = [], []
        for _ in range(args.runs):
            old.append(_sample(False, hide, stack))
            new.append(_sample(True, hide, stack))
    before, after = statistics.median(sum(s) for s in old), statistics.median(sum(s) for s in new)
    print(f"mount namespace per run, median of {args.runs}: before issue 19 {before * 1e3:.2f} ms, "
          f"with the filesystem wall {after * 1e3:.2f} ms (+{(after - before) * 1e3:.2f} ms, {after / before:.2f}x)")
    print("the wall's steps, median: " + "  ".join(f"{name} {statistics.median(col) * 1e3:.2f} ms"
                                                  for name, col in zip(STEPS, zip(*new))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
