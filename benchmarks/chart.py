"""Draws docs/benchmarks.png: jobs/s per system per scenario (medians, min–max bars).

Runs in benchmarks/.venvs/plot (matplotlib stays out of the project):
    python chart.py DATA.json OUT.png
DATA: {"systems": [label...], "scenarios": [title...], "median"/"low"/"high":
[[value or null per scenario] per system], "title": str}
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")  # no display on a server
import matplotlib.pyplot as plt  # noqa: E402


def draw(data: dict, out: str) -> None:
    systems, scenarios = data["systems"], data["scenarios"]
    width = 0.8 / len(systems)
    fig, ax = plt.subplots(figsize=(11, 5.5), dpi=110)
    colors = plt.get_cmap("tab10")
    for i, label in enumerate(systems):
        xs, heights, below, above = [], [], [], []
        for j in range(len(scenarios)):
            median = data["median"][i][j]
            if median is None:
                continue
            xs.append(j + (i - (len(systems) - 1) / 2) * width)
            heights.append(median)
            below.append(median - data["low"][i][j])
            above.append(data["high"][i][j] - median)
        ax.bar(xs, heights, width, yerr=[below, above], capsize=2, label=label,
               color=colors(i % 10), edgecolor="black" if i == 0 else None,
               linewidth=1.2 if i == 0 else 0)
    ax.set_xticks(range(len(scenarios)), scenarios)
    ax.set_ylabel("jobs/s (median; bars: min–max)")
    ax.set_yscale("log")
    ax.set_title(data["title"], fontsize=10)
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    with open(sys.argv[1]) as handle:
        draw(json.load(handle), sys.argv[2])
