"""Data layer: task schema, reading and validating tables, federated standardisation, splits,
the perovskite dataset resolver and a synthetic generator."""

from matswarm.data import perovskite, synthetic
from matswarm.data.errors import DataError
from matswarm.data.federated import (
    FederatedDataset,
    OrgTable,
    StandardizedOrg,
    build_dataset,
)
from matswarm.data.partition import SplitSpec, partition
from matswarm.data.scaling import MomentStats, Standardizer
from matswarm.data.schema import TaskSchema
from matswarm.data.tables import read_table

__all__ = [
    "DataError",
    "FederatedDataset",
    "MomentStats",
    "OrgTable",
    "SplitSpec",
    "StandardizedOrg",
    "Standardizer",
    "TaskSchema",
    "build_dataset",
    "partition",
    "perovskite",
    "read_table",
    "synthetic",
]
