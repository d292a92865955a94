"""Following the volume: every protocol file reported once per version, with nothing missed.

The watcher starts its observer first and scans second, so a file made while it starts is seen
by one or the other (watchdog #1010), and a file seen by both is reported once: each path is
reported when its signature (inode, size, mtime) is new. When the kernel's inotify queue
overflows (watchdog 7 reports it as ``events_lost``; older versions dropped it silently, #654)
every directory is scanned again at once, file by file. A periodic rescan reconciles the view
besides, but looks only into a directory whose own signature changed since its last scan (one
``stat`` of each directory), and there only at files whose inode is new, so following an idle
root costs nothing per task. Where inotify cannot see writes (NFS, other network filesystems,
macOS bind mounts through FUSE) it polls instead, by option, by ``$ORCHESTRATION_POLLING``, or
when it detects such a filesystem or inotify fails to start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from .paths import Layout, is_hidden, task_id_from_filename
from .priorities import PRIORITIES_FILE

logger = logging.getLogger(__name__)

WatchKind = Literal["task", "status", "result", "cancel", "log", "priorities"]
ALL_KINDS: tuple[WatchKind, ...] = ("task", "status", "result", "cancel")
"""The kinds a watcher follows unless told otherwise; ``log`` (``logs/<id>.log`` growing, as a
worker appends its agent's output) is asked for by name, by views that show logs live, and so is
``priorities`` (``<root>/priorities.csv`` written: its events carry no task id, ``""``)."""
ROOT_FILES: dict[str, WatchKind] = {PRIORITIES_FILE: "priorities"}
"""Files of the root itself that a watcher can follow, by kind."""
_DIRECTORY_KINDS: dict[str, tuple[WatchKind, str]] = {
    "tasks": ("task", ".json"),
    "status": ("status", ".json"),
    "results": ("result", ".json"),
    "control": ("cancel", ".cancel"),
    "logs": ("log", ".log"),
}
POLLING_ENV = "ORCHESTRATION_POLLING"
NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs")
Signature = tuple[int, int, int]
RACY_S = 2.0
"""A directory changed less than this long before it was looked at may change again within the
same timestamp (mtimes are coarse: a clock tick, a second on some NFS servers): it is scanned
again at the next rescan whether its signature changed or not."""


@dataclass(frozen=True)
class ProtocolEvent:
    """A protocol file appeared or changed."""

    kind: WatchKind
    """Which kind of file: task, status, result, cancel or log."""
    task_id: str
    """The task the file is about."""
    path: Path
    """The file's path."""


@dataclass(frozen=True)
class Mount:
    """The mount holding a path, from /proc/mounts."""

    mount_point: str
    fs_type: str
    device: str


def mount_of(path: Path) -> Mount | None:
    """The mount holding ``path`` (None where /proc/mounts cannot be read)."""
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    target = str(path.resolve())
    best: Mount | None = None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point = fields[1].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and (best is None or len(mount_point) >= len(best.mount_point)):
            best = Mount(mount_point, fields[2], fields[0])
    return best


def _filesystem_type(path: Path) -> str | None:
    """The type of the filesystem holding ``path`` (None where unknown)."""
    mount = mount_of(path)
    return mount.fs_type if mount else None


def default_polling(root: Path) -> bool:
    """Whether to poll: ``$ORCHESTRATION_POLLING`` if set, else detect a network filesystem."""
    setting = os.environ.get(POLLING_ENV, "").strip().lower()
    if setting in ("1", "true", "yes", "on"):
        return True
    if setting in ("0", "false", "no", "off"):
        return False
    fs_type = _filesystem_type(root) or ""
    return fs_type.startswith(NETWORK_FILESYSTEMS) or fs_type in ("fuse.grpcfuse", "fakeowner")


def _report_renames_at_once() -> None:
    """Stop watchdog from holding each rename's first half for up to 0.5 s.

    watchdog's inotify emitter waits up to ``delay`` seconds to pair IN_MOVED_FROM with
    IN_MOVED_TO, and every later event queues behind it (watchdog #390, #649): measured, 1 run in
    4 had a 0.5 s stall. Protocol files appear by rename and the watcher reports the destination
    whether it comes as "moved" or "created", so the pairing is worth nothing here.
    """
    try:
        from watchdog.observers.inotify_move_event_grouper import InotifyMoveEventGrouper
    except ImportError:  # other watchdog versions, other platforms
        return
    InotifyMoveEventGrouper.delay = 0.0


class DirectoryMarks:
    """Which directories changed since they were last looked at, by each one's signature (inode,
    mtime, ctime): a file created, replaced by rename or removed changes its directory's. A
    directory whose last change was within :data:`RACY_S` of the look counts as changed."""

    def __init__(self) -> None:
        self._marks: dict[Path, tuple[tuple[int, int, int] | None, bool]] = {}

    def changed(self, directory: Path) -> bool:
        """Whether ``directory`` changed (or may have) since the last call for it; one never
        looked at has changed, and one that is missing has when it was not before."""
        try:
            info = os.stat(directory)
        except OSError:
            signature, racy = None, False
        else:
            signature = (info.st_ino, info.st_mtime_ns, info.st_ctime_ns)
            racy = time.time_ns() - max(info.st_mtime_ns, info.st_ctime_ns) < RACY_S * 1e9
        known = self._marks.get(directory)
        self._marks[directory] = (signature, racy)
        return known is None or known[0] != signature or known[1]

    def forget(self) -> None:
        """Have every directory count as changed at the next look."""
        self._marks.clear()


class _ShutdownRaceFilter(logging.Filter):
    """Drops watchdog's "InotifyEmitter.queue_events() called when the thread is inactive".

    watchdog logs it as an error when an emitter's last blocking read returns after the observer
    was asked to stop (the read races ``on_thread_stop``); the event is dropped on purpose and
    nothing is lost (the watcher is stopping), but the line reached the terminal at the end of
    every ``orchestrator run``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


logging.getLogger("watchdog.observers.inotify").addFilter(_ShutdownRaceFilter())


_DRAINED = "drained"
"""Queued after a rescan's paths: the delivery thread has reached it when it is taken."""


def _signature(info: os.stat_result) -> Signature:
    return (info.st_ino, info.st_size, info.st_mtime_ns)


class _Handler(FileSystemEventHandler):
    def __init__(self, pending: queue.SimpleQueue[Path | str | None], lost: threading.Event) -> None:
        self._pending = pending
        self._lost = lost

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type == "events_lost":  # watchdog >= 7: the inotify queue overflowed
            self._lost.set()
            return
        if event.is_directory or event.event_type in ("opened", "closed_no_write", "deleted"):
            return
        target = getattr(event, "dest_path", "") or event.src_path
        self._pending.put(Path(os.fsdecode(target)))


class ProtocolWatcher:
    """Calls ``callback`` once for every new or changed protocol file under ``root``; with
    ``report_existing=False``, only for files that change after :meth:`start` (for a caller that
    reads the root itself once the watcher runs)."""

    def __init__(
        self,
        root: Path,
        callback: Callable[[ProtocolEvent], None],
        *,
        kinds: Iterable[WatchKind] = ALL_KINDS,
        polling: bool | None = None,
        rescan_interval_s: float = 5.0,
        poll_interval_s: float = 0.5,
        report_existing: bool = True,
    ) -> None:
        self.layout = Layout(root).ensure()
        self.callback = callback
        self.kinds = frozenset(kinds)
        self.polling = default_polling(root) if polling is None else polling
        self.rescan_interval_s = rescan_interval_s
        self.poll_interval_s = poll_interval_s
        self.report_existing = report_existing
        self._pending: queue.SimpleQueue[Path | str | None] = queue.SimpleQueue()
        self._seen: dict[str, Signature] = {}
        """Per path, the signature it had when last reported."""
        self._marks = DirectoryMarks()
        self._stop = threading.Event()
        self._lost = threading.Event()
        """Set when the kernel dropped events: every directory is scanned again."""
        self._drained = threading.Event()
        self._observer: BaseObserver | None = None
        self._threads: list[threading.Thread] = []

    def _watched_dirs(self) -> list[tuple[Path, WatchKind, str]]:
        watched = [
            (self.layout.root / name, kind, suffix)
            for name, (kind, suffix) in _DIRECTORY_KINDS.items()
            if kind in self.kinds
        ]
        if self.kinds & set(ROOT_FILES.values()):
            watched.append((self.layout.root, "priorities", ""))  # the root: its files alone
        return watched

    def _start_observer(self, polling: bool) -> BaseObserver:
        if not polling:
            _report_renames_at_once()
        observer: BaseObserver = (
            PollingObserver(timeout=self.poll_interval_s) if polling else Observer()
        )
        handler = _Handler(self._pending, self._lost)
        for directory, _, _ in self._watched_dirs():
            observer.schedule(handler, str(directory), recursive=False)
        observer.start()
        return observer

    def start(self) -> ProtocolWatcher:
        """Start following events, then scan what exists; returns self."""
        try:
            self._observer = self._start_observer(self.polling)
        except OSError as error:
            logger.warning("inotify unavailable (%s); polling %s instead", error, self.layout.root)
            self.polling = True
            self._observer = self._start_observer(True)
        self._threads = [
            threading.Thread(target=self._deliver, name="protocol-watcher", daemon=True),
            threading.Thread(target=self._rescan_loop, name="protocol-rescan", daemon=True),
        ]
        if not self.report_existing:
            self._note_existing()
        for thread in self._threads:
            thread.start()
        self.rescan()
        return self

    def _note_existing(self) -> None:
        """Take what exists as seen, unreported (before the delivery thread starts: a file
        that changes from now on raises an event, compared with what is noted here)."""
        for directory, _, _ in self._watched_dirs():
            self._marks.changed(directory)
            try:
                with os.scandir(directory) as entries:
                    for entry in entries:
                        if not is_hidden(entry.name) and self._classify(Path(entry.path)):
                            with contextlib.suppress(FileNotFoundError):
                                info = entry.stat(follow_symlinks=False)
                                self._seen[entry.path] = _signature(info)
            except FileNotFoundError:
                continue

    def stop(self) -> None:
        """Stop following the volume and wait for the threads to end."""
        self._stop.set()
        self._lost.set()  # wakes the rescan thread
        self._pending.put(None)
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> ProtocolWatcher:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def rescan(self, *, everything: bool = False) -> None:
        """Queue the protocol files of each directory that changed since its last scan; those
        already reported in this version are skipped. A file replaced atomically gets a new
        inode, which the listing itself shows, so only a file whose inode is new is looked at
        (except in ``logs/``, whose files grow in place). ``everything`` (after lost events):
        every directory, every file."""
        if everything:
            self._marks.forget()
        seen = self._seen
        for directory, kind, _ in self._watched_dirs():
            if not self._marks.changed(directory):
                continue
            by_inode = not everything and kind not in ("log", "priorities")
            try:
                with os.scandir(directory) as entries:
                    for entry in entries:
                        if is_hidden(entry.name):
                            continue
                        known = seen.get(entry.path)
                        if by_inode and known is not None and known[0] == entry.inode():
                            continue
                        self._pending.put(Path(entry.path))
            except FileNotFoundError:
                continue

    def _rescan_loop(self) -> None:
        """Every ``rescan_interval_s``, or at once when events were lost, rescan; one rescan at
        a time (the next waits until the delivery thread took the last one's paths, so a storm
        of overflows does not pile up scans faster than they are looked at)."""
        while True:
            self._lost.wait(self.rescan_interval_s)
            if self._stop.is_set():
                return
            everything = self._lost.is_set()
            self._lost.clear()
            if everything:
                logger.warning("events lost under %s; scanning it again", self.layout.root)
            self.rescan(everything=everything)
            self._drained.clear()
            self._pending.put(_DRAINED)
            while not self._drained.wait(0.5):
                if self._stop.is_set():
                    return

    def _classify(self, path: Path) -> ProtocolEvent | None:
        if is_hidden(path.name):
            return None
        if path.parent == self.layout.root:
            kind = ROOT_FILES.get(path.name)
            if kind is None or kind not in self.kinds:
                return None
            return ProtocolEvent(kind, "", path)
        for directory, kind, suffix in self._watched_dirs():
            if path.parent == directory:
                task_id = task_id_from_filename(path.name, suffix)
                return ProtocolEvent(kind, task_id, path) if task_id else None
        return None

    def _deliver(self) -> None:
        while True:
            path = self._pending.get()
            if path is None or self._stop.is_set():
                return
            if path == _DRAINED:
                self._drained.set()
                continue
            assert isinstance(path, Path)
            event = self._classify(path)
            if event is None:
                continue
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                continue
            signature, key = _signature(info), str(path)
            if self._seen.get(key) == signature:
                continue
            self._seen[key] = signature
            try:
                self.callback(event)
            except Exception:
                logger.exception("watcher callback failed for %s", path)
