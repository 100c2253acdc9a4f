"""Build configuration: one frozen dataclass per stage, nested in ``BuildConfig``.

Loaded from a TOML recipe (sections named after the stages), overridden from the CLI with
``--set stage.field=value``, validated on construction, and saved resolved into every artifact.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from edgecomp.errors import ConfigError

QUANT_SCHEMES = ("none", "w4a16", "w8a8", "w4a8", "w4a4")
QUANT_METHODS = ("quartdepth", "gptq", "rtn")
PRUNE_METHODS = ("newton", "upop", "magnitude", "flap")
MAX_PRUNE_RATIO = 0.95  # beyond this a block keeps too little to be worth running
MERGE_METHODS = ("tome", "crossget", "random", "pool")
GROUP_SIZES = (16, 32, 64, 128, 256)  # weight / activation group sizes along K (0 = none: per channel / token)


def _check(cond: bool, message: str, hint: str = "fix the recipe or the --set value (README: Recipes)") -> None:
    if not cond:
        raise ConfigError(message, hint=hint)


@dataclass(frozen=True)
class PruneConfig:
    ratio: float = 0.0  # fraction of prunable parameters (attention + MLP) to remove; 0 = stage skipped
    method: str = "newton"  # newton | upop | magnitude | flap
    budget_ms: float = 0.0  # > 0: find the smallest ratio whose built artifact meets this p50 latency
    multiple: int = 8  # kept MLP widths are rounded to a multiple of this
    rank: str = "loss"  # newton: loss (Thm 3's compensated loss per unit) | mask (the Newton mask, §3.2-3.3)
    heads: str = "auto"  # cut attention heads: auto (yes, except grouped-query attention) | yes | no
    allocation: str = "uniform"  # uniform: every layer loses the ratio | global: one ranking across layers
    sequential: bool = True  # uniform: score + compensate layer by layer on the already-pruned model
    # sequential newton: refit each output projection to the unpruned model's output (original) or to the
    # pruned model's own full-width output (pruned: the paper's Thm 3 on the layer alone)
    compensate_to: str = "pruned"
    lam: float = 1.0  # Newton: weight λ of the (1ᵀz - r)² term, with X normalised to ‖X‖_F = 1
    damp: float = 0.01  # Newton compensation: γ as a fraction of mean(diag XᵀX)
    # UPop (search + retrain on the model's task, edgecomp.prune.upop): vit-fmnist and minilm-l6 only
    upop_seconds: float = 1500.0  # wall-clock box for search + retrain (vit-fmnist builds in < 30 min on 2 cores)
    upop_search_share: float = 0.5  # share of upop_seconds for the search; the compact model retrains the rest
    upop_steps: int = 0  # > 0: exactly this many search steps and as many retrain steps (upop_seconds ignored)
    upop_interval: int = 0  # search steps between mask updates; 0 = search steps // 100 (at least 1)
    upop_batch: int = 64  # training batch (images, or sentences for the distillation loss)
    upop_lr: float = 1e-4  # AdamW learning rate of search and retrain (retrain decays it to 0 on a cosine)
    upop_w_attn: float = 4.8e-3  # weight of Σ|ζ_attn| in the search loss (the paper's w_sp_attn)
    upop_w_mlp: float = 2e-4  # weight of Σ|ζ_mlp| (w_sp_mlp)

    def __post_init__(self):
        _check(0.0 <= self.ratio < MAX_PRUNE_RATIO, f"prune.ratio must be in [0, {MAX_PRUNE_RATIO}), got {self.ratio}",
               "e.g. --prune 0.2 removes 20 % of the attention and MLP parameters")
        _check(self.method in PRUNE_METHODS, f"unknown prune method {self.method!r}", f"one of {PRUNE_METHODS}")
        _check(self.budget_ms >= 0, f"prune.budget_ms must be >= 0, got {self.budget_ms}", "e.g. --prune-budget-ms 5")
        _check(self.allocation in ("global", "uniform"), f"unknown prune.allocation {self.allocation!r}",
               "global | uniform")
        _check(self.heads in ("auto", "yes", "no"), f"unknown prune.heads {self.heads!r}", "auto | yes | no")
        _check(self.compensate_to in ("original", "pruned"), f"unknown prune.compensate_to {self.compensate_to!r}",
               "original | pruned")
        _check(self.rank in ("loss", "mask"), f"unknown prune.rank {self.rank!r}", "loss | mask")
        _check(self.multiple >= 1, f"prune.multiple must be >= 1, got {self.multiple}", "e.g. 8")
        _check(self.lam > 0 and self.damp >= 0, f"prune.lam must be > 0 and prune.damp >= 0, got {self.lam}, "
               f"{self.damp}", "the defaults are lam = 1.0, damp = 0.01")
        _check(self.upop_seconds > 0, f"prune.upop_seconds must be > 0, got {self.upop_seconds}", "e.g. 1500")
        _check(0 < self.upop_search_share < 1, f"prune.upop_search_share must be in (0, 1), got "
               f"{self.upop_search_share}", "e.g. 0.5: half searching, half retraining")
        _check(self.upop_steps >= 0 and self.upop_interval >= 0 and self.upop_batch >= 1,
               f"prune.upop_steps and prune.upop_interval must be >= 0 and prune.upop_batch >= 1, got "
               f"{self.upop_steps}, {self.upop_interval}, {self.upop_batch}", "0 steps = from upop_seconds")
        _check(self.upop_lr > 0 and self.upop_w_attn >= 0 and self.upop_w_mlp >= 0,
               f"prune.upop_lr must be > 0 and the sparsity weights >= 0, got {self.upop_lr}, {self.upop_w_attn}, "
               f"{self.upop_w_mlp}", "the defaults are upop_lr = 1e-4, upop_w_attn = 4.8e-3, upop_w_mlp = 2e-4")
        _check(not (self.method == "upop" and self.budget_ms > 0),
               "a latency budget cannot be searched with prune method upop",
               "the budget search rebuilds per candidate ratio and UPop retrains each time: use --prune RATIO "
               "with upop, or --prune-method newton with --prune-budget-ms")

    @property
    def enabled(self) -> bool:
        return self.ratio > 0 or self.budget_ms > 0


@dataclass(frozen=True)
class MergeConfig:
    r: int = 0  # tokens merged per layer (constant schedule); 0 and no schedule = stage skipped
    method: str = "tome"  # tome | crossget | random | pool
    schedule: str = ""  # overrides r: "8", "8@-1" (r, inflect) or "16,12,8" (per layer); see merge.schedule
    seed: int = 0  # the random baseline's choice of tokens

    def __post_init__(self):
        _check(self.r >= 0, f"merge.r must be >= 0, got {self.r}", "e.g. --merge-r 8")
        _check(self.method in MERGE_METHODS, f"unknown merge method {self.method!r}", f"one of {MERGE_METHODS}")
        _check(self.seed >= 0, f"merge.seed must be >= 0, got {self.seed}", "numpy seeds are non-negative")

    @property
    def enabled(self) -> bool:
        return self.r > 0 or bool(self.schedule.strip())

    @property
    def spec(self) -> str:
        return self.schedule.strip() or str(self.r)


@dataclass(frozen=True)
class QuantizeConfig:
    scheme: str = "none"  # none | w4a16 | w8a8 | w4a8 | w4a4 (weight bits / activation bits)
    method: str = "quartdepth"  # quartdepth | gptq | rtn
    group_size: int = 0  # int4 weight group along K (32/64/128); 0 = largest of 128, 64, 32 dividing every layer
    weight_bits: int = 0  # 0 = the scheme's; 3 or 2 keep the 4-bit container (degradation studies)
    symmetric: bool = False  # weights: asymmetric min-max (QuartDepth) unless true
    # keep a checkpoint's own 4-bit grid (GGUF Q4_1: group 32, float minimum) for the Linear weights already on
    # one: quantizing them is then lossless, and their inputs are quantized in blocks of that group
    shipped_grid: bool = True
    act_group_size: int = 0  # Linear inputs: one scale per token and block of K channels (0 = per token)
    polish: str = "auto"  # LogNP polishing: auto (quartdepth, 4-bit activations, per layer where it helps) | on | off
    recon_seconds: float = 600.0  # QuartDepth weight-reconstruction budget for the whole model
    damp: float = 0.01  # Hessian damping, fraction of mean(diag(XᵀX)) (GPTQ and compensation)
    layers: dict = field(default_factory=dict)  # per-layer overrides: glob -> scheme | "skip"

    def __post_init__(self):
        _check(self.scheme in QUANT_SCHEMES, f"unknown quantization scheme {self.scheme!r}", f"one of {QUANT_SCHEMES}")
        _check(self.method in QUANT_METHODS, f"unknown quantization method {self.method!r}", f"one of {QUANT_METHODS}")
        _check(self.group_size in (0, *GROUP_SIZES),
               f"quantize.group_size must be 16, 32, 64, 128 or 256 (0 = auto), got {self.group_size}",
               "e.g. --group-size 128")
        _check(self.act_group_size in (0, *GROUP_SIZES),
               f"quantize.act_group_size must be 16, 32, 64, 128 or 256 (0 = per token), got {self.act_group_size}",
               "e.g. --set quantize.act_group_size=32")
        _check(self.weight_bits in (0, 2, 3, 4, 8), f"unsupported weight bit-width {self.weight_bits}",
               "quantize.weight_bits is 2, 3, 4 or 8 (0 = the scheme's)")
        _check(self.weight_bits in (0, 8) or self.scheme in ("w4a16", "w4a8", "w4a4"),
               f"quantize.weight_bits={self.weight_bits} needs a 4-bit scheme, got {self.scheme}",
               "use --quant w4a16|w4a8|w4a4 with sub-4-bit weights")
        _check(self.polish in ("auto", "on", "off"), f"unknown quantize.polish {self.polish!r}", "auto | on | off")
        _check(self.recon_seconds >= 0, f"quantize.recon_seconds must be >= 0, got {self.recon_seconds}")
        _check(0 < self.damp < 1, f"quantize.damp must be in (0, 1), got {self.damp}")
        for pattern, value in self.layers.items():
            _check(value in QUANT_SCHEMES[1:] + ("skip",),
                   f"quantize.layers[{pattern!r}] = {value!r} is not a scheme or 'skip'",
                   f"one of {QUANT_SCHEMES[1:] + ('skip',)}")

    @property
    def enabled(self) -> bool:
        return self.scheme != "none"


@dataclass(frozen=True)
class ExportConfig:
    opset: int = 17  # ONNX opset of the exported graph
    check_samples: int = 4  # calibration feeds compared between torch and onnxruntime
    tolerance: float = 0.0  # max |onnxruntime - torch| accepted; 0 = the model's own default

    def __post_init__(self):
        _check(13 <= self.opset <= 21, f"export.opset must be in [13, 21], got {self.opset}")
        _check(self.check_samples >= 1, f"export.check_samples must be >= 1, got {self.check_samples}")
        _check(self.tolerance >= 0, f"export.tolerance must be >= 0, got {self.tolerance}")


@dataclass(frozen=True)
class LowerConfig:
    tuning: str = "database"  # database: apply shipped MetaSchedule records first | none: hand schedules only
    check_samples: int = 2  # calibration feeds compared between TVM and onnxruntime
    tolerance: float = 0.0  # max |tvm - onnxruntime| accepted; 0 = the export tolerance
    kernels: bool = True  # fuse patterns into the kernel registry's kernels (false: generic lowering only)

    def __post_init__(self):
        _check(self.tuning in ("database", "none"), f"unknown lower.tuning {self.tuning!r}", "database | none")
        _check(self.check_samples >= 1, f"lower.check_samples must be >= 1, got {self.check_samples}")
        _check(self.tolerance >= 0, f"lower.tolerance must be >= 0, got {self.tolerance}")  # NaN fails too


@dataclass(frozen=True)
class BuildConfig:
    prune: PruneConfig = field(default_factory=PruneConfig)
    merge: MergeConfig = field(default_factory=MergeConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    lower: LowerConfig = field(default_factory=LowerConfig)
    calib_samples: int = 32  # calibration feeds drawn from train / held-apart data
    seed: int = 0  # seeds every random choice of the build (calibration sampling)
    trust_remote_code: bool = False  # HF directories whose config.json has auto_map: run the code they ship
    version: int = 1  # recipe format version

    def __post_init__(self):
        _check(1 <= self.calib_samples <= 4096, f"calib_samples must be in [1, 4096], got {self.calib_samples}")
        _check(self.seed >= 0, f"seed must be >= 0, got {self.seed}", "numpy seeds are non-negative")
        _check(self.version == 1, f"recipe version {self.version} is not supported", "this edgecomp reads version 1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "BuildConfig":
        return _build(cls, data, "")

    @classmethod
    def from_toml(cls, path: str | Path) -> "BuildConfig":
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"recipe {path} does not exist", hint="pass an existing .toml file to -r") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"recipe {path} is not valid TOML: {e}", hint="check the line named above") from None
        return cls.from_dict(data)

    def with_overrides(self, overrides: typing.Iterable[str]) -> "BuildConfig":
        """Apply ``stage.field=value`` strings (values parsed as TOML, bare words as strings)."""
        data = self.to_dict()
        for item in overrides:
            key, sep, raw = item.partition("=")
            _check(bool(sep) and bool(key.strip()), f"override {item!r} is not key=value",
                   "e.g. --set quantize.scheme=w4a8")
            node = data
            *parents, leaf = key.strip().split(".")
            if key.strip().startswith("quantize.layers."):  # the key is a layer glob and may contain dots
                parents, leaf = ["quantize", "layers"], key.strip()[len("quantize.layers."):]
            for p in parents:
                _check(isinstance(node.get(p), dict), f"unknown config section {p!r} in {item!r}",
                       f"sections: {', '.join(k for k, v in data.items() if isinstance(v, dict))}")
                node = node[p]
            free_table = parents[-1:] == ["layers"]  # quantize.layers takes any layer glob as key
            _check(free_table or (leaf in node and not isinstance(node[leaf], dict)),
                   f"unknown config field {key.strip()!r}",
                   f"fields here: {', '.join(k for k, v in node.items() if not isinstance(v, dict))}")
            node[leaf] = _parse_value(raw.strip())
        return BuildConfig.from_dict(data)


def _parse_value(raw: str):
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _build(cls, data: dict, prefix: str):
    _check(isinstance(data, dict), f"config section {prefix or 'top level'} must be a table")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    _check(not unknown, f"unknown config field {prefix}{unknown[0]!r}" if unknown else "",
           f"fields of {prefix or 'the recipe'}: {', '.join(sorted(known))}")
    kwargs = {}
    for name, value in data.items():
        ftype = hints[name]
        if dataclasses.is_dataclass(ftype):
            kwargs[name] = _build(ftype, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, ftype, f"{prefix}{name}")
    return cls(**kwargs)


def _coerce(value, ftype, key: str):
    if ftype is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if ftype is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ConfigError(f"config field {key} must be a table of strings, got {value!r}",
                              hint='e.g. [quantize.layers] "head" = "w8a8"')
        return dict(value)
    if ftype in (int, float, str, bool) and not (isinstance(value, ftype) and not
                                                   (ftype is int and isinstance(value, bool))):
        raise ConfigError(f"config field {key} must be {ftype.__name__}, got {value!r}",
                          hint="fix the recipe or the --set value")
    return value
