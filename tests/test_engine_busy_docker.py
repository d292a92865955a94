"""An engine that does not answer in time (50 cold spawns at once on 2 CPUs took Docker more
than the client's 30 s to start one container): a spawn says so in one sentence and the
dispatcher leaves the task for its next round, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from manager.backends.base import SpawnRequest
from manager.backends.docker import DockerConnection, DockerWorkers
from manager.config import resolve_settings
from manager.errors import EngineBusy
from manager.polling import poll_until
from manager.profiles import resolve_profile

pytestmark = pytest.mark.docker


def test_a_spawn_the_engine_does_not_answer_in_time_is_engine_busy(
    docker_client, tmp_path: Path
) -> None:
    import docker

    settings = resolve_settings(tmp_path / "root", backend="docker", volume=str(tmp_path))
    impatient = docker.DockerClient(  # the real engine, with no time to answer
        base_url=os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock",
        version=docker_client.api.api_version,
        timeout=0.0001,
    )
    config = settings.engine_config()
    assert config.type == "docker"
    backend = DockerWorkers(DockerConnection(config, client=impatient))
    request = SpawnRequest(
        task_id=f"busy-{os.getpid()}",
        attempt=1,
        name=f"worker-busy-{os.getpid()}",
        profile=resolve_profile(None, settings.root),
        env={},
    )
    try:
        with pytest.raises(EngineBusy, match=r"did not answer while creating worker-busy-.*"
                           r"the task waits for the next round"):  # fmt: skip
            backend._create_and_start(backend._run_kwargs(request))
    finally:  # the engine may still create the container after the client gave up
        def removed() -> bool:
            found = docker_client.containers.list(all=True, filters={"name": request.name})
            for container in found:
                container.remove(force=True)
            return bool(found)

        poll_until(removed, timeout_s=10, interval_s=0.5)
