"""Handing files the runtime wrote into the agent's work tree to the agent's uid.

The runtime (root in a container) writes into the agent's tree when it restores a checkpoint or
starts a merge for a resolver; those files must be the agent's, as a clone's are. Links are
never followed (``lchown``): a link the agent made cannot turn this into a chown of a file
outside the tree.
"""

from __future__ import annotations

import os
from pathlib import Path


def chown_tree(path: Path, owner: tuple[int, int]) -> None:
    """Give ``path`` and everything under it to ``owner`` (uid, gid), links not followed."""
    uid, gid = owner
    os.chown(path, uid, gid, follow_symlinks=False)
    for directory, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.chown(os.path.join(directory, name), uid, gid, follow_symlinks=False)
