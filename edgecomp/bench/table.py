"""The terminal table of a bench record (one device: a row per engine; a farm: a row per device)."""

from __future__ import annotations


def _p50(r: dict) -> str:
    lo, hi = r.get("p50_ci_ms") or (None, None)
    return f"{r['p50_ms']:.3f} ({lo:.2f}-{hi:.2f})" if lo is not None else f"{r['p50_ms']:.3f}"


def _ratio(ratio: dict | None) -> str:
    if not ratio:
        return "1.00x"
    lo, hi = ratio["ci"]
    mark = "" if ratio["supported"] else " (!)"
    return f"{ratio['p50_ratio']:.2f}x ({lo:.2f}-{hi:.2f}){mark}"


def rows(res: dict) -> tuple[str, list[str], list[list[str]]]:
    """(title, header, rows) of ``res``: engines of one device, or the edgecomp engine of every device."""
    if "devices" in res:
        keys = list(res["devices"])
        title = f"{res['model']} on {len(keys)} devices at {res['farm']} (batch 1, in parallel)"
        header = ["device", "p50 ms (CI)", "p95 ms", "mean ms", "n", f"vs {keys[0]} (CI)"]
        out = []
        for i, k in enumerate(keys):
            d = res["devices"][k]
            r = d["results"]["edgecomp"]
            ratio = res["ratios"].get(f"{k}/{keys[0]}") if i else None
            out.append([k, _p50(r), f"{r['p95_ms']:.3f}", f"{r['mean_ms']:.3f}", str(r["n"]),
                        _ratio(ratio)])
        return title, header, out
    threads = res.get("provenance", {}).get("threads", "n/a")
    title = f"{res['model']} on {res['target']}, {res['device']} (batch 1, threads: {threads})"
    header = ["engine", "p50 ms (CI)", "p95 ms", "mean ms", "n", "vs edgecomp (CI)"]
    out = []
    for name, r in res["results"].items():
        ratio = res.get("ratios", {}).get(f"{name}/edgecomp")
        out.append([name, _p50(r), f"{r['p95_ms']:.3f}", f"{r['mean_ms']:.3f}", str(r["n"]),
                    _ratio(ratio)])
    return title, header, out


def print_table(res: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    title, header, body = rows(res)
    table = Table(title=title)
    for i, col in enumerate(header):
        table.add_column(col, justify="left" if col in ("engine", "device") else "right",
                         min_width=max(len(row[0]) for row in body) if i == 0 else None)
    for row in body:
        table.add_row(*row)
    Console().print(table)
    if any("(!)" in c for row in body for c in row):
        Console(stderr=True).print("(!) the ratio's confidence interval does not support it: see the warnings")
