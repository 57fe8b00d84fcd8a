"""Crusades training-loop template: the plain loop every submission is measured against.

Make `inner_steps` faster without changing what it computes. The validator calls

    inner_steps(model, data_iterator, optimizer, num_steps, device)

with
  model           a transformers causal LM (Qwen2 family) on `device`, in train mode, fp32 master weights,
                  freshly and randomly initialised for every call from a secret seed;
  data_iterator   yields exactly `num_steps` LongTensor batches of shape (batch, seq_len), on the CPU;
  optimizer       torch.optim.AdamW over model.parameters() with the hparams.json settings
                  (lr 1e-4, betas (0.9, 0.95), eps 1e-8, weight_decay 0.1). Its state after the call
                  (step, exp_avg, exp_avg_sq of every parameter) is compared with the reference's, so
                  use this one (switch its kernel with `group.update(fused=True)` on its param_groups
                  if you like), or copy your own optimizer's state back into `optimizer.state`;
  num_steps       how many optimizer steps to take, one per batch;
  device          torch.device("cuda") on validators, torch.device("cpu") in the tiny local profile.

and it must return an object with plain attributes
  final_logits    the last step's logits, a torch.Tensor of shape (batch, seq_len - 1, vocab);
  total_tokens    an int: batch * seq_len summed over the steps you took;
  final_loss      a float: the last step's mean cross-entropy.

The validator runs the same steps itself and rejects the result unless the final weights (their update
from the initial weights), the optimizer's state, the loss and the logits match, each compared through
random projections it draws only after inner_steps has returned. Every step must run forward, backward
and optimizer.step over all parameters with the full gradient: AdamW's moments carry the last steps'
gradients, so skipped, zeroed, reused or subsampled gradients show. The clock stops when the validator
holds its copy of those projections; work still running then is not seen.

Precision, the rule: a profile declares its numerics, bf16 autocast over fp32 master weights and fp32
AdamW state on GPUs and the CPU profile tiny-bf16, plain fp32 in tiny; the harness says which in
CRUSADES_AUTOCAST ("bf16" or "off"). A loop is honest when its evidence stays inside the band that honest
loops of that precision or better reach, measured per profile and device (environments/templar/calibration/,
bench/calibrate.py); verify.py prints each statistic beside its bound and that band. Any kernel, fusion,
layout or schedule that stays inside is a legitimate optimisation; lower precision anywhere (fp8 GEMMs,
bf16 or fp8 optimizer state or master weights) leaves it and is rejected, however it was obtained. Wrap
the forward only: autocast around optimizer.step casts parts of it too.

Run `python3 local_test/train.py` for a quick local timing of this loop, and
`python3 local_test/verify.py local_test/train.py` for exactly what a validator checks.
"""
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# bf16 autocast wherever the validator trains in it; outside the harness, on any GPU.
BF16 = os.environ.get("CRUSADES_AUTOCAST", "bf16" if torch.cuda.is_available() else "off") == "bf16"


@dataclass
class InnerStepsResult:
    final_logits: torch.Tensor
    total_tokens: int
    final_loss: float


def inner_steps(model, data_iterator, optimizer, num_steps, device):
    total_tokens = 0
    logits = loss = None
    for _ in range(num_steps):
        batch = next(data_iterator).to(device, non_blocking=True)
        # Next-token prediction: position t predicts token t + 1.
        input_ids, labels = batch[:, :-1], batch[:, 1:]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=BF16):
            logits = model(input_ids=input_ids).logits
        # Cross-entropy in fp32 over every position, as the reference computes it.
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        total_tokens += batch.numel()
    # .item() synchronises with the device, so the work is finished when we return.
    return InnerStepsResult(final_logits=logits.detach(), total_tokens=total_tokens, final_loss=loss.item())


if __name__ == "__main__":
    # A quick local benchmark of this loop (not the validator's measurement: see verify.py for that).
    import argparse
    import json
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "environments" / "templar"))
    import workload

    parser = argparse.ArgumentParser(description="time this inner_steps locally")
    parser.add_argument("--profile", choices=["tiny", "tiny-bf16", "benchmark"], default="tiny")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    hp = json.loads((root / "hparams" / "hparams.json").read_text())
    if args.profile != "benchmark":
        bench = hp["profiles"][args.profile]
    else:
        bench = {"model_config": hp["benchmark_model_config"], "batch_size": hp["benchmark_batch_size"],
                 "sequence_length": hp["benchmark_sequence_length"], "eval_steps": hp["eval_steps"],
                 "data_path": hp["benchmark_data_path"]}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(1)  # as the harness does on CPU
    config = workload.load_config(workload.resolve_path(bench["model_config"], str(root)))
    model = workload.build_model(config, device)
    data_path = bench["data_path"] and workload.resolve_path(bench["data_path"], str(root))
    steps, tokens_per_run = bench["eval_steps"], bench["batch_size"] * bench["sequence_length"] * bench["eval_steps"]
    for run in range(args.runs + 1):
        workload.init_weights(model, run, config.initializer_range)
        optimizer = workload.make_optimizer(model, hp["optimizer"])
        batches = workload.make_tokens(run, steps, bench["batch_size"], bench["sequence_length"],
                                       config.vocab_size, data_path)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = inner_steps(model, iter(batches), optimizer, steps, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        label = "warm-up" if run == 0 else f"run {run}"
        print(f"{label:>8}: {seconds:.3f}s  {tokens_per_run / seconds:,.0f} tokens/s  loss {result.final_loss:.4f}")
