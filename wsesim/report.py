"""Render a Result as text (rich tables), markdown or JSON."""
from __future__ import annotations

import io
from typing import Callable

from rich.console import Console
from rich.table import Table

from wsesim import strict_json
from wsesim.result import Result

GB = 1e9


def _gb(n: float) -> str:
    return f"{n / GB:,.2f}"


def memory_rows(r: Result) -> list[tuple[str, int]]:
    """The itemized memory table, in the order a reader adds it up."""
    m, it = r.memory, r.memory.items
    return [
        ("packed linear weights", it["linear_weights_bytes"]),
        ("quantization scales + zeros (linear)", it["linear_metadata_bytes"]),
        ("embedding table", it["embedding_table_bytes"]),
        ("LM head", it["lm_head_bytes"]),
        ("scales + zeros (embeddings, LM head)", it["embedding_metadata_bytes"]),
        ("norm weights and biases", it["norms_and_biases_bytes"]),
        ("KV cache", m.kv_cache_bytes),
        ("activation buffers", m.activation_bytes),
        ("runtime reserve", m.runtime_reserved_bytes),
    ]


def envelope_gaps(r: Result) -> list[tuple[str, int]]:
    """What the envelope figure (parameters x weight bits / 8) leaves out; the envelope
    plus these is the total."""
    m, it = r.memory, r.memory.items
    return [
        ("quantization scales + zeros", it["whole_metadata_bytes"]),
        ("tensors wider than the weights (embeddings, LM head, norms)",
         it["whole_payload_bytes"] - m.naive_weights_bytes),
        ("KV cache", m.kv_cache_bytes),
        ("activation buffers", m.activation_bytes),
        ("runtime reserve", m.runtime_reserved_bytes),
        ("cutting into PE blocks (groups stored twice, copies of vectors, padding)",
         it["cut_overhead_bytes"]),
    ]


def _perf_rows(r: Result) -> list[tuple[str, str]]:
    p = r.performance
    if not p:
        return []
    rows = [
        ("tokens/s per user", f"{p['tokens_per_s_per_user']:,.1f}"),
        ("tokens/s (all users)", f"{p['tokens_per_s']:,.1f}"),
        ("time per output token", f"{p['time_per_output_token_s'] * 1e3:,.3f} ms"),
        ("time to first token", f"{p['ttft_s'] * 1e3:,.3f} ms"),
        ("prefill tokens/s", f"{p['prefill_tokens_per_s']:,.1f}"),
        ("decode time per layer", f"{p['layer_time_s'] * 1e6:,.2f} us"),
        ("bottleneck", p["bottleneck"]),
    ]
    return rows


def render_text(r: Result, width: int = 110) -> str:
    buf = io.StringIO()
    con = Console(file=buf, width=width, force_terminal=False, color_system=None)
    m = r.model
    hw = r.hardware
    con.print(f"[bold]wsesim: {r.name}[/bold]")
    con.print(f"model      {m.name}: {m.parameters:,} parameters, {m.layers} layers "
              f"(hidden {m.hidden_size}, MLP {m.intermediate_size}, {m.attention_heads} "
              f"heads / {m.kv_heads} KV heads of {m.head_dim}, vocab {m.vocab_size})")
    con.print(f"hardware   {hw.name}: {hw.grid[0]} x {hw.grid[1]} PEs per wafer used, "
              f"{hw.pe_sram_bytes:,} B SRAM per PE ({hw.runtime_reserve_bytes:,} B runtime), "
              f"{hw.clock_hz / 1e9:g} GHz")
    fewest = "none fits" if r.min_wafers is None else str(r.min_wafers)
    con.print(f"wafers     {r.wafers} ({r.strategy}); fewest on which it fits: {fewest}")
    for k, v in r.quantization.items():
        con.print(f"{k:<10} {v}")
    w = r.workload
    con.print(f"workload   batch {w['batch_size']}, prompt {w['prompt_tokens']}, output "
              f"{w['output_tokens']}, KV cache for {w['context_length']} tokens per sequence")

    mem = r.memory
    t = Table(title="SRAM, summed over every PE", title_justify="left")
    t.add_column("item")
    t.add_column("bytes", justify="right")
    t.add_column("GB", justify="right")
    for name, value in memory_rows(r):
        t.add_row(name, f"{value:,}", _gb(value))
    t.add_row("[bold]total[/bold]", f"{mem.total_bytes:,}", _gb(mem.total_bytes))
    t.add_row("capacity", f"{mem.capacity_bytes:,}", _gb(mem.capacity_bytes))
    con.print(t)
    it = mem.items
    con.print(f"of which: cutting overhead {it['cut_overhead_bytes']:,} B; PEs x largest "
              f"block - blocks (uneven cuts) {it['imbalance_bytes']:,} B; idle PEs "
              f"{it['idle_pes']:,}")
    con.print(f"envelope: {m.parameters:,} parameters x weight bits / 8 = "
              f"{_gb(mem.naive_weights_bytes)} GB of weights. It leaves out:")
    for name, value in envelope_gaps(r):
        con.print(f"  + {_gb(value):>8} GB  {name}")
    con.print(f"  = {_gb(mem.total_bytes):>8} GB  in all, against {_gb(mem.capacity_bytes)} GB "
              f"of SRAM on {r.wafers} wafer{'s' if r.wafers > 1 else ''}")
    verdict = "FITS" if mem.fits else "DOES NOT FIT"
    con.print(f"[bold]{verdict}[/bold]: fullest PE {mem.max_pe_bytes:,} of "
              f"{mem.pe_sram_bytes:,} B")
    con.print(f"limiting: {mem.limiting}")

    p = Table(title="Partition", title_justify="left")
    for col in ("wafer", "holds", "used GB", "capacity GB", "fullest PE B", "fits"):
        p.add_column(col, justify="left" if col == "holds" else "right")
    for ws in r.partition:
        p.add_row(str(ws.wafer), ", ".join(ws.holds), _gb(ws.used_bytes),
                  _gb(ws.capacity_bytes), f"{ws.max_pe_bytes:,}", "yes" if ws.fits else "NO")
    con.print(p)
    perf = _perf_rows(r)
    if perf:
        pt = Table(title="Performance", title_justify="left")
        pt.add_column("figure")
        pt.add_column("value", justify="right")
        for name, value in perf:
            pt.add_row(name, value)
        con.print(pt)
    if r.notes:
        con.print("notes:")
        for n in r.notes:
            con.print(f"  - {n}")
    con.print("assumptions:")
    for a in r.assumptions:
        con.print(f"  - {a}")
    return buf.getvalue()


def render_markdown(r: Result) -> str:
    m, mem = r.model, r.memory
    lines = [f"# wsesim: {r.name}", "",
             f"- model: {m.name}, {m.parameters:,} parameters, {m.layers} layers",
             f"- hardware: {r.hardware.name}, {r.hardware.grid[0]} x {r.hardware.grid[1]} "
             f"PEs per wafer, {r.wafers} wafers ({r.strategy})",
             f"- fewest wafers that fit: {'none' if r.min_wafers is None else r.min_wafers}",
             *(f"- {k}: {v}" for k, v in r.quantization.items()),
             "", "## SRAM, summed over every PE", "", "| item | bytes | GB |",
             "| --- | ---: | ---: |"]
    for name, value in memory_rows(r):
        lines.append(f"| {name} | {value:,} | {_gb(value)} |")
    lines += [f"| **total** | {mem.total_bytes:,} | {_gb(mem.total_bytes)} |",
              f"| capacity | {mem.capacity_bytes:,} | {_gb(mem.capacity_bytes)} |", "",
              f"**{'Fits' if mem.fits else 'Does not fit'}**: fullest PE "
              f"{mem.max_pe_bytes:,} of {mem.pe_sram_bytes:,} B. {mem.limiting}", "",
              f"Envelope (parameters x bits / 8): {_gb(mem.naive_weights_bytes)} GB; it "
              "leaves out:", ""]
    lines += [f"- {_gb(v)} GB {n}" for n, v in envelope_gaps(r)]
    lines += ["", "## Partition", "", "| wafer | holds | used GB | fullest PE B | fits |",
              "| ---: | --- | ---: | ---: | --- |"]
    for ws in r.partition:
        lines.append(f"| {ws.wafer} | {', '.join(ws.holds)} | {_gb(ws.used_bytes)} | "
                     f"{ws.max_pe_bytes:,} | {'yes' if ws.fits else 'no'} |")
    perf = _perf_rows(r)
    if perf:
        lines += ["", "## Performance", "", "| figure | value |", "| --- | ---: |"]
        lines += [f"| {n} | {v} |" for n, v in perf]
    lines += ["", "## Assumptions", "", *(f"- {a}" for a in r.assumptions)]
    if r.notes:
        lines += ["", "## Notes", "", *(f"- {n}" for n in r.notes)]
    return "\n".join(lines) + "\n"


def render_json(r: Result) -> str:
    """The result as strict JSON (never ``NaN`` or ``Infinity``)."""
    return strict_json.dumps(r.to_dict(), indent=2) + "\n"


RENDERERS: dict[str, Callable[[Result], str]] = {
    "text": render_text, "markdown": render_markdown, "json": render_json}
