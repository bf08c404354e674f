"""An error raised while a command or a Ray job runs prints one line, not a traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from grasplab import cli, errors

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
# A runtime error, not bad input: the output folder cannot be created.
COLLECT = ["collect", "env=wall", "episodes=2", "steps=5", "out=/proc/grasplab-no-such-dir"]
SAVED = re.compile(r"\(traceback in (\S+\.log); GRASPLAB_DEBUG=1 prints it\)$")


def run(command: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != errors.DEBUG_ENV}
    environ.update({errors.LOG_DIR_ENV: str(tmp_path / "errors"), **env})
    return subprocess.run(
        command, cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=240
    )


def assert_one_line_with_saved_traceback(done: subprocess.CompletedProcess, prefix: str) -> None:
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith(prefix), line
    saved = SAVED.search(line)
    assert saved, line
    text = Path(saved.group(1)).read_text()
    assert "Traceback (most recent call last)" in text and "FileNotFoundError" in text


def test_command_runtime_error_is_one_line_with_the_traceback_saved(tmp_path):
    done = run([str(BIN / "grasplab"), *COLLECT], tmp_path)
    assert_one_line_with_saved_traceback(
        done, "grasplab collect: error: FileNotFoundError: [Errno 2] No such file or directory"
    )


def test_debug_prints_the_traceback(tmp_path):
    done = run([str(BIN / "grasplab"), *COLLECT], tmp_path, GRASPLAB_DEBUG="1")
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("grasplab collect: error: ")
    assert not (tmp_path / "errors").exists()


def test_job_runtime_error_is_one_line_with_the_traceback_saved(tmp_path):
    job = [str(BIN / "python"), str(REPO / "jobs/train.py"), "world_model=mlp", "env=wall"]
    done = run([*job, "root=/proc/grasplab-no-such-dir", "cluster=local"], tmp_path)
    assert_one_line_with_saved_traceback(done, "grasplab job train: error: FileNotFoundError: ")


def test_notes_join_the_line_and_interrupts_exit_130(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(errors.LOG_DIR_ENV, str(tmp_path))
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)

    def fails() -> int:
        error = RuntimeError("boom\nsecond line")
        error.add_note("resume with: grasplab sweep --resume")
        raise error

    def interrupted() -> int:
        raise KeyboardInterrupt

    assert errors.run_command("sweep", fails) == 1
    line = capsys.readouterr().err.strip()
    assert "\n" not in line
    assert line.startswith(
        "grasplab sweep: error: RuntimeError: boom; resume with: grasplab sweep --resume ("
    )
    assert errors.run_command("sweep", interrupted) == 130
    assert errors.run_command("sweep", lambda: None) == 0


def test_usage_errors_pass_through_with_their_exit_code():
    with pytest.raises(SystemExit) as stopped:  # argparse's usage error: exit code 2
        cli.main(["sweep", "--no-such-flag"])
    assert stopped.value.code == 2
