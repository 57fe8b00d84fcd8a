"""The harness's command line: bad requests are refused without a document; everything else gets one."""
import hashlib
import json
import subprocess
import sys
import time

import numpy as np

from conftest import ENV_PY, HPARAMS, build_request, read_code, run_harness


def test_request_violating_the_schema_is_a_usage_error(workdir):
    request = build_request(read_code("template"), HPARAMS)
    request["seed"] = "not-hex"
    req, res = workdir / "req.json", workdir / "res.json"
    req.write_text(json.dumps(request))
    proc = subprocess.run([sys.executable, str(ENV_PY), "--request", str(req), "--result", str(res)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and not res.exists()
    assert "seed" in proc.stderr


def test_unreadable_request_is_a_usage_error(workdir):
    proc = subprocess.run([sys.executable, str(ENV_PY), "--request", str(workdir / "nope.json"),
                           "--result", str(workdir / "res.json")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "cannot read the request" in proc.stderr


def test_code_hash_mismatch_is_reported_as_harness_error(workdir):
    request = build_request(read_code("template"), HPARAMS)
    request["code_sha256"] = "0" * 64
    status, doc, _ = run_harness(request, workdir)
    assert status == 0 and doc["error"]["code"] == "harness_error" and "code_sha256" in doc["error"]["message"]
    assert doc["task_id"] == request["task_id"] and doc["tps"] == 0


def test_existing_file_at_result_path_is_replaced(workdir):
    request = build_request(read_code("syntax_error"), HPARAMS)
    (workdir / f"res-{request['task_id']}.json").write_text("stale")
    status, doc, _ = run_harness(request, workdir)
    assert status == 0 and doc["error"]["code"] == "syntax_error"


def test_the_warm_server_answers_every_request_with_a_status(tmp_path):
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    outbox.mkdir()
    server = subprocess.Popen([sys.executable, str(ENV_PY), "--serve", str(inbox), "--results", str(outbox),
                               "--idle-seconds", "60"], stderr=subprocess.DEVNULL)
    try:
        (inbox / "request-0.json").write_text("{not json")
        good = build_request(read_code("syntax_error"), HPARAMS)
        (inbox / ".tmp").write_text(json.dumps(good))
        (inbox / ".tmp").rename(inbox / "request-1.json")
        deadline = time.monotonic() + 120
        while not (outbox / "status-1").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        (inbox / "stop").touch()
        assert server.wait(timeout=60) == 0
    finally:
        server.kill()
    assert (outbox / "ready").exists()
    assert (outbox / "status-0").read_text() == "2" and not (outbox / "result-0.json").exists()
    assert (outbox / "status-1").read_text() == "0"
    doc = json.loads((outbox / "result-1.json").read_text())
    assert doc["error"]["code"] == "syntax_error" and doc["task_id"] == good["task_id"]


def test_a_missing_token_shard_is_named(workdir):
    request = build_request(read_code("template"), HPARAMS, data_path=str(workdir / "absent.npy"))
    status, doc, _ = run_harness(request, workdir)
    assert status == 0 and doc["error"]["code"] == "harness_error"
    assert "absent.npy" in doc["error"]["message"] and "setup_benchmark.py" in doc["error"]["message"]
    assert doc["data_sha256"] is None


def test_the_shard_read_is_recorded_and_a_pinned_one_must_match(workdir):
    shard = workdir / "tokens.npy"
    np.save(shard, (np.arange(20_000) * 7 % 500).astype(np.uint32))
    digest = hashlib.sha256(shard.read_bytes()).hexdigest()
    status, doc, _ = run_harness(build_request(read_code("template"), HPARAMS, data_path=str(shard),
                                               data_sha256=digest), workdir)
    assert status == 0 and doc["error"] is None and doc["success"] and doc["data_sha256"] == digest
    # Another shard than the pinned one is our environment's error, refused before any miner code runs.
    status, doc, _ = run_harness(build_request(read_code("template"), HPARAMS, data_path=str(shard),
                                               data_sha256="0" * 64), workdir)
    assert status == 0 and doc["error"]["code"] == "harness_error" and not doc["success"]
    assert digest in doc["error"]["message"] and "0" * 64 in doc["error"]["message"]
    assert doc["data_sha256"] == digest and "import_s" not in doc["diagnostics"].get("timings", {})
