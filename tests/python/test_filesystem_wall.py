"""The namespace path's filesystem wall (verify.py, the process executor, ssh direct mode; issue 19 findings 1
and 2): wherever the server keeps its inbox and outbox (not only under /tmp), a worker reads no request and
no result, writes nothing outside its own scratch, leaves nothing behind, and cannot turn a later run into
our error. A request the worker could have read is refused, not flagged."""
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import ENV_PY, HPARAMS, HPARAMS_TINY_CONFIG, ROOT, build_request, read_code, run_harness


@pytest.fixture
def outside_tmp():
    """A directory outside /tmp: before this round only the worker's private /tmp hid what lay under it."""
    d = Path(tempfile.mkdtemp(prefix="crusades-wall-", dir="/var/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _reach_host(look_in: list[Path], write_in: list[Path], config: Path, tag: str) -> str:
    as_json = lambda paths: "[" + ", ".join(f'"{p}"' for p in paths) + "]"  # noqa: E731
    return (read_code("reach_host").replace("LOOK_IN_JSON", as_json(look_in))
            .replace("WRITE_IN_JSON", as_json(write_in)).replace("CONFIG_PATH", str(config)).replace("TAG_NAME", tag))


def _config_copy(d: Path) -> Path:
    """The tiny model config where the test owns it: on main a worker rewrote the one it was given."""
    (d / "models").mkdir()
    config = d / "models" / "tiny.json"
    shutil.copy(ROOT / HPARAMS_TINY_CONFIG, config)
    return config


def test_a_warm_servers_worker_reaches_no_request_and_no_host_file(outside_tmp, monkeypatch):
    from verify import WarmHarness
    tag = secrets.token_hex(6)
    server_tmp = outside_tmp / "tmp"  # the server's TMPDIR, open to everyone as the executors make it
    server_tmp.mkdir()
    server_tmp.chmod(0o1777)
    config = _config_copy(outside_tmp)
    original = config.read_bytes()
    monkeypatch.setenv("TMPDIR", str(server_tmp))
    (outside_tmp / "server").mkdir()
    harness = WarmHarness(outside_tmp / "server")
    write_in = [ROOT, Path("/var/tmp"), server_tmp, config.parent]
    code = _reach_host([harness.inbox, harness.outbox], write_in, config, tag)
    left = []
    try:
        docs = [harness.run(build_request(code, HPARAMS, run_index=i, submission_id="reach", model_config=str(config)))
                for i in range(2)]
        # A later run of another submission on the same server: nothing of the earlier runs decides it.
        docs.append(harness.run(build_request(read_code("template"), HPARAMS, run_index=2, model_config=str(config))))
    finally:
        harness.close()
        for d in write_in:
            leftover = d / f"crusades-wall-{tag}"
            if leftover.exists():
                left.append(str(leftover))
                leftover.unlink()
    assert not left, f"files the worker made outlived the evaluation: {left}"
    assert config.read_bytes() == original, "the worker rewrote the model config"
    for d in docs:
        assert d["success"], d["error"]
        assert d["diagnostics"]["request_readable_by_worker"] is False
    for d in docs[:2]:
        assert "reached nothing outside the worker" in d["diagnostics"]["worker_log_tail"], \
            d["diagnostics"]["worker_log_tail"]
    if os.geteuid() == 0:  # root's worker is nobody outside, whatever it is inside
        assert {d["diagnostics"]["worker_uid"] for d in docs} == {65534}


def test_a_request_file_outside_tmp_is_out_of_the_workers_reach(outside_tmp):
    config = _config_copy(outside_tmp)
    code = _reach_host([outside_tmp], [outside_tmp], config, secrets.token_hex(6))
    status, doc, stderr = run_harness(build_request(code, HPARAMS, model_config=str(config)), outside_tmp)
    assert status == 0 and doc is not None, stderr[-2000:]
    assert doc["success"], doc["error"]
    assert "reached nothing outside the worker" in doc["diagnostics"]["worker_log_tail"], \
        doc["diagnostics"]["worker_log_tail"]


def test_a_request_the_worker_could_read_is_refused(outside_tmp):
    # A second name of the request file, in a directory nothing hides: the worker could read the seed there.
    (outside_tmp / "requests").mkdir()
    (outside_tmp / "visible").mkdir()
    req, res = outside_tmp / "requests" / "req.json", outside_tmp / "res.json"
    req.write_text(json.dumps(build_request(read_code("template"), HPARAMS)))
    os.link(req, outside_tmp / "visible" / "copy.json")
    proc = subprocess.run([sys.executable, str(ENV_PY), "--request", str(req), "--result", str(res)],
                          capture_output=True, text=True, timeout=600)
    doc = json.loads(res.read_text())
    assert proc.returncode == 0 and not doc["success"] and doc["error"]["code"] == "harness_error", doc["error"]
    assert "refusing" in doc["error"]["message"] and "2 names" in doc["error"]["message"], doc["error"]["message"]
    assert not doc["success"] and doc["tps"] == 0


def test_a_model_config_other_than_the_requested_one_is_refused(outside_tmp):
    config = _config_copy(outside_tmp)
    request = build_request(read_code("template"), HPARAMS, model_config=str(config))
    config.write_text(config.read_text().replace('"hidden_size": 128', '"hidden_size": 64'))
    status, doc, _ = run_harness(request, outside_tmp)
    assert status == 0 and not doc["success"] and doc["error"]["code"] == "harness_error", doc["error"]
    actual = hashlib.sha256(config.read_bytes()).hexdigest()
    assert request["benchmark"]["model_config_sha256"] in doc["error"]["message"] and actual in doc["error"]["message"]
