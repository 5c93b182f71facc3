"""Errors that the CLI turns into one-line messages (what is wrong, where, and the fix)."""

from __future__ import annotations


class ElmdError(Exception):
    """A user-facing error: its message is printed as one line and the command exits with 2."""


class DataError(ElmdError):
    """Bad input data: names the file (and line) and says how to fix it."""

    def __init__(self, path, problem: str, fix: str = "", line: int | None = None):
        where = f"{path}:{line}" if line is not None else str(path)
        msg = f"{where}: {problem}"
        if fix:
            msg += f" — {fix}"
        super().__init__(msg)
        self.path, self.line, self.problem, self.fix = str(path), line, problem, fix


class ConfigError(ElmdError):
    """A bad config file or override."""
