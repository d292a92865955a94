"""run.sh on the host, with a stand-in ``docker`` that records what it was asked: the options,
the one-sentence errors, and that secrets reach the container only as mounted files."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.gitrepo import make_remote

REPO_ROOT = Path(__file__).resolve().parent.parent
RUN_SH = REPO_ROOT / "run.sh"
TOOLS = ("bash", "dirname", "mktemp", "chmod", "rm", "cat", "git", "sed", "tr", "env", "sha256sum")
FAKE_DOCKER = """#!/bin/bash
printf '%s\\n' "$*" >> "$DOCKER_LOG"
case "$1" in
  info) [ -n "$DOCKER_INFO_ERROR" ] && { echo "$DOCKER_INFO_ERROR" >&2; exit 1; }; echo 20.10 ;;
  network) [ "$2" = inspect ] && [ -n "$DOCKER_NO_NETWORK" ] && exit 1; [ "$2" = inspect ] && exit 0 ;;
  image|volume) [ "$2" = inspect ] && exit 0 ;;
  container) [ -n "$DOCKER_CONTAINER_RUNNING" ] && { echo true; exit 0; }
             [ -n "$DOCKER_CONTAINER_EXISTS" ] && exit 0; exit 1 ;;
  ps) [ -n "$DOCKER_PS_OUTPUT" ] && echo "$DOCKER_PS_OUTPUT" ;;
  run|exec) printf '%s\\n' "$@" > "$DOCKER_RUN_ARGS" ;;
esac
exit 0
"""


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    """A PATH with the few tools run.sh needs, and no docker."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    return bin_dir


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


def run_sh(
    *args: str, tools: Path, home: Path, docker: bool = True, cwd: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    log = tools.parent / "docker.log"
    if docker and not (tools / "docker").exists():
        (tools / "docker").write_text(FAKE_DOCKER)
        (tools / "docker").chmod(0o755)
    base = {
        "PATH": str(tools),
        "HOME": str(home),
        "DOCKER_LOG": str(log),
        "DOCKER_RUN_ARGS": str(tools.parent / "run-args"),
        "DOCKER_INFO_ERROR": "",
        "DOCKER_CONTAINER_EXISTS": "",
        "DOCKER_CONTAINER_RUNNING": "",
        "DOCKER_PS_OUTPUT": "",
        "DOCKER_NO_NETWORK": "",
    }
    return subprocess.run(
        [str(RUN_SH), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        check=False,
    )


def run_args(tools: Path) -> list[str]:
    return (tools.parent / "run-args").read_text().splitlines()


def test_help_names_every_option(tools: Path, home: Path) -> None:
    done = run_sh("--help", tools=tools, home=home, docker=False)
    assert done.returncode == 0
    for option in (
        "--repo",
        "--branch",
        "--token",
        "--ssh-key",
        "--model",
        "--max-workers",
        "--simulate",
        "--list",
        "orchestration-PROJECT",
        "orchestrator-manager-PROJECT",
        "ANTHROPIC_API_KEY",
        "CLAUDE_CODE_USE_BEDROCK",
        "root",
    ):
        assert option in done.stdout


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (["--bogus"], {}, 2, "unknown option '--bogus'"),
        ([], {}, 2, "no repository given"),
        (["--repo", "/no/such/dir"], {}, 2, "/no/such/dir is not a directory"),
        (["--repo", "git@x:y.git", "--max-workers", "0"], {}, 2, "--max-workers"),
        (
            ["--repo", "git@x:y.git"],
            {"DOCKER_INFO_ERROR": "Cannot connect"},
            3,
            "the Docker engine is not running",
        ),
        (
            ["--repo", "git@x:y.git"],
            {"DOCKER_INFO_ERROR": "permission denied"},
            3,
            "no permission to use the Docker socket",
        ),
        (["--repo", "git@x:y.git"], {}, 3, "the token file"),
        (
            ["--repo", "git@x:y.git", "--simulate"],
            {"DOCKER_CONTAINER_EXISTS": "1"},
            3,
            "a container named orchestrator-manager-y-",
        ),
        (
            ["--repo", "git@x:y.git", "--simulate", "--ssh-key", "/no/key"],
            {},
            3,
            "the SSH key /no/key cannot be read",
        ),
    ],
)
def test_user_errors_are_one_sentence(
    tools: Path, home: Path, args: list[str], env: dict[str, str], code: int, message: str
) -> None:
    done = run_sh(*args, tools=tools, home=home, **env)
    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_missing_docker_is_one_sentence(tools: Path, home: Path) -> None:
    done = run_sh("--repo", "git@x:y.git", tools=tools, home=home, docker=False)
    assert done.returncode == 3
    assert done.stderr.strip() == (
        "run.sh: Docker is not installed; install it (on Debian: apt-get install docker.io) "
        "and run again."
    )


def test_api_key_alone_is_enough_and_reaches_the_container_as_a_file(
    tools: Path, home: Path
) -> None:
    secret = "sk-ant-api03-very-secret-value"
    done = run_sh("--repo", "git@x:y.git", tools=tools, home=home, ANTHROPIC_API_KEY=secret)
    assert done.returncode == 0, done.stderr
    args = run_args(tools)
    assert not any(secret in arg for arg in args)
    mount = next(
        arg
        for arg in args
        if arg.endswith("target=/run/orchestrator-secrets/ANTHROPIC_API_KEY,readonly")
    )
    source = Path(mount.split("source=")[1].split(",")[0])
    assert not source.exists(), "the private copy is removed when the manager exits"


def test_token_key_socket_volume_and_settings(tools: Path, home: Path) -> None:
    token = home / ".claude-token"
    token.write_text("sk-ant-oat01-token-value\n")
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY\n")
    done = run_sh(
        "--repo",
        "git@github.com:me/app.git",
        "--branch",
        "dev",
        "--model",
        "claude-sonnet-4-5",
        "--max-workers",
        "3",
        tools=tools,
        home=home,
        GIT_USER_NAME="Ada",
        GIT_USER_EMAIL="a@b.c",
    )
    assert done.returncode == 0, done.stderr
    args = run_args(tools)
    joined = "\n".join(args)
    assert "sk-ant-oat01" not in joined and "PRIVATE KEY" not in joined
    assert (
        f"type=bind,source={token},target=/run/orchestrator-secrets/CLAUDE_CODE_OAUTH_TOKEN,readonly"
        in args
    )
    assert (
        f"type=bind,source={home}/.ssh/id_ed25519,target=/run/orchestrator-secrets/GIT_SSH_KEY,readonly"
        in args
    )
    assert "type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock" in args
    project = f"app-{hashlib.sha256(b'git@github.com:me/app.git').hexdigest()[:8]}"
    assert f"type=volume,source=orchestration-{project},target=/orchestration" in args
    for setting in (
        "REPO_URL=git@github.com:me/app.git",
        "REPO_BRANCH=dev",
        "ANTHROPIC_MODEL=claude-sonnet-4-5",
        "ORCHESTRATOR_MAX_WORKERS=3",
        "ORCHESTRATOR_SIMULATE=0",
        "GIT_USER_NAME=Ada",
        "GIT_USER_EMAIL=a@b.c",
    ):
        assert setting in args
    assert args[1:4] == ["--rm", "--init", "-i"] and args[-1] == "claude-orchestrator"
    log = (tools.parent / "docker.log").read_text()
    assert (
        f"volume inspect orchestration-{project}" in log
        and f"network inspect orchestrator-net-{project}" in log
    )


def test_simulate_needs_no_token_and_mounts_a_local_repo_at_its_path(
    tools: Path, home: Path, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path).resolve()
    done = run_sh(
        "--simulate", "--repo", "remote.git", "--", "bash", tools=tools, home=home, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    args = run_args(tools)
    assert f"type=bind,source={remote},target={remote}" in args
    assert f"REPO_URL={remote}" in args and "ORCHESTRATOR_SIMULATE=1" in args
    assert not any("ORCHESTRATOR_WORKER_MOUNTS" in arg for arg in args)  # workers use the mirror
    assert not any("orchestrator-secrets" in arg for arg in args)
    assert args[-2:] == ["claude-orchestrator", "bash"]


def project_of(repo: str) -> str:
    """What run.sh derives from a repository: its name and 8 hex digits of its URL's SHA-256."""
    return "-".join(
        [repo.rstrip("/").removesuffix(".git").rsplit("/", 1)[-1].rsplit(":", 1)[-1].lower(),
         hashlib.sha256(repo.rstrip("/").encode()).hexdigest()[:8]]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("repo", "name"),
    [
        ("git@github.com:me/app.git", "app"),
        ("https://github.com/me/Web_Site/", "web-site"),
        ("git@host:Only.git", "only"),
    ],
)
def test_each_repository_gets_its_own_volume_network_and_manager(
    tools: Path, home: Path, repo: str, name: str
) -> None:
    done = run_sh("--simulate", "--repo", repo, tools=tools, home=home)
    assert done.returncode == 0, done.stderr
    project = f"{name}-{hashlib.sha256(repo.rstrip('/').encode()).hexdigest()[:8]}"
    args = run_args(tools)
    assert args[args.index("--name") + 1] == f"orchestrator-manager-{project}"
    assert args[args.index("--network") + 1] == f"orchestrator-net-{project}"
    assert f"type=volume,source=orchestration-{project},target=/orchestration" in args
    assert f"ORCHESTRATOR_VOLUME=orchestration-{project}" in args
    assert f"ORCHESTRATOR_NETWORK=orchestrator-net-{project}" in args
    for label in (f"orchestrator.project={project}", f"orchestrator.repo={repo}",
                  f"orchestrator.volume=orchestration-{project}"):  # fmt: skip
        assert label in args


def test_two_repositories_never_share_a_name_and_options_override(tools: Path, home: Path) -> None:
    names = set()
    for repo in ("git@github.com:me/app.git", "git@github.com:you/app.git"):
        assert run_sh("--simulate", "--repo", repo, tools=tools, home=home).returncode == 0
        args = run_args(tools)
        names.add(args[args.index("--name") + 1])
    assert len(names) == 2
    done = run_sh("--simulate", "--repo", "git@x:y.git", "--volume", "v", "--network", "n",
                  "--name", "m", tools=tools, home=home)  # fmt: skip
    assert done.returncode == 0, done.stderr
    args = run_args(tools)
    assert args[args.index("--name") + 1] == "m" and args[args.index("--network") + 1] == "n"
    assert "type=volume,source=v,target=/orchestration" in args


def test_the_demo_app_gets_names_of_its_own(tools: Path, home: Path) -> None:
    for tool in ("mkdir", "ls", "cp", "mv", "basename"):
        if not (tools / tool).exists() and shutil.which(tool):
            (tools / tool).symlink_to(shutil.which(tool))  # type: ignore[arg-type]
    done = run_sh("--simulate", tools=tools, home=home)
    assert done.returncode == 0, done.stderr
    demo = f"{home}/.cache/claude-orchestrator/demo-app.git"
    args = run_args(tools)
    assert args[args.index("--name") + 1] == f"orchestrator-manager-{project_of(demo)}"
    assert project_of(demo).startswith("demo-app-")


def test_the_same_repository_again_runs_a_command_in_its_manager(tools: Path, home: Path) -> None:
    repo = "git@github.com:me/app.git"
    done = run_sh("--simulate", "--repo", repo, "--", "orchestrator", "status", tools=tools,
                  home=home, DOCKER_CONTAINER_RUNNING="1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert run_args(tools) == [
        "exec",
        "-i",
        f"orchestrator-manager-{project_of(repo)}",
        "orchestrator",
        "status",
    ]
    log = (tools.parent / "docker.log").read_text()
    assert "volume create" not in log and "\nrun " not in log


def test_the_same_repository_again_says_how_to_reach_its_manager(tools: Path, home: Path) -> None:
    repo = "git@github.com:me/app.git"
    done = run_sh("--simulate", "--repo", repo, tools=tools, home=home,
                  DOCKER_CONTAINER_RUNNING="1")  # fmt: skip
    assert done.returncode == 3
    name = f"orchestrator-manager-{project_of(repo)}"
    assert done.stderr.strip() == (
        f"run.sh: the manager {name} runs already for {repo}; reach its prompt with "
        f"'docker attach {name}' (leave with Ctrl-P Ctrl-Q), or run a command in it with "
        f"'./run.sh --repo {repo} -- bash'."
    )


def test_a_volume_in_use_by_another_manager_is_refused(tools: Path, home: Path) -> None:
    done = run_sh("--simulate", "--repo", "git@x:y.git", "--name", "second", tools=tools,
                  home=home, DOCKER_PS_OUTPUT="first")  # fmt: skip
    assert done.returncode == 3
    assert "the volume orchestration-y-" in done.stderr and "manager first" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_list_shows_the_running_managers(tools: Path, home: Path) -> None:
    done = run_sh("--list", tools=tools, home=home, DOCKER_PS_OUTPUT="m1\tgit@x:y.git\tv1\tUp")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "MANAGER\tREPOSITORY\tVOLUME\tSTATUS",
        "m1\tgit@x:y.git\tv1\tUp",
    ]
    assert (
        "ps --filter label=orchestrator.role=manager" in (tools.parent / "docker.log").read_text()
    )


def test_a_dry_run_removes_the_network_it_made_and_only_that(tools: Path, home: Path) -> None:
    repo = "git@github.com:me/app.git"
    network = f"orchestrator-net-{project_of(repo)}"
    log = tools.parent / "docker.log"
    assert run_sh("--simulate", "--repo", repo, tools=tools, home=home).returncode == 0
    assert f"network rm {network}" not in log.read_text()  # it was there before: it stays
    done = run_sh("--simulate", "--repo", repo, tools=tools, home=home, DOCKER_NO_NETWORK="1")
    assert done.returncode == 0, done.stderr
    made = log.read_text().split("network create", 1)[1]
    assert f"network rm {network}" in made
