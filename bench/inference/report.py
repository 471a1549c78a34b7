"""Markdown tables of one ``inference.json`` (what :mod:`bench.inference.run` wrote), for docs/inference.md.

The tables in the docs are this script's output, not copied by hand::

    python -m bench.inference.report bench/inference/results/inference.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.inference.run import batch_rate


def _in_process(entry: dict[str, Any]) -> str:
    limit = entry["in_process"]
    sizes = []
    for b in limit["batches"]:
        sizes.append(f"{b['batch_size']}: {batch_rate(b):.0f}")
    best = next(b for b in limit["batches"] if b["batch_size"] == limit["best_batch_size"])
    return (
        f"In process (decode + model, no RPC), images/s by batch size: {', '.join(sizes)}; "
        f"single image p50 {limit['single_image_p50_ms']:.2f} ms; "
        f"{best.get('cpu_cores', float('nan')):.2f} cores busy at batch {limit['best_batch_size']}"
    )


def _sweep(entry: dict[str, Any]) -> list[str]:
    on = {r["concurrency"]: r for r in entry["batching_on"]["runs"] if r["mode"] == "closed"}
    off = {r["concurrency"]: r for r in entry["batching_off"]["runs"] if r["mode"] == "closed"}
    lines = [
        "| clients | batching on: images/s | p50 ms | p90 ms | p99 ms | mean batch | batching off: images/s "
        "| p50 ms | p99 ms | on/off |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in sorted(on):
        a, b = on[c], off.get(c)
        batch = a.get("server", {}).get("mean_batch_size", float("nan"))
        row = (
            f"| {c} | {a['throughput']:.0f} | {a['p50_ms']:.1f} | {a['p90_ms']:.1f} | {a['p99_ms']:.1f} | {batch:.1f} |"
        )
        if b is None:
            row += " – | – | – | – |"
        else:
            ratio = a["throughput"] / b["throughput"]
            row += f" {b['throughput']:.0f} | {b['p50_ms']:.1f} | {b['p99_ms']:.1f} | {ratio:.2f} |"
        lines.append(row)
    return lines


def _rates(entry: dict[str, Any]) -> str:
    parts = [
        f"{r['rate']:.0f}/s offered → {r['throughput']:.0f}/s served, "
        f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms"
        for r in entry["batching_on"]["runs"]
        if r["mode"] == "fixed_rate"
    ]
    return "Fixed rate (batching on): " + "; ".join(parts) if parts else ""


def goals_table(results: dict[str, Any]) -> list[str]:
    models = results["models"]
    lines = [
        "| goal | " + " | ".join(m["model"] for m in models) + " |",
        "|---|" + "---|" * len(models),
    ]

    def cell(m: dict[str, Any], key: str, fmt: str) -> str:
        g = m["goals"].get(key)
        if g is None:
            return "–"
        return fmt.format(**g) + (" ✔" if g.get("met") else " ✘")

    lines.append(
        "| c=16 throughput ≥ 0.85 × in-process limit | "
        + " | ".join(cell(m, "c16_fraction_of_in_process_limit", "{value:.2f}") for m in models)
        + " |"
    )
    lines.append(
        "| c=1 p50 within 2 ms of in-process single image | "
        + " | ".join(cell(m, "c1_p50_minus_in_process_ms", "+{value:.2f} ms") for m in models)
        + " |"
    )
    ratios = []
    for m in models:
        g = m["goals"]["batching_on_over_off"]
        values = list(g["value"].values())
        ratios.append(f"{min(values):.2f} … {max(values):.2f}" + (" ✔" if g["met"] else " ✘"))
    lines.append("| batching on ≥ off at every concurrency (min … max) | " + " | ".join(ratios) + " |")
    lines.append(
        "| *not a goal:* c=16 vs in-process at the batch size the server forms | "
        + " | ".join(
            "{value:.2f} (batch {server_mean_batch_size:.1f} vs {in_process_batch_size})".format(
                **m["goals"]["c16_fraction_of_in_process_at_the_batch_size_it_forms"]
            )
            for m in models
        )
        + " |"
    )
    lines.append(
        "| *not a goal:* CPU ceiling for c=16 (any server, this machine): at the best batch / at batch 16 | "
        + " | ".join(
            f"{m['goals'].get('c16_cpu_ceiling', {}).get('value', float('nan')):.2f} / "
            f"{m['goals'].get('c16_cpu_ceiling_at_batch_16', {}).get('value', float('nan')):.2f}"
            for m in models
        )
        + " |"
    )
    paired = [m["goals"].get("batching_on_over_off_by_round", {}) for m in models]
    if any(paired):
        lines.append(
            "| *not a goal:* on/off of each round's back-to-back pair, by clients (min–max) | "
            + " | ".join(
                "; ".join(f"{c}: {min(v):.2f}–{max(v):.2f}" for c, v in sorted(p.items(), key=lambda kv: int(kv[0])))
                for p in paired
            )
            + " |"
        )
    decode = results["decode"]
    lines.append(
        f"\n5 MP JPEG preprocessing ≥ 3× faster than full decode + resize: {decode['goal']['value']:.1f}× "
        + ("✔" if decode["goal"]["met"] else "✘")
        + " ("
        + ", ".join(f"{r['target']} px: {r['full_ms']:.1f} → {r['draft_ms']:.1f} ms" for r in decode["results"])
        + ")"
    )
    return lines


def render(results: dict[str, Any]) -> str:
    out = []
    floor = {r["concurrency"]: r for r in results.get("rpc_floor", [])}
    if floor:
        out.append(
            "RPC floor (a no-op Classify): "
            + "; ".join(
                f"c={c}: server {r['server_cpu_ms_per_request']:.2f} + load generator "
                f"{r['client_cpu_ms_per_request']:.2f} ms CPU per call"
                for c, r in sorted(floor.items())
            )
        )
        out.append("")
    for entry in results["models"]:
        out += [f"**{entry['model']}** ({entry['input']} input)", "", _in_process(entry), ""]
        out += _sweep(entry)
        rates = _rates(entry)
        if rates:
            out += ["", rates]
        out.append("")
    out += goals_table(results)
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="an inference.json")
    args = parser.parse_args(argv)
    print(render(json.loads(args.results.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
