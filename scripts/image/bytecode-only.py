"""Keep the Python modules under each DIR as bytecode only, for the images' run-time tree.

Every ``X.py`` becomes ``X.pyc`` beside it, compiled once here, and the source goes: Python imports
such a file as it is, without a source to check it against, so nothing is compiled at run time
(a read-only root could not cache it) and each module is stored once instead of twice. The
``__pycache__`` folders go too. Tracebacks still name the file and the line, without its text.

The images run it on the standard library and the venv's dependencies; the project's own
packages keep their sources (pydantic reads the field docstrings from them). A file named with
--keep, a link, or one that does not compile stays as it was, compiled into ``__pycache__``
where it can be.

Run inside an image build (standard library only)::

    python3 bytecode-only.py [--keep NAME]... DIR...
"""

from __future__ import annotations

import argparse
import py_compile
import shutil
import sys
from pathlib import Path


def keep_as_source(source: Path) -> None:
    # quiet=2: a file that is not Python 3 (a template, a fixture) was never imported either.
    py_compile.compile(str(source), quiet=2)


def to_bytecode(source: Path) -> bool:
    """Compile ``source`` into ``X.pyc`` beside it and remove it; False if it does not compile."""
    try:
        py_compile.compile(
            str(source), cfile=str(source.with_suffix(".pyc")), dfile=str(source), doraise=True
        )
    except py_compile.PyCompileError:
        return False
    source.unlink()
    return True


def convert(directory: Path, keep: set[str]) -> tuple[int, int]:
    """(modules made bytecode only, modules kept as source) under ``directory``."""
    for cache in sorted(directory.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache)
    converted = kept = 0
    for source in sorted(directory.rglob("*.py")):
        if not source.is_file():
            continue
        if source.is_symlink() or source.name in keep or not to_bytecode(source):
            keep_as_source(source)
            kept += 1
        else:
            converted += 1
    return converted, kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directories", metavar="DIR", nargs="+", type=Path)
    parser.add_argument(
        "--keep",
        metavar="NAME",
        action="append",
        default=[],
        help="a file name that stays source (e.g. os.py, the standard library's landmark)",
    )
    options = parser.parse_args(argv)
    for directory in options.directories:
        if not directory.is_dir():
            parser.error(f"{directory} is not a directory; name the folder of the modules.")
        converted, kept = convert(directory, set(options.keep))
        print(f"bytecode-only: {directory}: {converted} modules as bytecode, {kept} as source")
    return 0


if __name__ == "__main__":
    sys.exit(main())
