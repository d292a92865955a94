"""The dashboard's server against a real volume: its JSON API, the events it pushes when files
change, its token and host checks, what it says about bad input, and that it never writes.
Each test serves the dashboard with the real ``orchestrator dashboard`` command (uvicorn in its
own process); the browser tests are in test_dashboard_browser.py."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dashboard.window import PAGE_ROWS
from manager.cli import main
from orchestration_protocol import Layout, Task, request_cancel, write_task
from orchestration_protocol.gateway import EgressEntry, append_line, egress_file
from tests.dashboard.boards import counts, large_board, ordered_ids
from tests.dashboard_helpers import finished_task, free_port, served, tree

pytestmark = pytest.mark.usefixtures("cli_process")


class EventStream:
    """The server-sent events of ``url``, read in a thread: ``next()`` gives (event, data)."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.events: queue.Queue[tuple[str, dict]] = queue.Queue()
        self._client = httpx.Client(timeout=None, headers=headers)
        self._thread = threading.Thread(target=self._read, args=(url,), daemon=True)
        self._thread.start()

    def _read(self, url: str) -> None:
        event = "message"
        try:
            with self._client.stream("GET", url) as response:
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        self.events.put((event, json.loads(line[5:].strip())))
                        event = "message"
        except httpx.HTTPError:
            return

    def next(self, timeout: float = 10) -> tuple[str, dict]:
        return self.events.get(timeout=timeout)

    def until(self, condition, timeout: float = 10) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            _, data = self.next(max(0.01, deadline - time.monotonic()))
            if condition(data):
                return data

    def close(self) -> None:
        self._client.close()


@pytest.fixture
def stream() -> Iterator[list[EventStream]]:
    opened: list[EventStream] = []
    yield opened
    for one in opened:
        one.close()


def test_the_board_api_shows_every_task_with_its_state_attempts_and_cost(layout: Layout) -> None:
    finished_task(layout, "ok-1", files_changed=["a.py"], insertions=3, deletions=1, cost_usd=0.25)
    finished_task(layout, "broke-1", "failed", error="the agent exited 3")
    write_task(layout, Task(id="waiting", prompt="later", depends_on=["broke-1"]))
    with served(layout.root) as url:
        board = httpx.get(f"{url}/api/board").json()
    rows = {row["id"]: row for row in board["rows"]}
    assert rows["ok-1"]["state"] == "success" and rows["ok-1"]["files_changed"] == ["a.py"]
    assert rows["ok-1"]["cost_usd"] == 0.25 and rows["ok-1"]["attempts"][0]["outcome"] == "success"
    assert rows["broke-1"]["error"] == "the agent exited 3"
    assert rows["waiting"]["state"] == "blocked" and rows["waiting"]["attempts"] == []
    assert board["summary"]["counts"] == {"blocked": 1, "failed": 1, "success": 1}
    assert board["summary"]["total_cost_usd"] == 0.25 and board["summary"]["problems"] == []


def test_the_board_api_answers_a_view_a_page_at_a_time_in_the_pages_order(
    tmp_path: Path,
) -> None:
    """A board of hundreds of tasks: the first page holds the waiting tasks first, pages follow
    one another without a gap or a repeat, a state and a search narrow the view, and a bad
    parameter is one sentence."""
    layout = large_board(Layout(tmp_path / "root"), 450)
    with served(layout.root) as url:
        first = httpx.get(f"{url}/api/board").json()
        pages = [
            httpx.get(f"{url}/api/board", params={"offset": offset, "limit": 100}).json()
            for offset in range(0, 450, 100)
        ]
        failed = httpx.get(f"{url}/api/board", params={"state": "failed"}).json()
        found = httpx.get(f"{url}/api/board", params={"q": "TASK-00044"}).json()
        bad = [
            httpx.get(f"{url}/api/board", params=params)
            for params in ({"state": "sleeping"}, {"limit": "0"}, {"offset": "-3"}, {"limit": "many"})
        ]
    assert first["total"] == 450 and len(first["rows"]) == PAGE_ROWS
    assert first["summary"]["counts"] == counts(450) and first["summary"]["tasks"] == 450
    assert [row["id"] for page in pages for row in page["rows"]] == ordered_ids(450)
    assert len(first["timeline"]) == 40 and {row["state"] for row in first["timeline"]} != {"pending"}
    assert failed["total"] == counts(450)["failed"] and {r["state"] for r in failed["rows"]} == {"failed"}
    assert [row["id"] for row in found["rows"]] == [
        task for task in ordered_ids(450) if task.startswith("task-00044")
    ]
    assert len(found["rows"]) == 10 and found["rows"][5]["id"] == "task-000446"  # the one failed
    assert [response.status_code for response in bad] == [400, 400, 400, 400]
    errors = [response.json()["error"] for response in bad]
    assert errors[0].startswith("state must be one of invalid, pending") and "limit must" in errors[1]
    assert "offset must" in errors[2] and "limit must" in errors[3]


def test_a_task_in_full_with_its_patch_log_and_egress(layout: Layout) -> None:
    finished_task(layout, "t1", files_changed=["x.txt"], patch="results/t1/changes.patch")
    artifacts = layout.artifacts_dir("t1")
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "changes.patch").write_text("diff --git a/x.txt b/x.txt\n+hello\n")
    layout.log_file("t1").write_text("first line\nsecond line\n")
    append_line(
        egress_file(layout, "t1"),
        EgressEntry(
            at="2026-11-30T10:00:00Z", task_id="t1", attempt=1, method="CONNECT",
            host="pypi.org", port=443, allowed=False, reason="not in the allowlist",
        ),
    )
    with served(layout.root) as url:
        details = httpx.get(f"{url}/api/tasks/t1").json()
        patch = httpx.get(f"{url}/api/tasks/t1/patch").json()
        log = httpx.get(f"{url}/api/tasks/t1/log").json()
        more = httpx.get(f"{url}/api/tasks/t1/log", params={"offset": 11}).json()
        egress = httpx.get(f"{url}/api/egress").json()
    assert details["task"]["prompt"] == "prompt of t1" and details["result"]["status"] == "success"
    assert details["patch_bytes"] > 0 and details["egress"][0]["host"] == "pypi.org"
    assert patch["patch"].startswith("diff --git a/x.txt")
    assert log["text"] == "first line\nsecond line\n" and log["offset"] == 23
    assert more["text"] == "second line\n"
    assert egress["total"] == 1 and egress["refused"] == 1


def test_bad_input_is_a_sentence_never_a_traceback(layout: Layout) -> None:
    finished_task(layout, "fine")
    (layout.tasks_dir / "broken.json").write_text('{"id": "broken", "prompt": 42}')
    (layout.tasks_dir / "not a task.json").write_text("{}")
    with served(layout.root) as url:
        board = httpx.get(f"{url}/api/board").json()
        unknown = httpx.get(f"{url}/api/tasks/no-such-task")
        invalid = httpx.get(f"{url}/api/tasks/-bad")
        no_patch = httpx.get(f"{url}/api/tasks/fine/patch").json()
        no_route = httpx.get(f"{url}/api/nothing")
    errors = " ".join(problem["error"] for problem in board["summary"]["problems"])
    assert "broken.json" in errors and "prompt" in errors and "not a task.json" in errors
    assert {row["id"]: row["state"] for row in board["rows"]}["broken"] == "invalid"
    assert unknown.status_code == 404 and "No task 'no-such-task'" in unknown.json()["error"]
    assert invalid.status_code == 400 and "is not valid" in invalid.json()["error"]
    assert no_patch["patch"] is None and "changed nothing" in no_patch["note"]
    assert no_route.status_code == 404 and "error" in no_route.json()
    for response in (unknown, invalid, no_route):
        assert "Traceback" not in response.text


def test_a_missing_root_is_named_on_the_page_and_the_board_appears_once_it_exists(
    tmp_path: Path, stream: list[EventStream]
) -> None:
    root = tmp_path / "later"
    with served(root) as url:
        events = EventStream(f"{url}/api/events")
        stream.append(events)
        event, first = events.next()
        assert event == "board" and "No orchestration root at" in first["summary"]["root_problem"]
        assert not root.exists()  # the dashboard made nothing
        layout = Layout(root).ensure()
        finished_task(layout, "arrived")
        data = events.until(lambda d: any(r["id"] == "arrived" for r in d.get("rows", [])))
        assert data["summary"]["root_problem"] is None


def test_a_root_of_hand_dropped_task_files_shows_the_tasks_the_cli_lists(
    tmp_path: Path, stream: list[EventStream], capsys
) -> None:
    """The manual flow: a root that holds only tasks/ with files dropped in by hand. The CLI
    listed them while the dashboard said "not an orchestration root yet" and showed 0 tasks."""
    root = tmp_path / "manual"
    (root / "tasks").mkdir(parents=True)
    (root / "tasks" / "by-hand.json").write_text('{"id": "by-hand", "prompt": "dropped"}')
    assert main(["status", "--root", str(root), "--json"]) == 0
    listed = [row["id"] for row in json.loads(capsys.readouterr().out)["tasks"]]
    before = tree(root)
    with served(root) as url:
        board = httpx.get(f"{url}/api/board").json()
        events = EventStream(f"{url}/api/events")
        stream.append(events)
        events.next()
        (root / "tasks" / "later.json").write_text('{"id": "later", "prompt": "dropped later"}')
        events.until(lambda d: any(r["id"] == "later" for r in d.get("rows", [])))
    assert listed == ["by-hand"]
    assert board["summary"]["root_problem"] is None and board["summary"]["tasks"] == 1
    assert [row["id"] for row in board["rows"]] == listed
    assert set(tree(root)) == set(before) | {"tasks/later.json"}  # the dashboard made nothing


def test_new_tasks_and_state_changes_are_pushed_without_asking(
    layout: Layout, stream: list[EventStream]
) -> None:
    finished_task(layout, "old")
    with served(layout.root) as url:
        events = EventStream(f"{url}/api/events")
        stream.append(events)
        event, board = events.next()
        assert event == "board" and [row["id"] for row in board["rows"]] == ["old"]
        write_task(layout, Task(id="new", prompt="appears"))
        data = events.until(lambda d: any(r["id"] == "new" for r in d.get("rows", [])))
        assert data["summary"]["counts"]["pending"] == 1
        request_cancel(layout, "new", "not needed")
        events.until(
            lambda d: any(r["id"] == "new" and r["state"] == "cancelled" for r in d.get("rows", []))
        )


def test_the_log_stream_follows_what_a_worker_appends(
    layout: Layout, stream: list[EventStream]
) -> None:
    write_task(layout, Task(id="busy", prompt="talks"))
    log = layout.log_file("busy")
    log.write_text("one\n")
    with served(layout.root) as url:
        events = EventStream(f"{url}/api/tasks/busy/log/events")
        stream.append(events)
        event, first = events.next()
        assert event == "log" and first["text"] == "one\n"
        with log.open("a") as handle:
            handle.write("two, ")
            handle.flush()
            handle.write("three é\n")
        text = ""
        while "three é\n" not in text:
            event, data = events.next()
            assert event == "append"
            text += data["text"]
        assert text == "two, three é\n"


def test_it_never_writes_to_the_volume(layout: Layout, stream: list[EventStream]) -> None:
    finished_task(layout, "t1")
    layout.log_file("t1").write_text("log\n")
    before = tree(layout.root)
    with served(layout.root) as url:
        events = EventStream(f"{url}/api/events")
        stream.append(events)
        events.next()
        for path in ("/", "/api/board", "/api/tasks/t1", "/api/tasks/t1/log", "/api/egress",
                     "/api/tasks/t1/patch", "/api/tasks/zzz"):
            httpx.get(url + path)
        for method in ("POST", "PUT", "DELETE"):
            assert httpx.request(method, f"{url}/api/tasks/t1").status_code == 405
    assert tree(layout.root) == before


def test_loopback_refuses_foreign_host_names(layout: Layout) -> None:
    with served(layout.root) as url:
        assert httpx.get(f"{url}/api/board", headers={"Host": "localhost:1"}).status_code == 200
        rebound = httpx.get(f"{url}/api/board", headers={"Host": "attacker.example:8450"})
    assert rebound.status_code == 403 and "not this dashboard's" in rebound.text


def test_a_token_is_needed_everywhere_but_healthz(layout: Layout, tmp_path: Path) -> None:
    token = "a-token-of-twenty-four-ch"
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    with served(layout.root, "--token-file", str(token_file)) as url:
        assert httpx.get(f"{url}/healthz").text == "ok"
        refused = httpx.get(f"{url}/api/board")
        page = httpx.get(f"{url}/")
        assert refused.status_code == 401 and "needs its token" in refused.json()["error"]
        assert page.status_code == 401
        assert httpx.get(f"{url}/api/board", params={"token": "wrong-token-xxxxxxxx"}).status_code == 401
        bearer = httpx.get(f"{url}/api/board", headers={"Authorization": f"Bearer {token}"})
        assert bearer.status_code == 200
        with httpx.Client(base_url=url) as browser:
            redirect = browser.get("/", params={"token": token})
            assert redirect.status_code == 303 and redirect.headers["location"] == "/"
            assert "httponly" in redirect.headers["set-cookie"].lower()
            assert browser.get("/").status_code == 200  # the cookie carries it from now on
            assert browser.get("/api/board").status_code == 200


def test_beyond_loopback_a_token_is_made_and_printed(layout: Layout) -> None:
    import subprocess

    from tests.dashboard_helpers import VENV_BIN

    port = free_port()
    process = subprocess.Popen(
        [str(VENV_BIN / "orchestrator"), "--root", str(layout.root), "dashboard",
         "--host", "0.0.0.0", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "?token=" in line, line
        token = line.strip().split("?token=")[1]
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/board")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert response.status_code == 401
        authorized = httpx.get(
            f"http://127.0.0.1:{port}/api/board", headers={"Authorization": f"Bearer {token}"}
        )
        assert authorized.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def test_the_page_is_served_with_a_strict_content_security_policy(layout: Layout) -> None:
    with served(layout.root) as url:
        page = httpx.get(f"{url}/")
        script = httpx.get(f"{url}/static/app.js")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert script.status_code == 200 and "textContent" in script.text
    assert "innerHTML" not in script.text  # agents' text is never parsed as HTML


def test_settings_it_cannot_start_with_are_one_sentence(
    layout: Layout, tmp_path: Path, capsys
) -> None:
    short = tmp_path / "short"
    short.write_text("abc")
    code = main(["--root", str(layout.root), "dashboard", "--token-file", str(short)])
    err = capsys.readouterr().err
    assert code == 2 and "shorter than 16 characters" in err and "Traceback" not in err
    with socket_bound() as port:
        code = main(["--root", str(layout.root), "dashboard", "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 2 and f"Cannot listen on 127.0.0.1:{port}" in err


class socket_bound:
    """A port taken by this process for the duration."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        return int(self.sock.getsockname()[1])

    def __exit__(self, *_: object) -> None:
        self.sock.close()


def test_healthcheck_judges_the_dispatchers_last_pass(
    layout: Layout, tmp_path: Path, capsys
) -> None:
    alive = tmp_path / "alive"
    base = ["--root", str(layout.root), "healthcheck", "--alive-file", str(alive), "--no-gateway"]
    assert main(base) == 3
    assert "has not passed through its loop yet" in capsys.readouterr().err
    alive.touch()
    assert main(base) == 0
    assert "dispatcher passed" in capsys.readouterr().out
    old = time.time() - 120
    import os

    os.utime(alive, (old, old))
    assert main(base) == 3
    assert "last pass was 120s ago" in capsys.readouterr().err
    assert main(["--root", str(layout.root), "healthcheck", "--gateway"]) == 3
    assert "The gateway does not answer" in capsys.readouterr().err


def test_an_external_gateway_is_checked_never_started(
    layout: Layout, monkeypatch, capsys
) -> None:
    write_task(layout, Task(id="t1", prompt="echo hi", agent="command"))
    monkeypatch.setenv("ORCHESTRATOR_GATEWAY", "external")
    monkeypatch.setattr("manager.backends.services.READY_TIMEOUT_S", 0.5)
    code = main(["--root", str(layout.root), "spawn", "default", "t1"])
    err = capsys.readouterr().err
    assert code == 3 and "ORCHESTRATOR_GATEWAY=external" in err and "docker-compose up" in err
    assert not (layout.root / ".workers" / "gateway.json").exists()  # no gateway was started
    monkeypatch.setenv("ORCHESTRATOR_GATEWAY", "elsewhere")
    assert main(["--root", str(layout.root), "spawn", "default", "t1"]) == 2
    assert "is not managed or external" in capsys.readouterr().err
