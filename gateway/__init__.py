"""The gateway: the one process that holds the model credential and is a worker's only way out.

- :mod:`gateway.api`: the model API (Starlette) on ``<root>/gateway/api.sock``;
- :mod:`gateway.egress`: the egress proxy on ``<root>/gateway/proxy.sock``;
- :mod:`gateway.callers`: caller tokens bound to live claims;
- :mod:`gateway.upstream`, :mod:`gateway.relay`, :mod:`gateway.usage`: forwarding, streaming,
  metering; :mod:`gateway.ledger`, :mod:`gateway.budgets`, :mod:`gateway.prices`: spending;
- :mod:`gateway.settings`, :mod:`gateway.credentials`, :mod:`gateway.server`: the process.

Run it as ``orchestrator-gateway --root DIR`` (see ``--help``). The wire contract (callers,
ledger and egress lines, the fleet budget, socket paths) is
:mod:`orchestration_protocol.gateway`.
"""
