"""The ``edgecomp`` command line: build, run, bench, eval, inspect, package, targets, zoo.

Every command calls the same functions as the Python API (``edgecomp.api``). Failures that are the
user's to fix print ``error: <cause>`` and ``hint: <what to do>`` and exit with code 2; the traceback
appears only with ``--debug``.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

import click

from edgecomp import __version__
from edgecomp.errors import EdgecompError


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _write_json(path: str | None, data: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2) + "\n")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgecomp")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
def cli(debug: bool) -> None:
    """Compile compressed, quantized neural networks for edge targets."""


@cli.command()
@click.argument("model")
@click.option("-t", "--target", default="x86", show_default=True, help="Target name (see `edgecomp targets`).")
@click.option("-o", "--out", required=True, type=click.Path(), help="Artifact directory to write.")
@click.option("-r", "--recipe", type=click.Path(), help="TOML recipe with [prune] [merge] [quantize] ... sections.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe field, e.g. export.opset=18.")
@click.option("--prune", type=float, help="Fraction of prunable parameters to remove.")
@click.option("--prune-method", help="newton | upop | magnitude | flap")
@click.option("--prune-budget-ms", type=float,
              help="Prune as little as needed for the built artifact's p50 latency (ms) to meet this.")
@click.option("--merge-r", type=int, help="Tokens merged per layer.")
@click.option("--merge-method", help="tome | crossget | random | pool")
@click.option("--merge-schedule", help="Per-layer merge schedule: 8, 8@-1 (r, inflect) or 16,12,8.")
@click.option("--quant", help="none | w4a16 | w8a8 | w4a8 | w4a4")
@click.option("--quant-method", help="quartdepth | gptq | rtn")
@click.option("--group-size", type=int, help="int4 weight group size: 32 | 64 | 128 (default: auto).")
@click.option("--calib", type=int, help="Number of calibration samples (default 32).")
@click.option("--trust-remote-code", is_flag=True,
              help="Let a Hugging Face directory whose config.json has auto_map run the code it ships.")
def build(model, target, out, recipe, overrides, prune, prune_method, prune_budget_ms, merge_r, merge_method,
          merge_schedule, quant, quant_method, group_size, calib, trust_remote_code):
    """Compile MODEL (zoo name, .onnx file or model directory) for TARGET into OUT."""
    from edgecomp import api
    from edgecomp.config import BuildConfig
    from edgecomp.targets import load_target

    tgt = load_target(target)  # fail fast on a bad target, before loading any model
    cfg = BuildConfig.from_toml(recipe) if recipe else BuildConfig()
    flags = {"prune.ratio": prune, "prune.method": prune_method, "prune.budget_ms": prune_budget_ms,
             "merge.r": merge_r, "merge.method": merge_method,
             "merge.schedule": merge_schedule,
             "quantize.scheme": quant, "quantize.method": quant_method, "quantize.group_size": group_size,
             "calib_samples": calib, "trust_remote_code": trust_remote_code or None}
    sets = [f"{k}={json.dumps(v) if isinstance(v, (str, bool)) else v}" for k, v in flags.items() if v is not None]
    cfg = cfg.with_overrides([*sets, *overrides])
    console = _console()
    with console.status("building") as status:
        path = api.build(model, tgt, out, cfg, progress=lambda stage: status.update(f"building {model}: {stage}"))
    report = json.loads((path / "report.json").read_text())
    timings = json.loads((path / "timings.json").read_text())
    for st in report["stages"]:
        detail = st.get("reason") or st.get("check") or (  # check: a device-only build, not run here
            f"max |err| {st['max_abs_err']:.2g}" if "max_abs_err" in st else "")
        if "rel_l2_err" in st:
            detail = f"rel L2 err {st['rel_l2_err']:.2g} (fake-quant reference)"
        if "compression" in st:
            detail = f"{st['layers_quantized']} layers, weights {st['compression']}x smaller"
        if "removed_share_of_prunable" in st:
            detail = (f"{st['method']}: params {st['params'][0]:,} -> {st['params'][1]:,}, "
                      f"GFLOPs {st['flops'][0] / 1e9:.2f} -> {st['flops'][1] / 1e9:.2f}")
            if "budget" in st:
                detail += f"; ratio {st['ratio']} meets {st['budget']['budget_ms']} ms"
        if "tokens_per_layer" in st:
            detail = (f"{st['method']}: tokens {st['tokens_in']} -> {st['tokens_per_layer'][-1]} "
                      f"(merging {100 * st.get('merge_share_eager', 0):.1f} % of eager forward time)")
        console.print(f"  {st['stage']:<9} {st['status']:<8} {timings.get(st['stage'], 0):6.1f} s  {detail}")
    console.print(f"wrote {path} ({timings['total']:.1f} s)")


@cli.command()
@click.argument("artifact", type=click.Path())
@click.option("-i", "--input", "inputs", multiple=True, metavar="NAME=FILE.npy",
              help="Input arrays (default: example inputs).")
@click.option("-o", "--out", type=click.Path(), help="Directory for the outputs as NAME.npy.")
def run(artifact, inputs, out):
    """Run ARTIFACT once on .npy inputs and write .npy outputs."""
    import numpy as np

    from edgecomp import api
    from edgecomp.inputs import parse_items

    feeds = parse_items(inputs) if inputs else None
    outputs = api.run(artifact, feeds)
    for name, value in outputs.items():
        click.echo(f"{name}: shape {list(value.shape)} {value.dtype}  first values {value.ravel()[:4].tolist()}")
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            np.save(Path(out) / f"{name}.npy", value)


@cli.command()
@click.argument("artifact", type=click.Path())
@click.option("--compare", default=None,
              help="Engines to time beside edgecomp (none: edgecomp alone). Default: onnxruntime,torch locally; "
                   "remote devices run edgecomp only.")
@click.option("--device", default="local", show_default=True, help="local, or rpc://HOST:PORT/KEY (a TVM RPC tracker).")
@click.option("--farm", help="HOST:PORT of a TVM RPC tracker: bench every --keys device in parallel.")
@click.option("--keys", help="Device keys at --farm, comma-separated (e.g. local-0,local-1).")
@click.option("--threads", default=2, show_default=True, help="Intra-op threads for every local engine.")
@click.option("--rounds", default=10, show_default=True, help="Timing rounds (interleaved between engines).")
@click.option("--per-round", default=5, show_default=True, help="Timed calls per engine per round.")
@click.option("--warmup", default=5, show_default=True, help="Untimed calls per engine first.")
@click.option("--resamples", default=2000, show_default=True, help="Bootstrap resamples per confidence interval.")
@click.option("--seed", default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--timeout", "timeout_s", default=600.0, show_default=True,
              help="Seconds a remote device may take (lease wait included).")
@click.option("--baseline", type=click.Path(),
              help="Another artifact with the same inputs (e.g. the uncompressed build): timed with the same engines "
                   "in the same rounds, so its ratio is the speed-up with a confidence interval.")
@click.option("--json", "json_out", type=click.Path(), help="Write the results JSON here.")
def bench(artifact, compare, device, farm, keys, threads, rounds, per_round, warmup, resamples, seed, timeout_s,
          baseline, json_out):
    """Latency of ARTIFACT (p50/p95/mean, bootstrap CIs, provenance) here or on RPC devices."""
    from edgecomp import api
    from edgecomp.artifact import Artifact
    from edgecomp.bench.measure import BenchPolicy
    from edgecomp.bench.stats import StatsPolicy
    from edgecomp.errors import ConfigError

    if any(v < 1 for v in (rounds, per_round)) or warmup < 0:
        raise ConfigError("--rounds and --per-round must be at least 1, --warmup at least 0", hint="e.g. --rounds 10")
    policy = BenchPolicy(threads=threads, warmup=warmup, rounds=rounds, per_round=per_round)
    stats = StatsPolicy(resamples=resamples, seed=seed)
    devices = _bench_devices(device, farm, keys)
    engines = tuple(e.strip() for e in (compare or "").split(",") if e.strip() and e.strip() != "none")
    console = _console()
    if devices:
        if baseline:
            raise ConfigError("--baseline is for local runs", hint="bench each artifact on the device separately")
        if any(e != "edgecomp" for e in engines):
            raise ConfigError(f"--compare {compare} cannot run on a TVM RPC device (it runs TVM modules only)",
                              hint="drop --compare for remote devices; compare engines with a local run")
        with console.status("benchmarking") as status:
            res = api.bench_remote(artifact, devices, policy, stats=stats, timeout_s=timeout_s,
                                   progress=lambda url, i, n: status.update(f"benchmarking: {i}/{n} devices done"))
    else:
        art = Artifact.open(artifact, verify=False)  # api.bench verifies it
        if art.runner == "sim":  # the simulated accelerator: cycle-model numbers, not wall-clock
            from edgecomp.asic.bench import bench_json, print_summary

            res = bench_json(Artifact.open(artifact))
            _write_json(json_out, res)
            print_summary(res)
            return
        if art.runner == "device":  # built for a device this machine cannot run (jetson-orin): say so
            art.load_runner()  # raises ArtifactError naming the device
        if art.runner != "local":  # an emulated cross target: its timings would be the emulator's
            from edgecomp.runtime.qemu import no_timings

            target = art.manifest["target"]
            raise no_timings(target["arch"], target["cross"]["emulator"])
        engines = engines if compare is not None else ("onnxruntime", "torch")
        with console.status("benchmarking") as status:
            res = api.bench(artifact, engines, policy, stats=stats, baseline=baseline,
                            progress=lambda what, i, n: status.update(f"benchmarking: {what} {i}/{n}"))
    _write_json(json_out, res)
    from edgecomp.bench.table import print_table

    print_table(res)
    for w in res.get("warnings", []):
        click.echo(f"warning: {w}", err=True)


def _bench_devices(device: str, farm: str | None, keys: str | None) -> list[str]:
    """The rpc:// URLs to bench ([] for a local run), from --device or --farm/--keys."""
    from edgecomp.bench.tracker import Device, Tracker
    from edgecomp.errors import ConfigError

    if farm or keys:
        if not (farm and keys):
            raise ConfigError("--farm and --keys go together", hint="e.g. --farm 127.0.0.1:9190 --keys local-0,local-1")
        if device != "local":
            raise ConfigError("give either --device or --farm/--keys", hint="--device names one device")
        tracker = Tracker.parse(farm)
        names = [k.strip() for k in keys.split(",") if k.strip()]
        return [Device.parse(f"rpc://{tracker}/{k}").url for k in names]
    if device == "local":
        return []
    return [Device.parse(device).url]


@cli.group()
def farm():
    """A local device farm: TVM's RPC tracker and servers (loopback only unless --allow-remote)."""


_STATE_DIR = click.option("--state-dir", type=click.Path(),
                          help="Where the farm's state and logs live (default ~/.cache/edgecomp/farm, "
                               "or $EDGECOMP_FARM_DIR).")


@farm.command(name="up")
@click.option("--servers", default=2, show_default=True, help="RPC servers, keys local-0, local-1, ...")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=9190, show_default=True, help="Tracker port.")
@click.option("--key-prefix", default="local", show_default=True, help="Device keys are PREFIX-0, PREFIX-1, ...")
@click.option("--server-port", type=int,
              help="Servers listen on exactly this port and the next ones (for ssh tunnels; default: free ports).")
@click.option("--threads", type=int, help="TVM_NUM_THREADS of every server (default: TVM's own choice).")
@click.option("--plain", is_flag=True, help="Stock tvm.exec.rpc_server (reports no provenance).")
@click.option("--allow-remote", is_flag=True,
              help="Permit a non-loopback --host. TVM RPC is unauthenticated: anyone reaching it runs code.")
@_STATE_DIR
def farm_up(servers, host, port, key_prefix, server_port, threads, plain, allow_remote, state_dir):
    """Start a tracker and SERVERS RPC servers as background processes."""
    from edgecomp.bench import farm as f

    cfg = f.FarmConfig(host=host, port=port, servers=servers, key_prefix=key_prefix, allow_remote=allow_remote,
                       server_port=server_port, threads=threads, plain=plain)
    with _console().status(f"starting a tracker and {servers} servers on {host}"):
        state = f.up(cfg, state_dir)
    click.echo(f"tracker {state['tracker']} (pid {state['processes'][0]['pid']})")
    for p in state["processes"][1:]:
        click.echo(f"  {p['key']:<12} rpc://{state['tracker']}/{p['key']}  server port {p['port']}  pid {p['pid']}")
    click.echo(f"state and logs: {state['state_dir']}; stop with `edgecomp farm down`")


@farm.command(name="status")
@click.option("--tracker", help="HOST:PORT of any tracker (default: the recorded farm's).")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@_STATE_DIR
def farm_status(tracker, as_json, state_dir):
    """Keys, free and pending leases at the tracker; the recorded processes."""
    from edgecomp.bench import farm as f
    from edgecomp.bench.tracker import Tracker

    st = f.status(state_dir, Tracker.parse(tracker) if tracker else None)
    if as_json:
        click.echo(json.dumps(st, indent=2))
        return
    click.echo(f"tracker {st['tracker']}" + (f"  NOT ANSWERING: {st['tracker_error']}" if st["tracker_error"] else ""))
    click.echo(f"  {'key':<16} {'total':>5} {'free':>5} {'pending':>7}")
    for key, q in st["queue"].items():
        click.echo(f"  {key:<16} {q['total']:>5} {q['free']:>5} {q['pending']:>7}")
    for p in st["processes"]:
        click.echo(f"  {p['role']:<7} {p.get('key', ''):<10} pid {p['pid']:<8} {'up' if p['alive'] else 'DOWN'}"
                   f"  log {p['log']}")


@farm.command(name="down")
@_STATE_DIR
def farm_down(state_dir):
    """Stop the recorded farm's tracker and servers."""
    from edgecomp.bench import farm as f

    res = f.down(state_dir)
    click.echo(f"stopped the farm at {res['tracker']}: {', '.join(res['stopped']) or 'nothing was running'}")


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--out", required=True, type=click.Path(), help="Pareto-front PNG to write.")
@click.option("--dist", "dist_out", type=click.Path(),
              help="Latency-distribution PNG (default: OUT with -dist before the suffix).")
@click.option("--engine", default="edgecomp", show_default=True, help="Whose latency the Pareto front uses.")
def plot(files, out, dist_out, engine):
    """Latency vs quality Pareto front (bench + eval JSON) and latency distributions (bench JSON)."""
    from edgecomp.bench import plot as pl

    written = pl.plot_files([Path(f) for f in files], Path(out), Path(dist_out) if dist_out else None, engine)
    for path, what in written.items():
        click.echo(f"wrote {path}: {what}")


@cli.command(name="eval")
@click.argument("model")
@click.option("--task", help="Task name (default: the model's own task).")
@click.option("--limit", type=int, help="Evaluate the first N examples only.")
@click.option("--no-reference", is_flag=True, help="Skip the fp32 torch reference run.")
@click.option("--json", "json_out", type=click.Path(), help="Write the result JSON here.")
def eval_(model, task, limit, no_reference, json_out):
    """Quality of an artifact (through TVM) or a zoo model (torch) on real data."""
    from edgecomp import api

    with _console().status(f"evaluating {model}"):
        res = api.evaluate(model, task, limit, reference=not no_reference)
    _write_json(json_out, res)
    ref = res.get("reference", {}).get("value")
    line = f"{res['model']} {res['task']}: {res['metric']} = {res['value']:.4f} (n={res['n']})"
    click.echo(line + (f", fp32 torch reference {ref:.4f}" if ref is not None else ""))
    for k, v in res["details"].items():
        click.echo(f"  {k}: {v}")


@cli.command()
@click.argument("artifact", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print manifest and report as JSON.")
def inspect(artifact, as_json):
    """Show what ARTIFACT contains and what each stage did."""
    from edgecomp.artifact import Artifact

    art = Artifact.open(artifact)
    report = art.report()
    if as_json:
        click.echo(json.dumps({"manifest": art.manifest, "report": report}, indent=2))
        return
    m = art.manifest
    click.echo(f"{m['model']} for {m['target']['name']} ({json.dumps(m['target']['tvm'])}), edgecomp {m['edgecomp']}")
    click.echo("inputs:  " + ", ".join(f"{i['name']}{i['shape']}:{i['dtype']}" for i in m["inputs"]))
    click.echo("outputs: " + ", ".join(m["outputs"]))
    for st in report["stages"]:
        extra = {k: v for k, v in st.items()
                 if k not in ("stage", "status", "per_function", "ops", "untuned", "per_layer", "worst_layers")}
        click.echo(f"  {st['stage']:<9} {st['status']:<8} {json.dumps(extra)[:300]}")
        if st.get("per_layer"):
            _echo_worst_layers(st["per_layer"])
    for name, f in m["files"].items():
        click.echo(f"  {f['bytes']:>12,d}  {f['sha256'][:16]}  {name}")


def _echo_worst_layers(layers: list[dict], n: int = 8) -> None:
    """The quantized layers with the lowest output SQNR against fp32 (calibration data)."""
    ranked = sorted(layers, key=lambda r: (r["output_sqnr_db"] is None, r["output_sqnr_db"] or 0.0))[:n]
    click.echo(f"    worst {len(ranked)} of {len(layers)} quantized layers (output SQNR vs fp32, calibration feeds):")
    for r in ranked:
        a = f"a{r['a_bits']}" if r["a_bits"] else "a16"
        polished = " lognp" if r["polished"] else ""
        click.echo(f"    {r['output_sqnr_db'] if r['output_sqnr_db'] is not None else 'inf':>7} dB  "
                   f"weights {r['weight_sqnr_db'] if r['weight_sqnr_db'] is not None else 'inf':>6} dB  "
                   f"w{r['w_bits']}{a}{polished} {r['method']:<10} outliers {r['outlier_channels']:>3}  {r['layer']}")


@cli.command()
@click.argument("artifact", type=click.Path())
@click.option("-t", "--target", required=True, help="The target ARTIFACT was built for (e.g. arm64).")
@click.option("-o", "--out", required=True, type=click.Path(), help="Bundle directory to write.")
@click.option("--static", is_flag=True, help="Also static/: the model and the C API to link into one program.")
def package(artifact, target, out, static):
    """Bundle ARTIFACT with the C API, the TVM runtime and an example program for TARGET."""
    from edgecomp.runtime import bundle
    from edgecomp.targets import load_target

    tgt = load_target(target)
    with _console().status(f"packaging {artifact} for {tgt.name}"):
        path = bundle.package(artifact, tgt, out, static=static)
    size = json.loads((path / "size.json").read_text())
    for name, n in size["files"].items():
        click.echo(f"  {n:>12,d}  {name}")
    click.echo(f"wrote {path}: runtime + model code {size['runtime_and_code_bytes'] / 1e6:.2f} MB (stripped), "
               f"params {size['params_bytes'] / 1e6:.2f} MB")


@cli.command()
def targets():
    """List the targets (from targets/*.toml)."""
    from edgecomp.targets import available

    for t in available():
        alias = f" (aliases: {', '.join(t.aliases)})" if t.aliases else ""
        click.echo(f"{t.name:<14} {t.description}{alias}")
        click.echo(f"{'':<14} tvm {json.dumps(t.resolved_tvm())}, capabilities: {', '.join(t.capabilities)}")


@cli.command()
def zoo():
    """List the zoo models, their weights' provenance and their eval task."""
    from edgecomp import zoo as z

    for name in z.names():
        e = z.get(name)
        ins = ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in e.inputs)
        click.echo(f"{name:<20} {e.description}")
        click.echo(f"{'':<20} inputs {ins}; task {e.task}; weights: {e.weights}")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("EDGECOMP_DEBUG") == "1"
    try:
        cli.main(args=args, prog_name="edgecomp", standalone_mode=False)
    except EdgecompError as e:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {e.message}", err=True)
        if e.hint:
            click.echo(f"hint: {e.hint}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort as e:
        if isinstance(e.__cause__, EOFError):  # click wraps any EOFError as Abort: a bug, not a Ctrl-C
            _internal_error(e.__cause__, debug)
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # a bug in edgecomp or a library: one line unless --debug
        _internal_error(e, debug)


def _internal_error(e: BaseException, debug: bool) -> None:
    if debug:
        traceback.print_exception(e)
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    click.echo(f"internal error: {type(e).__name__}: {msg}", err=True)
    click.echo("hint: rerun with --debug and report the traceback", err=True)
    sys.exit(1)


if __name__ == "__main__":
    main()
