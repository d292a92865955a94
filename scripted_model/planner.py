"""A deterministic planner for simulation: any request and a repository's file list become a plan
of 2-4 tasks in the shape of ``orchestration_protocol.plans.Plan`` (the scripted model is a test
double and imports nothing of the project, so the shape is written out here as plain data).

How: the request is split into parts at ``and``, ``then``, ``;`` and commas; ``X with a/b/c``
becomes X plus one part per feature. A part about tests or docs becomes a tests or docs task;
every other part a code task that owns the existing file its words name (``login form`` ->
``app/login-form.js``) or a new file beside the repository's other sources. Tests wait for the
code they test, features for the core they extend. Same request, same files: same plan.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

MAX_TASKS = 4
STOPWORDS = frozenset(
    {
     "a", "an", "the", "to", "for", "of", "in", "on", "at", "with", "and", "or", "it", "its",
     "them", "their", "this", "that", "these", "those", "into", "from", "by", "be", "is", "are",
     "as", "add", "adds", "adding", "write", "writes", "make", "makes", "build", "builds", "create",
     "creates", "implement", "implements", "support", "supports", "new", "some", "all", "each",
     "every", "please", "app", "application", "then", "also", "so", "our", "my", "your", "use",
     "using", "via",
    }
)
TESTS = re.compile(r"\b(tests?|specs?|unit[- ]tests?|test suite)\b", re.I)
DOCS = re.compile(r"\b(docs?|documentation|document|readme|guide)\b", re.I)
CODE_EXTENSIONS = (".py", ".js", ".ts", ".tsx", ".jsx", ".go", ".rs", ".rb", ".java", ".dart",
                   ".css", ".html", ".sh", ".c", ".cpp", ".kt", ".swift", ".php")
VERBS = frozenset(
    {
     "add", "build", "create", "implement", "fix", "update", "remove", "refactor", "document",
     "make", "support", "improve", "rename", "move", "delete", "test", "migrate", "introduce",
     "extract", "replace", "change", "set", "use", "write", "show", "allow", "let", "validate",
     "store", "persist", "load", "save", "sort", "filter", "style", "handle", "log", "cache",
    }
)
LEADING_JOINERS = re.compile(r"^(?:then|and|also|finally|plus)\s+", re.I)
OWNED_LINE = "Files you own (create or change only these): "
"""How a planned prompt names its files; the scripted workers read this line."""


@dataclass
class _Part:
    text: str
    kind: str  # code, tests, docs
    feature_of: int | None = None
    words: list[str] = field(default_factory=list)


def words_of(text: str) -> list[str]:
    """The significant words of ``text``, lower case, in order, without repeats."""
    found = re.findall(r"[a-z0-9]+", text.lower())
    return list(dict.fromkeys(w for w in found if w not in STOPWORDS and len(w) > 1))


def slug(words: list[str], limit: int = 3) -> str:
    return "-".join(words[:limit])[:40].strip("-") or "change"


def _split(request: str) -> list[_Part]:
    text = " ".join(request.split()).rstrip(".!")
    splitter = r"\s*(?:;|\.\s+|,?\s+and then\s+|,?\s+then\s+|,\s*and\s+|\s+and\s+|,\s+)\s*"
    pieces = [LEADING_JOINERS.sub("", p) for p in re.split(splitter, text) if p]
    verb = pieces[0].split()[0].lower() if pieces and pieces[0].split() else ""
    parts: list[_Part] = []
    for piece in filter(None, pieces):
        first = piece.split()[0].lower()
        if first not in VERBS and verb in VERBS and not TESTS.search(piece):
            piece = f"{verb} {piece}"
        head, sep, tail = piece.partition(" with ")
        kind = "tests" if TESTS.search(piece) else "docs" if DOCS.search(piece) else "code"
        features = [f.strip() for f in re.split(r"[/,]| or ", tail) if f.strip()] if sep else []
        if kind == "code" and len(features) > 1:
            parts.append(_Part(head, "code", words=words_of(head)))
            core = len(parts) - 1
            stem = parts[core].words[:1]
            for feature in features:
                words = [*stem, *re.findall(r"[a-z0-9]+", feature.lower())]
                parts.append(_Part(f"{head}: the {feature} feature", "code", core, words))
        else:
            parts.append(_Part(piece, kind, words=words_of(piece)))
    if len(parts) > MAX_TASKS:
        rest = parts[MAX_TASKS - 1 :]
        merged = ", ".join(p.text for p in rest)
        parts = [*parts[: MAX_TASKS - 1], _Part(merged, rest[0].kind, words=words_of(merged))]
    return parts


def _language(files: list[str], request: str) -> tuple[str, str]:
    """The source directory and extension new code goes to."""
    sources = [PurePosixPath(f) for f in files if PurePosixPath(f).suffix in CODE_EXTENSIONS]
    scripts = [p for p in sources if p.suffix not in (".css", ".html")]
    if scripts:
        suffix = Counter(p.suffix for p in scripts).most_common(1)[0][0]
        folder = Counter(str(p.parent) for p in scripts if p.suffix == suffix).most_common(1)[0][0]
        return ("" if folder == "." else folder), suffix
    if re.search(r"\bpython\b|\bcli\b|\bapi\b|\bflask\b|\bdjango\b", request, re.I):
        return "src", ".py"
    return "src", ".js"


def _match(words: list[str], files: list[str], taken: set[str]) -> str | None:
    """The existing file whose path shares most words with ``words`` (ties: shortest path)."""
    best: tuple[int, int, str] | None = None
    for path in files:
        if path in taken or PurePosixPath(path).suffix not in CODE_EXTENSIONS:
            continue
        tokens = set(re.findall(r"[a-z0-9]+", PurePosixPath(path).stem.lower()))
        score = sum(1 for word in words if word in tokens or word.rstrip("s") in tokens)
        if score and (best is None or (-score, len(path), path) < best):
            best = (-score, len(path), path)
    return best[2] if best else None


def _file_name(words: list[str], suffix: str) -> str:
    name = "-".join(words[:3]) or "change"
    return name.replace("-", "_") if suffix == ".py" else name


def _prompt(title: str, request: str, files: list[str], others: list[str], kind: str,
            suffix: str) -> str:
    check = {
        "tests": "Run the new tests and make sure they pass.",
        "docs": "Keep the wording short and the examples correct.",
    }.get(kind, "Keep the existing behaviour working; run the project's tests if it has any.")
    lines = [
        f"{title}.",
        "",
        f'This is part of the request "{request}", split among several workers.',
        f"{OWNED_LINE}{', '.join(files)}.",
        (f"Other tasks own {', '.join(others)}; do not change them." if others else
         "No other task shares a file with you."),
        f"Follow the conventions of the repository's existing {suffix} files. {check}",
        "Do not create branches or push; end with a short summary of what you changed.",
    ]
    return "\n".join(lines)


def _completed(parts: list[_Part]) -> list[_Part]:
    """A request of one part gets a second: tests for code, a README link for docs."""
    if len(parts) == 1:
        if parts[0].kind == "code":
            parts.append(_Part("Write tests for it", "tests", words=["tests"]))
        else:
            parts.append(_Part("Link it from the README", "readme", words=["readme", "link"]))
    return parts


@dataclass
class _Layout:
    """What the plan knows of the repository while it hands out files."""

    files: list[str]
    folder: str
    suffix: str
    taken: set[str] = field(default_factory=set)

    @property
    def greenfield(self) -> bool:
        return not self.files

    def path_for(self, part: _Part, subject: list[str]) -> str:
        """The one file ``part`` will own (a test file, a README or doc, or code)."""
        suffix = self.suffix
        if part.kind == "tests":
            name = _file_name(subject, suffix)
            return f"tests/test_{name}.py" if suffix == ".py" else f"tests/{name}.test{suffix}"
        if part.kind == "readme" or (part.kind == "docs" and re.search(r"readme|\bit\b", part.text, re.I)):
            return "README.md" if "README.md" not in self.taken else f"docs/{slug(part.words)}.md"
        if part.kind == "docs":
            named = re.findall(r"\b([A-Z][A-Z_]{2,})\b", part.text)
            return f"{named[0]}.md" if named else f"docs/{slug(part.words)}.md"
        found = _match(part.words, self.files, self.taken) if not self.greenfield else None
        return found or str(PurePosixPath(self.folder or ".") / f"{_file_name(part.words, suffix)}{suffix}")

    def claim(self, part: _Part, subject: list[str]) -> list[str]:
        """The files ``part`` owns (a new web app's first code task also gets index.html)."""
        paths = [self.path_for(part, subject).removeprefix("./")]
        first_page = self.greenfield and part.kind == "code" and part.feature_of is None
        if first_page and "index.html" not in self.taken and self.suffix == ".js":
            paths.insert(0, "index.html")
        self.taken.update(paths)
        return paths


def _task_id(part: _Part, subject: list[str], number: int, ids: list[str]) -> str:
    task_id = f"{slug(subject, 2)}-tests" if part.kind == "tests" else slug(part.words)
    while task_id in ids:
        task_id = f"{task_id}-{number + 1}"
    return task_id


def _title(part: _Part, number: int, first: _Part) -> str:
    title = part.text[0].upper() + part.text[1:]
    if number and re.search(r"\b(it|them|this)\b", part.text):
        title = f"{title} ({first.text})"
    return title


def _tasks(parts: list[_Part], where: _Layout) -> list[dict[str, Any]]:
    """One task per part: its id, title, files, dependencies and kind."""
    ids: list[str] = []
    code_ids: list[str] = []
    tasks: list[dict[str, Any]] = []
    for number, part in enumerate(parts):
        subject = parts[number - 1].words if part.kind == "tests" and number else part.words
        task_id = _task_id(part, subject, number, ids)
        ids.append(task_id)
        paths = where.claim(part, subject)
        if part.kind == "tests":
            depends = list(code_ids)
        else:
            depends = [ids[part.feature_of]] if part.feature_of is not None else []
        if part.kind == "code":
            code_ids.append(task_id)
        kind = "docs" if part.kind == "readme" else part.kind
        tasks.append({"id": task_id, "title": _title(part, number, parts[0]), "files": paths,
                      "depends_on": depends, "kind": kind})
    return tasks


def _notes(tasks: list[dict[str, Any]], files: list[str]) -> list[str]:
    notes = [
        f"Simulated plan: derived by the scripted model from the request's wording and the "
        f"repository's {len(files)} files.",
    ]
    if not files:
        notes.append("The repository is empty: every file is new.")
    for task in tasks:
        if task["depends_on"]:
            notes.append(f"{task['id']} waits for {', '.join(task['depends_on'])}.")
    return notes


def derive_plan(request: str, files: list[str], executors: int = 4) -> dict[str, Any]:
    """The plan for ``request`` on a repository holding ``files`` (paths), as JSON data."""
    files = sorted(f.strip() for f in files if f.strip())
    parts = _completed(_split(request))
    folder, suffix = _language(files, request)
    tasks = _tasks(parts, _Layout(files, folder, suffix))
    owned = [task["files"] for task in tasks]
    for number, task in enumerate(tasks):
        others = [path for other, paths in enumerate(owned) if other != number for path in paths]
        task["prompt"] = _prompt(task["title"], request, task["files"], others, task.pop("kind"),
                                 suffix)
    waves = _waves(tasks)
    width = max(len(wave) for wave in waves)
    strategy = "parallel" if len(waves) == 1 else "sequential" if width == 1 else "waves"
    return {
        "request": request,
        "summary": f"{len(tasks)} tasks on {sum(len(p) for p in owned)} files, "
        f"{len(waves)} wave{'s' if len(waves) > 1 else ''}.",
        "tasks": tasks,
        "complexity": {2: "low", 3: "medium"}.get(len(tasks), "high"),
        "executor_budget": max(1, min(executors, width)),
        "strategy": strategy,
        "notes": _notes(tasks, files),
    }


def _waves(tasks: list[dict[str, Any]]) -> list[list[str]]:
    remaining = {t["id"]: set(t["depends_on"]) for t in tasks}
    waves: list[list[str]] = []
    while remaining:
        ready = [task_id for task_id, deps in remaining.items() if not deps] or list(remaining)
        waves.append(ready)
        for task_id in ready:
            remaining.pop(task_id)
        for deps in remaining.values():
            deps.difference_update(ready)
    return waves
