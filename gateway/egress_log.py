"""The task's egress log (``egress/<id>.jsonl``) for what the model API refused to carry out.

A request body asking for a server-side fetch (``mcp_servers``, a ``web_fetch`` tool, ...) is
egress the agent tried through the model API: it is logged like a refused connection, with
method ``MODEL-API``, the refused key or tool type as ``host`` and port 0.
"""

from __future__ import annotations

from orchestration_protocol import Layout, utc_now
from orchestration_protocol.gateway import EgressEntry, GatewayCaller, append_line, egress_file

API_METHOD = "MODEL-API"


def log_api_refusal(layout: Layout, caller: GatewayCaller, what: str, reason: str) -> None:
    """One refused line in the caller's egress log."""
    entry = EgressEntry(at=utc_now(), task_id=caller.task_id, attempt=caller.attempt,
                        method=API_METHOD, host=what[:300], port=0, allowed=False, reason=reason)
    append_line(egress_file(layout, caller.task_id), entry)
