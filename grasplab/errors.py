"""One line for an error raised while a command or a Ray job runs (stdlib only).

Validation errors are caught by each command and printed as one line (exit code 2). Anything else
raised while the command runs reaches :func:`run_command`, which prints one line naming the
error, writes the full traceback to a log file and names it, and returns exit code 1. With
``GRASPLAB_DEBUG=1`` the traceback is printed instead of written to a file.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

DEBUG_ENV = "GRASPLAB_DEBUG"
LOG_DIR_ENV = "GRASPLAB_ERROR_DIR"
"""Folder of the traceback logs (default: ``<temp dir>/grasplab-errors``)."""


def summary(error: BaseException) -> str:
    """``Type: first line of the message`` (the exception's notes appended, ``; `` apart)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    notes = [note.strip() for note in getattr(error, "__notes__", ()) if note.strip()]
    return "; ".join([text, *notes])


def write_traceback(command: str, error: BaseException) -> Path | None:
    """Write ``error``'s full traceback to a new log file; its path (None if it cannot be)."""
    folder = Path(os.environ.get(LOG_DIR_ENV) or Path(tempfile.gettempdir()) / "grasplab-errors")
    name = f"{command.replace(' ', '-')}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_text(f"grasplab {command}\n{''.join(traceback.format_exception(error))}")
    except OSError:
        return None
    return path


def report(command: str, error: BaseException) -> None:
    """Print ``grasplab <command>: error: ...`` and where the traceback went, to stderr."""
    line = f"grasplab {command}: error: {summary(error)}"
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        traceback.print_exception(error, file=sys.stderr)
        print(line, file=sys.stderr)
        return
    path = write_traceback(command, error)
    where = f"traceback in {path}" if path else "traceback not saved"
    print(f"{line} ({where}; {DEBUG_ENV}=1 prints it)", file=sys.stderr)


def run_command(command: str, body: Callable[[], int | None]) -> int:
    """Run ``body`` (a command's main) and turn an escaping error into one line and an exit code.

    Args:
        command: The command's words (``sweep``, ``bench planners``, ``job sweep``).
        body: The command itself; its return value is the exit code (None means 0).

    Returns:
        ``body``'s exit code; 1 when it raised, 130 when it was interrupted. ``SystemExit``
        (argparse's usage errors, code 2) passes through.
    """
    try:
        return int(body() or 0)
    except KeyboardInterrupt:
        print(f"grasplab {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - every runtime error becomes one line
        report(command, error)
        return 1
