"""The protocol's models and its reader: seed compatibility, and every kind of bad input."""

from __future__ import annotations

import contextlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestration_protocol import (
    MAX_FILE_BYTES,
    FileTooLarge,
    IdMismatch,
    InvalidTaskId,
    Layout,
    ProtocolError,
    Result,
    SchemaViolation,
    Task,
    UnparsableFile,
    UnsafeFile,
    UnsupportedSchemaVersion,
    json_schemas,
    read_board,
    read_model,
    utc_now,
    validate_task_id,
)
from orchestration_protocol.files import parse_model


def write_raw(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_seed_minimal_task_is_valid(layout: Layout) -> None:
    path = write_raw(layout.task_file("task-001"), '{"id": "task-001", "prompt": "Add dark mode"}')
    task = read_model(path, Task, "task-001")
    assert task.prompt == "Add dark mode"
    assert task.max_attempts == 1 and task.depends_on == [] and task.schema_version == 1


def test_seed_result_fields_are_present() -> None:
    result = Result(task_id="task-001", status="success", output="done", completed_at=utc_now())
    document = json.loads(result.to_json_bytes())
    assert {"task_id", "status", "output", "completed_at"} <= set(document)


@pytest.mark.parametrize(
    ("content", "error", "fragment"),
    [
        ("{not json", UnparsableFile, "not valid JSON"),
        (b"\xff\xfe\x00", UnparsableFile, "not valid JSON"),
        ("[1, 2]", SchemaViolation, "JSON object"),
        ('{"id": "t1", "prompt": 5}', SchemaViolation, "field 'prompt'"),
        ('{"id": "t1", "prompt": "x", "max_attempts": "many"}', SchemaViolation, "max_attempts"),
        (
            '{"id": "t1", "prompt": "x", "colour": "red"}',
            SchemaViolation,
            "'colour': unknown field",
        ),
        ('{"id": "t1"}', SchemaViolation, "field 'prompt'"),
        (
            '{"id": "t1", "prompt": "x", "schema_version": 7}',
            UnsupportedSchemaVersion,
            "schema_version 7",
        ),
        ('{"id": "other", "prompt": "x"}', IdMismatch, "'other'"),
        ('{"id": "../etc/passwd", "prompt": "x"}', SchemaViolation, "field 'id'"),
        ('{"id": "t1", "prompt": "x", "env": {"GITHUB_TOKEN": "s"}}', SchemaViolation, "secret"),
        ('{"id": "t1", "prompt": "x", "depends_on": ["t1"]}', SchemaViolation, "depends on itself"),
    ],
)
def test_bad_task_files_raise_a_typed_error_naming_the_file(
    layout: Layout, content: str | bytes, error: type[ProtocolError], fragment: str
) -> None:
    path = write_raw(layout.task_file("t1"), content)
    with pytest.raises(error) as caught:
        read_model(path, Task, "t1")
    assert str(path) in str(caught.value)
    assert fragment in str(caught.value)
    assert caught.value.path == path


def test_symlinked_task_file_is_refused_not_followed(layout: Layout, tmp_path: Path) -> None:
    secret = write_raw(tmp_path / "secret.json", '{"id": "t1", "prompt": "stolen"}')
    link = layout.task_file("t1")
    os.symlink(secret, link)
    with pytest.raises(UnsafeFile, match="symlink"):
        read_model(link, Task, "t1")


def test_oversize_file_is_refused(layout: Layout) -> None:
    prompt = "x" * (MAX_FILE_BYTES + 10)
    path = write_raw(layout.task_file("t1"), json.dumps({"id": "t1", "prompt": prompt}))
    with pytest.raises(FileTooLarge, match="limit"):
        read_model(path, Task, "t1")


def test_fifo_is_refused_without_blocking(layout: Layout) -> None:
    path = layout.task_file("t1")
    os.mkfifo(path)
    with pytest.raises(UnsafeFile, match="not a regular file"):
        read_model(path, Task, "t1")


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "-x", "x" * 65, "é", "a b"])
def test_invalid_ids_are_refused(bad: str) -> None:
    with pytest.raises(InvalidTaskId):
        validate_task_id(bad)
    with pytest.raises(InvalidTaskId):
        Layout(Path("/orchestration")).task_file(bad)


def test_board_reports_bad_files_and_keeps_the_good_ones(layout: Layout) -> None:
    write_raw(layout.task_file("good"), '{"id": "good", "prompt": "x"}')
    write_raw(layout.task_file("broken"), "{oops")
    write_raw(layout.tasks_dir / "no spaces allowed.json", "{}")
    write_raw(layout.tasks_dir / ".good.json.123.tmp", "{")  # a writer's temp file: ignored
    write_raw(layout.status_file("good"), '{"garbage": true}')
    board = read_board(layout)
    states = board.states(now=utc_now())
    assert states == {"good": "pending", "broken": "invalid"}
    assert "not valid JSON" in str(board.snapshots["broken"].problems[0])
    assert "status/good.json" in str(board.snapshots["good"].problems[0])
    assert len(board.stray_files) == 1
    assert "no spaces allowed.json" in str(board.stray_files[0])


def test_json_schemas_cover_every_file() -> None:
    schemas = json_schemas()
    assert set(schemas) == {"task", "claim", "status", "result", "cancel", "plan", "round"}
    assert schemas["task"]["required"] == ["id", "prompt"]
    assert "description" in schemas["task"]["properties"]["max_attempts"]


ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
times = st.datetimes(timezones=st.just(UTC), min_value=datetime(2000, 1, 1))
texts = st.text(max_size=200)


@settings(max_examples=200, deadline=None)
@given(
    task_id=ids,
    prompt=texts.filter(bool),
    deps=st.lists(ids, max_size=3, unique=True),
    attempts=st.integers(1, 100),
    timeout=st.none() | st.floats(0.001, 1e6),
    env=st.dictionaries(st.from_regex(r"[A-Z][A-Z_]{0,8}", fullmatch=True), texts, max_size=3),
)
def test_task_round_trips(task_id, prompt, deps, attempts, timeout, env) -> None:
    env = {
        k: v
        for k, v in env.items()
        if not any(w in k for w in ("TOKEN", "KEY", "SECRET", "PASS", "PRIVATE", "CREDENTIAL"))
    }
    deps = [d for d in deps if d != task_id]
    task = Task(
        id=task_id,
        prompt=prompt,
        depends_on=deps,
        max_attempts=attempts,
        timeout_s=timeout,
        env=env,
    )
    assert parse_model(task.to_json_bytes(), Task, Path("t.json")) == task


@settings(max_examples=200, deadline=None)
@given(
    task_id=ids,
    status=st.sampled_from(["success", "failed", "cancelled", "timeout"]),
    output=texts,
    completed=times,
    files=st.lists(texts, max_size=4),
    cost=st.none() | st.floats(0, 1e4),
    usage=st.none() | st.dictionaries(texts, st.integers(0, 10**9) | texts, max_size=4),
)
def test_result_round_trips(task_id, status, output, completed, files, cost, usage) -> None:
    result = Result(
        task_id=task_id,
        status=status,
        output=output,
        completed_at=completed,
        files_changed=files,
        cost_usd=cost,
        usage=usage,
    )
    assert parse_model(result.to_json_bytes(), Result, Path("r.json")) == result


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_reader_fed_arbitrary_bytes_raises_only_protocol_errors(data: bytes) -> None:
    for model in (Task, Result):
        with contextlib.suppress(ProtocolError):
            parse_model(data, model, Path("x.json"))


@settings(max_examples=300, deadline=None)
@given(
    document=st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=10), children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_reader_fed_arbitrary_json_raises_only_protocol_errors(document: object) -> None:
    data = json.dumps(document).encode()
    for model in (Task, Result):
        with contextlib.suppress(ProtocolError):
            parse_model(data, model, Path("x.json"))
