"""The text and markdown reports a user reads: user text printed literally, the
performance of a plan that does not fit marked in its own section, labels that tell
different figures apart, the workload and the unit of GB said, the fewest-wafers miss."""
from __future__ import annotations

import dataclasses
import functools
import unicodedata

import pytest
from conftest import tiny_hardware, tiny_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsesim.literal import markdown_literal, printable
from wsesim.report import envelope_gaps, memory_rows, render_markdown, render_text
from wsesim.run import simulate
from wsesim.specs import deployment_from_mapping, load_deployment

WIDE = 1000   # console width: no name is wrapped, so each shows whole on its line


def result_of(sram: int = 49152, wafers: int = 1, quantization: str = "w3.5-g128"):
    return simulate(deployment_from_mapping({
        "name": "report-test", "model": tiny_model(num_hidden_layers=4),
        "hardware": tiny_hardware(12, 12, sram=sram), "wafers": wafers,
        "quantization": quantization,
        "workload": {"batch_size": 1, "prompt_tokens": 16, "output_tokens": 8}},
        "<test>"))


@functools.cache
def fitting_result():
    r = result_of()
    assert r.memory.fits and r.performance
    return r


@pytest.fixture(scope="module")
def fits():
    return fitting_result()


@pytest.fixture(scope="module")
def overflows():
    r = result_of(sram=9000)
    assert not r.memory.fits and r.performance
    return r


# ---- user text is printed literally ------------------------------------------------

def renamed(r, name: str):
    """The same result with every piece of user text replaced by ``name``."""
    return dataclasses.replace(
        r, name=name, model=dataclasses.replace(r.model, name=name),
        hardware=dataclasses.replace(r.hardware, name=name), notes=[name])


HOSTILE = ["[/oops]", "llama [v2]", "[bold]x[/bold]", ":smile: :thumbs_up:",
           "a\nerror: forged line", "tab\there", "\x1b[31mred\x1b[0m", "rtl\u202eevil",
           "line\u2028sep", "nul\x00byte", "$x^2$ and *stars* _under_ `code` | pipe",
           "<script>alert(1)</script>", "back\\slash", "\r\n", ""]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_print_as_typed(fits, name):
    text = render_text(renamed(fits, name), width=WIDE)
    assert f"wsesim: {printable(name)}\n" in text
    assert f"model      {printable(name)}: " in text
    assert f"hardware   {printable(name)}: " in text
    assert f"  - {printable(name)}\n" in text           # the notes
    md = render_markdown(renamed(fits, name))
    assert md.startswith(f"# wsesim: {markdown_literal(name)}\n")
    assert f"- model: {markdown_literal(name)}, " in md


def test_markup_is_not_read_in_names(fits):
    text = render_text(renamed(fits, "llama [v2]"), width=WIDE)
    assert "wsesim: llama [v2]\n" in text                 # today: "wsesim: llama "
    assert "[/oops]" in render_text(renamed(fits, "[/oops]"), width=WIDE)  # today: crash


def invisible(text: str) -> set[str]:
    """Control and formatting characters other than the newlines of the layout."""
    return {ch for ch in text if ch != "\n" and unicodedata.category(ch) in INVISIBLE}


INVISIBLE = {"Cc", "Cf", "Zl", "Zp", "Cs"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.text(max_size=40))
def test_any_name_renders_literally_without_breaking_the_layout(name):
    r = fitting_result()
    text = render_text(renamed(r, name), width=WIDE)
    md = render_markdown(renamed(r, name))
    assert f"wsesim: {printable(name)}\n" in text
    assert f"model      {printable(name)}: " in text
    assert f"# wsesim: {markdown_literal(name)}\n" in md
    # no name adds or removes a line: the layout is that of a plain name
    assert text.count("\n") == render_text(renamed(r, "x"), width=WIDE).count("\n")
    assert md.count("\n") == render_markdown(renamed(r, "x")).count("\n")
    assert not invisible(text) and not invisible(md)


@given(st.text())
def test_printable_escapes_exactly_the_invisible_characters(text):
    out = printable(text)
    assert not invisible(out) and "\n" not in out
    if not invisible(text) and "\n" not in text:
        assert out == text
    kept = iter(out)   # what is not escaped is kept, in order
    assert all(ch in kept for ch in text if ch not in invisible(text) and ch != "\n")


# ---- a plan that does not fit: its performance is marked ----------------------------

def _section(lines: list[str], start: str) -> str:
    return next(line for line in lines if line.startswith(start))


def test_performance_of_a_plan_that_does_not_fit_is_marked(overflows, fits):
    title = _section(render_text(overflows, width=WIDE).splitlines(), "Performance")
    assert "DOES NOT FIT" in title
    assert f"{overflows.memory.max_pe_bytes:,} of {overflows.memory.pe_sram_bytes:,} B" \
        in title
    heading = _section(render_markdown(overflows).splitlines(), "## Performance")
    assert "DOES NOT FIT" in heading
    # a plan that fits has a plain title
    assert _section(render_text(fits, width=WIDE).splitlines(),
                    "Performance").strip() == "Performance"
    assert _section(render_markdown(fits).splitlines(),
                    "## Performance") == "## Performance"


# ---- wording ---------------------------------------------------------------------------

def _base(label: str) -> str:
    """What a reader takes a label for: its words before any qualification."""
    return label.split(" (")[0].split(",")[0].strip()


def test_different_figures_carry_labels_a_reader_can_tell_apart():
    r = result_of(sram=30000, quantization="w3.5-g128")   # cut groups: stored != whole
    it = r.memory.items
    assert it["linear_metadata_bytes"] + it["embedding_metadata_bytes"] != \
        it["whole_metadata_bytes"]
    table, envelope = dict(memory_rows(r)), dict(envelope_gaps(r))
    for a, va in table.items():
        for b, vb in envelope.items():
            if _base(a) == _base(b):   # read alike: must be the same figure
                assert (a, va) == (b, vb)


def test_no_figure_is_called_a_part_of_a_total_it_is_not_in(overflows):
    for out in (render_text(overflows, width=WIDE), render_markdown(overflows)):
        assert "of which" not in out
        it = overflows.memory.items
        line = next(x for x in out.splitlines() if f"{it['imbalance_bytes']:,} B" in x)
        head, _, tail = line.partition("not in the total")
        assert f"{it['cut_overhead_bytes']:,} B" in head    # stored: in the total
        assert f"{it['imbalance_bytes']:,} B" in tail       # unused: not in it
        assert "idle" in tail


def test_gb_is_said_to_be_ten_to_the_ninth_bytes(fits):
    text = render_text(fits, width=WIDE)
    assert "GB (10^9 B)" in text
    assert "GB (10^9 B)" in render_markdown(fits)


def test_markdown_has_the_workload_line(fits):
    w = fits.workload
    line = (f"batch {w['batch_size']}, prompt {w['prompt_tokens']}, output "
            f"{w['output_tokens']}, KV cache for {w['context_length']} tokens per sequence")
    assert f"workload   {line}" in render_text(fits, width=WIDE)
    assert f"- workload: {line}\n" in render_markdown(fits)


def test_the_workload_line_says_the_kv_cache_a_sliding_window_holds():
    r = simulate(deployment_from_mapping({
        "name": "window", "model": tiny_model(model_type="mistral", sliding_window=16),
        "hardware": tiny_hardware(12, 12), "wafers": 1, "quantization": "w3.5-g128",
        "workload": {"batch_size": 1, "prompt_tokens": 16, "output_tokens": 8,
                     "context_length": 40}}, "<test>"))
    assert r.workload["kv_cache_tokens"] == 16 and r.workload["context_length"] == 40
    words = "KV cache for 16 tokens per sequence (of a 40-token context)"
    assert words in render_text(r, width=WIDE) and words in render_markdown(r)
    assert any("the KV cache holds 16 tokens per sequence" in n for n in r.notes)


# ---- the fewest wafers, and by how much the count below missed ------------------------

def test_fewest_wafers_says_by_how_much_the_count_below_missed():
    r = simulate(load_deployment("examples/llama-3.1-405b-w3.5-5x-wse3.yaml"))
    # on 5 wafers (the requested count, one below the fewest) the fullest PE is the
    # memory section's own: 54,109 B of 49,152
    assert r.min_wafers == 6 and r.wafers == 5
    d = r.min_wafers_detail
    assert d is not None and d.wafers == 5 and d.exact
    assert d.over_bytes == r.memory.max_pe_bytes - r.memory.pe_sram_bytes == 54_109 - 49_152
    fp = r.memory.fullest_pe
    assert (d.fullest_pe.wafer, d.fullest_pe.row, d.fullest_pe.col) == \
        (fp.wafer, fp.row, fp.col)
    words = f"on 5 wafers: 4,957 B over on the fullest PE (wafer {fp.wafer}, PE row " \
            f"{fp.row} col {fp.col}"
    assert words in render_text(r, width=WIDE)
    assert markdown_literal(words) in render_markdown(r)
    j = r.to_dict()["min_wafers_detail"]
    assert j["wafers"] == 5 and j["over_bytes"] == 4_957 and j["exact"] is True
