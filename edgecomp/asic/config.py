"""The simulated accelerator's parameters: the ``[asic]`` table of a target TOML as frozen dataclasses.

Every cost constant lives here with the unit in its name; ``docs/asic.md`` gives each one's source.
``AsicConfig.from_table(target.asic)`` validates and applies the 45 nm -> 28 nm scaling once, so the
cost model reads finished numbers (pJ and um^2 at the configured node).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from edgecomp.errors import ConfigError


@dataclass(frozen=True)
class Datapath:
    """One MMU datapath: ``macs_per_pe`` multiply-accumulates per PE per cycle at these operand widths."""

    name: str
    weight_bits: int
    act_bits: int
    macs_per_pe: int
    pj_per_mac: float  # at the configured node (scaled)
    pe_um2: float  # at the configured node (scaled)


ATTENTION = ("int8", "fp32")


@dataclass(frozen=True)
class AsicConfig:
    clock_ghz: float
    dram_gbps: float
    dram_latency_cycles: int
    gemm_datapath: str  # "auto" or a datapath name every GEMM is forced onto (e.g. "fp16")
    attention: str  # "int8": attention products on the MMU (edgecomp.asic.attention); "fp32": on the VCU
    rows: int  # MMU reduction lanes (K)
    cols: int  # MMU output lanes (N)
    fill_cycles: int
    weight_bytes: int
    act_bytes: int
    acc_bytes: int
    out_bytes: int
    sram_bytes_per_cycle: float
    fuse_bytes: int  # an intermediate up to this size stays in SRAM between fused ops
    vcu_lanes: int
    vcu_pj_per_lane_op: float
    vcu_cycles: dict = field(default_factory=dict)  # op class -> lane-cycles per element
    sram_pj_per_byte: float = 0.0
    dram_pj_per_byte: float = 0.0
    leakage_mw: float = 0.0
    sram_mm2_per_mib: float = 0.0
    vcu_lane_um2: float = 0.0
    control_mm2: float = 0.0
    datapaths: tuple[Datapath, ...] = ()

    @property
    def dram_bytes_per_cycle(self) -> float:
        return self.dram_gbps / self.clock_ghz

    def datapath(self, weight_bits: int, act_bits: int) -> Datapath | None:
        """The datapath a GEMM with these operand widths runs on (None: the MMU has none for it)."""
        if self.gemm_datapath != "auto":
            return self.datapath_named(self.gemm_datapath)
        for d in self.datapaths:
            if (d.weight_bits, d.act_bits) == (weight_bits, act_bits):
                return d
        return None

    def datapath_named(self, name: str) -> Datapath:
        for d in self.datapaths:
            if d.name == name:
                return d
        raise ConfigError(f"the accelerator has no datapath {name!r}",
                          hint="one of " + ", ".join(d.name for d in self.datapaths) + " ([asic.datapath.*])")

    def with_datapath(self, name: str) -> AsicConfig:
        """The same accelerator with every GEMM forced onto datapath ``name`` ("auto" = by operand widths)."""
        if name != "auto":
            self.datapath_named(name)
        return replace(self, gemm_datapath=name)

    @classmethod
    def from_table(cls, t: dict) -> AsicConfig:
        try:
            e_scale, a_scale = float(t["scaling"]["energy"]), float(t["scaling"]["area"])
            dps = tuple(Datapath(name, int(d["weight_bits"]), int(d["act_bits"]), int(d["macs_per_pe"]),
                                 float(d["pj_per_mac"]) * e_scale, float(d["pe_um2"]) * a_scale)
                        for name, d in t["datapath"].items())
            cfg = cls(clock_ghz=float(t["clock_ghz"]), dram_gbps=float(t["dram_gbps"]),
                      dram_latency_cycles=int(t["dram_latency_cycles"]), gemm_datapath=str(t["gemm_datapath"]),
                      attention=str(t.get("attention", "int8")),
                      rows=int(t["mmu"]["rows"]), cols=int(t["mmu"]["cols"]),
                      fill_cycles=int(t["mmu"]["fill_cycles"]),
                      weight_bytes=int(t["sram"]["weight_kib"]) * 1024, act_bytes=int(t["sram"]["act_kib"]) * 1024,
                      acc_bytes=int(t["sram"]["acc_kib"]) * 1024, out_bytes=int(t["sram"]["out_kib"]) * 1024,
                      sram_bytes_per_cycle=float(t["sram"]["bytes_per_cycle"]),
                      fuse_bytes=int(float(t["sram"]["fuse_fraction"]) * int(t["sram"]["act_kib"]) * 1024),
                      vcu_lanes=int(t["vcu"]["lanes"]), vcu_pj_per_lane_op=float(t["vcu"]["pj_per_lane_op"]),
                      vcu_cycles={k: float(v) for k, v in t["vcu"]["cycles_per_element"].items()},
                      sram_pj_per_byte=float(t["energy"]["sram_pj_per_byte"]),
                      dram_pj_per_byte=float(t["energy"]["dram_pj_per_byte"]),
                      leakage_mw=float(t["energy"]["leakage_mw"]),
                      sram_mm2_per_mib=float(t["area"]["sram_mm2_per_mib"]),
                      vcu_lane_um2=float(t["area"]["vcu_lane_um2"]), control_mm2=float(t["area"]["control_mm2"]),
                      datapaths=dps)
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"the [asic] table is incomplete or malformed: {e!r}",
                              hint="compare with targets/asic-sim.toml") from None
        for name in ("rows", "cols", "vcu_lanes", "weight_bytes", "act_bytes", "acc_bytes", "out_bytes"):
            if getattr(cfg, name) <= 0:
                raise ConfigError(f"asic parameter {name} must be positive, got {getattr(cfg, name)}",
                                  hint="see targets/asic-sim.toml")
        if cfg.gemm_datapath != "auto":
            cfg.datapath_named(cfg.gemm_datapath)
        if cfg.attention not in ATTENTION:
            raise ConfigError(f"asic parameter attention must be one of {', '.join(ATTENTION)}, got {cfg.attention!r}",
                              hint="see targets/asic-sim.toml")
        return cfg
