"""Length-prefixed JSON frames over the private pipes between supervisor and worker. The supervisor treats
every frame it reads as hostile input: bounded size, bounded wait, finite floats and bounded integers only,
and a plain dict or nothing."""
import json
import math
import os
import select
import struct
import time

MAX_FRAME = 64 << 20
INT_DIGITS = 20  # with the sign: every integer either side sends (seeds are 63-bit) fits
_HEADER = struct.Struct(">I")


class ChannelClosed(Exception):
    """The other end closed the pipe (the worker exited or closed its end)."""


class ChannelTimeout(Exception):
    pass


class BadFrame(Exception):
    pass


def send(fd: int, message: dict) -> None:
    data = json.dumps(message, allow_nan=False).encode()
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, n: int, deadline: float) -> bytes:
    chunks, left = [], n
    while left:
        wait = None if deadline == float("inf") else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            raise ChannelTimeout()
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            raise ChannelTimeout()
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise ChannelClosed()
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _no_constants(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses to inf: a number no report may carry
        raise ValueError(f"{text[:40]} is not a finite float")
    return value


def _bounded(text: str) -> int:
    if len(text) > INT_DIGITS:  # 10**400 would overflow every float conversion downstream
        raise ValueError(f"an integer of {len(text)} digits")
    return int(text)


def recv(fd: int, deadline: float = float("inf"), limit: int = MAX_FRAME) -> dict:
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    if size > limit:
        raise BadFrame(f"frame of {size} bytes exceeds {limit}")
    try:
        message = json.loads(_read_exact(fd, size, deadline), parse_constant=_no_constants, parse_float=_finite,
                             parse_int=_bounded)
    except (ValueError, RecursionError) as e:  # bad UTF-8 or JSON, NaN/Infinity/1e400, huge ints, deep nesting
        raise BadFrame(f"frame is not plain JSON: {type(e).__name__}: {str(e)[:200]}") from None
    if not isinstance(message, dict):
        raise BadFrame("frame is not a JSON object")
    return message
