"""Render a Result as text (rich tables), markdown or JSON.

User text (names, notes, sources, paths) is printed literally: rich sees it as
:class:`rich.text.Text`, never as markup, and control characters are escaped
(:mod:`wsesim.literal`) so a name cannot break the layout.
"""
from __future__ import annotations

import io
from typing import Callable

from rich.console import Console, JustifyMethod
from rich.table import Table
from rich.text import Text

from wsesim import strict_json
from wsesim.literal import markdown_literal, printable
from wsesim.mapping.plan import Choice
from wsesim.result import Result

GB = 1e9
GB_UNIT = "GB (10^9 B)"   # decimal gigabytes, said where the figures are


def _gb(n: float) -> str:
    return f"{n / GB:,.2f}"


def memory_rows(r: Result) -> list[tuple[str, int]]:
    """The itemized memory table, in the order a reader adds it up: bytes as stored on
    the PEs, after cutting tensors into PE blocks."""
    m, it = r.memory, r.memory.items
    return [
        ("packed linear weights", it["linear_weights_bytes"]),
        ("scales + zeros of the linear weights, as stored", it["linear_metadata_bytes"]),
        ("embedding table", it["embedding_table_bytes"]),
        ("LM head", it["lm_head_bytes"]),
        ("scales + zeros of the embeddings and LM head, as stored",
         it["embedding_metadata_bytes"]),
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
        ("scales + zeros of every tensor, uncut (before PE blocks)",
         it["whole_metadata_bytes"]),
        ("tensors wider than the weights (embeddings, LM head, norms)",
         it["whole_payload_bytes"] - m.naive_weights_bytes),
        ("KV cache", m.kv_cache_bytes),
        ("activation buffers", m.activation_bytes),
        ("runtime reserve", m.runtime_reserved_bytes),
        ("cutting into PE blocks (groups stored twice, copies of vectors, padding)",
         it["cut_overhead_bytes"]),
    ]


def waste_line(r: Result) -> str:
    """The cut waste, saying which part is in the total and which is not."""
    it = r.memory.items
    return (f"cutting into PE blocks adds {it['cut_overhead_bytes']:,} B to the total "
            f"above (groups stored twice, copies of vectors, padding); not in the total: "
            f"{it['imbalance_bytes']:,} B that uneven cuts leave unused beside the "
            f"largest blocks (PEs x largest block - blocks), and {it['idle_pes']:,} idle "
            f"PEs (runtime reserve only)")


def workload_words(r: Result) -> str:
    """The workload, with the KV cache it holds (a sliding window holds less than the
    context)."""
    w = r.workload
    held, context = w["kv_cache_tokens"], w["context_length"]
    of = f" (of a {context:,}-token context)" if held != context else ""
    return (f"batch {w['batch_size']}, prompt {w['prompt_tokens']}, output "
            f"{w['output_tokens']}, KV cache for {held:,} tokens per sequence{of}")


def fewest_words(r: Result) -> str:
    """The fewest wafers that fit and, when a count below missed, by how much."""
    fewest = "none fits" if r.min_wafers is None else str(r.min_wafers)
    if r.min_wafers_detail is not None:
        fewest += f"; {r.min_wafers_detail.summary}"
    return fewest


def performance_title(r: Result) -> str:
    """The performance section's title: marked when the plan does not fit."""
    mem = r.memory
    if mem.fits:
        return "Performance"
    return (f"Performance of a plan that DOES NOT FIT (its fullest PE needs "
            f"{mem.max_pe_bytes:,} of {mem.pe_sram_bytes:,} B): the figures are for the "
            "same plan as if it did")


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


def mapping_words(r: Result) -> str:
    """The mapping in words: the concrete strategy, its regions, how it was found."""
    m = r.mapping or {"strategy": r.strategy}
    what = Choice.from_row(m).describe()
    if m.get("requested") == "auto":
        goal = {"tokens_per_s_per_user": "tokens/s per user",
                "tokens_per_s": "tokens/s of all users"}[m["objective"]]
        floor = m.get("min_tokens_per_s_per_user")
        what += (f"; the best of {m['searched']} plans searched, by {goal}"
                 + (f" with at least {floor:g} tokens/s per user" if floor else ""))
    return what


def candidate_rows(r: Result) -> list[tuple[str, str, str, str, str]]:
    """The plans a search decided (the winner first): plan, tokens/s per user, tokens/s,
    fullest PE, fits."""
    out = []
    for c in (r.mapping or {}).get("candidates", []):
        plan = Choice.from_row(c).describe()
        out.append((plan, f"{c['tokens_per_s_per_user']:,.1f}", f"{c['tokens_per_s']:,.1f}",
                    "" if c["max_pe_bytes"] is None else f"{c['max_pe_bytes']:,}",
                    "yes" if c["fits"] else "NO"))
    return out


def _t(text: object, style: str = "", justify: JustifyMethod | None = None) -> Text:
    """User or generated text for rich, printed as it is (never read as markup)."""
    return Text(printable(text), style=style, justify=justify)


def render_text(r: Result, width: int = 110) -> str:
    buf = io.StringIO()
    con = Console(file=buf, width=width, force_terminal=False, color_system=None,
                  markup=False, emoji=False, highlight=False)

    def say(*parts: object) -> None:
        con.print(_t("".join(str(p) for p in parts)))

    m = r.model
    hw = r.hardware
    con.print(_t(f"wsesim: {r.name}", style="bold"))
    say(f"model      {m.name}: {m.parameters:,} parameters, {m.layers} layers "
        f"(hidden {m.hidden_size}, MLP {m.intermediate_size}, {m.attention_heads} "
        f"heads / {m.kv_heads} KV heads of {m.head_dim}, vocab {m.vocab_size})")
    say(f"hardware   {hw.name}: {hw.grid[0]} x {hw.grid[1]} PEs per wafer used, "
        f"{hw.pe_sram_bytes:,} B SRAM per PE ({hw.runtime_reserve_bytes:,} B runtime), "
        f"{hw.clock_hz / 1e9:g} GHz")
    say(f"wafers     {r.wafers}; fewest on which it fits: {fewest_words(r)}")
    say(f"mapping    {mapping_words(r)}")
    for k, v in r.quantization.items():
        say(f"{k:<10} {v}")
    say(f"workload   {workload_words(r)}")

    mem = r.memory
    t = Table(title="SRAM, summed over every PE", title_justify="left")
    t.add_column("item")
    t.add_column("bytes", justify="right")
    t.add_column(GB_UNIT, justify="right")
    for name, value in memory_rows(r):
        t.add_row(_t(name), f"{value:,}", _gb(value))
    t.add_row(_t("total", style="bold"), f"{mem.total_bytes:,}", _gb(mem.total_bytes))
    t.add_row("capacity", f"{mem.capacity_bytes:,}", _gb(mem.capacity_bytes))
    con.print(t)
    say(waste_line(r))
    say(f"envelope: {m.parameters:,} parameters x weight bits / 8 = "
        f"{_gb(mem.naive_weights_bytes)} GB of weights (GB = 10^9 B). It leaves out:")
    for name, value in envelope_gaps(r):
        say(f"  + {_gb(value):>8} GB  {name}")
    say(f"  = {_gb(mem.total_bytes):>8} GB  in all, against {_gb(mem.capacity_bytes)} GB "
        f"of SRAM on {r.wafers} wafer{'s' if r.wafers > 1 else ''}")
    verdict = "FITS" if mem.fits else "DOES NOT FIT"
    con.print(Text.assemble((verdict, "bold"), printable(
        f": fullest PE {mem.max_pe_bytes:,} of {mem.pe_sram_bytes:,} B")))
    say(f"limiting: {mem.limiting}")

    p = Table(title="Partition", title_justify="left")
    for col in ("wafer", "holds", "used GB", "capacity GB", "fullest PE B", "fits"):
        p.add_column(col, justify="left" if col == "holds" else "right")
    for ws in r.partition:
        p.add_row(str(ws.wafer), _t(", ".join(ws.holds)), _gb(ws.used_bytes),
                  _gb(ws.capacity_bytes), f"{ws.max_pe_bytes:,}", "yes" if ws.fits else "NO")
    con.print(p)
    searched = candidate_rows(r)
    if searched:
        st = Table(title="Plans the search decided (best first)", title_justify="left")
        for col in ("plan", "tokens/s per user", "tokens/s", "fullest PE B", "fits"):
            st.add_column(col, justify="left" if col == "plan" else "right")
        for row in searched:
            st.add_row(*row)
        con.print(st)
    perf = _perf_rows(r)
    if perf:
        pt = Table(title=_t(performance_title(r)), title_justify="left")
        pt.add_column("figure")
        pt.add_column("value", justify="right")
        for name, value in perf:
            pt.add_row(_t(name), _t(value, justify="left" if name == "bottleneck" else None))
        con.print(pt)
        for n in (r.performance or {}).get("notes") or []:
            say(f"  performance note: {n}")
    if r.notes:
        say("notes:")
        for n in r.notes:
            say(f"  - {n}")
    say("assumptions:")
    for a in r.assumptions:
        say(f"  - {a}")
    return buf.getvalue()


def render_markdown(r: Result) -> str:
    m, mem = r.model, r.memory
    md = markdown_literal
    lines = [f"# wsesim: {md(r.name)}", "",
             f"- model: {md(m.name)}, {m.parameters:,} parameters, {m.layers} layers",
             f"- hardware: {md(r.hardware.name)}, {r.hardware.grid[0]} x "
             f"{r.hardware.grid[1]} PEs per wafer, {r.wafers} wafer"
             f"{'s' if r.wafers != 1 else ''}",
             f"- mapping: {md(mapping_words(r))}",
             f"- fewest wafers that fit: {md(fewest_words(r))}",
             *(f"- {k}: {md(v)}" for k, v in r.quantization.items()),
             f"- workload: {workload_words(r)}",
             "", "## SRAM, summed over every PE", "", f"| item | bytes | {GB_UNIT} |",
             "| --- | ---: | ---: |"]
    for name, value in memory_rows(r):
        lines.append(f"| {md(name)} | {value:,} | {_gb(value)} |")
    lines += [f"| **total** | {mem.total_bytes:,} | {_gb(mem.total_bytes)} |",
              f"| capacity | {mem.capacity_bytes:,} | {_gb(mem.capacity_bytes)} |", "",
              md(waste_line(r)), "",
              f"**{'Fits' if mem.fits else 'Does not fit'}**: fullest PE "
              f"{mem.max_pe_bytes:,} of {mem.pe_sram_bytes:,} B. {md(mem.limiting)}", "",
              f"Envelope (parameters x bits / 8): {_gb(mem.naive_weights_bytes)} GB "
              "(10^9 B); it leaves out:", ""]
    lines += [f"- {_gb(v)} GB {md(n)}" for n, v in envelope_gaps(r)]
    lines += ["", "## Partition", "", "| wafer | holds | used GB | fullest PE B | fits |",
              "| ---: | --- | ---: | ---: | --- |"]
    for ws in r.partition:
        lines.append(f"| {ws.wafer} | {md(', '.join(ws.holds))} | {_gb(ws.used_bytes)} | "
                     f"{ws.max_pe_bytes:,} | {'yes' if ws.fits else 'no'} |")
    searched = candidate_rows(r)
    if searched:
        lines += ["", "## Plans the search decided (best first)", "",
                  "| plan | tokens/s per user | tokens/s | fullest PE B | fits |",
                  "| --- | ---: | ---: | ---: | --- |"]
        lines += [f"| {' | '.join(row)} |" for row in searched]
    perf = _perf_rows(r)
    if perf:
        title = performance_title(r)
        head, _, rest = title.partition(": ")
        lines += ["", f"## {md(head)}", ""]
        if rest:
            lines += [f"**{md(rest[0].upper() + rest[1:])}.**", ""]
        lines += ["| figure | value |", "| --- | ---: |"]
        lines += [f"| {md(n)} | {md(v)} |" for n, v in perf]
        notes = (r.performance or {}).get("notes") or []
        if notes:
            lines += ["", *(f"- performance note: {md(n)}" for n in notes)]
    lines += ["", "## Assumptions", "", *(f"- {md(a)}" for a in r.assumptions)]
    if r.notes:
        lines += ["", "## Notes", "", *(f"- {md(n)}" for n in r.notes)]
    return "\n".join(lines) + "\n"


def render_json(r: Result) -> str:
    """The result as strict JSON (never ``NaN`` or ``Infinity``)."""
    return strict_json.dumps(r.to_dict(), indent=2) + "\n"


RENDERERS: dict[str, Callable[[Result], str]] = {
    "text": render_text, "markdown": render_markdown, "json": render_json}
