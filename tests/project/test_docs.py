"""The documentation says what is true: every relative link in README.md and docs/*.md reaches
a file (and heading) that exists, README.md stays a front door (under 16 KB), and the shell
snippets marked ``<!-- test: offline -->`` (or ``<!-- test: docker -->``) run and exit 0.

How snippets are marked and the environment they run in: docs/README.md, "Snippets that are
tested". Each snippet runs as ``bash -euo pipefail`` in the checkout, with a new empty HOME,
the project's .venv first on PATH and none of the caller's settings or credentials."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
README_LIMIT = 16 * 1024
VENV_BIN = Path(sys.executable).parent
SNIPPET_TIMEOUT_S = 300
KINDS = ("offline", "docker")
MARK = re.compile(r"^<!-- test: (?P<kind>[\w-]+) -->$")
FENCE = re.compile(r"^(```+|~~~+)")
LINK = re.compile(r"(?<!!)\[(?:[^\]\\]|\\.)*\]\((?P<target>[^)\s]+)\)")
INLINE_CODE = re.compile(r"`[^`]*`")
HEADING = re.compile(r"^(#{1,6})\s+(?P<title>.+?)\s*#*\s*$")
PASSED_THROUGH = (
    "LANG",
    "CI",
    "DOCKER_HOST",
    "ORCHESTRATOR_WORKER_IMAGE",
    "ORCHESTRATOR_MANAGER_IMAGE",
)


@dataclass(frozen=True)
class Snippet:
    """One marked code block of a page."""

    page: Path
    line: int
    """The line of its opening fence (1-based)."""
    kind: str
    info: str
    """The fence's info string (``bash``)."""
    code: str

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def prose_lines(text: str) -> list[tuple[int, str]]:
    """The page's lines outside fenced code blocks, numbered from 1."""
    lines: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        opened = FENCE.match(line.strip())
        if fence is None and opened:
            fence = opened.group(1)
        elif fence is not None and line.strip().startswith(fence):
            fence = None
        elif fence is None:
            lines.append((number, line))
    return lines


def slug(title: str) -> str:
    """The anchor GitHub gives a heading: links and code reduced to their text, lower case,
    punctuation dropped, spaces made hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a page, duplicates numbered as GitHub does (``x``, ``x-1``)."""
    seen: Counter[str] = Counter()
    found: set[str] = set()
    for _, line in prose_lines(page.read_text()):
        heading = HEADING.match(line)
        if heading is None:
            continue
        base = slug(heading.group("title"))
        found.add(base if seen[base] == 0 else f"{base}-{seen[base]}")
        seen[base] += 1
    return found


def links(page: Path) -> list[tuple[int, str]]:
    """The relative link targets of a page (outside code), with their line numbers."""
    found: list[tuple[int, str]] = []
    for number, line in prose_lines(page.read_text()):
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            target = match.group("target")
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):
                found.append((number, target))
    return found


def broken_link(page: Path, target: str) -> str | None:
    """Why a relative link of ``page`` is broken, or None when it reaches what it names."""
    path, _, anchor = target.partition("#")
    destination = (page.parent / path).resolve() if path else page
    if not destination.exists():
        return f"{path} does not exist"
    if anchor and destination.suffix == ".md" and anchor not in anchors(destination):
        return f"{destination.name} has no heading #{anchor}"
    return None


def snippets(page: Path) -> list[Snippet]:
    """The page's code blocks marked ``<!-- test: KIND -->`` on the line before the fence."""
    lines = page.read_text().splitlines()
    found: list[Snippet] = []
    for index, line in enumerate(lines):
        mark = MARK.match(line.strip())
        if mark is None:
            continue
        fence = FENCE.match(lines[index + 1]) if index + 1 < len(lines) else None
        assert fence, f"{page.name}:{index + 1}: a test mark must be followed by a code fence"
        end = next(i for i in range(index + 2, len(lines)) if lines[i].startswith(fence.group(1)))
        info = lines[index + 1][len(fence.group(1)) :].strip()
        code = "\n".join(lines[index + 2 : end]) + "\n"
        found.append(Snippet(page, index + 2, mark.group("kind"), info, code))
    return found


ALL_SNIPPETS = [snippet for page in PAGES for snippet in snippets(page)]


def test_readme_is_a_front_door() -> None:
    size = len(README.read_bytes())
    assert size < README_LIMIT, f"README.md is {size} bytes; move a section into docs/"


def test_every_page_is_in_the_index() -> None:
    index = (REPO / "docs" / "README.md").read_text()
    for page in PAGES[1:]:
        if page.name != "README.md":
            assert f"]({page.name})" in index, f"docs/README.md does not list {page.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_relative_links_reach_a_file_and_heading(page: Path) -> None:
    problems = [
        f"{page.relative_to(REPO)}:{number}: {target}: {why}"
        for number, target in links(page)
        if (why := broken_link(page, target)) is not None
    ]
    assert not problems, "\n".join(problems)


def test_the_link_checker_sees_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# A title: with `code`\n\n## A title: with `code`\n\n[x](other.md)\n")
    assert anchors(page) == {"a-title-with-code", "a-title-with-code-1"}
    assert links(page) == [(5, "other.md")]
    assert broken_link(page, "other.md") == "other.md does not exist"
    assert broken_link(page, "#a-title-with-code-1") is None
    assert broken_link(page, "#nowhere") is not None


def test_the_snippet_reader_takes_only_marked_blocks(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\nnot run\n```\n\n<!-- test: offline -->\n```bash\necho one\necho two\n```\n"
    )
    (snippet,) = snippets(page)
    assert (snippet.line, snippet.kind, snippet.info) == (6, "offline", "bash")
    assert snippet.code == "echo one\necho two\n"


def test_snippets_are_marked_right() -> None:
    assert any(snippet.kind == "offline" for snippet in ALL_SNIPPETS)
    for snippet in ALL_SNIPPETS:
        assert snippet.kind in KINDS, f"{snippet.name}: unknown test mark {snippet.kind!r}"
        assert snippet.info.split()[:1] == ["bash"], f"{snippet.name}: only bash blocks run"


def snippet_environment(home: Path) -> dict[str, str]:
    """What a snippet runs with: a HOME of its own, the venv first on PATH, nothing else of the
    caller's but the locale, CI, the Docker engine's address and the image names."""
    environment = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    path = os.pathsep.join(
        [
            str(VENV_BIN),
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ]
    )
    environment.update(HOME=str(home), PATH=path, TMPDIR=str(home / "tmp"))
    environment.setdefault("LANG", "C.UTF-8")
    return environment


def require_docker_and_images() -> None:
    """Skip (fail under CI=true) unless an engine answers and the worker image is built."""
    docker = shutil.which("docker")
    require(docker is not None, "the docker command is not installed")
    assert docker is not None
    engine = subprocess.run([docker, "info"], capture_output=True, text=True)
    require(engine.returncode == 0, "no Docker engine answers (docker info failed)")
    image = os.environ.get("ORCHESTRATOR_WORKER_IMAGE") or "claude-worker"
    built = subprocess.run([docker, "image", "inspect", image], capture_output=True, text=True)
    require(built.returncode == 0, f"the {image} image is missing; run scripts/build-images.sh")


def stop_what_was_left(home: Path, environment: dict[str, str]) -> None:
    """Stop the workers and services a failed docker snippet left for the roots under HOME."""
    for tasks in home.glob("**/tasks"):
        root = tasks.parent
        if (root / "claims").is_dir() or (root / "status").is_dir():
            subprocess.run(
                [
                    str(VENV_BIN / "orchestrator"),
                    "--root",
                    str(root),
                    "cleanup",
                    "--all",
                    "--gateway",
                    "--simulation",
                ],
                env=environment,
                cwd=REPO,
                capture_output=True,
                timeout=120,
            )


def checkout_state() -> str:
    """The checkout's ``git status``: a snippet must leave it as it was."""
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.mark.parametrize("snippet", ALL_SNIPPETS, ids=lambda snippet: snippet.name)
def test_snippet_runs(snippet: Snippet, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if snippet.kind == "docker":
        request.applymarker(pytest.mark.docker)
        require_docker_and_images()
    home = tmp_path / "home"
    (home / "tmp").mkdir(parents=True)
    environment = snippet_environment(home)
    before = checkout_state()
    try:
        ran = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", snippet.code],
            cwd=REPO,
            env=environment,
            capture_output=True,
            text=True,
            timeout=SNIPPET_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    finally:
        if snippet.kind == "docker":
            stop_what_was_left(home, environment)
    assert ran.returncode == 0, (
        f"{snippet.name} exited {ran.returncode}\n--- stdout\n{ran.stdout[-4000:]}"
        f"\n--- stderr\n{ran.stderr[-4000:]}"
    )
    assert checkout_state() == before, f"{snippet.name} wrote into the checkout"
