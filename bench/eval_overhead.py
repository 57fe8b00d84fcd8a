#!/usr/bin/env python3
"""How much does an evaluation cost beyond the time it measures, and how stable is what it measures?

    python3 bench/eval_overhead.py [--profile tiny|tiny-bf16|benchmark] [--runs 5] [--train PATH] [--synthetic] [--cold]

Runs the validator's path (local_test/verify.py's request builder, then environments/templar/env.py: one
warm `env.py --serve` for the whole evaluation, a fresh supervisor and worker per run, as the process
executor does; with --cold one process per run, the path before the warm server) and prints: the wall time of the whole N-run evaluation, the sum
of the timed windows (the baseline: what is being measured), their ratio (our overhead), the mean time
of each phase, the share of the window spent on the hand-over (the sketches computed and copied after
the call returned: a cost every miner pays alike), and TPS per run with its coefficient of variation. On a CPU it also times the reference
loop directly in this process after each run (no harness), whose CoV over the same minutes is the
machine's own noise floor. --synthetic replaces the benchmark's token shard with seeded synthetic tokens
(for a GPU box without prepared data)."""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "local_test"))

from verify import PROFILES, WarmHarness, benchmark_settings, build_request, run_env  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=PROFILES, default="tiny")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--train", type=Path, default=ROOT / "local_test" / "train.py")
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--cold", action="store_true", help="one env.py process per run (interpreter and imports each time)")
    args = parser.parse_args()
    hp = json.loads((ROOT / "hparams" / "hparams.json").read_text())
    code = args.train.read_text()
    overrides = {"data_path": None} if args.synthetic else {}
    docs = []
    with tempfile.TemporaryDirectory(prefix="crusades-bench-") as tmp:
        # On a GPU a second model in this process would take memory from the runs it is compared with.
        floor = None if _has_cuda() else NoiseFloor(hp, args.profile)
        stderr = sys.stderr if args.profile == "benchmark" else subprocess.DEVNULL
        # The process executor keeps its server for the validator's lifetime: its start is not part of an
        # evaluation (it is printed apart). --cold pays interpreter and imports in every run.
        warm = None
        if not args.cold:
            server_started = time.perf_counter()
            warm = WarmHarness(Path(tmp), stderr=stderr)
            warm.wait_ready()
            server_start = time.perf_counter() - server_started
        started = time.perf_counter()
        for i in range(args.runs):
            request = build_request(code, hp, args.profile, i, "bench", **overrides)
            docs.append(warm.run(request) if warm else run_env(request, Path(tmp), stderr=stderr))
            d = docs[-1]
            print(f"run {i}: {'verified' if d['success'] else 'rejected'} tps {d['tps']:,.0f} in "
                  f"{d['total_time_seconds']:.1f}s  " + " ".join(f"{k} {v:.3f}" for k, v in
                                                             d["diagnostics"].get("timings", {}).items()), flush=True)
            if not d["success"]:
                break  # one rejection decides the evaluation; the rest would only cost time
            if floor:
                floor_started = time.perf_counter()
                floor.sample()
                started += time.perf_counter() - floor_started  # not part of the evaluation's wall time
        total = time.perf_counter() - started
        if warm:
            warm.close()
    failed = [d for d in docs if not d["success"]]
    if failed:
        d = failed[0]
        print(f"{len(failed)} of {len(docs)} run(s) rejected: {d['error']['code']}: {d['error']['message'][:600]}")
        print(_checks_line(failed))
        print("worker log tail:\n" + d["diagnostics"].get("worker_log_tail", "")[-1500:])
        return 1
    windows = sum(d["wall_time_seconds"] for d in docs)
    tps = [d["tps"] for d in docs]
    phases = {}
    for d in docs:
        for k, v in d["diagnostics"]["timings"].items():
            phases.setdefault(k, []).append(v)
        phases.setdefault("inside_env_s", []).append(d["total_time_seconds"])
    print(f"profile {args.profile} on {docs[0]['device']['name']} ({docs[0]['device']['type']}), {args.runs} runs of "
          f"{args.train.name}, {'one process per run' if args.cold else 'one warm env.py --serve'}")
    print(f"total wall time of the evaluation  {total:9.2f} s")
    print(f"sum of timed windows (baseline)    {windows:9.2f} s")
    print(f"overhead ratio total / windows     {total / windows:9.2f} x")
    if not args.cold:
        print(f"warm server start (once per validator, not in the total)  {server_start:.2f} s")
    print("mean per run: " + "  ".join(f"{k} {statistics.mean(v):.2f}s" for k, v in phases.items())
          + f"  outside the run's supervisor {total / args.runs - statistics.mean(phases['inside_env_s']):.2f}s")
    handover, window = statistics.mean(phases["handover_s"]), statistics.mean(phases["window_s"])
    print(f"hand-over inside the window        {handover * 1e3:9.2f} ms of {window * 1e3:.1f} ms ({handover / window:.2%}), "
          f"{docs[0]['diagnostics']['handover_bytes'] / 2**20:.2f} MiB of sketches")
    print("tps per run:  " + "  ".join(f"{t:,.0f}" for t in tps))
    cov = statistics.stdev(tps) / statistics.mean(tps) if len(tps) > 1 else 0.0
    print(f"tps median {statistics.median(tps):,.1f}  CoV {cov:.2%}")
    print(_checks_line(docs))
    if "handover" in docs[0]["diagnostics"]:
        print(f"hand-over buffer: {docs[0]['diagnostics']['handover']}")
    if floor and len(floor.tps) > 1:
        print(f"noise floor, the reference loop timed in this process after each run (no harness): tps "
              f"{'  '.join(f'{t:,.0f}' for t in floor.tps)}  CoV {statistics.stdev(floor.tps) / statistics.mean(floor.tps):.2%}")
    mfu = [d["mfu"] for d in docs if d["mfu"] is not None]
    if mfu:
        print(f"mfu median {statistics.median(mfu):.2%}  (peak {docs[0]['device']['peak_flops']:.3g} FLOP/s)")
    return 0


def _has_cuda() -> bool:
    import torch
    return torch.cuda.is_available()


class NoiseFloor:
    """The same loop on the same shapes, timed directly in this process without any harness, once after each
    harness run: how much the machine itself varies over the same minutes, so the harness's CoV can be read
    against it (one torch thread and the collector frozen, as in the worker; the first call warms up)."""

    def __init__(self, hp: dict, profile: str):
        import gc

        import torch
        sys.path.insert(0, str(ROOT / "environments" / "templar"))
        import workload
        self.torch, self.workload, self.hp = torch, workload, hp
        self.bench = benchmark_settings(hp, profile)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cpu":
            torch.set_num_threads(1)
        self.config = workload.load_config(workload.resolve_path(self.bench["model_config"], str(ROOT)))
        self.model = workload.build_model(self.config, self.device)
        gc.collect()
        gc.freeze()
        self.tps = []
        self.sample()
        self.tps.clear()

    def sample(self) -> None:
        w, b = self.workload, self.bench
        seed = len(self.tps)
        w.init_weights(self.model, seed, self.config.initializer_range)
        optimizer = w.make_optimizer(self.model, self.hp["optimizer"])
        tokens = w.make_tokens(seed, b["eval_steps"], b["batch_size"], b["sequence_length"], self.config.vocab_size, None)
        started = time.perf_counter()
        w.reference_steps(self.model, tokens, optimizer, self.device, self.bench["autocast"])
        self.tps.append(tokens.numel() / (time.perf_counter() - started))


def _checks_line(docs) -> str:
    """The worst value of each check over the runs: the honest spread the tolerances are set against."""
    worst = {}
    for d in docs:
        for c in d["checks"]:
            if c["value"] is not None:
                worst[c["name"]] = max(worst.get(c["name"], c["value"]), c["value"])
    layers = {}
    for d in docs:
        for kind in ("update", "exp_avg", "exp_avg_sq"):
            for name, err in (d["diagnostics"].get(f"{kind}_worst_layers") or {}).items():
                layers[f"{kind}:{name}"] = max(layers.get(f"{kind}:{name}", 0.0), err)
    top = sorted(layers.items(), key=lambda kv: -kv[1])[:6]
    return ("checks, worst over runs: " + "  ".join(f"{k} {v:.4g}" for k, v in worst.items())
            + "\nworst tensors: " + "  ".join(f"{k} {v:.3g}" for k, v in top))


if __name__ == "__main__":
    sys.exit(main())
