"""scripts/bench: the chart (docs/benchmarks.png), medians over rounds against concurrency.

Six panels: requests/s for small and for 16 KiB responses, p99 latency and CPU per request for
small responses, MiB/s for 1 MiB downloads and uploads. The five proxies are solid lines;
HAProxy in TCP mode (hbfork TCP's like for like) is dashed, the backend directly dotted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadtest.bench.kinds import KINDS
from loadtest.bench.report.table import CPU_BUDGET_US, Table

COLORS = {"hbfork-http": "#d62728", "hbfork-tcp": "#ff7f0e", "apache": "#1f77b4",
          "nginx": "#2ca02c", "haproxy": "#9467bd", "haproxy-tcp": "#9467bd",
          "direct": "#7f7f7f"}
STYLES = {"haproxy-tcp": "--", "direct": ":"}
NAMES = {"hbfork-http": "hbfork HTTP", "hbfork-tcp": "hbfork TCP", "apache": "Apache",
         "nginx": "nginx", "haproxy": "HAProxy (HTTP)", "haproxy-tcp": "HAProxy (TCP)",
         "direct": "direct to a backend"}
PANELS = (  # (kind, metric, title)
    ("small", "ok_rps", "small (604 B): responses/s"),
    ("16k", "ok_rps", "16 KiB: responses/s"),
    ("small", "p99", "small: p99 latency, ms (lower is better)"),
    ("1m-down", "mib_s", "1 MiB downloads: MiB/s"),
    ("1m-up", "mib_s", "1 MiB uploads: MiB/s"),
    ("small", "cpu_us_per_request", "small: front CPU µs per request (lower is better)"),
)


def _series(table: Table, name: str, kind: str, metric: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for level in table.levels:
        key = "ok_rps" if metric == "mib_s" else metric
        value = table.median(name, kind, level, key)
        if value is None:
            continue
        xs.append(level)
        ys.append(KINDS[kind].mib_s(value) if metric == "mib_s" else value)
    return xs, ys


def make_chart(results: dict[str, Any], table: Table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7), dpi=80)
    for ax, (kind, metric, title) in zip(axes.flat, PANELS, strict=True):
        ax.set_title(title, fontsize=9)
        if kind not in table.kinds:
            ax.text(0.5, 0.5, "not measured in this run", ha="center", va="center",
                    transform=ax.transAxes, fontsize=9, color="#777777")
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        for name in table.contenders:
            xs, ys = _series(table, name, kind, metric)
            ax.plot(xs, ys, STYLES.get(name, "-"), marker="o", markersize=3,
                    color=COLORS.get(name), label=NAMES.get(name, name),
                    linewidth=2.2 if name == "hbfork-http" else 1.4)
        if metric == "cpu_us_per_request":
            ax.axhline(CPU_BUDGET_US, color="#d62728", linewidth=0.8, linestyle="--")
            ax.text(table.levels[0], CPU_BUDGET_US, f" {CPU_BUDGET_US:g} µs target",
                    fontsize=7, color="#d62728", va="bottom")
        ax.set_xscale("log", base=2)
        ax.set_xticks(table.levels, [str(c) for c in table.levels])
        ax.set_xlabel("concurrent connections", fontsize=8)
        ax.set_ylim(bottom=0)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    handles, labels = next((ax.get_legend_handles_labels() for ax in axes.flat
                            if ax.get_legend_handles_labels()[0]), ([], []))
    fig.legend(handles, labels, loc="lower center", ncol=len(labels) or 1, fontsize=8)
    fig.suptitle(f"hbfork vs Apache, nginx, HAProxy: medians of {results['rounds']} rounds "
                 f"({results['environment']}, {results['machine']['cores']} cores, one shared "
                 "machine; compare same-round ratios in BENCHMARKS.md)", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    fig.savefig(path)
    plt.close(fig)
