"""Shared helpers: build requests exactly as local_test/verify.py (and the validator) do, and run the real
harness for each evaluation in its own process."""
import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "train"
ENV_PY = ROOT / "environments" / "templar" / "env.py"
sys.path.insert(0, str(ROOT / "local_test"))
sys.path.insert(0, str(ROOT / "environments" / "templar"))

import torch  # noqa: E402

import env  # noqa: E402
from verify import build_request  # noqa: E402

torch.set_num_threads(1)  # no OpenMP pool in this process: it forks harnesses
HPARAMS_TINY_CONFIG = json.loads((ROOT / "hparams" / "hparams.json").read_text())["profiles"]["tiny"]["model_config"]
env.workload.model_class(env.workload.load_config(str(ROOT / HPARAMS_TINY_CONFIG)))  # import the model code once

HPARAMS = json.loads((ROOT / "hparams" / "hparams.json").read_text())


def read_code(name: str) -> str:
    path = ROOT / "local_test" / "train.py" if name == "template" else FIXTURES / f"{name}.py"
    return path.read_text()


def run_harness(request: dict, workdir: Path) -> tuple[int, dict | None, str]:
    """Runs the env.py command line in a new process on one request: (exit status, document or None, stderr)."""
    req, res = _paths(request, workdir)
    proc = subprocess.run([sys.executable, str(ENV_PY), "--request", str(req), "--result", str(res)],
                          capture_output=True, text=True, timeout=600)
    return proc.returncode, _read(res), proc.stderr


def _paths(request: dict, workdir: Path) -> tuple[Path, Path]:
    req, res = workdir / f"req-{request['task_id']}.json", workdir / f"res-{request['task_id']}.json"
    req.write_text(json.dumps(request))
    return req, res


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def fork_harness(request: dict, workdir: Path) -> tuple[int, Path, Path]:
    """env.main in a forked copy of this process, which already imported torch and transformers: the same
    code path as the command line minus seven seconds of imports per evaluation."""
    req, res = _paths(request, workdir)
    log = workdir / f"log-{request['task_id']}.txt"
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        status = 70
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout, sys.stderr = os.fdopen(1, "w", buffering=1), os.fdopen(2, "w", buffering=1)
            status = env.main(["--request", str(req), "--result", str(res)])
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
        finally:
            os._exit(status)
    return pid, res, log


def evaluate_many(names: list[str], workdir: Path, parallel: int = 2, **overrides) -> dict[str, dict]:
    """Evaluates fixtures by name, `parallel` harnesses at a time; checks each document echoes its request."""
    requests = {n: build_request(read_code(n), HPARAMS, "tiny", submission_id=n, **overrides) for n in names}
    return evaluate_requests(requests, workdir, parallel)


def evaluate_requests(requests: dict[str, dict], workdir: Path, parallel: int = 2) -> dict[str, dict]:
    docs, todo = {}, list(requests)
    while todo:
        batch, todo = todo[:parallel], todo[parallel:]
        running = {n: fork_harness(requests[n], workdir) for n in batch}
        for name, (pid, res, log) in running.items():
            _, status = os.waitpid(pid, 0)
            doc = _read(res)
            assert os.waitstatus_to_exitcode(status) == 0 and doc is not None, \
                f"env.py failed for {name} (status {status}):\n{log.read_text()[-3000:]}"
            assert (doc["task_id"], doc["submission_id"], doc["run_index"]) == \
                (requests[name]["task_id"], requests[name]["submission_id"], 0)
            docs[name] = doc
    return docs


def evaluate(name: str, workdir: Path, **overrides) -> dict:
    return evaluate_many([name], workdir, **overrides)[name]


@pytest.fixture
def workdir():
    with tempfile.TemporaryDirectory(prefix="crusades-test-") as d:
        yield Path(d)
