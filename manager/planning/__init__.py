"""The planner: an agent that turns one goal into a plan of tasks (:mod:`.planner`)."""
