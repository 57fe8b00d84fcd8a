"""What a worker may say back, checked field by field. Every report is hostile input: the miner's code shares
the worker's interpreter and can send any frame (channel.py already refuses frames that are too big, too deep,
not JSON objects, or that carry a number JSON does not allow, an infinite float or an integer of more than 20
digits). Here each answer must have exactly the keys its operation defines, each of exactly its type and
within its bounds, so nothing downstream (the checks, the result document, its schema) can fail on a
value: anything else is `tampering`, the submission's rejection, never our error."""
import math

MESSAGE_LIMIT = 4000
COUNT_MAX = 1 << 62  # a token count beyond any benchmark, still an exact float and a JSON-safe integer
LOSS_MAX = 1e30
SHAPE_RANK_MAX = 8
SHAPE_DIM_MAX = 1 << 40
TEXT_MAX = 200
# The answer to the timed and warm-up calls (the worker reads them from what inner_steps returned).
RUN_FIELDS = {"total_tokens": "count", "final_loss": "loss", "logits_shape": "shape"}
# Before any miner code: how the hand-over buffer was pinned, and what landlock.restrict said.
SETUP_FIELDS = {"handover": "text", "landlock": "text"}


class Malformed(Exception):
    """The report is not one the worker's protocol can produce: tampering."""


class Rejection(Exception):
    """The worker rejects the submission itself, with one of the codes it may use."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def parse(reply: dict, op: str, fields: dict, codes: set) -> dict:
    """The answer to `op`: its fields when it succeeded; raises Rejection for a rejection with a code from
    `codes`, Malformed for anything else."""
    if reply.get("op") != op or type(reply.get("ok")) is not bool:
        raise Malformed(f"an answer to {repr(reply.get('op'))[:40]} where {op!r} was asked" if "op" in reply else "no op")
    if reply["ok"] is False:
        _keys(reply, {"ok", "op", "code", "message"})
        code, message = reply["code"], reply["message"]
        if type(code) is not str or code not in codes or type(message) is not str:
            raise Malformed("a rejection with a code the worker may not use, or without a message")
        raise Rejection(code, _text(message, MESSAGE_LIMIT))
    _keys(reply, {"ok", "op", *fields})
    for name, kind in fields.items():
        if not _CHECKS[kind](reply[name]):
            raise Malformed(f"{name} is not a {kind}")
    return reply


def _keys(reply: dict, expected: set) -> None:
    if set(reply) != expected:
        extra, missing = [k[:40] for k in sorted(set(reply) - expected)[:5]], sorted(expected - set(reply))
        raise Malformed(f"fields {extra} not expected, {missing} missing")


def _text(value: str, limit: int) -> str:
    """Cut to `limit` and cleaned of what is not UTF-8 (JSON lets a lone surrogate through)."""
    return value[:limit].encode("utf-8", "replace").decode("utf-8")


_CHECKS = {
    "count": lambda v: type(v) is int and 0 <= v <= COUNT_MAX,
    # None: the worker found the loss it was given not finite (checks.py reports that as non_finite).
    "loss": lambda v: v is None or (type(v) is float and math.isfinite(v) and abs(v) <= LOSS_MAX),
    "shape": lambda v: type(v) is list and len(v) <= SHAPE_RANK_MAX
    and all(type(d) is int and 0 <= d <= SHAPE_DIM_MAX for d in v),
    "text": lambda v: type(v) is str and len(v) <= TEXT_MAX,
}
