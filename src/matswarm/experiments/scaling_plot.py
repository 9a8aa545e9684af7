"""The scaling study's figure: Fig. 5's three panels (MSE and time per round against data size,
feature count and organisations) plus the per-org share of a round against organisations, with
the paper's reported trend under each panel."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

_SERIES = (  # (runtime, trust, label, style)
    ("in-process", False, "in-process, trust off", "-o"),
    ("in-process", True, "in-process, trust on", "-s"),
    ("flower", False, "Flower loopback, trust off", "--^"),
    ("flower", True, "Flower loopback, trust on", "--v"),
)
_XLABEL = {
    "data": "training rows used (fraction)",
    "features": "features used",
    "orgs": "organisations",
}


def _series(points: list[dict], sweep: str, runtime: str, trust: bool) -> list[dict]:
    sel = [p for p in points if p["sweep"] == sweep and p["runtime"] == runtime]
    return sorted((p for p in sel if p["trust"] == trust), key=lambda p: p["x"])


def scaling_plot(doc: dict, path: Path) -> Path:
    points, trends = doc["points"], doc["paper_trends"]
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.8))
    for ax, sweep in zip(axes[:3], ("data", "features", "orgs"), strict=True):
        mse = _series(points, sweep, "in-process", False)
        ax.plot([p["x"] for p in mse], [p["mse"] for p in mse], "k-o", label="global test MSE")
        ax.set_ylabel("test MSE (eV/atom)")
        ax.set_xlabel(_XLABEL[sweep])
        tx = ax.twinx()
        for runtime, trust, label, style in _SERIES:
            s = _series(points, sweep, runtime, trust)
            if s:
                tx.plot(
                    [p["x"] for p in s],
                    [p["cpu_s_per_round"] for p in s],
                    style,
                    label=label,
                    alpha=0.8,
                )
        tx.set_ylabel("CPU time per round (s; wall in results.json)")
        tx.set_yscale("log")
        ax.set_title(f"{sweep}\npaper: " + "\n".join(textwrap.wrap(trends[sweep], 48)), fontsize=8)
        if sweep == "data":
            lines = ax.get_legend_handles_labels()
            more = tx.get_legend_handles_labels()
            ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="upper right")
    ax = axes[3]
    ratios = doc.get("per_org_share_15_vs_3", {})
    for runtime, trust, label, style in _SERIES:
        s = _series(points, "orgs", runtime, trust)
        if not s:
            continue
        base = s[0]["per_org_cpu"]
        key = f"{runtime}, trust {'on' if trust else 'off'}"
        r = ratios.get(key)
        if r is None:  # no 15-org point for this series
            continue
        ax.plot(
            [p["x"] for p in s],
            [p["per_org_cpu"] / base for p in s],
            style,
            label=f"{label}: CPU x{r['cpu_ratio_15_to_3']:.2f}, "
            f"wall x{r['wall_ratio_15_to_3']:.2f} at 15",
        )
    bound = next(iter(ratios.values()), {}).get("bound", 1.3)
    ax.axhline(bound, color="r", lw=0.8, ls=":", label=f"bound x{bound} (linear cost)")
    ax.axhline(1.0, color="k", lw=0.5)
    ax.set_xlabel("organisations")
    ax.set_ylabel("per-org CPU share of a round, relative to 3 orgs")
    ax.set_title(
        "per-org share of a round (CPU per round / orgs)\nflat = linear in orgs", fontsize=8
    )
    ax.legend(fontsize=6.5, loc="upper left")
    ax.set_ylim(0, max(2.0, bound + 0.3))
    fig.suptitle("MatSwarm scalability (paper Fig. 5) on this machine", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
