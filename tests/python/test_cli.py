"""The harness's command line: bad requests are refused without a document; everything else gets one."""
import json
import subprocess
import sys

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
