#!/usr/bin/env python3
"""Measures the honest band of a profile on this device class and writes the bounds the harness judges with.

    python3 bench/calibrate.py --profile P [--seeds N] [--compile-seeds N] [--loops a,b]
                                [--margin 1.5] [--tail 6] [--synthetic] [--out FILE] [--save-runs F] [--from-runs F ...]
                                [--keep-band FILE]

The rule it implements: a profile declares its numerics (bf16 autocast over fp32 master weights and fp32
AdamW state on the GPU profiles, tiny-bf16 and deep-bf16; fp32 on tiny); a loop is honest when its evidence
stays inside the band that honest loops of that precision or better reach on this device. So this runs
honest loops of that precision or better (LOOPS: fp32, bf16 autocast through sdpa, eager and math
attention, foreach and fused AdamW, chunked cross-entropy, row micro-batches, activation checkpointing,
hand-written GEMMs, the direct module pass, torch.compile) over --seeds fresh seeds each, through the
validator's own path (one warm env.py --serve), and writes environments/templar/calibration/<profile>.<device
class>.json (format CALIBRATION_VERSION of checks.py):
- band: per statistic the honest maximum (for a scale, the largest |1 - scale|), median, run count and the
  widest loop's tail;
- noise: per moment (exp_avg, exp_avg_sq) and tensor, the honest root-mean-square relative error (at least
  --floor), which the noise statistics divide by;
- bounds: per statistic the larger of margin x max(honest maximum, floor) (a noise statistic's floor is 1:
  every tensor at its own honest noise) and the widest loop's mean + tail x standard deviation (from a loop
  of at least MIN_TAIL_RUNS runs; RUNS_FOR_TAIL make it hold), rounded up to 3 significant digits. The
  second is for a difference that is noise around zero (the loss, a scale's 1 - s): 10-18 runs of a loop
  reach 2-2.5 of its standard deviations, so a margin over their maximum alone rejects honest runs by the
  thousand;
- key: the settings measured (model config hash, W0's rule, batch, sequence, steps, autocast, optimizer); the harness
  uses the file only for runs with the same ones.
Then it re-judges every honest run with the new bounds and exits 1 if any fails (it cannot, by
construction, unless a floor or rounding is wrong)."""
import argparse
import datetime
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "train"
sys.path.insert(0, str(ROOT / "local_test"))
sys.path.insert(0, str(ROOT / "environments" / "templar"))

import checks  # noqa: E402
import workload  # noqa: E402
from verify import PROFILES, WarmHarness, benchmark_settings, build_request, verification_settings  # noqa: E402

# Honest loops: name -> (fixture, mode). fp32 runs only where the profile declares bf16 (it is the profile's
# own precision otherwise, i.e. the template).
LOOPS = {"template": ("template", None), "fp32": ("honest_variants", "fp32"),
         "eager_attn": ("honest_variants", "eager_attn"), "math_sdpa": ("honest_variants", "math_sdpa"),
         "foreach": ("honest_variants", "foreach"), "fused": ("honest_variants", "fused"),
         "chunked_ce": ("honest_variants", "chunked_ce"), "microbatch": ("honest_variants", "microbatch"),
         "checkpoint": ("honest_variants", "checkpoint"),
         "fp32_checkpoint": ("honest_variants", "fp32_checkpoint"), "manual_gemm": ("precision_shortcuts", "bf16_manual"),
         "direct_pass": ("honest_fast", None), "compile": ("honest_variants", "compile")}
OTHER = ["loss_abs_diff", "logits_rel_diff"]
MARGIN = 1.5
TAIL = 6.0
# A loop's standard deviation from fewer runs than this is a guess, not a measurement: such a loop gets no
# tail. Its tail holds the rate test_verdict.py asks of it (under 1 honest run in 10^4) from about RUNS_FOR_TAIL.
MIN_TAIL_RUNS, RUNS_FOR_TAIL = 5, 18
FLOOR = 1e-4
COMPILE_TIMEOUT_S = 900


def code_of(fixture: str, mode: str | None) -> str:
    if fixture == "template":
        return (ROOT / "local_test" / "train.py").read_text()
    text = (FIXTURES / f"{fixture}.py").read_text()
    return text if mode is None else text.replace("VARIANT_NAME", mode).replace("MODE_NAME", mode)


def distance(stat: str, value: float) -> float:
    return abs(1 - value) if stat.endswith("_scale") else value


def round_up(x: float) -> float:
    """x rounded up to 3 significant digits: the printed bound is the bound."""
    if x <= 0:
        return x
    step = 10 ** (math.floor(math.log10(x)) - 2)
    return round(math.ceil(x / step - 1e-9) * step, 12)


def tail_of(stat: str, values: list[float], tail: float) -> float:
    """Where one loop's honest distribution of `stat` is `tail` standard deviations out. A scale's 1 - s is a
    signed difference: |mean| + tail sd. The loss difference comes without its sign, so it is taken as noise
    around zero: tail x its root mean square (a bias only widens that). A magnitude (a relative error, a noise
    statistic) is mean + tail sd."""
    if stat.endswith("_scale"):
        x = [1 - v for v in values]
        return abs(statistics.fmean(x)) + tail * statistics.stdev(x)
    if stat == "loss_abs_diff":
        return tail * math.sqrt(statistics.fmean(v * v for v in values))
    return statistics.fmean(values) + tail * statistics.stdev(values)


def derive(runs: list[dict], layout, margin: float, floor: float, kept: dict | None = None,
           tail: float = TAIL) -> dict:
    """band, noise and bounds from honest runs: each run is {"loop": name, "values": {check: value}, "errors":
    {kind: [per tensor, in `layout` order]}}."""
    names, kinds = [n for n, _ in layout], checks.matrix_kinds(layout)
    noise = {kind: {n: max(floor, math.sqrt(statistics.fmean(r["errors"][kind][i] ** 2 for r in runs)))
                    for i, n in enumerate(names)} for kind in checks.NOISE_KINDS}
    for r in runs:  # the noise statistics in units of this calibration's noise, as the harness will judge them
        for kind in checks.NOISE_KINDS:
            errors = dict(zip(names, r["errors"][kind]))
            r["values"][f"{kind}_noise"] = checks.noise_statistic(errors, noise[kind], names)
            if kind in checks.KIND_STATS["matrix_noise"]:
                r["values"][f"{kind}_matrix_noise"] = checks.matrix_noise_statistic(errors, noise[kind], kinds)[0]
    loops = {}
    for r in runs:
        loops.setdefault(r.get("loop"), []).append(r)
    band, bounds = {}, {}
    for stat in checks.EVIDENCE + OTHER:
        values = [distance(stat, r["values"][stat]) for r in runs]
        band[stat] = {"max": max(values), "median": statistics.median(values), "runs": len(values)}
        widest = max(((tail_of(stat, v, tail), loop) for loop, mine in loops.items()
                      if len(v := [r["values"][stat] for r in mine]) >= MIN_TAIL_RUNS), default=(0.0, None))
        band[stat].update(tail=widest[0], tail_loop=widest[1])
        # An honest value measured before (whose runs were not kept) still bounds the band: a new sample that
        # happens to miss it must not reject such a run. Not the noise statistics: they are in units of each
        # calibration's own per-tensor noise.
        earlier = (kept or {}).get(stat, {})
        if not stat.endswith("_noise") and earlier.get("max", 0) > band[stat]["max"]:
            band[stat].update(max=earlier["max"], kept_from_earlier=True)
        if not stat.endswith("_noise") and earlier.get("tail", 0) > band[stat]["tail"]:
            band[stat].update(tail=earlier["tail"], tail_loop=earlier.get("tail_loop"), kept_from_earlier=True)
        bounds[stat] = round_up(max(margin * max(band[stat]["max"], 1.0 if stat.endswith("_noise") else floor),
                                    band[stat]["tail"]))
    out = {kind: {stat: bounds[f"{kind}_{stat}"] for stat in checks.STATS if f"{kind}_{stat}" in bounds}
           for kind in checks.KINDS.values()}
    out.update(loss_abs_tolerance=bounds["loss_abs_diff"], logits_rel_tolerance=bounds["logits_rel_diff"])
    return {"band": band, "noise": noise, "bounds": out}


def flat_bounds(bounds: dict) -> dict:
    """{statistic: bound}, by the check names the harness reports."""
    flat = {f"{kind}_{stat}": value for kind in checks.KINDS.values() for stat, value in bounds[kind].items()}
    flat.update(loss_abs_diff=bounds["loss_abs_tolerance"], logits_rel_diff=bounds["logits_rel_tolerance"])
    return flat


def rejected_by(values: dict, bounds: dict) -> list[str]:
    """The statistics of one run that a set of bounds rejects."""
    return [s for s, b in flat_bounds(bounds).items() if distance(s, values[s]) > b]


def measure(args, hp: dict, loops: list[str], overrides: dict, runs: list) -> tuple[dict | None, dict]:
    """Every loop over its seeds through one warm harness; appends to `runs`. Returns the device and the
    loops left out: a loop whose run never reached the comparison (torch.compile past the time limit on a
    loaded CPU, say) measured nothing, and is named in the file instead."""
    device, skipped = None, {}
    with tempfile.TemporaryDirectory(prefix="crusades-calibrate-") as tmp:
        harness = WarmHarness(Path(tmp), stderr=open(os.devnull, "w"))
        try:
            for loop in loops:
                code = code_of(*LOOPS[loop])
                # Compiling is not what is measured here: give it room on a slow device.
                extra = {"timeout_seconds": COMPILE_TIMEOUT_S} if loop == "compile" else {}
                count = args.compile_seeds if loop == "compile" and args.compile_seeds else args.seeds
                for run in range(count):  # every request draws its own random seed: sessions merge as they are
                    doc = harness.run(build_request(code, hp, args.profile, run, submission_id=loop,
                                                    **overrides, **extra))
                    diag = doc.get("diagnostics", {})
                    if "tensor_errors" not in diag:
                        skipped[loop] = (doc["error"] or {}).get("message", "no comparison")[:300]
                        print(f"{loop} run {run}: left out ({skipped[loop]})", file=sys.stderr, flush=True)
                        break
                    device = device or doc["device"]
                    runs.append({"loop": loop, "values": {c["name"]: c["value"] for c in doc["checks"]},
                                 "errors": diag["tensor_errors"]})
                    print(f"{loop} run {run}: exp_avg_rel_global {runs[-1]['values']['exp_avg_rel_global']:.3g}",
                          file=sys.stderr, flush=True)
        finally:
            harness.close()
    return device, skipped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=PROFILES, required=True)
    parser.add_argument("--seeds", type=int, default=6, help="fresh seeds per honest loop (default 6)")
    parser.add_argument("--compile-seeds", type=int, help="seeds for torch.compile (default: --seeds; a loop "
                                                          "sampled on fewer seeds than the others set too low a bound)")
    parser.add_argument("--loops", default=",".join(n for n in LOOPS if n != "fp32_checkpoint"),
                        help="honest loops (comma-separated; fp32_checkpoint is fp32 where plain fp32 does not fit)")
    parser.add_argument("--margin", type=float, default=MARGIN, help=f"bound = margin x honest maximum ({MARGIN})")
    parser.add_argument("--tail", type=float, default=TAIL,
                        help=f"bound >= the widest loop's mean + tail x standard deviation ({TAIL:g})")
    parser.add_argument("--floor", type=float, default=FLOOR, help=f"no bound or noise below this ({FLOOR})")
    parser.add_argument("--synthetic", action="store_true", help="seeded synthetic tokens instead of the shard")
    parser.add_argument("--out", type=Path, help="file, or directory for <profile>.<device class>.json, to write "
                                                 "(default: the harness's calibration directory)")
    parser.add_argument("--keep-band", type=Path, help="an earlier calibration file: its measured honest maxima "
                                                       "stay in the band (all statistics but the noise ones)")
    parser.add_argument("--save-runs", type=Path, help="also keep every run's statistics here (JSON)")
    parser.add_argument("--from-runs", type=Path, nargs="+", help="derive from the runs kept by --save-runs (one or "
                                                                  "more sessions, merged) instead of running")
    args = parser.parse_args()

    hp = json.loads((ROOT / "hparams" / "hparams.json").read_text())
    bench = benchmark_settings(hp, args.profile)
    raw_config = workload.read_config(workload.resolve_path(bench["model_config"], str(ROOT)))
    layout = workload.param_layout(workload.config_from(raw_config))
    overrides = {"data_path": None} if args.synthetic else {}
    loops = [n for n in args.loops.split(",") if not n.startswith("fp32") or bench["autocast"]]
    runs, device, skipped, started = [], None, {}, time.time()
    command = "python3 bench/calibrate.py " + " ".join(a for a in sys.argv[1:])
    if args.from_runs:
        kept = [json.loads(path.read_text()) for path in args.from_runs]
        runs = [r for k in kept for r in k["runs"]]
        device, command = kept[0]["device"], kept[0].get("command", command)
        skipped = {loop: why for k in kept for loop, why in k.get("skipped", {}).items()}
        loops = list(dict.fromkeys(loop for k in kept for loop in k["loops"]))
        if len({checks.device_class(k["device"]["type"], k["device"]["name"]) for k in kept}) > 1:
            print("calibrate.py: those runs come from different device classes", file=sys.stderr)
            return 2
    else:
        device, skipped = measure(args, hp, loops, overrides, runs)
        if not runs:
            print("calibrate.py: no honest run reached the comparison", file=sys.stderr)
            return 1
    if args.save_runs:
        args.save_runs.write_text(json.dumps({"device": device, "loops": loops, "runs": runs, "command": command,
                                                   "skipped": skipped}))

    kept = json.loads(args.keep_band.read_text())["band"] if args.keep_band else None
    derived = derive(runs, layout, args.margin, args.floor, kept, args.tail)
    floor_share = verification_settings(hp, args.profile)["layer_signal_floor"]
    derived["bounds"]["layer_signal_floor"] = floor_share
    failing = {f"{r['loop']}#{i}": bad for i, r in enumerate(runs) if (bad := rejected_by(r["values"], derived["bounds"]))}
    dev_class = checks.device_class(device["type"], device["name"])
    import torch
    import transformers
    doc = {"version": checks.CALIBRATION_VERSION, "profile": args.profile, "device_class": dev_class,
           "device": device["name"], "precision": checks.precision(bench["autocast"]),
           "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "command": command,
           "torch": torch.__version__, "transformers": transformers.__version__,
           "data": "synthetic" if args.synthetic or bench["data_path"] is None else bench["data_path"],
           "key": checks.calibration_key(bench, raw_config, hp["optimizer"]),
           "loops": {loop: n for loop in loops if (n := sum(r["loop"] == loop for r in runs))},
           "left_out": skipped,
           "margin": args.margin, "tail": args.tail, "floor": args.floor, **derived}
    out = args.out or checks.CALIBRATION_DIR
    out = out / f"{args.profile}.{dev_class}.json" if out.is_dir() else out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"profile {args.profile} on {dev_class} ({device['name']}): {len(runs)} honest runs of {len(loops)} loops "
          f"in {time.time() - started:.0f} s, margin {args.margin}x, tail {args.tail:g} sd; wrote {out}\n")
    print(f"| statistic | honest median | honest max | widest loop's tail ({args.tail:g} sd) | bound |\n"
          "| --- | --- | --- | --- | --- |")
    flat = flat_bounds(derived["bounds"])
    for stat, b in derived["band"].items():
        print(f"| `{stat}` | {b['median']:.3g} | {b['max']:.3g} | {b['tail']:.3g} ({b['tail_loop']}) | {flat[stat]:.3g} |")
    few = {loop: n for loop, n in doc["loops"].items() if n < RUNS_FOR_TAIL}
    if few:
        print(f"\nloops with fewer than {RUNS_FOR_TAIL} runs (their tail is rough, and below {MIN_TAIL_RUNS} not measured): "
              f"{few}; measure more sessions and merge them with --from-runs")
    if failing:
        print(f"\nhonest runs the bounds reject: {failing}")
        return 1
    print(f"\nevery honest run ({len(runs)}) verifies with these bounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
