"""The worker cannot outlive the clock or the evaluation, and cannot turn its rejection into the harness's
failure: processes it started are gone when the evaluation ends, whatever they did to escape; what they
left in shared places does not survive; every malformed report or sabotaged buffer is a rejection."""
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FIXTURES, HPARAMS, ROOT, build_request, evaluate_requests, read_code, run_harness

FORGED = {"nested": "tampering", "nan": "tampering", "wrong_types": "tampering", "not_object": "tampering",
          "huge": "tampering", "claim_harness": "tampering", "inf_loss": "tampering", "huge_tokens": "tampering",
          "extra_field": "tampering"}


def _comm_of_all() -> set[str]:
    names = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            names.add(Path(f"/proc/{pid}/comm").read_text().strip())
        except OSError:
            pass
    return names


def test_an_escaping_process_chain_neither_counts_nor_survives(workdir):
    tag = "esc" + secrets.token_hex(5)
    shared = workdir / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    marker = shared / "marker"
    code = read_code("escape_chain").replace("TAG_NAME", tag).replace("MARKER_PATH", str(marker))
    started = time.monotonic()
    status, doc, stderr = run_harness(build_request(code, HPARAMS, submission_id="escape_chain"), workdir)
    assert status == 0 and doc is not None, stderr[-2000:]
    assert time.monotonic() - started < 60, "the evaluation waited on the chain"
    # Nothing it did after the call returned was seen: untrained weights, so no score.
    assert not doc["success"] and doc["error"]["code"] in ("optimizer_state", "frozen_params"), doc["error"]
    assert doc["diagnostics"]["containment"] in ("namespaces", "uid")
    assert tag[:15] not in _comm_of_all(), "a process of the chain outlived the evaluation"
    time.sleep(10)  # longer than the chain needs to finish its hops
    assert not marker.exists(), "a process of the chain kept running after the evaluation"
    assert not Path(f"/tmp/{tag}").exists() and not Path(f"/dev/shm/{tag}").exists()
    key = f"{int.from_bytes(tag[:4].encode(), 'big'):d}"
    assert key not in Path("/proc/sysvipc/shm").read_text().split(), "its SysV segment survived"


@pytest.fixture(scope="module")
def forged(tmp_path_factory):
    d = tmp_path_factory.mktemp("forged")
    reqs = {m: build_request((FIXTURES / "forge_report.py").read_text().replace("MODE_NAME", m), HPARAMS,
                             submission_id=m) for m in [*FORGED, "truncate"]}
    return evaluate_requests(reqs, d)


@pytest.mark.parametrize("mode", sorted(FORGED))
def test_a_malformed_report_is_the_submissions_rejection(forged, mode):
    doc = forged[mode]
    assert doc["error"]["code"] == FORGED[mode], doc["error"]
    assert not doc["success"] and doc["tps"] == 0


def test_a_truncated_handover_cannot_take_the_supervisor_down(forged):
    doc = forged["truncate"]  # the seal refuses the truncation; the honest training behind it verifies
    assert "ftruncate: refused" in doc["diagnostics"]["worker_log_tail"]
    assert doc["success"], doc["error"]


def test_verify_cli_keeps_the_seed_out_of_the_workers_reach():
    # As root with torch under a directory others cannot read, the worker keeps uid 0 but in a user
    # namespace of its own: no capability outside it, no view of the supervisor, the request on stdin.
    proc = subprocess.run([sys.executable, str(ROOT / "local_test" / "verify.py"),
                           str(FIXTURES / "seed_from_supervisor.py"), "--json"], capture_output=True, text=True,
                          timeout=600)
    doc = json.loads(proc.stdout)
    assert "reached nothing outside the worker" in doc["diagnostics"]["worker_log_tail"], doc["diagnostics"]["worker_log_tail"]
    assert doc["success"] and proc.returncode == 0, doc["error"]
    assert doc["diagnostics"]["request_readable_by_worker"] is False


def test_the_warm_server_gives_every_run_a_clean_slate(tmp_path):
    # One env.py --serve for three runs, as the process executor runs them: what a run leaves behind
    # (files, /dev/shm, SysV IPC, a daemon) is gone before the next one imports the submission.
    from verify import WarmHarness
    harness = WarmHarness(tmp_path)
    try:
        code = read_code("leave_for_next_run")
        docs = [harness.run(build_request(code, HPARAMS, run_index=i, submission_id="leave")) for i in range(3)]
    finally:
        harness.close()
    assert [d["run_index"] for d in docs] == [0, 1, 2]
    for d in docs:
        assert d["success"], d["error"]
        assert "found nothing from an earlier run" in d["diagnostics"]["worker_log_tail"]
    assert harness.proc.returncode == 0 and (tmp_path / "out" / "status-2").read_text() == "0"
    assert len({d["task_id"] for d in docs}) == 3


@pytest.mark.parametrize("reply", [
    {"ok": True, "op": "run", "total_tokens": 1280, "final_loss": 1e300 * 10, "logits_shape": [2, 63, 512]},
    {"ok": True, "op": "run", "total_tokens": 10**400, "final_loss": 1.0, "logits_shape": [2, 63, 512]},
    {"ok": True, "op": "run", "total_tokens": -1, "final_loss": 1.0, "logits_shape": [2, 63, 512]},
    {"ok": True, "op": "run", "total_tokens": True, "final_loss": 1.0, "logits_shape": [2, 63, 512]},
    {"ok": True, "op": "run", "total_tokens": 1280, "final_loss": 1, "logits_shape": [2, 63, 512]},
    {"ok": True, "op": "run", "total_tokens": 1280, "final_loss": 1.0, "logits_shape": [2, 63, 2**41]},
    {"ok": True, "op": "run", "total_tokens": 1280, "final_loss": 1.0, "logits_shape": [2, 63, 512], "x": 1},
    {"ok": True, "op": "run", "total_tokens": 1280, "final_loss": 1.0},
    {"ok": 1, "op": "run", "total_tokens": 1280, "final_loss": 1.0, "logits_shape": [2, 63, 512]},
    {"ok": False, "op": "run", "code": "harness_error", "message": "not mine"},
    {"ok": False, "op": "run", "code": "crash", "message": ["x"]},
    {"ok": True, "op": "sketch"},
])
def test_a_report_outside_the_protocol_is_malformed(reply):
    import report
    import worker
    with pytest.raises(report.Malformed):
        report.parse(reply, "run", report.RUN_FIELDS, worker.REJECTION_CODES)


def test_a_rejection_keeps_only_clean_bounded_text():
    import report
    import worker
    with pytest.raises(report.Rejection) as r:
        report.parse({"ok": False, "op": "run", "code": "crash", "message": "\ud800" + "x" * 10_000}, "run",
                     report.RUN_FIELDS, worker.REJECTION_CODES)
    assert r.value.code == "crash" and len(r.value.message) == report.MESSAGE_LIMIT
    r.value.message.encode("utf-8")  # no lone surrogate left


def test_a_namespaced_worker_has_no_route_out_and_a_loopback_of_its_own(workdir):
    # The host's loopback stands for any address: on main the worker connected to it (ssh direct mode runs on
    # GPU hosts whose network is not the harness's to trust). The worker's own loopback still works.
    import socket
    import threading
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    probe = f'''
import socket as _s
def _try(port):
    try:
        _s.create_connection(("127.0.0.1", port), timeout=3).close()
        return "reached"
    except OSError as e:
        return type(e).__name__
_own = _s.create_server(("127.0.0.1", 0))
print("host:", _try({listener.getsockname()[1]}), "own:", _try(_own.getsockname()[1]), flush=True)
_own.close()
'''
    try:
        status, doc, stderr = run_harness(build_request(probe + read_code("template"), HPARAMS, "tiny"), workdir)
        assert status == 0 and doc["success"], (doc or {}).get("error") or stderr[-2000:]
        assert doc["diagnostics"]["containment"] == "namespaces"
        log = doc["diagnostics"]["worker_log_tail"]
        assert "host: reached" not in log and "own: reached" in log, log
        assert accepted == []
    finally:
        listener.close()
