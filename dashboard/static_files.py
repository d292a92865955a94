"""Where the page's files are: package data beside this module (no build step, nothing fetched
at run time)."""

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
INDEX = STATIC_DIR / "index.html"
