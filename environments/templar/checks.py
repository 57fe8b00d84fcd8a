"""Verification arithmetic: the candidate's sketches (sketch.py) against the reference run's, on identical
inputs and the same projection. Runs in the supervisor only, on its own snapshot of the hand-over buffer.

The rule: a profile declares its numerics (bf16 autocast over fp32 master weights and fp32 AdamW state on
the GPU profiles and the bf16 CPU profiles; fp32 on `tiny`). A loop is honest when its evidence stays inside
the band that honest loops of that precision or better reach, measured per profile and device class by
bench/calibrate.py (calibration/<profile>.<device class>.json): each bound is that band's maximum times a
stated margin, or where the widest honest loop's own distribution puts its tail, whichever is larger.
Whatever stays inside is a legitimate optimisation; whatever leaves it is rejected, whatever the technique.
Without a calibration for the profile and device the hparams bounds judge, and the result says so.

Three kinds of evidence per tensor, each compared by up to five statistics:
- the update W - W0, AdamW's exp_avg and exp_avg_sq (where the last gradient weighs 1 - beta1, 1 - beta2);
- `rel_global`: ||c - r|| / ||r|| over all tensors; `scale`: <c, r> / ||r||^2, the share of the reference's
  value that was reached (a skipped or zeroed gradient shrinks it; rounding noise costs it only
  quadratically); `rel_layer`: the worst tensor's relative error, judged only where the reference has signal;
  `noise` (the moments, calibrated profiles only): each tensor's relative error divided by its own calibrated honest
  noise, combined as a root mean square over tensors. Honest rounding reaches its own noise in some tensors
  and stays below it in others; a lower-precision computation raises every tensor at once, so the
  systematic error adds up here where the global error is dominated by the largest tensors;
  `matrix_noise` (exp_avg only): the same over the worst kind of weight matrix, one name in every layer,
  where an fp8 GEMM's error (one kind of matrix in every layer) adds up.
Every check is reported with its value, bound and the honest band; the first failing one, in PRIORITY
order, names the error."""
import hashlib
import json
import math
import re
from pathlib import Path

import torch

import sketch
import workload

KINDS = dict(zip(sketch.KINDS, ("update", "exp_avg", "exp_avg_sq")))  # sketch kind -> check name
STATS = ("scale", "rel_global", "noise", "matrix_noise", "rel_layer")
# The noise statistics are not the update's: its per-tensor errors are Adam's sign-like steps flipping on
# elements whose gradient is rounding, luck rather than precision (on deep-bf16 the honest median was 0.29, the
# maximum of 60 calibration runs 2.0, and a fresh honest eager-attention run 3.3). matrix_noise is exp_avg's
# only, where the last gradient enters linearly: on exp_avg_sq it separated nothing exp_avg does not (fp8 MLP
# weight gradients on deep-bf16: 1.03x the honest maximum there, 1.94x on exp_avg), and every statistic
# judged is one more chance to reject an honest loop.
NOISE_KINDS = ("exp_avg", "exp_avg_sq")
KIND_STATS = {"noise": NOISE_KINDS, "matrix_noise": ("exp_avg",)}
# Most specific first: a cheat usually trips several checks, and the code should name its cause.
EVIDENCE = [f"{kind}_{stat}" for stat in STATS for kind in KINDS.values() if kind in KIND_STATS.get(stat, (kind,))]
PRIORITY = ["token_count", "logits_shape", "finite", "optimizer_state", "frozen_params", *EVIDENCE,
            "loss_abs_diff", "logits_rel_diff", "mfu_ceiling"]
CODES = {"token_count": "token_count", "logits_shape": "logits_shape", "finite": "non_finite",
         "optimizer_state": "optimizer_state", "frozen_params": "frozen_params",
         **{name: "weights_mismatch" if name.startswith("update_") else "optimizer_mismatch" for name in EVIDENCE},
         "loss_abs_diff": "loss_mismatch", "logits_rel_diff": "logits_mismatch", "mfu_ceiling": "implausible_mfu"}
FROZEN = 1e-3  # an update this small against the reference's is no update at all
ADVICE = {"update": "every step must run forward, backward and optimizer.step on every parameter",
          "exp_avg": "every step's full gradient must reach the optimizer you were given (its state is compared)",
          "exp_avg_sq": "every step's full gradient must reach the optimizer you were given (its state is compared)",
          "loss": "final_loss must be the last step's mean cross-entropy over every position",
          "logits": "final_logits must be the last step's logits of the trained model"}
# Above this share of the device's dense bf16 peak no training loop runs (the anchor capped at 85%): a
# window that short was not a training run. Judged only where the peak is known.
MFU_CEILING = 0.85
CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"
CALIBRATION_VERSION = 1
DEVICE_CLASSES = [("H100 PCIe", "h100-pcie"), ("H100", "h100"), ("H200", "h200"), ("A100", "a100")]


def precision(autocast: bool) -> str:
    return "bf16 autocast over fp32 master weights and fp32 AdamW state" if autocast else \
        "fp32 weights, activations, gradients and AdamW state"


def rule(autocast: bool) -> str:
    """The precision rule, as every mismatch message states it."""
    return (f"a loop is honest when its evidence stays inside the band that honest loops of this profile's "
            f"precision or better reach on this device (the profile declares {precision(autocast)}); lower "
            "precision anywhere (fp8 GEMMs, low-precision optimizer state or master weights) or a missing gradient "
            "leaves it")


def device_class(device_type: str, name: str) -> str:
    """The class a calibration is measured for: `cpu`, a known GPU (h100, h100-pcie, h200, a100), or the
    device's own name in lower case."""
    if device_type != "cuda":
        return device_type
    known = next((cls for key, cls in DEVICE_CLASSES if key in name), None)
    return known or re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "cuda"


def calibration_key(bench: dict, raw_config: dict, optimizer: dict) -> dict:
    """What a calibration was measured on; it judges only runs with the same settings."""
    config = json.dumps(raw_config, sort_keys=True, separators=(",", ":")).encode()
    return {"model_config_sha256": hashlib.sha256(config).hexdigest(), "w0": workload.W0_RULE,
            **{k: bench[k] for k in ("batch_size", "sequence_length", "eval_steps", "autocast")},
            "optimizer": {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in optimizer.items()}}


def judging(bench: dict, raw_config: dict, optimizer: dict, device: str, fallback: dict,
            directory: Path = CALIBRATION_DIR) -> tuple[dict, dict]:
    """(tolerances for verify(), what the result says about them). The calibration of this profile and
    device class when one exists for these settings, else the request's (hparams) bounds, marked uncalibrated."""
    name = f"{bench['profile']}.{device}.json"
    info = {"profile": bench["profile"], "device_class": device, "calibrated": False, "file": None, "version": None}
    tol = {**fallback, "autocast": bench["autocast"], "noise": None, "honest": {}}
    try:
        cal = json.loads((directory / name).read_text())
    except FileNotFoundError:
        return tol, {**info, "reason": f"no calibration {name}: judged with the hparams bounds"}
    except (OSError, ValueError) as e:
        return tol, {**info, "reason": f"calibration {name} unreadable ({e}): judged with the hparams bounds"}
    if cal.get("version") != CALIBRATION_VERSION or cal.get("key") != calibration_key(bench, raw_config, optimizer):
        return tol, {**info, "reason": f"calibration {name} was measured for other settings (or format): "
                                       "judged with the hparams bounds"}
    tol.update(cal["bounds"], noise=cal["noise"], honest={s: b["max"] for s, b in cal["band"].items()})
    return tol, {**info, "calibrated": True, "file": f"calibration/{name}", "version": cal["version"],
                 "created": cal.get("created")}


def noise_statistic(errors: dict, sigma: dict, names) -> float:
    """Root mean square over `names` of each tensor's error in units of its calibrated honest noise."""
    names = [n for n in names if n in errors]
    if not names:
        return 0.0
    return math.sqrt(sum((errors[n] / sigma[n]) ** 2 for n in names) / len(names))


def matrix_kinds(layout) -> dict[str, list[str]]:
    """The weight matrices by kind: the same name in every layer (a layer index is any numeric component)."""
    kinds = {}
    for name, shape in layout:
        if len(shape) == 2:
            kinds.setdefault(re.sub(r"\.\d+\.", ".*.", name), []).append(name)
    return kinds


def matrix_noise_statistic(errors: dict, sigma: dict, kinds: dict) -> tuple[float, str | None]:
    """The worst kind of weight matrix: the noise statistic over that kind's tensors in every layer, and its
    name. An fp8 GEMM is one kind of matrix in every layer (the MLP's, the output projections, the tied
    head): its systematic error adds up over the layers here, where the statistic over every tensor dilutes it
    (deep-bf16: fp8 MLP weight gradients at 4-5x their tensors' honest noise, 1.2x the honest maximum over all
    tensors, 1.9x over the worst kind)."""
    return max(((noise_statistic(errors, sigma, names), kind) for kind, names in kinds.items()), default=(0.0, None))


def mfu_ceiling(mfu: float | None) -> tuple[dict | None, dict | None]:
    """(check, error) for a run's MFU; (None, None) where the device's peak is unknown."""
    if mfu is None:
        return None, None
    if mfu <= MFU_CEILING:
        return _check("mfu_ceiling", True, mfu, f"<= {MFU_CEILING}"), None
    message = (f"mfu_ceiling failed (value {mfu:.3g}, bound <= {MFU_CEILING}): the timed window implies "
               f"{mfu:.0%} of the device's dense bf16 peak, more than any training loop reaches; the run is not "
               "believed")
    return _check("mfu_ceiling", False, mfu, f"<= {MFU_CEILING}", message), \
        {"code": CODES["mfu_ceiling"], "message": message}


def _check(name, passed, value, bound, detail=None, honest=None):
    value = None if value is None or not math.isfinite(value) else float(value)
    out = {"name": name, "passed": bool(passed), "value": value, "bound": bound}
    if honest is not None:
        out["honest_max"] = float(honest)
    if detail:
        out["detail"] = detail
    return out


def _g(x: float) -> str:
    """Three significant digits: a statistic of 0.0065 must not print as 0."""
    return f"{x:.3g}"


def _norm(t: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(t.double()))


def _kind_stats(cand: dict, ref: dict, signal: set, floor_share: float) -> dict:
    """The statistics of one kind but `noise`, and every tensor's relative error ("errors"); tensors missing
    from `signal` are left out of `rel_layer`."""
    names = list(ref)
    r_all = torch.cat([ref[n] for n in names]).double()
    c_all = torch.cat([cand[n] for n in names]).double()
    r_sq = float(r_all @ r_all)
    stats = {"scale": float(c_all @ r_all) / r_sq if r_sq > 0 else math.nan,
             "rel_global": _norm(c_all - r_all) / math.sqrt(r_sq) if r_sq > 0 else math.nan}
    rms = math.sqrt(r_sq / r_all.numel()) if r_all.numel() else 0.0
    errors = {}
    for n in names:
        # A tensor far below the model's typical magnitude is judged against that magnitude instead: its
        # own value is mostly rounding, and rounding must not decide a bound.
        denom = max(_norm(ref[n]), floor_share * rms * math.sqrt(ref[n].numel()))
        errors[n] = _norm(cand[n] - ref[n]) / denom if denom > 0 else 0.0
    layer = {n: e for n, e in errors.items() if n in signal}
    worst = max(layer.items(), key=lambda kv: kv[1], default=(None, 0.0))
    stats["rel_layer"], stats["worst"] = worst[1], worst[0]
    stats["layers"], stats["errors"] = layer, errors
    return stats


def verify(*, expected_tokens: int, expected_steps: int, logits_shape: tuple, reported: dict, cand: dict,
           ref: dict, tol: dict, layout) -> tuple[list, dict | None, dict]:
    """cand / ref: sketch.split() of the candidate's snapshot and of the reference's sketches, with "w" of
    both already turned into updates (minus S(W0)); ref also carries "loss". layout: (name, shape) of every
    trained tensor. reported: the worker's claimed
    total_tokens, final_loss and logits_shape. tol: judging()'s tolerances (a bare hparams verification
    block judges too: fp32 rule text, no noise statistic). Returns (checks, error or None, diagnostics)."""
    checks, diag = [], {}
    honest, noise, the_rule = tol.get("honest", {}), tol.get("noise"), rule(tol.get("autocast", False))
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

    # Where the true gradient is (near) zero, Adam's sign-like steps are noise: such tensors take no part in
    # the update's per-tensor statistics. Signal = exp_avg against its typical size.
    m_norms = {n: _norm(ref["exp_avg"][n]) for n in names}
    m_rms = math.sqrt(sum(v * v for v in m_norms.values()) / max(1, sum(ref["exp_avg"][n].numel() for n in names)))
    floor = tol["layer_signal_floor"]
    signal = {n for n in names if m_norms[n] >= floor * m_rms * math.sqrt(ref["exp_avg"][n].numel())}
    diag["tensor_errors"] = {}
    for key, kind in KINDS.items():
        stats = _kind_stats(cand[key], ref[key], signal if kind == "update" else set(names), floor)
        if noise is not None and kind in KIND_STATS["noise"]:
            stats["noise"] = noise_statistic(stats["errors"], noise[kind], stats["layers"])
        if noise is not None and kind in KIND_STATS["matrix_noise"]:
            stats["matrix_noise"], stats["worst_matrix"] = matrix_noise_statistic(stats["errors"], noise[kind],
                                                                                  matrix_kinds(layout))
        bounds = tol[kind]
        for stat in STATS:
            if stat not in stats or stat not in bounds:
                continue
            value, bound, name = stats[stat], bounds[stat], f"{kind}_{stat}"
            ok = math.isfinite(value) and (abs(1 - value) <= bound if stat == "scale" else value <= bound)
            text = f"1 ± {bound:g}" if stat == "scale" else f"<= {bound:g}"
            detail = None if ok else f"{ADVICE[kind]}; {the_rule}"
            if stat == "rel_layer" and stats["worst"]:
                detail = f"worst tensor: {stats['worst']}" + (f"; {detail}" if detail else "")
            if stat == "matrix_noise" and stats["worst_matrix"]:
                detail = f"worst kind of matrix: {stats['worst_matrix']}" + (f"; {detail}" if detail else "")
            checks.append(_check(name, ok, value, text, detail, honest.get(name)))
        diag[f"{kind}_worst_layers"] = {k: v for k, v in sorted(stats["layers"].items(), key=lambda kv: -kv[1])[:5]}
        diag["tensor_errors"][kind] = [float(f"{stats['errors'][n]:.4g}") for n in names]
    diag["update_layers_without_signal"] = sorted(set(names) - signal)

    loss_diff = abs(loss - ref["loss"])
    ok = loss_diff <= tol["loss_abs_tolerance"]
    checks.append(_check("loss_abs_diff", ok, loss_diff, f"<= {tol['loss_abs_tolerance']:g}",
                         f"final_loss {loss!r} vs reference {ref['loss']:.6f}" +
                         ("" if ok else f"; {ADVICE['loss']}; {the_rule}"), honest.get("loss_abs_diff")))
    rel = _norm(cand["logits"] - ref["logits"]) / max(_norm(ref["logits"]), 1e-30) if shape_ok else None
    ok = rel is not None and rel <= tol["logits_rel_tolerance"]
    checks.append(_check("logits_rel_diff", ok, rel, f"<= {tol['logits_rel_tolerance']:g}",
                         "not computed: wrong shape" if not shape_ok else
                         None if ok else f"{ADVICE['logits']}; {the_rule}", honest.get("logits_rel_diff")))
    diag.update(reference_loss=ref["loss"], candidate_loss=loss)
    return _finish(checks, diag)


def _finish(checks: list, diag: dict) -> tuple[list, dict | None, dict]:
    failed = {c["name"]: c for c in checks if not c["passed"]}
    first = next((n for n in PRIORITY if n in failed), None)
    error = None
    if first:
        c = failed[first]
        value = "" if c["value"] is None else f" (value {_g(c['value'])}, bound {c['bound']}" + \
            (f", honest loops reach {'1 ± ' if first.endswith('_scale') else ''}{_g(c['honest_max'])}"
             if "honest_max" in c else "") + ")"
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
