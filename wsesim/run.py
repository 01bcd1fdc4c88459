"""One run: deployment -> plan -> per-PE ledger -> fit answers -> Result."""
from __future__ import annotations

from typing import Any

from wsesim.fit import requested_plan, search_wafers
from wsesim.mapping.plan import Plan, max_wafers
from wsesim.memory import (
    CATEGORIES,
    FullestPE,
    MemoryLedger,
    TensorTotals,
    build_ledger,
)
from wsesim.performance import assumptions as performance_assumptions
from wsesim.performance import simulate_performance
from wsesim.result import (
    FullestPESummary,
    HardwareSummary,
    MemorySummary,
    ModelSummary,
    RegionSummary,
    Result,
    WaferSummary,
)
from wsesim.specs import Deployment

LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

ASSUMPTIONS = (
    "Each linear weight is cut in 2-D blocks over its stage's region (inputs along one "
    "axis, outputs along the other, as in WaferLLM's MeshGEMV); a quantization group "
    "cut across two PEs stores its scale and zero on both.",
    "Norm weights and biases are 16-bit and copied along the region axis that needs them.",
    "The KV cache holds context_length tokens (or the model's sliding window, if shorter) "
    "for every one of batch_size sequences in every layer, tokens along the attention "
    "region's rows.",
    "Activation buffers hold one token in flight per stage: the residual slice, the input "
    "and output slices of the largest block, and one sequence's attention scores.",
    "Regions are laid out by a band heuristic (area in proportion to bytes, rated by the "
    "fullest PE); a cleverer mapper might place the same stages in less SRAM.",
)


def _holds(plan: Plan, wafer: int) -> list[str]:
    wp = plan.wafers[wafer]
    parts = [s.part for s in wp.stages]
    out = []
    if "embedding" in parts:
        out.append("embeddings")
    if wp.layers is not None:
        first, last = wp.layers
        out.append(f"layers {first}-{last}" if first != last else f"layer {first}")
    if "lm_head" in parts:
        out.append("final norm + LM head")
    return out


def _items(ledger: MemoryLedger) -> dict[str, int]:
    t = ledger.by_tensor
    none = TensorTotals()

    def sum_of(names, attr: str) -> int:
        return sum(getattr(t.get(n, none), attr) for n in names)

    vectors = {tb.tensor.name for s in ledger.plan.stages for tb in s.tensors
               if tb.is_vector}                      # norms and biases
    tables = ("embed_tokens", "lm_head")
    stored = ("payload_bytes", "metadata_bytes")
    whole = ("whole_payload_bytes", "whole_metadata_bytes")
    everything = [n for n in t if n != "kv_cache"]
    free, overflow = ledger.free_and_overflow_bytes()
    return {
        "linear_weights_bytes": sum_of(LINEAR, "payload_bytes"),
        "linear_metadata_bytes": sum_of(LINEAR, "metadata_bytes"),
        "embedding_table_bytes": sum_of(["embed_tokens"], "payload_bytes"),
        "lm_head_bytes": sum_of(["lm_head"], "payload_bytes"),
        "embedding_metadata_bytes": sum_of(tables, "metadata_bytes"),
        "norms_and_biases_bytes": sum_of(vectors, "payload_bytes"),
        "kv_cache_bytes": sum_of(["kv_cache"], "payload_bytes")
        + sum_of(["kv_cache"], "metadata_bytes"),
        "whole_payload_bytes": sum_of(everything, "whole_payload_bytes"),
        "whole_metadata_bytes": sum_of(everything, "whole_metadata_bytes"),
        "cut_overhead_bytes": sum(sum_of(everything, a) for a in stored)
        - sum(sum_of(everything, a) for a in whole),
        "imbalance_bytes": sum(v.imbalance_bytes for v in t.values()),
        "idle_pes": ledger.idle_pes(),
        "free_bytes": free,
        "overflow_bytes": overflow,
    }


def _limiting(ledger: MemoryLedger, fp: FullestPE, total: int, capacity: int) -> str:
    sram = ledger.pe_sram_bytes
    where = f"wafer {fp.wafer}, PE row {fp.row} col {fp.col}, {fp.stage}"
    parts = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in fp.by_category.items() if v)
    if fp.bytes <= sram:
        largest = max(fp.by_category, key=fp.by_category.get).replace("_", " ")
        return (f"fits: the fullest PE ({where}) holds {fp.bytes:,} of {sram:,} B "
                f"({sram - fp.bytes:,} B free; {parts}); {largest} is its largest share")
    if total > capacity:
        return (f"total SRAM: the wafers need {total:,} B but hold {capacity:,} B; the "
                f"fullest PE ({where}) needs {fp.bytes:,} of {sram:,} B ({parts})")
    return (f"per-PE SRAM: the fullest PE ({where}) needs {fp.bytes:,} of {sram:,} B "
            f"({parts}) although the total ({total:,} B) is within capacity "
            f"({capacity:,} B): uneven cuts and region shapes")


def memory_summary(ledger: MemoryLedger) -> MemorySummary:
    dep = ledger.plan.deployment
    totals = {c: ledger.total(c) for c in (*CATEGORIES, "runtime_reserved")}
    total = sum(totals.values())
    rows, cols = dep.grid_shape
    capacity = len(ledger.plan.wafers) * rows * cols * dep.hardware.pe_sram_bytes
    fp = ledger.fullest_pe()
    items = {**_items(ledger), "activation_bytes": totals["activations"],
             "runtime_reserved_bytes": totals["runtime_reserved"]}
    return MemorySummary(
        weights_bytes=totals["weights"], quant_metadata_bytes=totals["quant_metadata"],
        kv_cache_bytes=totals["kv_cache"], activation_bytes=totals["activations"],
        runtime_reserved_bytes=totals["runtime_reserved"], total_bytes=total,
        capacity_bytes=capacity, pe_sram_bytes=ledger.pe_sram_bytes,
        max_pe_bytes=fp.bytes, fits=fp.bytes <= ledger.pe_sram_bytes,
        limiting=_limiting(ledger, fp, total, capacity), items=items,
        fullest_pe=FullestPESummary(fp.wafer, fp.row, fp.col, fp.stage, fp.bytes,
                                    fp.by_category),
        # bits are whole or half: exact in integers (a float product rounds past 2**53)
        naive_weights_bytes=dep.model.parameters * int(2 * dep.quantization.weights.bits)
        // 16,
    )


def partition_summary(ledger: MemoryLedger) -> list[WaferSummary]:
    plan = ledger.plan
    sram = ledger.pe_sram_bytes
    reserve = ledger.reserve_bytes
    out = []
    for wp in plan.wafers:
        mine = [r for r in ledger.regions if r.region.wafer == wp.wafer]
        region_max = {r.region: r.bytes.peak for r in mine}
        idle = ledger.idle_pes(wp.wafer)
        used = sum(r.bytes.total for r in mine) + idle * reserve
        max_pe = max([*region_max.values(), reserve if idle else 0])
        regions = [RegionSummary(s.name, s.region.row0, s.region.col0, s.region.rows,
                                 s.region.cols, region_max[s.region]) for s in wp.stages]
        out.append(WaferSummary(
            wafer=wp.wafer, layers=list(wp.layers) if wp.layers else None,
            holds=_holds(plan, wp.wafer), used_bytes=used,
            capacity_bytes=ledger.pes_per_wafer * sram, max_pe_bytes=max_pe,
            fits=max_pe <= sram, regions=regions))
    return out


def mapping_summary(dep: Deployment, plan: Plan, found: Any = None) -> dict[str, Any]:
    """The mapping a run used: the concrete strategy and its parameters, and for
    ``strategy: auto`` what the search looked at and the runners-up."""
    choice = plan.choice
    out: dict[str, Any] = {
        "strategy": plan.strategy,
        "regions_per_wafer": choice.regions_per_wafer,
        "balance": choice.balance,
        "searched": 1,
    }
    if found is not None:
        out.update({"requested": "auto", "objective": dep.mapping.objective,
                    "min_tokens_per_s_per_user": dep.mapping.min_tokens_per_s_per_user,
                    "searched": found.searched,
                    "candidates": [c.summary() for c in found.ranked]})
    return out


def fewest_wafers_search(dep: Deployment, known: dict | None = None) -> Any:
    """The search for the fewest wafers a deployment asks for: on which its own strategy
    fits, or with ``strategy: auto`` on which some plan fits (a ``WaferSearch``)."""
    if dep.mapping.strategy == "auto":
        from wsesim.planner import fewest_wafers_any
        return fewest_wafers_any(dep)
    return search_wafers(dep, known)


def fewest_wafers(dep: Deployment, known: dict | None = None) -> int | None:
    """Fewest wafers on which ``dep`` fits (None if no count does): its own strategy's
    plan, or with ``strategy: auto`` any plan the search makes."""
    return fewest_wafers_search(dep, known).wafers


def simulate(dep: Deployment, with_performance: bool = True,
             find_min_wafers: bool = True, trace: bool = False) -> Result:
    """Plan ``dep`` (finding the fewest wafers for ``wafers: auto``), account every PE's
    SRAM, and return the itemized answer."""
    notes = []
    searching = dep.mapping.strategy == "auto"
    known = {} if dep.wafers == "auto" or searching else {
        dep.wafers: requested_plan(dep, dep.wafers)}
    search = fewest_wafers_search(dep, known) \
        if find_min_wafers or dep.wafers == "auto" else None
    min_wafers = search.wafers if search is not None else None
    if dep.wafers == "auto":
        wafers = min_wafers or max_wafers(dep)
        if min_wafers is None:
            notes.append(f"wafers: auto found no count that fits; shown on {wafers} "
                         "wafers (one unit per wafer)")
    else:
        wafers = dep.wafers
    found = None
    if searching:
        from wsesim.planner import search as search_plans
        found = search_plans(dep, wafers)
        plan = found.best.plan
        notes += found.notes
    else:
        if wafers not in known:
            known[wafers] = requested_plan(dep, wafers)
        plan = known[wafers]
    ledger = build_ledger(plan)
    memory = memory_summary(ledger)
    miss = search.miss(ledger) if search is not None else None
    performance = perf_model = timeline = None
    if with_performance:
        if found is not None and found.best.outcome is not None and not trace:
            performance, perf_model, timeline = found.best.outcome
        else:
            performance, perf_model, timeline = simulate_performance(plan, memory.fits,
                                                                     trace)
    m = dep.model
    hw = dep.hardware
    q = dep.quantization
    wl = dep.workload
    return Result(
        name=dep.name,
        model=ModelSummary(m.name, m.parameters, m.num_hidden_layers, m.hidden_size,
                           m.intermediate_size, m.num_attention_heads, m.kv_heads,
                           m.head_size, m.vocab_size, m.source),
        hardware=HardwareSummary(hw.name, list(dep.grid_shape), hw.pe_sram_bytes,
                                 hw.runtime_reserve_bytes, hw.clock_hz),
        wafers=wafers, strategy=plan.strategy, mapping=mapping_summary(dep, plan, found),
        quantization={k: getattr(q, k).describe() for k in
                      ("weights", "embeddings", "kv_cache", "activations")},
        workload={"batch_size": wl.batch_size, "prompt_tokens": wl.prompt_tokens,
                  "output_tokens": wl.output_tokens, "context_length": wl.context_tokens,
                  "kv_cache_tokens": dep.kv_tokens},
        memory=memory, partition=partition_summary(ledger), performance=performance,
        min_wafers=min_wafers, min_wafers_detail=miss,
        assumptions=[*ASSUMPTIONS, *(performance_assumptions(plan) if performance else [])],
        notes=[*plan.notes, *notes], plan=plan, ledger=ledger, perf_model=perf_model,
        timeline=timeline)
