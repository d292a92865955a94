"""What a view has already parsed: each protocol file's model kept beside the signature its file
had (inode, size, mtime, ctime), so a file whose signature is unchanged is not read again.

The files stay the only source of truth. Every use checks each file's signature (one ``lstat``);
a protocol file is replaced atomically (a new inode each time: ``atomic_write_bytes``,
``create_exclusive``), so a change always shows, also on NFS, where mtimes may be coarse and
``rename`` is atomic but appends are not. Nothing is written to the volume: between processes the
cache is kept in the user's own cache directory (``$XDG_CACHE_HOME/claude-orchestrator/boards``),
mode 0600, and thrown away when it cannot be read, was made by other code, or is not the user's
own (a pickle that someone else could write would run their code). ``ORCHESTRATOR_BOARD_CACHE=off``
turns the saved copy off; a cache that is lost is rebuilt from the files by the next read.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import pickle
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from .errors import InvalidFile
from .files import read_model

ModelT = TypeVar("ModelT", bound=BaseModel)
Signature = tuple[int, int, int, int]
ENV_BOARD_CACHE = "ORCHESTRATOR_BOARD_CACHE"
ENV_BOARD_CACHE_DIR = "ORCHESTRATOR_BOARD_CACHE_DIR"
"""Where the saved caches go instead of ``$XDG_CACHE_HOME/claude-orchestrator/boards``."""
SAVE_EVERY_S = 10.0
"""A long-lived view (dashboard, watch) saves its cache at most this often."""
FORMAT = 1


def _signature(info: os.stat_result) -> Signature:
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _code_stamp() -> str:
    """What the saved cache must have been made by: this format and these model sources."""
    from . import models

    source = Path(models.__file__).stat()
    return f"{FORMAT}:{source.st_size}:{source.st_mtime_ns}"


class FileCache:
    """Parsed protocol files and claim listings of one root, checked on every use."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[Signature, object]] = {}
        """Path -> (signature when read, the model or the InvalidFile it raised)."""
        self.listings: dict[str, tuple[Signature, int]] = {}
        """Claim directory -> (signature when listed, highest attempt in it)."""
        self.changed = False
        """Whether anything was read anew since the cache was loaded or saved."""
        self.saved_at = 0.0

    def __getstate__(self) -> dict[str, object]:
        """What is saved: the models, not the errors (those are read again)."""
        files = {k: v for k, v in self.files.items() if not isinstance(v[1], InvalidFile)}
        return {**self.__dict__, "files": files}

    def model(self, path: str, model: type[ModelT], expected_id: str | None) -> ModelT | None:
        """Like ``read_model_if_exists``: the file's model, None when it does not exist."""
        key = path
        try:
            info = os.lstat(key)
        except FileNotFoundError:
            self._forget(self.files, key)
            return None
        signature = _signature(info)
        known = self.files.get(key)
        if known is not None and known[0] == signature:
            return self._known(known[1], model)
        try:
            value: object = read_model(Path(path), model, expected_id)
        except FileNotFoundError:
            self._forget(self.files, key)
            return None
        except InvalidFile as error:
            value = error
        self.files[key] = (signature, value)
        self.changed = True
        return self._known(value, model)

    @staticmethod
    def _known(value: object, model: type[ModelT]) -> ModelT:
        if isinstance(value, InvalidFile):
            raise value
        assert isinstance(value, model)
        return value

    def latest_attempt(self, claim_dir: str) -> int:
        """The highest ``<n>.json`` in a claim directory (0 when there is none)."""
        key = claim_dir
        try:
            info = os.stat(key)
        except FileNotFoundError:
            self._forget(self.listings, key)
            return 0
        signature = _signature(info)
        known = self.listings.get(key)
        if known is not None and known[0] == signature:
            return known[1]
        names = os.listdir(key) if stat.S_ISDIR(info.st_mode) else []
        attempt = max(
            (int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit()), default=0
        )
        self.listings[key] = (signature, attempt)
        self.changed = True
        return attempt

    def _forget(self, table: dict[str, Any], key: str) -> None:
        if table.pop(key, None) is not None:
            self.changed = True


_CACHES: dict[str, FileCache] = {}


def cache_path(root: Path) -> Path:
    """Where the cache of ``root`` is kept between processes."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    directory = os.environ.get(ENV_BOARD_CACHE_DIR) or base / "claude-orchestrator" / "boards"
    digest = hashlib.sha256(f"{os.getuid()}:{root.resolve()}".encode()).hexdigest()[:24]
    return Path(directory) / f"{digest}.pickle"


def _persisted() -> bool:
    return os.environ.get(ENV_BOARD_CACHE, "on").lower() not in ("off", "0", "false", "no")


def cache_for(root: Path) -> FileCache:
    """This process's cache of ``root``, loaded from the saved copy when there is a usable one."""
    key = str(root)
    cache = _CACHES.get(key)
    if cache is None:
        cache = (_load(cache_path(root)) if _persisted() else None) or FileCache()
        _CACHES[key] = cache
    return cache


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off while a saved cache is loaded, and what it loaded kept out of
    its later passes (``gc.freeze``): the cache's models hold no cycles and live as long as the
    process, and at 10,000 tasks the collector's passes over them took a fifth of ``status``."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _load(path: Path) -> FileCache | None:
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if info.st_uid != os.getuid() or info.st_mode & 0o077:
                return None
            with _collector_paused():
                stamp, cache = pickle.load(handle)
    except Exception:  # a lost or foreign cache is rebuilt from the files
        return None
    if stamp != _code_stamp() or not isinstance(cache, FileCache):
        return None
    cache.changed = False
    return cache


def save_cache(root: Path, *, force: bool = False) -> None:
    """Save the cache of ``root`` when something changed (at most every ``SAVE_EVERY_S``
    unless ``force``); a failure to save is ignored: the next read rebuilds it."""
    cache = _CACHES.get(str(root))
    if cache is None or not cache.changed or not _persisted():
        return
    if not force and time.monotonic() - cache.saved_at < SAVE_EVERY_S:
        return
    path = cache_path(root)
    with contextlib.suppress(OSError, pickle.PicklingError, TypeError, AttributeError):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".board-")
        try:
            with os.fdopen(fd, "wb") as handle:
                pickle.dump((_code_stamp(), cache), handle, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(temp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        cache.changed, cache.saved_at = False, time.monotonic()
