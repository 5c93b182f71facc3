"""Small file helpers: atomic writes, JSON/JSONL, content hashes.

Every output file is written to a temporary name in the same folder and renamed into place, so a
crash leaves either the old file or the new one, never half of one; :func:`atomic_dir` does the
same for a whole output folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from elmd.errors import DataError


def _default_mode() -> int:
    """0o666 minus the process umask: what open() would have given the file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _default_mode()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder beside ``path``; when the block ends without an error it is
    swapped in as ``path`` (the old folder is removed only after), so ``path`` always holds a
    whole output. On an error the staging folder is removed and ``path`` is left as it was."""
    out = Path(path)
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.with_name(f".{out.name}.old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def iter_jsonl(path: str | Path, what: str, fix: str) -> Iterator[tuple[int, object]]:
    """``(line number, parsed value)`` of every non-blank line of a JSONL file.

    A missing file, a folder, malformed JSON or non-UTF-8 bytes raise :class:`DataError` naming the
    file (and line); ``what`` names the file's role ("dialogue file"), ``fix`` says how to get one.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, f"{what} not found", fix)
    if path.is_dir():
        raise DataError(path, f"is a folder, expected a {what} (.jsonl)", "pass the .jsonl file inside it")
    try:
        with path.open(encoding="utf-8-sig") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(path, f"malformed JSON ({e.msg} at column {e.colno})", "fix or delete the line", lineno) from None
                yield lineno, value
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text ({e.reason})", "save the file as UTF-8 JSONL") from None
