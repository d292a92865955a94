"""The engine fixtures, for the tests in this folder."""

from tests.clusters.slurm_cluster import slurm_cluster
from tests.clusters.swarm_nodes import swarm_nodes

__all__ = ["slurm_cluster", "swarm_nodes"]
