"""Text encodings of corpus files (issue 11, case 8): UTF-8 with or without a BOM is read as is;
any other encoding stops with one line naming the file, the byte offset of the first byte that is
not UTF-8, a guess of the encoding and the fix (``iconv -f gbk -t utf-8 ...`` or ``--encoding``);
with ``--encoding NAME`` the file is decoded from NAME.

    text = read_text(path)                    # UTF-8 (BOM optional)
    text = read_text(path, encoding="gbk")    # `elmd data prepare --encoding gbk`
"""

from __future__ import annotations

import codecs
from pathlib import Path

from elmd.errors import DataError, ElmdError

UTF8 = ("utf-8", "utf8", "utf-8-sig", "utf_8", "utf_8_sig")
GUESSES = ("gbk", "gb18030", "big5", "utf-16")
"""Encodings tried, in order, to name the likely one in the error (Chinese corpora: GBK first)."""


def check_encoding(encoding: str | None) -> str | None:
    """``encoding`` normalised (None = UTF-8); an unknown name is a one-line ElmdError."""
    if encoding is None or encoding.lower() in UTF8:
        return None
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise ElmdError(f"--encoding {encoding}: unknown encoding — use e.g. gbk, gb18030, big5 or utf-8") from None


def guess_encoding(data: bytes) -> str | None:
    """The first of :data:`GUESSES` that decodes ``data`` without an error (None: none does)."""
    for name in GUESSES:
        if name == "utf-16" and not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            continue
        try:
            data.decode(name)
            return name
        except UnicodeDecodeError:
            continue
    return None


def read_text(path: str | Path, encoding: str | None = None) -> str:
    """The text of ``path``: UTF-8 (a leading BOM is dropped) unless ``encoding`` names another."""
    path = Path(path)
    data = path.read_bytes()
    name = check_encoding(encoding)
    try:
        text = data.decode(name or "utf-8-sig")
    except UnicodeDecodeError as e:
        bad = data[e.start:e.start + 4].hex(" ")
        if name:
            raise DataError(path, f"is not {encoding} text (byte offset {e.start}: {bad})",
                            f"check the file's encoding (`file {path}`) and pass the right --encoding") from None
        guess = guess_encoding(data)
        looks = f"; looks like {guess}" if guess else ""
        guess = guess or "ENCODING"
        raise DataError(path, f"is not UTF-8 (byte offset {e.start}: {bad}{looks})",
                        f"convert it with `iconv -f {guess} -t utf-8 {path} > {path.stem}.utf8{path.suffix}` "
                        f"(`elmd data prepare` also takes --encoding {guess})") from None
    return text[1:] if text.startswith("\ufeff") else text
