#!/usr/bin/env python3
"""How far apart are honest loops and shortcuts, statistic by statistic, under the calibrated bounds?

    python3 bench/separation.py [--profile tiny-bf16|tiny|deep-bf16|benchmark] [--seeds 3] [--honest-seeds 1]
                                [--synthetic] [--honest a,b] [--shortcuts c,d]

Evaluates, through the validator's own path (one warm env.py --serve), the honest loops of the calibration
(bench/calibrate.py LOOPS, on fresh seeds: out of the calibration's sample) and every shortcut on --seeds
seeds: the gradient shortcuts (tests/fixtures/train/gradient_shortcuts.py) and the lower-precision ones
(tests/fixtures/train/precision_shortcuts.py: fp8 GEMMs and fp8 optimizer state). Prints, as the markdown
tables of environments/templar/README.md:
- per statistic: the calibration's honest maximum, the honest maximum of these runs, the bound, the weakest
  shortcut (the one closest to honest) and its ratio to the bound (> 1: that statistic alone rejects it) and
  to the honest maximum (the separation ratio);
- per shortcut: its estimated saving on the benchmark (GEMM time of Qwen2.5-3B on an H100, fp8 at twice the
  bf16 peak), how many of its runs were rejected and with which codes, and its closest-to-honest values.
Exit status 1 when an honest run was rejected or a shortcut run verified."""
import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "train"
sys.path.insert(0, str(ROOT / "bench"))

from calibrate import LOOPS, code_of, distance  # noqa: E402
from verify import PROFILES, WarmHarness, build_request  # noqa: E402

import checks  # noqa: E402  (calibrate put the harness on the path)

GRADIENT = ["zero_last", "reuse_last", "mhat_last", "zero_last2", "lr110", "lr125", "rows_half", "positions_3q",
            "head_quarter", "reuse_alternate"]
PRECISION = ["fp8_wgrad", "fp8_wgrad_e5m2", "fp8_dgrad_wgrad", "fp8_all_from2", "fp8_adam_state", "fp8_wgrad_mlp",
             "fp8_wgrad_head", "fp8_wgrad_layer"]
STATS = [f"{kind}_{stat}" for kind in checks.KINDS.values() for stat in checks.STATS
         if f"{kind}_{stat}" in checks.EVIDENCE] + ["loss_abs_diff", "logits_rel_diff"]


def savings() -> dict[str, str]:
    """GEMM time an fp8 shortcut saves on the benchmark (Qwen2.5-3B, batch 4 x 1024, 5 steps) on an H100:
    the share of the linear layers' multiply-adds it moves to fp8, halved (fp8's peak is twice bf16's).
    Forward, input-gradient and weight-gradient GEMMs have equal size; attention's own GEMMs (~3% at 1024
    tokens) and all non-GEMM time are left out, so these are upper bounds on the step time saved."""
    hp = json.loads((ROOT / "hparams" / "hparams.json").read_text())
    c = json.loads((ROOT / hp["benchmark_model_config"]).read_text())
    d, kv = c["hidden_size"], c["hidden_size"] // c["num_attention_heads"] * c["num_key_value_heads"]
    attn, mlp = 2 * d * d + 2 * d * kv, 3 * d * c["intermediate_size"]
    layers, head = c["num_hidden_layers"], d * c["vocab_size"]
    total = 3 * (layers * (attn + mlp) + head)  # multiply-adds per token over the three GEMMs of every linear
    later = (hp["eval_steps"] - 1) / hp["eval_steps"]
    share = {"fp8_wgrad": 1 / 3, "fp8_wgrad_e5m2": 1 / 3, "fp8_dgrad_wgrad": 2 / 3, "fp8_all_from2": later,
             "fp8_wgrad_mlp": layers * mlp / total, "fp8_wgrad_head": head / total,
             "fp8_wgrad_layer": (attn + mlp) / total}
    out = {m: f"{s / 2:.1%}" for m, s in share.items()}
    out["fp8_adam_state"] = "~2% (optimizer memory traffic)"
    return out


def sources(honest: list[str], shortcuts: list[str]) -> dict[str, str]:
    out = {name: code_of(*LOOPS[name]) for name in honest}
    for mode in shortcuts:
        fixture = "precision_shortcuts" if mode.startswith("fp8") else "gradient_shortcuts"
        out[f"cheat:{mode}"] = code_of(fixture, mode)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=PROFILES, default="tiny-bf16")
    parser.add_argument("--synthetic", action="store_true", help="seeded synthetic tokens instead of the shard")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per shortcut (default 3)")
    parser.add_argument("--honest-seeds", type=int, default=1, help="fresh seeds per honest loop (default 1)")
    parser.add_argument("--honest", default=",".join(n for n in LOOPS if n not in ("compile", "fp32_checkpoint")),
                        help="honest loops (comma-separated, from bench/calibrate.py LOOPS)")
    parser.add_argument("--shortcuts", default=",".join(PRECISION + GRADIENT), help="shortcuts (comma-separated)")
    args = parser.parse_args()
    hp = json.loads((ROOT / "hparams" / "hparams.json").read_text())
    overrides = {"data_path": None} if args.synthetic else {}
    honest_names = [n for n in args.honest.split(",") if n]
    runs = []  # (name, doc)
    with tempfile.TemporaryDirectory(prefix="crusades-separation-") as tmp:
        harness = WarmHarness(Path(tmp), stderr=open(os.devnull, "w"))
        try:
            for name, code in sources(honest_names, [m for m in args.shortcuts.split(",") if m]).items():
                for seed in range(args.seeds if name.startswith("cheat:") else args.honest_seeds):
                    d = harness.run(build_request(code, hp, args.profile, seed, submission_id=name.replace(":", "-"),
                                                  **overrides))
                    runs.append((name, d))
                    print(f"{name} #{seed}: {'verified' if d['success'] else d['error']['code']}", file=sys.stderr,
                          flush=True)
        finally:
            harness.close()

    values = [(n, {c["name"]: c["value"] for c in d["checks"] if c["value"] is not None}, d) for n, d in runs]
    honest = [(n, v, d) for n, v, d in values if not n.startswith("cheat:")]
    cheats = [(n, v, d) for n, v, d in values if n.startswith("cheat:")]
    cal = next((d.get("calibration") for _, _, d in values if d.get("calibration")), None) or {}
    bounds = {c["name"]: (c["bound"], c.get("honest_max")) for _, _, d in values for c in d["checks"]}
    rejected_honest = sorted({n for n, _, d in honest if not d["success"]})
    verified_cheats = sorted({n[6:] for n, _, d in cheats if d["success"]})
    judged = f"{cal['file']}" if cal.get("calibrated") else f"UNCALIBRATED ({cal.get('reason', '?')})"
    print(f"profile {args.profile}, judged with {judged}: {len(honest)} honest runs of {len(honest_names)} loops "
          f"({len(rejected_honest)} loops rejected: {rejected_honest}), {len(cheats)} shortcut runs "
          f"({len(verified_cheats)} shortcuts verified in some run: {verified_cheats})\n")

    print("| statistic | honest max (calibration) | honest max (these runs) | bound | weakest shortcut | its value "
          "| × bound | × honest max |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for stat in STATS:
        if stat not in bounds:
            continue
        here = max((distance(stat, v[stat]) for _, v, _ in honest if stat in v), default=0.0)
        weakest = min(((distance(stat, v[stat]), n[6:]) for n, v, _ in cheats if stat in v), default=None)
        bound, cal_max = bounds[stat]
        if weakest is None:
            continue
        limit = float(bound.split()[-1])
        top = max(here, cal_max or 0.0)
        print(f"| `{stat}` | {'-' if cal_max is None else f'{cal_max:.3g}'} | {here:.3g} | {bound} | {weakest[1]} | "
              f"{weakest[0]:.3g} | {weakest[0] / limit:.2f} | "
              f"{weakest[0] / top if top > 0 else float('inf'):.1f} |")

    save = savings()
    print("\n| shortcut | saving on the benchmark | rejected | codes | update_rel_global | exp_avg_rel_global | "
          "exp_avg_sq_rel_global | exp_avg_noise | exp_avg_matrix_noise |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for mode in dict.fromkeys(n[6:] for n, _, _ in cheats):
        mine = [(v, d) for n, v, d in cheats if n[6:] == mode]
        codes = Counter(d["error"]["code"] if d["error"] else "VERIFIED" for _, d in mine)
        low = {s: min(v.get(s, float("nan")) for v, _ in mine) for s in
               ("update_rel_global", "exp_avg_rel_global", "exp_avg_sq_rel_global", "exp_avg_noise",
                "exp_avg_matrix_noise")}
        print(f"| {mode} | {save.get(mode, '-')} | {sum(not d['success'] for _, d in mine)}/{len(mine)} | "
              + ", ".join(f"`{c}`" + (f" ×{k}" if k > 1 else "") for c, k in codes.items())
              + " | " + " | ".join(f"{x:.3g}" for x in low.values()) + " |")
    return 1 if rejected_honest or verified_cheats else 0


if __name__ == "__main__":
    sys.exit(main())
