"""The scaling study's Flower leg: the organisation sweep over a real deployment on loopback
(:class:`~matswarm.runtime.flower.loopback.LoopbackCluster`: SuperLink, one node process per
org), the same task without and with the trust layer on one cluster per org count."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pandas as pd

from matswarm.data.federated import FederatedDataset


def org_files(ds: FederatedDataset, directory: Path) -> dict[str, Path]:
    """Each org's table as a Parquet file, as its node reads it."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for org in ds.orgs:
        df = pd.DataFrame(org.X, columns=list(ds.schema.features))
        df[ds.schema.target] = org.y
        files[org.name] = directory / f"{org.name}.parquet"
        df.to_parquet(files[org.name])
    return files


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def flower_points(
    base: FederatedDataset,
    org_counts: Sequence[int],
    rounds: int,
    seed: int,
    workdir: Path,
    *,
    trust: bool,
    subset: Callable[..., FederatedDataset],
    verification: str = "leader",
) -> Iterator:
    """One :class:`~matswarm.experiments.scaling.Point` per org count and trust setting; the
    trusted runs check their rounds by ``verification`` (:mod:`matswarm.protocol.leader`)."""
    from matswarm.experiments.scaling import Point
    from matswarm.protocol.leader import Verification
    from matswarm.runtime.flower.loopback import LoopbackCluster
    from matswarm.runtime.flower.spec import make_task_spec

    for k in org_counts:
        ds = subset(base, fraction=1.0, n_features=base.schema.n_features, orgs=k, seed=seed)
        d = workdir / f"flower-{k}"
        files = org_files(ds, d / "data")
        schema = {
            "target": ds.schema.target,
            "unit": ds.schema.unit,
            "features": list(ds.schema.features),
        }
        with LoopbackCluster(files, d, trust=trust) as cluster:
            for trusted in (False, True) if trust else (False,):
                spec = make_task_spec(
                    f"scaling-{k}{'-trusted' if trusted else ''}",
                    list(files),
                    schema,
                    "matswarm",
                    rounds=rounds,
                    model={"name": "mlp"},
                    seed=seed,
                    relay_deadline_s=600,
                    verification=Verification(verification).spec_fields() if trusted else None,
                )
                common = {
                    "sweep": "orgs",
                    "x": k,
                    "orgs": k,
                    "rows": sum(o.n for o in ds.orgs),
                    "features": ds.schema.n_features,
                    "runtime": "flower",
                    "trust": trusted,
                }
                try:
                    run = cluster.run(spec, trusted=trusted)
                except RuntimeError as exc:  # e.g. a node too slow to join on a loaded machine
                    nan = float("nan")
                    yield Point(
                        **common,
                        rounds=0,
                        wall_s_per_round=nan,
                        cpu_s_per_round=nan,
                        extra={"error": str(exc), "hashes": []},
                    )
                    continue
                yield Point(
                    **common,
                    rounds=rounds,
                    wall_s_per_round=_median(run.round_times),
                    cpu_s_per_round=_median(run.round_cpu),
                    extra={"setup_s": run.setup_s, "hashes": run.hashes},
                )
