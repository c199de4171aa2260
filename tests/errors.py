"""The shape of a user error, shared by the CLI tests: one ``clbench: error:`` line, no trace."""
from __future__ import annotations


def one_error_line(err: str) -> str:
    """``err`` (a command's stderr) as its single error line; fails on a traceback or more lines."""
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("clbench: error: "), err
    return lines[0]
