"""The warm pools that beat on the volume, as ``orchestrator status`` shows them: from the
pools' files alone, no engine asked."""

from __future__ import annotations

from orchestration_protocol import Layout, read_snapshot
from orchestration_protocol.pool import (
    PoolWorkerState,
    pools_dir,
    read_pool_heartbeat,
    read_pool_workers,
)


def pool_summaries(layout: Layout) -> list[dict[str, object]]:
    """Every pool that beats on the volume, from its files alone (no engine asked): name,
    profile, size, and how many of its workers wait idle or run a task now."""
    records = read_pool_workers(layout)
    summaries: list[dict[str, object]] = []
    for directory in sorted(pools_dir(layout).glob("*/manager.json")):
        try:
            heartbeat = read_pool_heartbeat(layout, directory.parent.name)
        except ValueError:
            continue
        if heartbeat is None or heartbeat.is_stale():
            continue
        mine = [record for record in records if record.pool == heartbeat.pool]
        busy = sum(
            1
            for record in mine
            if record.state == PoolWorkerState.BUSY
            and record.task_id
            and read_snapshot(layout, record.task_id).current_result is None
        )
        idle = sum(1 for record in mine if record.state == PoolWorkerState.IDLE)
        summaries.append(
            {
                "pool": heartbeat.pool,
                "profile": heartbeat.profile,
                "size": heartbeat.size,
                "idle": idle,
                "busy": busy,
            }
        )
    return summaries
