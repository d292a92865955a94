"""A fooled manager cannot widen a worker: mounts, volumes and networks it may not hand out."""

from __future__ import annotations

import pytest

from manager.run.sandbox import MountRefused, check_mount, check_network, check_volume

REFUSED = [
    "/var/run/docker.sock:/var/run/docker.sock",
    "/run/docker.sock:/sock",
    "/var/run:/host-run",
    "/:/host",
    "/etc:/mnt/etc:ro",
    "/var/lib/docker:/mnt/docker",
    "/proc:/mnt/proc",
    "/root:/mnt/home",
    "/home:/mnt/homes",
    "/home/alice:/mnt/alice",
    "/home/alice/.ssh:/mnt/ssh:ro",
    "/root/.aws:/mnt/aws",
    "/root/.claude-token:/token",
    "/tmp/orchestrator-secrets.abc123:/s",
    "/srv/cache/../../var/run/docker.sock:/s",
    "/srv/app:/",
    "/srv/app:/runtime",
    "/srv/app:/orchestration",
    "/srv/app:/usr/local/bin",
    "/srv/app:/etc/passwd",
    "orchestration-volume:/mnt/all",
]

ALLOWED = [
    "/srv/app.git:/srv/app.git",
    "/cache:/cache:ro",
    "/root/.cache/claude-orchestrator/demo.git:/root/.cache/claude-orchestrator/demo.git",
    "/home/alice/src/app:/home/alice/src/app",
    "/tmp/pytest-1/remote.git:/tmp/pytest-1/remote.git",
    "pub-cache:/home/worker/.pub-cache",
]


@pytest.mark.parametrize("spec", REFUSED)
def test_dangerous_mounts_are_refused_in_one_sentence(spec: str) -> None:
    with pytest.raises(MountRefused) as refused:
        check_mount(spec, volume="orchestration-volume")
    message = str(refused.value)
    assert spec in message and message.count(". ") == 0 and message.endswith(".")


@pytest.mark.parametrize("spec", ALLOWED)
def test_project_directories_and_caches_are_allowed(spec: str) -> None:
    check_mount(spec, volume="orchestration-volume")


def test_a_link_to_the_socket_is_refused(tmp_path) -> None:
    link = tmp_path / "innocent"
    link.symlink_to("/var/run/docker.sock")
    with pytest.raises(MountRefused):
        check_mount(f"{link}:/data")


def test_the_root_on_a_host_path_is_protected(tmp_path) -> None:
    root = tmp_path / "orchestration"
    with pytest.raises(MountRefused, match="orchestration volume"):
        check_mount(f"{root / 'gateway'}:/mnt/g", protected=[str(root)])
    with pytest.raises(MountRefused, match="orchestration volume"):
        check_mount(f"{tmp_path}:/mnt/t", protected=[str(root)])


@pytest.mark.parametrize("volume", ["/", "/var/run", "/etc", "/root", "/home/alice"])
def test_dangerous_volumes_are_refused(volume: str) -> None:
    with pytest.raises(MountRefused, match="volume"):
        check_volume(volume)


def test_ordinary_volumes_pass(tmp_path) -> None:
    check_volume("orchestration-volume")
    check_volume(str(tmp_path / "root"))


def test_networks_only_as_configured() -> None:
    check_network(None, [])
    check_network("orchestrator-net", ["orchestrator-net"])
    for network in ("host", "bridge", "container:orchestrator-manager", "other-net"):
        with pytest.raises(MountRefused, match=network):
            check_network(network, ["orchestrator-net"])


class TestThroughTheCli:
    """The commands a manager agent runs refuse widening before anything starts."""

    pytestmark = pytest.mark.usefixtures("cli_process")

    @pytest.fixture
    def remote(self, tmp_path):
        from tests.gitrepo import make_remote

        return make_remote(tmp_path)

    @pytest.mark.parametrize(
        "args",
        [
            ("spawn", "default", "t1", "--mount", "/var/run/docker.sock:/var/run/docker.sock"),
            ("spawn", "default", "t1", "--mount", "/:/host:ro"),
            ("spawn", "default", "t1", "--mount", "/root/.ssh:/mnt/ssh"),
            ("--network", "host", "spawn", "default", "t1"),
            ("--volume", "/", "spawn", "default", "t1"),
            ("run", "--agent", "command", "--mount", "/etc:/mnt/etc", "echo hi"),
        ],
        ids=["docker-socket", "host-root", "ssh-keys", "host-network", "root-volume", "run"],
    )
    def test_refused_in_one_sentence_and_nothing_starts(self, cli, layout, args) -> None:
        if args[0] == "spawn" or "spawn" in args:
            assert cli("task", "create", "--id", "t1", "--agent", "command", "echo hi")[0] == 0
        code, out, err = cli(*args)
        assert code == 2, (out, err)
        assert err.startswith("error: The ") and "refused" in err and len(err.splitlines()) == 1
        assert not any(layout.claims_dir.iterdir()) if layout.claims_dir.exists() else True
        assert not list(layout.root.glob("status/*.json"))

    def test_an_honest_spawn_still_runs(self, cli, layout, tmp_path) -> None:
        cache = tmp_path / "cache"
        cache.mkdir()
        assert cli("task", "create", "--id", "t1", "--agent", "command", "echo hi")[0] == 0
        code, _, err = cli("spawn", "default", "t1", "--mount", f"{cache}:/cache:ro")
        assert code == 0, err
        code, out, err = cli("wait", "t1", "--timeout", "60")
        assert code == 0, (out, err)
