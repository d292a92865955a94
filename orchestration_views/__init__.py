"""Read-only views of an orchestration root, for the manager's CLI and the dashboard alike.

Everything here only reads the volume through :mod:`orchestration_protocol`: the task rows and
the files that could not be used (:mod:`.rows`), what tasks cost (:mod:`.ledger`), the egress log
(:mod:`.egress`), a worker's log tail (:mod:`.logs`), whether a set of tasks is finished
(:mod:`.progress`), the warm pools (:mod:`.pools`) and the fleet's figures for the metrics (:mod:`.figures`). It imports nothing of the manager or the dashboard, so both can stand on it.
"""
