"""The benchmark shard writer: byte-level tokens of a small corpus, interrupted and resumed; the harness's
reader: the tokens and the sha256 of the file's bytes, from one read."""
import hashlib

import numpy as np
import pytest
import torch

import workload
from setup_benchmark import write_shard

DOCS = [f"document {i}: " + "lorem ipsum dolor " * (i % 5 + 1) for i in range(200)]


def encode(text: str) -> list[int]:
    return list(text.encode())


def test_resumed_shard_equals_an_uninterrupted_one(tmp_path):
    whole = tmp_path / "whole" / "tokens.npy"
    write_shard(iter(DOCS), encode, 0, whole, 5000, 256)

    def dies_after(n):
        for i, doc in enumerate(DOCS):
            if i == n:
                raise KeyboardInterrupt
            yield doc

    resumed = tmp_path / "resumed" / "tokens.npy"
    with pytest.raises(KeyboardInterrupt):
        write_shard(dies_after(30), encode, 0, resumed, 5000, 256)
    assert not resumed.exists() and resumed.with_name("tokens.npy.part").exists()
    write_shard(iter(DOCS), encode, 0, resumed, 5000, 256)
    a, b = np.load(whole), np.load(resumed)
    assert a.dtype == np.uint32 and a.shape == (5000,) and np.array_equal(a, b)
    assert list(tmp_path.glob("resumed/*")) == [resumed]
    expected = np.concatenate([np.array(encode(d) + [0], dtype=np.uint32) for d in DOCS])[:5000]
    assert np.array_equal(a, expected)
    # ... and the harness reads it as the benchmark profile would.
    rows = workload.make_tokens(1, 2, 3, 32, 256, str(resumed))
    assert rows.shape == (2, 3, 32) and rows.dtype == torch.long


def test_out_of_vocabulary_and_short_datasets_are_errors(tmp_path):
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        write_shard(iter(DOCS), encode, 0, tmp_path / "a.npy", 100, 100)
    with pytest.raises(RuntimeError, match="ran out"):
        write_shard(iter(DOCS[:2]), encode, 0, tmp_path / "b.npy", 10_000, 256)


def test_the_reader_hashes_the_bytes_it_returns(tmp_path):
    npy = tmp_path / "tokens.npy"
    write_shard(iter(DOCS), encode, 0, npy, 5000, 256)
    tokens, digest = workload.read_shard(str(npy))
    assert digest == hashlib.sha256(npy.read_bytes()).hexdigest()
    assert np.array_equal(tokens, np.load(npy))
    raw = tmp_path / "tokens.bin"
    raw.write_bytes(np.load(npy).astype("<u4").tobytes())
    tokens, digest = workload.read_shard(str(raw))
    assert digest == hashlib.sha256(raw.read_bytes()).hexdigest() and np.array_equal(tokens, np.load(npy))
    for bad in (np.zeros((4, 4), dtype=np.uint32), np.arange(100, dtype=np.int64)):
        np.save(tmp_path / "bad.npy", bad)
        with pytest.raises(ValueError, match="flat array of unsigned token ids"):
            workload.read_shard(str(tmp_path / "bad.npy"))
