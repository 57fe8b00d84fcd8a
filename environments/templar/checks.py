"""Verification arithmetic: the candidate's sketches (sketch.py) against the reference run's, on identical
inputs and the same projection. Runs in the supervisor only, on its own snapshot of the hand-over buffer.

Three kinds of evidence per tensor, each compared by three statistics:
- the update W - W0, AdamW's exp_avg and exp_avg_sq (where the last gradient weighs 1 - beta1, 1 - beta2);
- `rel_global`: ||c - r|| / ||r|| over all tensors; `scale`: <c, r> / ||r||^2, the share of the reference's
  value that was reached (a skipped or zeroed gradient shrinks it; rounding noise costs it only
  quadratically); `rel_layer`: the worst tensor's relative error, judged only where the reference has signal.
Every check is reported with its value and bound; the first failing one, in PRIORITY order, names the error."""
import math

import torch

import sketch

KINDS = dict(zip(sketch.KINDS, ("update", "exp_avg", "exp_avg_sq")))  # sketch kind -> check name
STATS = ("scale", "rel_global", "rel_layer")
# Most specific first: a cheat usually trips several checks, and the code should name its cause.
PRIORITY = ["token_count", "logits_shape", "finite", "optimizer_state", "frozen_params",
            *(f"{kind}_{stat}" for stat in STATS for kind in KINDS.values()), "loss_abs_diff", "logits_rel_diff"]
CODES = {"token_count": "token_count", "logits_shape": "logits_shape", "finite": "non_finite",
         "optimizer_state": "optimizer_state", "frozen_params": "frozen_params",
         **{f"{kind}_{stat}": "weights_mismatch" if kind == "update" else "optimizer_mismatch"
            for stat in STATS for kind in KINDS.values()},
         "loss_abs_diff": "loss_mismatch", "logits_rel_diff": "logits_mismatch"}
FROZEN = 1e-3  # an update this small against the reference's is no update at all
ADVICE = {"update": "every step must run forward, backward and optimizer.step on every parameter",
          "exp_avg": "every step's full gradient must reach the optimizer you were given (its state is compared)",
          "exp_avg_sq": "every step's full gradient must reach the optimizer you were given (its state is compared)"}


def _check(name, passed, value, bound, detail=None):
    value = None if value is None or not math.isfinite(value) else float(value)
    out = {"name": name, "passed": bool(passed), "value": value, "bound": bound}
    if detail:
        out["detail"] = detail
    return out


def _norm(t: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(t.double()))


def _kind_stats(cand: dict, ref: dict, signal: set, floor_share: float) -> dict:
    """The three statistics of one kind; tensors missing from `signal` are left out of `rel_layer`."""
    names = list(ref)
    r_all = torch.cat([ref[n] for n in names]).double()
    c_all = torch.cat([cand[n] for n in names]).double()
    r_sq = float(r_all @ r_all)
    stats = {"scale": float(c_all @ r_all) / r_sq if r_sq > 0 else math.nan,
             "rel_global": _norm(c_all - r_all) / math.sqrt(r_sq) if r_sq > 0 else math.nan}
    rms = math.sqrt(r_sq / r_all.numel()) if r_all.numel() else 0.0
    layer = {}
    for n in names:
        if n not in signal:
            continue
        # A tensor far below the model's typical magnitude is judged against that magnitude instead: its
        # own value is mostly rounding, and rounding must not decide a bound.
        denom = max(_norm(ref[n]), floor_share * rms * math.sqrt(ref[n].numel()))
        layer[n] = _norm(cand[n] - ref[n]) / denom if denom > 0 else 0.0
    worst = max(layer.items(), key=lambda kv: kv[1], default=(None, 0.0))
    stats["rel_layer"], stats["worst"] = worst[1], worst[0]
    stats["layers"] = layer
    return stats


def verify(*, expected_tokens: int, expected_steps: int, logits_shape: tuple, reported: dict, cand: dict,
           ref: dict, tol: dict) -> tuple[list, dict | None, dict]:
    """cand / ref: sketch.split() of the candidate's snapshot and of the reference's sketches, with "w" of
    both already turned into updates (minus S(W0)); ref also carries "loss". reported: the worker's claimed
    total_tokens, final_loss and logits_shape. Returns (checks, error or None, diagnostics)."""
    checks, diag = [], {}
    tokens = reported.get("total_tokens")
    checks.append(_check("token_count", tokens == expected_tokens, tokens, f"== {expected_tokens}",
                         None if tokens == expected_tokens else
                         f"inner_steps reported {tokens!r} tokens; the harness fed exactly {expected_tokens}"))
    shape = reported.get("logits_shape")
    shape_ok = tuple(shape) == tuple(logits_shape)
    checks.append(_check("logits_shape", shape_ok, None, f"== {list(logits_shape)}",
                         None if shape_ok else f"final_logits has shape {shape}; expected "
                                               f"(batch, seq_len - 1, vocab) = {list(logits_shape)}"))

    loss = reported.get("final_loss")  # None when the worker's was not finite
    flat = torch.cat([cand["logits"], cand["step"], *(t for k in KINDS for t in cand[k].values())])
    bad = int((~torch.isfinite(flat)).sum()) + (0 if loss is not None else 1)
    checks.append(_check("finite", bad == 0, bad, "== 0",
                         None if bad == 0 else f"{bad} non-finite values in final_loss, final_logits, the weights "
                                               "or the optimizer state"))
    if bad:  # nothing below means anything on NaNs
        return _finish(checks, diag)

    names = list(ref["w"])
    wrong_steps = [n for n, s in zip(names, cand["step"].tolist()) if s != expected_steps]
    checks.append(_check("optimizer_state", not wrong_steps, len(wrong_steps), "== 0", None if not wrong_steps else
                         f"{len(wrong_steps)} parameters (e.g. {', '.join(wrong_steps[:3])}) have no AdamW state of "
                         f"{expected_steps} steps in the optimizer inner_steps was given; a loop with its own "
                         "optimizer must copy its state (step, exp_avg, exp_avg_sq) back into that one"))

    frozen = [n for n in names if _norm(ref["w"][n]) > 0 and _norm(cand["w"][n]) < FROZEN * _norm(ref["w"][n])]
    checks.append(_check("frozen_params", not frozen, len(frozen), "== 0", None if not frozen else
                         f"{len(frozen)} parameter tensors never changed although training updates them "
                         f"(e.g. {', '.join(frozen[:3])}); every parameter must be trained"))

    # Where the true gradient is (near) zero, e.g. attention key biases, Adam's sign-like steps are noise:
    # such tensors take no part in the update's per-tensor bound. Signal = exp_avg against its typical size.
    m_norms = {n: _norm(ref["exp_avg"][n]) for n in names}
    m_rms = math.sqrt(sum(v * v for v in m_norms.values()) / max(1, sum(ref["exp_avg"][n].numel() for n in names)))
    floor = tol["layer_signal_floor"]
    signal = {n for n in names if m_norms[n] >= floor * m_rms * math.sqrt(ref["exp_avg"][n].numel())}
    for key, kind in KINDS.items():
        stats = _kind_stats(cand[key], ref[key], signal if kind == "update" else set(names), floor)
        bounds = tol[kind]
        for stat in STATS:
            value, bound = stats[stat], bounds[stat]
            ok = math.isfinite(value) and (abs(1 - value) <= bound if stat == "scale" else value <= bound)
            text = f"1 ± {bound}" if stat == "scale" else f"<= {bound}"
            detail = ADVICE[kind] if not ok else None
            if stat == "rel_layer" and stats["worst"]:
                detail = f"worst tensor: {stats['worst']}" + (f"; {ADVICE[kind]}" if not ok else "")
            checks.append(_check(f"{kind}_{stat}", ok, value, text, detail))
        diag[f"{kind}_worst_layers"] = {k: v for k, v in sorted(stats["layers"].items(), key=lambda kv: -kv[1])[:5]}
    diag["update_layers_without_signal"] = sorted(set(names) - signal)

    loss_diff = abs(loss - ref["loss"])
    checks.append(_check("loss_abs_diff", loss_diff <= tol["loss_abs_tolerance"], loss_diff,
                         f"<= {tol['loss_abs_tolerance']}", f"final_loss {loss!r} vs reference {ref['loss']:.6f}"))
    rel = _norm(cand["logits"] - ref["logits"]) / max(_norm(ref["logits"]), 1e-30) if shape_ok else None
    checks.append(_check("logits_rel_diff", rel is not None and rel <= tol["logits_rel_tolerance"], rel,
                         f"<= {tol['logits_rel_tolerance']}", None if shape_ok else "not computed: wrong shape"))
    diag.update(reference_loss=ref["loss"], candidate_loss=loss)
    return _finish(checks, diag)


def _finish(checks: list, diag: dict) -> tuple[list, dict | None, dict]:
    failed = {c["name"]: c for c in checks if not c["passed"]}
    first = next((n for n in PRIORITY if n in failed), None)
    error = None
    if first:
        c = failed[first]
        value = "" if c["value"] is None else f" (value {c['value']:.6g}, bound {c['bound']})"
        error = {"code": CODES[first], "message": f"{first} failed{value}: {c.get('detail') or 'see checks'}"}
    return checks, error, diag


def reference_sketches(sketches: torch.Tensor, w0: torch.Tensor, layout, logits_shape, loss: float) -> dict:
    """The reference's side as verify() wants it: its sketches with S(W0) taken off the weights."""
    ref = sketch.split(sketches.double() - _weights_only(w0, layout, logits_shape), layout, logits_shape)
    ref["loss"] = loss
    return ref


def candidate_sketches(snapshot: torch.Tensor, w0: torch.Tensor, layout, logits_shape) -> dict:
    return sketch.split(snapshot.double() - _weights_only(w0, layout, logits_shape), layout, logits_shape)


def _weights_only(w0: torch.Tensor, layout, logits_shape) -> torch.Tensor:
    """S(W0) laid out in the "w" slots, zero elsewhere, so one subtraction turns weights into updates."""
    entries, total = sketch.slots(layout, logits_shape)
    out = torch.zeros(total, dtype=torch.float64)
    for name, _ in layout:
        offset, length = entries[("w", name)]
        out[offset:offset + length] = w0[offset:offset + length]
    return out
