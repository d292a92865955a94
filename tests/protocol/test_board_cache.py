"""The board cache: real files, real stat signatures, the saved copy in a real cache directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestration_protocol import Layout, board_cache, read_board
from orchestration_protocol.board_cache import FileCache, cache_path
from orchestration_protocol.state import read_snapshot
from tests.dashboard_helpers import finished_task


@pytest.fixture(autouse=True)
def own_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_BOARD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(board_cache, "_CACHES", {})


def test_an_unchanged_file_is_not_read_again_and_a_replaced_one_is(layout: Layout) -> None:
    finished_task(layout, "t1")
    cache = FileCache()
    first = read_snapshot(layout, "t1", cache)
    cache.changed = False
    assert read_snapshot(layout, "t1", cache) == first and not cache.changed
    info = layout.task_file("t1").stat()
    temp = layout.tasks_dir / ".t1.tmp"
    temp.write_bytes(layout.task_file("t1").read_bytes().replace(b"prompt of t1", b"prompt of t9"))
    os.utime(temp, ns=(info.st_atime_ns, info.st_mtime_ns))  # same size, same mtime
    os.replace(temp, layout.task_file("t1"))  # a new inode, as every protocol write makes
    again = read_snapshot(layout, "t1", cache)
    assert again.task is not None and again.task.prompt == "prompt of t9" and cache.changed


def test_a_bad_file_stays_a_problem_and_a_removed_one_goes(layout: Layout) -> None:
    finished_task(layout, "t1")
    cache = FileCache()
    layout.result_file("t1").write_text("{not json")
    assert read_snapshot(layout, "t1", cache).problems
    assert read_snapshot(layout, "t1", cache).problems  # from the cache, raised again
    layout.result_file("t1").unlink()
    snapshot = read_snapshot(layout, "t1", cache)
    assert snapshot.result is None and not snapshot.problems


def test_the_saved_copy_is_used_only_when_it_is_the_users_own(layout: Layout) -> None:
    finished_task(layout, "t1")
    board = read_board(layout)
    saved = cache_path(layout.root)
    assert saved.is_file() and saved.stat().st_mode & 0o777 == 0o600
    board_cache._CACHES.clear()
    assert read_board(layout).snapshots["t1"] == board.snapshots["t1"]
    assert not board_cache.cache_for(layout.root).changed  # loaded, nothing read anew
    saved.chmod(0o666)  # writable by others: never unpickled
    board_cache._CACHES.clear()
    assert board_cache.cache_for(layout.root).files == {}
    saved.write_bytes(b"garbage")
    saved.chmod(0o600)
    board_cache._CACHES.clear()
    assert read_board(layout).snapshots["t1"] == board.snapshots["t1"]  # rebuilt from the files


def test_nothing_is_written_to_the_volume(layout: Layout) -> None:
    finished_task(layout, "t1")
    before = sorted(str(p) for p in layout.root.rglob("*"))
    read_board(layout)
    assert sorted(str(p) for p in layout.root.rglob("*")) == before
