"""Plots of bench and eval JSON: the latency / quality Pareto front across builds, and latency distributions.

Readers turn each JSON file into latency records (``edgecomp bench`` JSON, one per device of a farm run),
quality records (``edgecomp eval`` JSON) or complete points (result files that hold both, e.g.
``bench/results/prune/*.json`` with ``eval`` + ``p50_ms``, ``bench/results/merge/*.json`` with ``eval`` +
``bench``). A latency record and a quality record pair into one point when their file names agree once
``-bench`` / ``-eval`` is removed (``A-bench.json`` + ``A-eval.json``, or ``A.json`` + ``A-eval.json``).

The Pareto front is drawn per (model, metric): a build is on the front when no other build of that model
is both at least as fast and at least as good, one of them strictly. Latency error bars are the bootstrap
CI on the median when the bench JSON has one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgecomp.errors import ConfigError, MissingDataError


@dataclass(frozen=True)
class Latency:
    key: str  # pairing key: the file stem without -bench
    model: str
    label: str  # what a plot calls it (engine, device)
    p50_ms: float
    ci_ms: tuple[float, float] | None = None  # bootstrap CI on p50, when recorded
    samples_ms: tuple[float, ...] = ()  # raw per-call samples, when recorded


@dataclass(frozen=True)
class Quality:
    key: str  # pairing key: the file stem without -eval
    model: str
    metric: str  # e.g. top1, perplexity
    value: float
    higher_is_better: bool = True


@dataclass(frozen=True)
class Point:
    model: str
    label: str  # the build, e.g. "newton 0.3", "tome 8@-1", "w4a8-rtn"
    metric: str
    value: float
    higher_is_better: bool
    p50_ms: float
    ci_ms: tuple[float, float] | None = None


@dataclass
class Loaded:
    latencies: list[Latency] = field(default_factory=list)
    qualities: list[Quality] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)


def _stem(path: Path, suffix: str) -> str:
    s = path.stem
    return s[: -len(suffix)] if s.endswith(suffix) else s


def _latency(rec: dict, key: str, label: str, engine: str) -> Latency | None:
    r = rec.get("results", {}).get(engine)
    if not r:
        return None
    ci = tuple(r["p50_ci_ms"]) if r.get("p50_ci_ms") else None
    return Latency(key, rec.get("model", key), label, float(r["p50_ms"]), ci, tuple(r.get("samples_ms", ())))


def _read_bench(d: dict, path: Path, out: Loaded, engine: str) -> None:
    key = _stem(path, "-bench")
    lat = _latency(d, key, engine, engine)
    if lat:
        out.latencies.append(lat)
    for name in d.get("results", {}):  # other engines: distributions only (never paired)
        if name != engine:
            other = _latency(d, f"{key}:{name}", name, name)
            if other:
                out.latencies.append(other)


def _read_farm(d: dict, path: Path, out: Loaded, engine: str) -> None:
    for k, dev in d["devices"].items():
        lat = _latency({**dev, "model": d.get("model")}, f"{_stem(path, '-bench')}:{k}", k, engine)
        if lat:
            out.latencies.append(lat)


def _read_eval(d: dict, path: Path, out: Loaded, engine: str) -> None:
    out.qualities.append(Quality(_stem(path, "-eval"), d["model"], d["metric"], float(d["value"]),
                                 bool(d.get("higher_is_better", True))))


def _label(d: dict, path: Path) -> str:
    if "variant" in d:
        return f"{d['variant']} {d.get('ratio', '')}".strip()
    if "method" in d and "schedule" in d:
        return f"{d['method']} {d['schedule']}"
    return _stem(path, "-bench")


def _read_combined(d: dict, path: Path, out: Loaded, engine: str) -> None:
    ev = d["eval"]
    if ev.get("value") is None or (d.get("p50_ms") is None and "bench" not in d):
        return  # a row that was not built or not measured
    if "bench" in d:
        lat = _latency(d["bench"], "", "", engine)
        if lat is None:
            return
        p50, ci = lat.p50_ms, lat.ci_ms
    else:
        p50, ci = float(d["p50_ms"]), None
    out.points.append(Point(d.get("model", ev["model"]), _label(d, path), ev["metric"], float(ev["value"]),
                            bool(ev.get("higher_is_better", True)), p50, ci))


# (name, recognizes the JSON, reader): the first match wins; a file nothing recognizes is skipped.
READERS: list[tuple[str, Callable[[dict], bool], Callable]] = [
    ("combined", lambda d: isinstance(d.get("eval"), dict) and ("p50_ms" in d or "bench" in d), _read_combined),
    ("farm", lambda d: isinstance(d.get("devices"), dict), _read_farm),
    ("bench", lambda d: isinstance(d.get("results"), dict) and "provenance" in d, _read_bench),
    ("eval", lambda d: {"metric", "value", "task"} <= set(d), _read_eval),
]


def load(files: list[Path], engine: str = "edgecomp") -> tuple[Loaded, list[Path]]:
    """Read every file through the first reader that recognizes it; returns (records, skipped files)."""
    out, skipped = Loaded(), []
    for path in files:
        try:
            d = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path} does not exist", hint="pass bench / eval JSON files") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path} is not JSON: {e}", hint="pass bench / eval JSON files") from None
        reader = next((r for _, match, r in READERS if isinstance(d, dict) and match(d)), None)
        if reader is None:
            skipped.append(Path(path))
        else:
            reader(d, Path(path), out, engine)
    return out, skipped


def pair(loaded: Loaded) -> list[Point]:
    """The complete points plus every latency record paired with the quality record of the same key."""
    quality = {q.key: q for q in loaded.qualities}
    points = list(loaded.points)
    for lat in loaded.latencies:
        q = quality.get(lat.key)
        if q:
            points.append(Point(q.model, lat.key, q.metric, q.value, q.higher_is_better, lat.p50_ms, lat.ci_ms))
    return points


def pareto_front(points: list[Point]) -> list[Point]:
    """The non-dominated points (faster or better than every other), sorted by latency. One model/metric."""
    def better(a: Point, b: Point) -> bool:  # a at least as good as b
        return a.value >= b.value if a.higher_is_better else a.value <= b.value

    front = [p for p in points
             if not any(o is not p and o.p50_ms <= p.p50_ms and better(o, p)
                        and (o.p50_ms < p.p50_ms or o.value != p.value) for o in points)]
    return sorted(front, key=lambda p: p.p50_ms)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise MissingDataError("`edgecomp plot` needs matplotlib, which is not installed",
                               hint="pip install 'edgecomp[bench]' (or pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pareto_png(points: list[Point], out: Path, title: str = "") -> Path:
    """One panel per (model, metric): every build, its Pareto front as a line, labels on the front."""
    plt = _pyplot()
    groups: dict[tuple[str, str], list[Point]] = {}
    for p in points:
        groups.setdefault((p.model, p.metric), []).append(p)
    n = len(groups)
    cols = min(n, 2)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 4.6 * rows), squeeze=False)
    for ax, ((model, metric), pts) in zip(axes.flat, sorted(groups.items()), strict=False):
        front = pareto_front(pts)
        on = {id(p) for p in front}
        for p in pts:
            err = None if p.ci_ms is None else [[p.p50_ms - p.ci_ms[0]], [p.ci_ms[1] - p.p50_ms]]
            ax.errorbar(p.p50_ms, p.value, xerr=err, fmt="o", ms=6 if id(p) in on else 4,
                        color="C3" if id(p) in on else "C0", alpha=1.0 if id(p) in on else 0.5, capsize=2)
        ax.plot([p.p50_ms for p in front], [p.value for p in front], "-", color="C3", lw=1.2, label="Pareto front")
        for p in front:
            ax.annotate(p.label, (p.p50_ms, p.value), fontsize=7, xytext=(4, 3), textcoords="offset points")
        better = "higher" if pts[0].higher_is_better else "lower"
        ax.set_title(f"{model}: {len(pts)} builds, {len(front)} on the front", fontsize=10)
        ax.set_xlabel("p50 latency (ms), edgecomp")
        ax.set_ylabel(f"{metric} ({better} is better)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def distribution_png(latencies: list[Latency], out: Path) -> Path:
    """Box plots of the raw samples of every record that kept them, with the CI on the median."""
    plt = _pyplot()
    recs = [r for r in latencies if r.samples_ms]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(recs) + 1.5))
    labels = [f"{r.key.split(':')[0]}: {r.label}" for r in recs]
    ax.boxplot([list(r.samples_ms) for r in recs], vert=False, showfliers=True, widths=0.5)
    ax.set_yticks(range(1, len(recs) + 1), labels, fontsize=8)
    for i, r in enumerate(recs, start=1):
        if r.ci_ms:
            ax.plot(r.ci_ms, [i, i], color="C3", lw=4, alpha=0.6, solid_capstyle="butt")
    ax.set_xlabel("latency per call (ms); red: bootstrap CI on the median")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_files(files: list[Path], out: Path, dist_out: Path | None = None, engine: str = "edgecomp") -> dict:
    """`edgecomp plot`: the Pareto PNG when any latency/quality pairs exist, the distribution PNG when any
    record kept its samples. Returns ``{path: what}``; raises ``ConfigError`` when neither can be drawn."""
    loaded, skipped = load(files, engine)
    points = pair(loaded)
    with_samples = [r for r in loaded.latencies if r.samples_ms]
    if not points and not with_samples:
        raise ConfigError(f"nothing to plot in {len(files)} file(s): no bench JSON pairs with an eval JSON "
                          f"(A-bench.json + A-eval.json) and no bench JSON keeps raw samples",
                          hint="pass `edgecomp bench --json A-bench.json` and `edgecomp eval --json A-eval.json`")
    _pyplot()  # fail before writing anything when matplotlib is missing
    written = {}
    if points:
        written[pareto_png(points, out)] = f"Pareto front of {len(points)} builds"
    if with_samples:
        dist = dist_out or out.with_name(f"{out.stem}-dist{out.suffix or '.png'}")
        written[distribution_png(with_samples, dist)] = f"latency distributions of {len(with_samples)} runs"
    if skipped:
        written["(skipped)"] = f"{len(skipped)} file(s) that are neither bench nor eval JSON"
    return written
