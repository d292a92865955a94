"""Task files: creating them from prompts and plans (:mod:`.create`), and what is done to one
task afterwards (:mod:`.operations`: details, cancel, retry)."""
