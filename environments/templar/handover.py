"""The hand-over buffer: where the worker leaves, inside the timed window, the sketches verification reads
(sketch.py: a few MB, float32). One anonymous memory file per run, made by the supervisor before the fork.

The supervisor sizes it and seals its size (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) before any miner code
runs, so a worker cannot truncate it under a reader; and the supervisor never maps it: it takes its
snapshot with one pread into its own memory, the moment the worker reports. Whatever the worker (or a
process it left behind) writes after that moment changes nothing."""
import fcntl
import mmap
import os

import torch

import sketch

ITEM = 4  # float32


def new_fd() -> int:
    return os.memfd_create("crusades-handover", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)


def size_of(layout, logits_shape) -> int:
    return sketch.slots(layout, logits_shape)[1] * ITEM


def seal(fd: int, layout, logits_shape) -> int:
    """Supervisor side, before the worker learns the layout: fixes the size for good."""
    nbytes = size_of(layout, logits_shape)
    os.ftruncate(fd, nbytes)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
    return nbytes


def snapshot(fd: int, nbytes: int) -> torch.Tensor:
    """Supervisor side: a private copy of the buffer as it is now (a short read leaves zeros)."""
    data = bytearray(nbytes)
    view, done = memoryview(data), 0
    while done < nbytes:
        n = os.preadv(fd, [view[done:]], done)
        if n <= 0:
            break
        done += n
    return torch.frombuffer(data, dtype=torch.float32) if nbytes else torch.zeros(0)


class WorkerBuffer:
    """Worker side: the sealed file mapped as one flat float32 tensor."""

    def __init__(self, fd: int, layout, logits_shape):
        self.nbytes = size_of(layout, logits_shape)
        self.buf = mmap.mmap(fd, self.nbytes)
        self.flat = torch.frombuffer(self.buf, dtype=torch.float32)

    def pin(self, device: torch.device) -> str:
        """Page-locks the mapping for the CUDA driver (before the submission is imported), so the one copy
        in the window runs at bus speed. Returns how it went, for the diagnostics."""
        if device.type != "cuda":
            return "not needed"
        self.flat.fill_(0)  # fault every page in now, not inside the window
        try:
            err = int(torch.cuda.cudart().cudaHostRegister(self.flat.data_ptr(), self.nbytes, 0))
        except (AttributeError, RuntimeError) as e:
            return f"not pinned ({e})"
        return "pinned" if err == 0 else f"not pinned (cudaHostRegister error {err})"
