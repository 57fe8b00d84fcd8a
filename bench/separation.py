#!/usr/bin/env python3
"""How far apart are honest loops and gradient shortcuts, statistic by statistic?

    python3 bench/separation.py [--profile tiny-bf16|tiny|benchmark] [--synthetic] [--honest a,b] [--shortcuts c,d]

Evaluates every honest variant (tests/fixtures/train/honest_variants.py, the template, the fast example)
and every gradient shortcut (tests/fixtures/train/gradient_shortcuts.py) through the real harness, then
prints, per statistic, the honest spread (the worst honest value; for a scale its distance from 1), the
weakest shortcut's value (the one closest to honest), and their ratio, as the markdown table in
environments/templar/README.md, plus each shortcut's error code."""
import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "train"
sys.path.insert(0, str(ROOT / "local_test"))

from verify import PROFILES, WarmHarness, build_request  # noqa: E402

HONEST = ["foreach", "fused", "chunked_ce", "microbatch", "eager_attn", "math_sdpa", "compile", "compile_autotune",
          "namedtuple", "tensor_loss", "torch_save"]
SHORTCUTS = ["zero_last", "reuse_last", "mhat_last", "zero_last2", "lr110", "lr125", "rows_half", "positions_3q",
             "head_quarter", "reuse_alternate"]
STATS = [f"{kind}_{stat}" for kind in ("update", "exp_avg", "exp_avg_sq") for stat in ("scale", "rel_global", "rel_layer")]


def sources(honest: list[str], shortcuts: list[str]) -> dict[str, str]:
    out = {"template": (ROOT / "local_test" / "train.py").read_text(),
           "fast_train": (ROOT / "local_test" / "examples" / "fast_train.py").read_text()}
    out.update({v: (FIXTURES / "honest_variants.py").read_text().replace("VARIANT_NAME", v) for v in honest})
    out.update({f"cheat:{m}": (FIXTURES / "gradient_shortcuts.py").read_text().replace("MODE_NAME", m) for m in shortcuts})
    return out


def distance(stat: str, value: float) -> float:
    return abs(1 - value) if stat.endswith("scale") else value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=PROFILES, default="tiny-bf16")
    parser.add_argument("--synthetic", action="store_true", help="seeded synthetic tokens instead of the shard")
    parser.add_argument("--honest", default=",".join(HONEST), help="honest variants to run (comma-separated)")
    parser.add_argument("--shortcuts", default=",".join(SHORTCUTS), help="shortcuts to run (comma-separated)")
    args = parser.parse_args()
    hp = json.loads((ROOT / "hparams" / "hparams.json").read_text())
    overrides = {"data_path": None} if args.synthetic else {}
    docs = {}
    with tempfile.TemporaryDirectory(prefix="crusades-separation-") as tmp:
        harness = WarmHarness(Path(tmp), stderr=open(os.devnull, "w"))
        try:
            for name, code in sources(args.honest.split(","), args.shortcuts.split(",")).items():
                docs[name] = d = harness.run(build_request(code, hp, args.profile, submission_id=name, **overrides))
                print(f"{name}: {'verified' if d['success'] else d['error']['code']}", file=sys.stderr, flush=True)
        finally:
            harness.close()
    values = {n: {c["name"]: c["value"] for c in d["checks"] if c["value"] is not None} for n, d in docs.items()}
    honest = [n for n in docs if not n.startswith("cheat:")]
    cheats = [n for n in docs if n.startswith("cheat:")]
    rejected_honest = [n for n in honest if not docs[n]["success"]]
    verified_cheats = [n for n in cheats if docs[n]["success"]]
    print(f"profile {args.profile}: {len(honest)} honest loops ({len(rejected_honest)} rejected: {rejected_honest}), "
          f"{len(cheats)} shortcuts ({len(verified_cheats)} verified: {verified_cheats})\n")
    print("| statistic | honest spread (worst of all honest loops) | weakest shortcut | its value | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for stat in STATS:
        spread = max(distance(stat, values[n][stat]) for n in honest if stat in values[n])
        weakest = min(((distance(stat, values[n][stat]), n) for n in cheats if stat in values[n]), default=None)
        if weakest is None:
            continue
        ratio = weakest[0] / spread if spread > 0 else float("inf")
        print(f"| `{stat}` | {spread:.4f} | {weakest[1][6:]} | {weakest[0]:.4f} | {ratio:.1f}× |")
    print("\n| shortcut | code | update_rel_global | exp_avg_rel_global | exp_avg_sq_rel_global |")
    print("| --- | --- | --- | --- | --- |")
    for n in cheats:
        v = values[n]
        code = docs[n]["error"]["code"] if docs[n]["error"] else "VERIFIED"
        print(f"| {n[6:]} | `{code}` | {v.get('update_rel_global', 0):.3f} | {v.get('exp_avg_rel_global', 0):.3f} | "
              f"{v.get('exp_avg_sq_rel_global', 0):.3f} |")
    return 1 if rejected_honest or verified_cheats else 0


if __name__ == "__main__":
    sys.exit(main())
