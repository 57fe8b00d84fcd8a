"""Verification arithmetic: the candidate's outputs against the reference run on identical inputs. Runs in
the supervisor only, on plain tensors read from the hand-over buffer after the worker is dead.

Every check is reported with its value and bound; the first failing one, in PRIORITY order, names the
error. The weight check measures the update W - W0, not W: with lr 1e-4 the update is a tiny fraction of
the weights, so a tolerance on W would let whole skipped steps through."""
import math

import torch

# Most specific first: a cheat usually trips several checks, and the code should name its cause.
PRIORITY = ["token_count", "logits_shape", "finite", "frozen_params", "changed_fraction", "update_scale",
            "update_rel_error_global", "update_rel_error_layer", "loss_abs_diff", "logits_rel_diff"]
CODES = {"token_count": "token_count", "logits_shape": "logits_shape", "finite": "non_finite",
         "frozen_params": "frozen_params", "changed_fraction": "frozen_params", "update_scale": "weights_mismatch",
         "update_rel_error_global": "weights_mismatch", "update_rel_error_layer": "weights_mismatch",
         "loss_abs_diff": "loss_mismatch", "logits_rel_diff": "logits_mismatch"}


def _check(name, passed, value, bound, detail=None):
    value = None if value is None or not math.isfinite(value) else float(value)
    out = {"name": name, "passed": bool(passed), "value": value, "bound": bound}
    if detail:
        out["detail"] = detail
    return out


def verify(*, expected_tokens: int, logits_shape: tuple, reported: dict, cand: dict, ref: dict, tol: dict,
           device: torch.device) -> tuple[list, dict | None, dict]:
    """cand: {"logits_shape": tuple, "logits": Tensor or None, "deltas": {name: W - W0}} as the worker left
    them; ref: {"logits", "loss", "deltas"} from the reference run; reported: the worker's claimed
    total_tokens and final_loss. Returns (checks, error or None, diagnostics)."""
    checks, diag = [], {}
    tokens = reported.get("total_tokens")
    checks.append(_check("token_count", tokens == expected_tokens, tokens if isinstance(tokens, int) else None,
                         f"== {expected_tokens}", None if tokens == expected_tokens else
                         f"inner_steps reported {tokens!r} tokens; the harness fed exactly {expected_tokens}"))

    shape_ok = tuple(cand["logits_shape"]) == tuple(logits_shape) and cand["logits"] is not None
    checks.append(_check("logits_shape", shape_ok, None, f"== {list(logits_shape)}",
                         None if shape_ok else f"final_logits has shape {list(cand['logits_shape'])}; expected "
                                               f"(batch, seq_len - 1, vocab) = {list(logits_shape)}"))

    absent = sorted(set(ref["deltas"]) - set(cand["deltas"]))
    loss = reported.get("final_loss")
    bad = 0 if isinstance(loss, float) and math.isfinite(loss) else 1
    if shape_ok:
        bad += int((~torch.isfinite(cand["logits"].to(device))).sum())
    upd_sq = err_sq = dot = 0.0
    changed = total = 0
    layer_err, frozen = {}, []
    for name, d_ref in ref["deltas"].items():
        if name in absent:
            continue
        d_ref = d_ref.to(device)
        d_c = cand["deltas"][name].to(device, torch.float32)
        bad += int((~torch.isfinite(d_c)).sum())
        ref_norm = float(torch.linalg.vector_norm(d_ref.double()))
        diff = float(torch.linalg.vector_norm((d_c - d_ref).double()))
        upd_sq += ref_norm ** 2
        err_sq += diff ** 2
        dot += float(torch.dot(d_c.flatten().double(), d_ref.flatten().double()))
        layer_err[name] = diff / ref_norm if ref_norm > 0 else (0.0 if diff == 0 else math.inf)
        moved = int(torch.count_nonzero(d_c))
        changed += moved
        total += d_ref.numel()
        if moved == 0 and ref_norm > 0:
            frozen.append(name)
    checks.append(_check("finite", bad == 0, bad, "== 0",
                         None if bad == 0 else f"{bad} non-finite values in final_loss, final_logits or the weights"))

    checks.append(_check("frozen_params", not frozen, len(frozen), "== 0", None if not frozen else
                         f"{len(frozen)} parameter tensors never changed although training updates them "
                         f"(e.g. {', '.join(frozen[:3])}); every parameter must be trained"))
    frac = changed / total if total else 0.0
    checks.append(_check("changed_fraction", frac >= tol["min_changed_fraction"], frac,
                         f">= {tol['min_changed_fraction']}"))

    # The share of the reference's update the candidate made. On a GPU, bf16 rounding flips the sign-like
    # early Adam steps of elements whose gradient is mostly noise: that costs the relative error linearly
    # (e ~ 2 sqrt(f) for a flipped share f of the update) but this projection only quadratically
    # (1 - e^2 / 2), while a skipped or partial step shrinks it in proportion.
    absent_detail = f"parameters missing or reshaped ({', '.join(absent[:3])}); keep the model's parameters as given"
    scale = dot / upd_sq if upd_sq > 0 and not absent else None
    s_tol = tol["update_scale_tolerance"]
    s_ok = scale is not None and abs(1 - scale) <= s_tol
    checks.append(_check("update_scale", s_ok, scale, f"1 ± {s_tol}", None if s_ok else absent_detail if absent else
                         "the final weights did not move as far along the reference's update as they should: every "
                         "step must run forward, backward and optimizer.step on every parameter"))

    if absent:
        glob, detail = None, absent_detail
    else:
        glob = math.sqrt(err_sq) / math.sqrt(upd_sq) if upd_sq > 0 else math.inf
        detail = None
    g_tol = tol["update_rel_tolerance_global"]
    checks.append(_check("update_rel_error_global", glob is not None and glob <= g_tol, glob, f"<= {g_tol}",
                         detail or (None if glob <= g_tol else "final weights differ from the reference's: every step "
                                    "must run forward, backward and optimizer.step on every parameter")))
    worst = max(layer_err.items(), key=lambda kv: kv[1], default=(None, math.inf if absent else 0.0))
    l_tol = tol["update_rel_tolerance_layer"]
    checks.append(_check("update_rel_error_layer", worst[1] <= l_tol and not absent, worst[1],
                         f"<= {l_tol}", f"worst tensor: {worst[0]}" if worst[0] else None))
    diag["worst_layers"] = {k: (v if math.isfinite(v) else None)
                            for k, v in sorted(layer_err.items(), key=lambda kv: -kv[1])[:5]}

    loss_diff = abs(loss - ref["loss"]) if not bad and isinstance(loss, float) else None
    checks.append(_check("loss_abs_diff", loss_diff is not None and loss_diff <= tol["loss_abs_tolerance"],
                         loss_diff, f"<= {tol['loss_abs_tolerance']}",
                         f"final_loss {loss!r} vs reference {ref['loss']:.6f}"))

    rel = None
    if shape_ok:
        r = ref["logits"].to(device, torch.float32)
        rel = float((cand["logits"].to(device, torch.float32) - r).abs().mean() / r.abs().mean().clamp_min(1e-12))
    checks.append(_check("logits_rel_diff", rel is not None and rel <= tol["logits_rel_tolerance"], rel,
                         f"<= {tol['logits_rel_tolerance']}", None if shape_ok else "not computed: wrong shape"))

    failed = {c["name"]: c for c in checks if not c["passed"]}
    first = next((n for n in PRIORITY if n in failed), None)
    error = None
    if first:
        c = failed[first]
        value = "" if c["value"] is None else f" (value {c['value']:.6g}, bound {c['bound']})"
        error = {"code": CODES[first], "message": f"{first} failed{value}: {c.get('detail') or 'see checks'}"}
    diag.update(reference_loss=ref["loss"], candidate_loss=loss if isinstance(loss, float) else None,
                changed_fraction=frac)
    return checks, error, diag
