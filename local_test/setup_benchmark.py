#!/usr/bin/env python3
"""Prepares the benchmark profile's token shard: FineWeb text through the benchmark model's tokenizer into
one flat uint32 array (hparams.json `benchmark_data_path`, default data/benchmark/tokens.npy). Documents
are separated by the tokenizer's end-of-text token; the harness cuts rows at seeded random offsets.

    python3 local_test/setup_benchmark.py [--tokens 20000000] [--out PATH]
                                          [--dataset HuggingFaceFW/fineweb --subset sample-10BT]

Streams the dataset (nothing is downloaded whole), shows a progress bar, and resumes where it stopped:
tokens are appended to PATH.part with a small PATH.state.json beside it, and the .npy is written only
once the target is reached. Needs network access and `pip install datasets` (plus transformers)."""
import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_shard(texts: Iterable[str], encode: Callable[[str], list[int]], eos: int, out: Path, target: int,
                vocab: int, progress=None) -> int:
    """Appends encoded documents to out.part until `target` tokens, then writes out (.npy). Resumable:
    out.part.state.json records how many documents were consumed, and `texts` is skipped past them."""
    part, state_path = out.with_name(out.name + ".part"), out.with_name(out.name + ".state.json")
    state = json.loads(state_path.read_text()) if state_path.exists() and part.exists() else {"docs": 0, "tokens": 0}
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(part, "ab") as f:
        f.truncate(state["tokens"] * 4)  # drop a half-written document from an interrupted run
        if progress:
            progress.update(state["tokens"])
        for i, text in enumerate(texts):
            if i < state["docs"]:
                continue
            ids = encode(text) + [eos]
            if max(ids) >= vocab:
                raise ValueError(f"token id {max(ids)} is outside the model's vocabulary ({vocab})")
            f.write(np.asarray(ids, dtype="<u4").tobytes())
            state = {"docs": i + 1, "tokens": state["tokens"] + len(ids)}
            if state["docs"] % 64 == 0 or state["tokens"] >= target:
                f.flush()
                os.fsync(f.fileno())
                state_path.write_text(json.dumps(state))
            if progress:
                progress.update(len(ids))
            if state["tokens"] >= target:
                break
    if state["tokens"] < target:
        raise RuntimeError(f"the dataset ran out after {state['tokens']} of {target} tokens")
    tokens = np.fromfile(part, dtype="<u4", count=target)
    tmp = out.with_name(out.name + ".tmp.npy")
    np.save(tmp, tokens)
    os.replace(tmp, out)
    part.unlink()
    state_path.unlink()
    return target


def main() -> int:
    hp = json.loads((ROOT / "hparams" / "hparams.json").read_text())
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=20_000_000)
    parser.add_argument("--out", type=Path, default=ROOT / (hp["benchmark_data_path"] or "data/benchmark/tokens.npy"))
    parser.add_argument("--dataset", default="HuggingFaceFW/fineweb")
    parser.add_argument("--subset", default="sample-10BT")
    parser.add_argument("--tokenizer", default=hp["benchmark_model_name"])
    args = parser.parse_args()
    if args.out.exists():
        print(f"{args.out} already exists; delete it to prepare it again")
        return 0
    try:
        from datasets import load_dataset
        from tqdm import tqdm
        from transformers import AutoTokenizer
    except ImportError as e:
        print(f"setup_benchmark.py needs `pip install datasets transformers tqdm`: {e}", file=sys.stderr)
        return 2
    config = json.loads((ROOT / hp["benchmark_model_config"]).read_text())
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else config["eos_token_id"]
    stream = load_dataset(args.dataset, name=args.subset, split="train", streaming=True)
    texts = (row["text"] for row in stream)
    with tqdm(total=args.tokens, unit="tok", unit_scale=True, desc="tokenising") as bar:
        write_shard(texts, lambda t: tokenizer(t, add_special_tokens=False)["input_ids"], eos, args.out,
                    args.tokens, config["vocab_size"], bar)
    print(f"wrote {args.tokens:,} tokens to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
