"""The runtime's bounds without a container: lines read in bounded pieces, the result's output
cut with a marker, the log's allowance, and symlinks resolved against the real tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestration_protocol import Layout, Result, Task, read_model, write_task
from tests.gitrepo import make_remote
from worker.cli import RET_OK, main
from worker.process import LineReader
from worker.runtime import TaskLog, cut


def test_a_line_longer_than_the_limit_is_cut_and_the_next_one_is_whole() -> None:
    lines: list[str] = []
    reader = LineReader(lines.append, max_bytes=10)
    for chunk in (b"abc", b"defghijklmnop", b"qrs\nnext", b" line\n", b"tail"):
        reader.feed(chunk)
    reader.finish()
    assert lines == ["abcdefghij [line cut: 19 bytes, over 10]", "next line", "tail"]


def test_output_is_cut_from_the_front_with_a_marker() -> None:
    assert cut("short", 100) == "short"
    kept = cut("x" * 50 + "END", 10)
    assert kept.startswith("[output cut: 53 bytes, the last 10 kept]\n") and kept.endswith("END")
    assert cut("é" * 10, 5).encode().count("é".encode()) == 2  # never half a character


def test_the_log_stops_taking_the_agents_lines_at_its_allowance(tmp_path: Path) -> None:
    log = TaskLog(tmp_path / "t.log", ["secret-token"], max_agent_bytes=100)
    log.write_agent(["secret-token here"] + ["y" * 30] * 10)
    log.write("== the runtime's own line")
    log.close()
    text = (tmp_path / "t.log").read_text()
    assert "*** here" in text and "secret-token" not in text
    assert text.count("y" * 30) == 2 and "is not logged" in text
    assert text.endswith("== the runtime's own line\n")


@pytest.mark.parametrize(
    ("links", "refused"),
    [
        ("ln -s . s; ln -s " + "s/" * 8 + "../" * 8 + "etc/passwd leak", "symlink leak"),
        ("ln -s . s; ln -s s/.git/config cfg", "symlink cfg"),
        ("mkdir d; ln -s .. d/up; ln -s d/up/d/up/../x esc", "symlink esc"),
        ("ln -s a b; ln -s b a", "symlink a"),
        ("ln -s ../repo/x.txt sneaky", "symlink sneaky"),
        ("ln -s nowhere/file dangling; mkdir d; ln -s ../x.txt d/up", None),
        ("ln -s . s; ln -s s/s/README.md readme", None),
    ],
    ids=["link-to-self-climbs-out", "into-own-git", "chain-of-parents", "loop", "out-and-back-in", "dangling-and-up", "inside"],
)
def test_links_are_resolved_against_the_real_tree(
    layout: Layout, tmp_path: Path, links: str, refused: str | None
) -> None:
    remote = make_remote(tmp_path)
    from manager.git.mirror import ensure_mirror

    ensure_mirror(layout, str(remote), credentials={})
    write_task(layout, Task(id="t1", prompt=f"echo x > x.txt; {links}", agent="command", repo=str(remote)))
    assert main(["--task", "t1", "--root", str(layout.root)]) == RET_OK
    result = read_model(layout.result_file("t1"), Result)
    if refused is None:
        assert result.status == "success", result.error
    else:
        assert result.status == "failed" and refused in (result.error or ""), result.error
        assert not os.path.exists(layout.artifacts_dir("t1") / "changes.bundle")


def test_a_result_lists_at_most_a_thousand_changed_files(layout: Layout, tmp_path: Path) -> None:
    """Many files changed made a result over the readers' 1 MiB limit (shown as ``lost``)."""
    from manager.git.mirror import ensure_mirror

    remote = make_remote(tmp_path)
    ensure_mirror(layout, str(remote), credentials={})
    prompt = "for i in $(seq 1 1100); do echo $i > file-$i-$(printf '%0200d' 0).txt; done"
    write_task(layout, Task(id="many", prompt=prompt, agent="command", repo=str(remote)))
    assert main(["--task", "many", "--root", str(layout.root)]) == RET_OK
    result = read_model(layout.result_file("many"), Result)
    assert result.status == "success" and len(result.files_changed) == 1000
    assert "1100 files changed" in layout.log_file("many").read_text()
