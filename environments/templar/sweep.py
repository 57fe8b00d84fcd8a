"""What a uid-walled worker left behind, removed (contain.py's guard runs this as the worker's uid, once every
process of that uid is gone, so nothing moves underneath it).

Whatever the worker made is owned by its uid, and the worker chose its shape: trees deeper than PATH_MAX or
than any recursion, directories it made unreadable or sticky, SysV objects it gave to another owner. So:
- files: no recursion and no paths. One directory descriptor at a time, down by name and up by "..", so no
  depth is too deep; a directory of ours is made searchable before it is entered (its owner may always);
- SysV shared memory, message queues and semaphore sets: by creator or owner uid, both shown in
  /proc/sysvipc (an owner may hand an object to another uid, never its creator's);
- POSIX message queues: the entries of /dev/mqueue.
Nothing raises: every failure is reported, as a line, for the result's diagnostics."""
import ctypes
import os
import stat

TREES = ("/tmp", "/dev/shm", "/dev/mqueue")
IPC_RMID = 0
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_libc = ctypes.CDLL(None, use_errno=True)
_IPC = {"shm": ("shmid", lambda i: _libc.shmctl(i, IPC_RMID, None)),
        "msg": ("msqid", lambda i: _libc.msgctl(i, IPC_RMID, None)),
        "sem": ("semid", lambda i: _libc.semctl(i, 0, IPC_RMID))}


def sweep(uid: int, trees=TREES) -> tuple[int, list[str]]:
    """Removes everything `uid` owns below `trees` and in SysV IPC. Returns (objects removed, failures)."""
    removed, errors = 0, []
    for top in trees:
        if os.path.isdir(top):
            removed += _tree(top, uid, errors)
    for kind in _IPC:
        removed += _ipc(kind, uid, errors)
    return removed, errors


def _tree(top: str, uid: int, errors: list[str]) -> int:
    """Every entry owned by `uid` below `top` (with all it holds), found without recursion."""
    try:
        fd = os.open(top, _DIR)
    except OSError as e:
        errors.append(f"{top}: {e.strerror}")
        return 0
    removed = 0
    # One frame per level down: (name in the parent, remove it when done, subdirectories still to visit).
    frames = [(top, False, _clear(fd, top, uid, False, errors))]
    removed += frames[0][2][1]
    while frames:
        name, doomed, (pending, _) = frames[-1]
        if pending:
            sub, sub_doomed = pending.pop()
            try:
                if sub_doomed:  # ours: whatever mode it was given, its owner may make it searchable
                    os.chmod(sub, 0o700, dir_fd=fd)
                child = os.open(sub, _DIR, dir_fd=fd)
            except OSError as e:
                if sub_doomed:
                    errors.append(f"{top}/…/{sub[:64]}: {e.strerror}")
                continue
            os.close(fd)
            fd = child
            cleared = _clear(fd, sub, uid, sub_doomed, errors)
            removed += cleared[1]
            frames.append((sub, sub_doomed, cleared))
            continue
        frames.pop()
        if not frames:
            break
        parent = os.open("..", _DIR, dir_fd=fd)
        os.close(fd)
        fd = parent
        if doomed:
            try:
                os.rmdir(name, dir_fd=fd)
                removed += 1
            except OSError as e:
                errors.append(f"{top}/…/{name[:64]}: {e.strerror}")
    os.close(fd)
    return removed


def _clear(fd: int, where: str, uid: int, doomed: bool, errors: list[str]) -> tuple[list, int]:
    """In one directory: unlinks the non-directories to remove (all of them in a doomed directory, else those
    of `uid`); returns the subdirectories to visit (each marked doomed or not) and how many were unlinked."""
    try:
        names = os.listdir(fd)
    except OSError as e:
        if doomed:
            errors.append(f"{where[:64]}: {e.strerror}")
        return [], 0
    subdirs, unlinked = [], 0
    for name in names:
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            continue
        mine = doomed or st.st_uid == uid
        if stat.S_ISDIR(st.st_mode):
            subdirs.append((name, mine))  # not ours: still visited, it may hold something of ours
        elif mine:
            try:
                os.unlink(name, dir_fd=fd)
                unlinked += 1
            except OSError as e:
                errors.append(f"{where[:64]}/{name[:64]}: {e.strerror}")
    return subdirs, unlinked


def _ipc(kind: str, uid: int, errors: list[str]) -> int:
    column, remove = _IPC[kind]
    try:
        with open(f"/proc/sysvipc/{kind}") as f:
            header, *rows = [line.split() for line in f]
    except (OSError, ValueError):
        return 0
    i, u, c = header.index(column), header.index("uid"), header.index("cuid")
    removed = 0
    for row in rows:
        if len(row) > max(i, u, c) and uid in (int(row[u]), int(row[c])):
            if remove(int(row[i])) == 0:
                removed += 1
            else:
                errors.append(f"sysv {kind} {row[i]}: {os.strerror(ctypes.get_errno())}")
    return removed
