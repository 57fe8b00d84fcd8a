"""The evidence verification compares: random projections ("sketches") of everything a correct run leaves
behind, keyed by a secret that exists only after `inner_steps` has returned.

For every trainable tensor the sketch covers its final value W, AdamW's exp_avg and exp_avg_sq (where the
last step's gradient enters with weight 1 - beta1 and 1 - beta2, so a skipped, zeroed, reused or
subsampled gradient shows however little it moved W), and the step count; plus the final logits. A tensor
with two or more dimensions is seen as rows x columns and multiplied by a seeded Gaussian matrix of K
columns (scaled so that a sketch's squared norm estimates the tensor's), a 1-D tensor is taken whole.

Why this holds:
- Every element enters its sketch with a random weight, so no element can be skipped or guessed.
- The key is sent only after the call returned, so no part of `inner_steps` can aim at the projection.
- AdamW's update and exp_avg_sq are elementwise non-linear in the gradient: their sketches cannot be
  computed from a low-rank shortcut, only from the full gradient of every step.
- Sketches are linear, so the update's sketch is S(W) - S(W0), and the supervisor computes S(W0) itself.
- A few MB instead of the full tensors: computed on the device inside the window, copied once.

The worker and the reference run the same functions on the same device type, so the projections are
bit-identical on both sides (same seed, same generator)."""
import hashlib
import math

import torch

K = 4  # columns per projection: rows x 4 samples per tensor estimate its norms within a few percent
KINDS = ("w", "exp_avg", "exp_avg_sq")
MISSING_STEP = -1.0


def _length(shape) -> int:
    return math.prod(shape) if len(shape) < 2 else shape[0] * K


def slots(layout, logits_shape) -> tuple[dict, int]:
    """{key: (offset, length)} in float32 elements, and the total. Keys: "logits", (kind, name), "step"."""
    entries, offset = {}, 0
    rows = math.prod(logits_shape[:-1])
    for key, length in [("logits", rows * K), *(((kind, name), _length(shape)) for name, shape in layout
                                               for kind in KINDS), ("step", len(layout))]:
        entries[key] = (offset, length)
        offset += length
    return entries, offset


class Projector:
    """The seeded projection matrices of one run, one per column count, made on first use."""

    def __init__(self, key: int, device: torch.device):
        self.key, self.device, self.cache = key, device, {}

    def __call__(self, cols: int) -> torch.Tensor:
        if cols not in self.cache:
            seed = int.from_bytes(hashlib.sha256(f"{self.key}:{cols}".encode()).digest()[:8], "big") >> 1
            gen = torch.Generator(device=self.device).manual_seed(seed)
            self.cache[cols] = torch.randn(cols, K, generator=gen, device=self.device) / math.sqrt(K)
        return self.cache[cols]


def of(t: torch.Tensor, project: Projector) -> torch.Tensor:
    """The flat fp32 sketch of one tensor (rows x K, or the tensor itself when 1-D)."""
    t = t.detach().to(project.device, torch.float32)
    if t.ndim < 2:
        return t.reshape(-1)
    m = t.reshape(t.shape[0], -1)
    return (m @ project(m.shape[1])).reshape(-1)


def _step(state) -> float:
    step = state.get("step") if isinstance(state, dict) else None
    if isinstance(step, torch.Tensor) and step.numel() == 1:
        return float(step.item())
    return float(step) if isinstance(step, (int, float)) and not isinstance(step, bool) else MISSING_STEP


@torch.no_grad()
def collect(model: torch.nn.Module, optimizer, logits: torch.Tensor | None, layout, logits_shape, key: int,
            out: torch.Tensor) -> None:
    """Writes every sketch into `out` (a flat float32 tensor laid out by `slots`). A parameter that is gone
    or reshaped, or has no AdamW state of its shape in `optimizer`, leaves zeros and step -1: the comparison
    then fails on it. fp32 matmuls at full precision: a TF32 sketch of W would swamp the small update."""
    entries, total = slots(layout, logits_shape)
    device = next(model.parameters()).device
    project = Projector(key, device)
    flat = torch.zeros(total, dtype=torch.float32, device=device)
    saved = torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        params = dict(model.named_parameters())
        state = getattr(optimizer, "state", None)
        steps = []
        for name, shape in layout:
            p = params.get(name)
            if p is None or tuple(p.shape) != tuple(shape):
                steps.append(MISSING_STEP)
                continue
            _put(flat, entries[("w", name)], of(p, project))
            st = state.get(p) if hasattr(state, "get") else None
            moments = [st.get(k) if isinstance(st, dict) else None for k in KINDS[1:]]
            if all(isinstance(x, torch.Tensor) and tuple(x.shape) == tuple(shape) for x in moments):
                for kind, x in zip(KINDS[1:], moments):
                    _put(flat, entries[(kind, name)], of(x, project))
                steps.append(_step(st))
            else:
                steps.append(MISSING_STEP)
        if logits is not None and tuple(logits.shape) == tuple(logits_shape):
            _put(flat, entries["logits"], of(logits.reshape(-1, logits_shape[-1]), project))
        offset, length = entries["step"]
        flat[offset:offset + length] = torch.tensor(steps, dtype=torch.float32, device=device)
        out.copy_(flat)  # one copy to the host: synchronous, so the values are there when it returns
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved[0]
        torch.set_float32_matmul_precision(saved[1])


def _put(flat: torch.Tensor, entry, values: torch.Tensor) -> None:
    offset, length = entry
    flat[offset:offset + length] = values


def split(flat: torch.Tensor, layout, logits_shape) -> dict:
    """The flat buffer as {"logits": t, "step": t, kind: {name: t}} views."""
    entries, _ = slots(layout, logits_shape)
    view = lambda key: flat[entries[key][0]:entries[key][0] + entries[key][1]]  # noqa: E731
    out = {"logits": view("logits"), "step": view("step")}
    for kind in KINDS:
        out[kind] = {name: view((kind, name)) for name, _ in layout}
    return out
