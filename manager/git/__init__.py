"""Git on the manager's side: the mirrors on the volume, access to remotes, merging task branches
and greenfield projects."""
