"""Write constraints.txt: every package elmd needs (its requirements, the installed extras' and
their dependencies, transitively) pinned at the version installed in this environment.

    .venv/bin/python scripts/pin.py            # after the suite passed with this environment
    .venv/bin/python scripts/pin.py --check    # exit 1 when constraints.txt differs from it

How to upgrade (README, "Reproducible installs"): ``ELMD_UNPINNED=1 bash scripts/install.sh``
installs the newest versions allowed by setup.py (torch still from ELMD_TORCH), then run
``bash scripts/test.sh`` and, when it passes, this script; commit the new constraints.txt.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = """\
# Versions the test suite passed with (written by scripts/pin.py; see README "Reproducible installs").
# scripts/install.sh installs torch first (ELMD_TORCH, default the CPU build of the version below) and
# everything else under these constraints, so two installs get the same packages.
"""
SKIP = {"elmd", "pip", "setuptools", "wheel"}


def _name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", req, maxsplit=1)[0].lower().replace("_", "-")


def _wanted(req: str, extras: set[str]) -> bool:
    """Whether requirement ``req`` applies here: no marker, or an ``extra == X`` marker for an installed extra."""
    if ";" not in req:
        return True
    marker = req.split(";", 1)[1]
    m = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
    if m:
        return m.group(1) in extras
    from packaging.markers import Marker

    return Marker(marker).evaluate()


def closure(extras: set[str]) -> dict[str, str]:
    """name -> installed version of elmd's requirements (with ``extras``), transitively."""
    todo, seen = [r for r in metadata.requires("elmd") or [] if _wanted(r, extras)], {}
    while todo:
        name = _name(todo.pop())
        if name in seen or name in SKIP:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an extra that is not installed here
        seen[name] = dist.version.split("+")[0]
        todo += [r for r in dist.requires or [] if _wanted(r, set())]
    return dict(sorted(seen.items()))


def installed_extras() -> set[str]:
    """The extras of elmd whose requirements are all installed."""
    out = set()
    for extra in metadata.metadata("elmd").get_all("Provides-Extra") or []:
        reqs = [r for r in metadata.requires("elmd") or [] if f'extra == "{extra}"' in r or f"extra == '{extra}'" in r]
        try:
            [metadata.distribution(_name(r)) for r in reqs]
            out.add(extra)
        except metadata.PackageNotFoundError:
            pass
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with constraints.txt instead of writing it")
    args = ap.parse_args()
    pins = closure(installed_extras())
    text = HEADER + "".join(f"{n}=={v}\n" for n, v in pins.items())
    target = ROOT / "constraints.txt"
    if args.check:
        same = target.exists() and target.read_text(encoding="utf-8") == text
        print("constraints.txt is up to date" if same else "constraints.txt differs from this environment")
        return 0 if same else 1
    target.write_text(text, encoding="utf-8")
    print(f"wrote {len(pins)} pins to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
