"""Running tasks: ``run``'s whole flow (:mod:`.pipeline`), the dispatcher, spawning, recovery of
ended workers, the warm pool, the checks before a start and the health probe."""
