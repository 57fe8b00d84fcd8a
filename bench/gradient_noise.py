#!/usr/bin/env python3
"""Is it the trajectory or the gradient itself? Distances of honest loops and fp8 shortcuts from the reference,
on full tensors, after --steps steps.

    python3 bench/gradient_noise.py [--profile deep-bf16] [--steps 1] [--seeds 2] [--loops a,b]

At --steps 1 there is no trajectory to drift along: every loop starts from the same W0 and batch, and
AdamW's first exp_avg is exactly (1 - beta1) * g, so its relative distance is the first gradient's own.
If an honest loop's first gradient is already as far from the reference's as a shortcut's, no statistic
of the final state (or of a probe gradient) can reject the shortcut without rejecting that loop: the
separation must come from somewhere else than the size of the error. Runs the fixtures in this process
(they are ours, not a miner's), on the CPU, one thread, synthetic tokens. Prints a markdown table: per loop
the largest distance over the seeds of the update, exp_avg and exp_avg_sq."""
import argparse
import json
import os
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from calibrate import LOOPS, code_of  # noqa: E402
from separation import PRECISION  # noqa: E402

import torch  # noqa: E402
import workload  # noqa: E402  (calibrate put the harness on the path)


def final_state(config, bench: dict, optimizer: dict, seed: int, steps) -> dict:
    """{name: (update, exp_avg, exp_avg_sq)} after `steps(model, tokens, optimizer)`."""
    model = workload.build_model(config, torch.device("cpu"))
    workload.init_weights(model, seed, config.initializer_range)
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = workload.make_optimizer(model, optimizer)
    tokens = workload.make_tokens(seed, bench["eval_steps"], bench["batch_size"], bench["sequence_length"],
                                  config.vocab_size, None)
    steps(model, tokens, opt)
    return {n: (p.detach() - w0[n], opt.state[p]["exp_avg"], opt.state[p]["exp_avg_sq"])
            for n, p in model.named_parameters()}


def distance(cand: dict, ref: dict, kind: int) -> float:
    diff = sum(float(((cand[n][kind] - ref[n][kind]) ** 2).sum()) for n in ref)
    return (diff / sum(float((ref[n][kind] ** 2).sum()) for n in ref)) ** 0.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="deep-bf16", choices=["tiny", "tiny-bf16", "deep-bf16"])
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--loops", default="fp32,eager_attn,math_sdpa,microbatch,manual_gemm," + ",".join(PRECISION))
    args = parser.parse_args()
    hp = json.loads((ROOT / "hparams" / "hparams.json").read_text())
    bench = {**hp["profiles"][args.profile], "eval_steps": args.steps}
    os.environ["CRUSADES_AUTOCAST"] = "bf16" if bench["autocast"] else "off"
    torch.set_num_threads(1)
    config = workload.load_config(str(ROOT / bench["model_config"]))
    loops = {}
    for name in args.loops.split(","):
        fixture, mode = LOOPS[name] if name in LOOPS else ("precision_shortcuts", name)
        module = types.ModuleType(name)
        exec(compile(code_of(fixture, mode), f"<{name}>", "exec"), module.__dict__)
        loops[name] = module
    worst = {name: [0.0, 0.0, 0.0] for name in loops}
    for seed in range(args.seeds):
        ref = final_state(config, bench, hp["optimizer"], seed, lambda m, t, o: workload.reference_steps(
            m, t, o, torch.device("cpu"), bench["autocast"]))
        for name, module in loops.items():
            cand = final_state(config, bench, hp["optimizer"], seed, lambda m, t, o: module.inner_steps(
                m, iter(t), o, args.steps, torch.device("cpu")))
            worst[name] = [max(w, distance(cand, ref, k)) for k, w in enumerate(worst[name])]
            print(f"{name} seed {seed}: " + " ".join(f"{d:.3g}" for d in worst[name]), file=sys.stderr, flush=True)
    print(f"profile {args.profile}, {args.steps} step(s), {args.seeds} seed(s): the largest relative distance "
          "from the reference\n")
    print("| loop | update | exp_avg | exp_avg_sq |\n| --- | --- | --- | --- |")
    for name, w in worst.items():
        print(f"| {'shortcut ' if name in PRECISION else ''}{name} | " + " | ".join(f"{d:.3g}" for d in w) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
