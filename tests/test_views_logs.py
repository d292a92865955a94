"""orchestration_views.logs: the one log tailer of ``orchestrator logs`` and the dashboard, on
real files: it reads from the end, in bounded pieces, and never splits a UTF-8 character."""

from __future__ import annotations

from pathlib import Path

from orchestration_views.logs import LogTail, complete_prefix, lines_offset


def test_a_piece_that_ends_inside_a_character_stops_before_it(tmp_path: Path) -> None:
    log = tmp_path / "task.log"
    log.write_bytes("añb€c".encode())  # ñ is 2 bytes, € is 3
    reader = LogTail(log)
    pieces = []
    while piece := reader.read_new(limit=2):
        pieces.append(piece)
    assert "".join(pieces) == "añb€c" and "\ufffd" not in "".join(pieces)
    assert reader.offset == log.stat().st_size


def test_an_offset_handed_back_resumes_on_a_boundary(tmp_path: Path) -> None:
    log = tmp_path / "task.log"
    log.write_bytes("€€".encode())
    first = LogTail(log)
    assert first.read_new(limit=4) == "€" and first.offset == 3
    assert LogTail(log, offset=first.offset).read_rest() == "€"
    assert complete_prefix("a€".encode()[:3]) == 1


def test_the_tail_starts_near_the_end_on_a_character(tmp_path: Path) -> None:
    log = tmp_path / "task.log"
    log.write_bytes(("x" * 10 + "€" * 10).encode())
    reader = LogTail(log)
    assert reader.start_at_tail(tail_bytes=8)  # 8 bytes back lands inside a €
    assert reader.read_rest() == "€€"


def test_the_last_lines_are_read_from_the_end_within_the_bound(tmp_path: Path) -> None:
    log = tmp_path / "task.log"
    log.write_text("".join(f"line {n}\n" for n in range(1000)))
    reader = LogTail(log)
    assert reader.start_at_lines(2)
    assert reader.read_rest() == "line 998\nline 999\n"
    assert lines_offset(log, 5000) == 0  # fewer lines than asked: all of it
    bounded = LogTail(log)
    bounded.start_at_lines(1000, max_bytes=20)
    assert bounded.read_rest() == log.read_text()[-20:]


def test_a_log_that_is_a_link_reads_as_empty(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("not for the viewer")
    log = tmp_path / "task.log"
    log.symlink_to(secret)
    assert LogTail(log).read_rest() == ""
    assert LogTail(tmp_path / "missing.log").read_rest() == ""
