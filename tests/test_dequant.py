"""Dequantization from its instructions: counts from the bit layouts, their price on a
profile, the profile keys (sweepable, validated), and how they are shown."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import deployment, tiny_hardware, tiny_model
from hypothesis import given, settings
from hypothesis import strategies as st

from wsesim.cli import main
from wsesim.errors import SpecError
from wsesim.mapping.plan import make_plan
from wsesim.perf.compute import PECompute
from wsesim.performance import dequant_assumption
from wsesim.quant import PRESETS, QuantFormat, QuantizedTensor, pack, preset
from wsesim.quant.dequant import (
    block_ops,
    block_units,
    field_layout,
    ops_per_weight,
    period,
    row_field_counts,
)
from wsesim.specs import load_hardware
from wsesim.specs.hardware import DequantCosts, HardwareProfile
from wsesim.sweeps import load_sweep, run_sweep

INT8 = QuantFormat(bits=8)
INT4 = QuantFormat(bits=4)
INT4_BYTE = QuantFormat(bits=4, packing="byte")
W35 = QuantFormat(bits=3.5)
W35_BYTE = QuantFormat(bits=3.5, packing="byte")
PAYLOADS = [INT8, INT4, INT4_BYTE, W35, W35_BYTE]

# distinct costs, so that a kind priced at the wrong rate shows
COSTS = DequantCosts(shift_cycles=2, logic_cycles=3, convert_cycles=5, fma_cycles=7,
                     scalar_cycles=11, int16_lanes=2, fp16_lanes=4)
PE = PECompute(rate=4, op_cycles=1.5, latency=4, elementwise={}, dequant_costs=COSTS)


# ----------------------------------------------------------------- counts by hand
@pytest.mark.parametrize("fmt,shifts,logic,p", [
    (INT8, 1.5, 0, 2),          # bytes at bits 0 (shl, sra) and 8 (sra): 3 per 2
    (INT4, 1.75, 0, 4),         # nibbles at 0, 4, 8 (two shifts each) and 12 (one)
    (INT4_BYTE, 2, 0, 2),       # low nibbles at bits 0 and 8: both inside their word
    (W35_BYTE, 2, 0, 4),        # lanes at 0, 4, 8, 12; bits 7 and 15 unused: all inside
    (W35, 67 / 32, 5 / 32, 32),  # see the period below
])
def test_payload_operations_per_weight_by_hand(fmt, shifts, logic, p):
    ops = ops_per_weight(fmt)
    assert period(fmt) == p
    assert (ops["shift"], ops["logic"]) == (shifts, logic)
    assert ops["convert"] == 1                                 # int16 -> fp16
    # no stored scales: no fma, one scalar per input (nothing per weight on wide blocks)
    assert ops["fma"] == 0 and ops["scalar"] == 0


def test_dense_3_5_bit_period_by_hand():
    # pair i starts at bit 7i: over 16 pairs (7 words) the starts mod 16 are
    starts = [0, 7, 14, 5, 12, 3, 10, 1, 8, 15, 6, 13, 4, 11, 2, 9]
    first, width = field_layout(W35, np.arange(32))
    assert list(first[0::2] % 16) == starts and list(first[1::2] - first[0::2]) == [4] * 16
    assert list(width) == [4, 3] * 16
    # 6 of 16 pairs straddle a word (start >= 10) ...
    assert sum(b + 7 > 16 for b in starts) == 6
    # ... but only 5 of 32 lanes: 4-bit lanes at 13, 14, 15 and 3-bit lanes at 14, 15
    # (starts 10, 11); the pair at 12 has one lane at the top of a word, one in the next
    counts = row_field_counts(W35, 32)
    assert counts == {"top": 2, "inner": 25, "split": 5}
    assert row_field_counts(W35, 9) == {"top": 1, "inner": 7, "split": 1}  # weights 0-8
    # a field inside its word: 2 shifts; at its top: 1; split: 3 and an or
    assert block_ops(W35, 32, 1) == {"shift": 2 * 1 + 25 * 2 + 5 * 3, "logic": 5,
                                     "convert": 32, "fma": 0, "scalar": 32}


def test_metadata_operations_by_hand():
    # int4 dense, groups of 64 along 256 inputs, fp32 scales, int8 zero points, 3 rows:
    # 12 (row, group) pairs, each: a convert of its scale; its zero point cut out (the 12
    # zero points alternate between bits 0 and 8 of their words: 6 x 2 + 6 x 1 shifts),
    # converted and multiplied by the scale
    fmt = QuantFormat(bits=4, group_size=64, scale_bits=32, zero_bits=8)
    payload_shifts = 3 * 256 * 1.75
    assert block_ops(fmt, 256, 3) == {
        "shift": payload_shifts + 6 * 2 + 6 * 1, "logic": 0,
        "convert": 3 * 256 + 12 + 12, "fma": 3 * 256 + 12, "scalar": 0}
    # int4 zero points: nibbles at 0, 4, 8, 12 of their words (3 x 2 shifts + 1 per 4)
    fmt4 = QuantFormat(bits=4, group_size=64, scale_bits=16, zero_bits=4)
    assert block_ops(fmt4, 256, 3)["shift"] == payload_shifts + 9 * 2 + 3 * 1
    # 3.5 bits: the 3-bit lane's step 2s, one fp16 op per (row, group); fp16 zero: none
    w35 = preset("w3.5-g128")
    assert block_ops(w35, 256, 3)["fma"] == 3 * 256 + 3 * 2
    # per-channel: one group per row; odd k: the padded lane is not extracted
    pc = QuantFormat(bits=3.5, scale_bits=16)
    assert block_ops(pc, 33, 2)["fma"] == 2 * 33 + 2
    assert block_units(pc, 33, 2)["weight"] == 66


def test_a_tensor_wide_scale_is_folded_into_the_inputs():
    # no stored scales: one scalar multiply per input (x_j * scale), no per-weight fma
    for fmt in (preset("int4-raw"), preset("w3.5-dense"), preset("w3.5-byte")):
        ops = block_ops(fmt, 64, 10)
        assert ops["scalar"] == 64 and ops["fma"] == 0 and ops["convert"] == 640


def test_the_presets_before_and_after():
    """The guessed SIMD operations per weight (int8 2, int4 4, int4-byte 3, w3.5 6,
    w3.5-byte 4) against the derived ones, long rows, with scales per group of 128."""
    derived = {name: sum(ops_per_weight(PRESETS[name]).values())
               for name in ("int8", "int4-g128", "w3.5-g128", "w3.5-byte-g128")}
    assert derived == {"int8": 1.5 + 2, "int4-g128": 1.75 + 2,
                       "w3.5-g128": 67 / 32 + 5 / 32 + 2 + 1 / 128,
                       "w3.5-byte-g128": 2 + 2 + 1 / 128}
    int4_byte = QuantFormat(bits=4, packing="byte", scale_bits=16)
    assert sum(ops_per_weight(int4_byte).values()) == 2 + 2
    assert ops_per_weight(preset("fp16")) == dict.fromkeys(ops_per_weight(W35), 0.0)


# ----------------------------------------------------------------- packing.py's layout
@settings(max_examples=40, deadline=None)
@given(fmt=st.sampled_from(PAYLOADS), k=st.integers(1, 70), data=st.data())
def test_field_layout_is_where_the_packer_puts_each_weight(fmt, k, data):
    """Weight j set to -1 (all ones) and every other to 0: the packed row's set bits are
    exactly the field dequant.py cuts out."""
    j = data.draw(st.integers(0, k - 1))
    q = np.zeros((1, k), np.int8)
    q[0, j] = -1
    row = pack(fmt, QuantizedTensor(q=q, tensor_scale=1.0)).payload[0]
    bits = np.flatnonzero(np.unpackbits(row, bitorder="little"))
    first, width = field_layout(fmt, j)
    assert list(bits) == list(range(int(first), int(first) + int(width)))


# ----------------------------------------------------------------- invariants
formats = st.sampled_from([f for f in PRESETS.values() if f.is_integer] + [
    QuantFormat(bits=4, group_size=32, scale_bits=32, zero_bits=4),
    QuantFormat(bits=8, group_size=16, scale_bits=16, zero_bits=8),
    QuantFormat(bits=3.5, group_size=64, scale_bits=16, zero_bits=4, packing="byte")])


@settings(max_examples=60, deadline=None)
@given(fmt=formats, k=st.integers(0, 600), n=st.integers(0, 50), m=st.integers(1, 5))
def test_operations_scale_with_the_block(fmt, k, n, m):
    units, more = block_units(fmt, k, n), block_units(fmt, k, m * n)
    # fields, weights and (row, group) pairs: linear in the outputs; inputs: not at all
    for unit in ("top field", "inner field", "split field", "weight", "group"):
        assert more[unit] == m * units[unit]
    assert units["input"] == (k if n else 0) == more["input"] or n == 0
    # zero points (flattened over the block's groups) are one per (row, group)
    zeros = units.get("top zero point", 0) + units.get("inner zero point", 0)
    assert zeros == (units["group"] if fmt.zero_bits in (4, 8) else 0)
    # linear in whole periods of the layout and whole groups
    unit = math.lcm(period(fmt), fmt.group_size or 1)
    if fmt.group_size is not None:
        whole, one = block_ops(fmt, m * unit, 4 * n), block_ops(fmt, unit, 4 * n)
        assert all(whole[kind] == m * one[kind] for kind in whole)
    # each weight takes 1 to 3 shifts, one convert; every or joins a split field
    ops = block_ops(fmt, k, n)
    assert k * n <= ops["shift"] - _zero_shifts(fmt, k, n) <= 3 * k * n
    assert ops["convert"] >= k * n
    assert ops["logic"] == units["split field"]


def _zero_shifts(fmt: QuantFormat, k: int, n: int) -> int:
    u = block_units(fmt, k, n)
    return u.get("top zero point", 0) + 2 * u.get("inner zero point", 0)


@settings(max_examples=60, deadline=None)
@given(k=st.integers(0, 2000), n=st.integers(1, 20))
def test_denser_packing_never_takes_fewer_shifts(k, n):
    """Packing 3.5-bit pairs densely (fields across word boundaries) never costs fewer
    shifts than one pair per byte. For int4 it is the other way round: dense nibbles
    put one field in four at the top of its word (one shift), a byte layout none."""
    assert block_ops(W35, k, n)["shift"] >= block_ops(W35_BYTE, k, n)["shift"]
    assert block_ops(INT4, k, n)["shift"] <= block_ops(INT4_BYTE, k, n)["shift"]
    assert block_ops(W35, k, n)["logic"] >= block_ops(W35_BYTE, k, n)["logic"] == 0


@settings(max_examples=40, deadline=None)
@given(fmt=formats, k=st.integers(1, 300), n=st.integers(1, 300),
       m=st.integers(1, 4))
def test_cost_is_linear_in_the_block_rows_and_rises_with_each_cost(fmt, k, n, m):
    unit = math.lcm(period(fmt), fmt.group_size or 1)
    if fmt.group_size is not None or fmt.scale_bits == 0:
        # whole periods and groups of inputs, whole periods of zero points (4 | rows)
        one = float(PE.dequant(fmt, unit, 4 * n).dequant)
        assert float(PE.dequant(fmt, m * unit, 4 * n).dequant) == pytest.approx(m * one)
    base = float(PE.dequant(fmt, k, n).dequant)
    assert base > 0
    dearer = PECompute(4, 1.5, 4, {}, COSTS.model_copy(update={"shift_cycles": 20}))
    assert float(dearer.dequant(fmt, k, n).dequant) > base
    wider = PECompute(4, 1.5, 4, {}, COSTS.model_copy(update={"int16_lanes": 64,
                                                              "fp16_lanes": 64}))
    assert float(wider.dequant(fmt, k, n).dequant) <= base


# ----------------------------------------------------------------- priced by hand
def test_cost_by_hand_on_a_tiny_profile():
    """w3.5 dense, groups of 128 with fp16 scale and zero, a 32 x 8 block. Per input
    row of 8 outputs: 67 shifts, 5 ors, 32 converts, 32 fmas + one 2s per row and group.
    An instruction over 8 values costs 1.5 to issue plus max(latency 4, 8 x cycles /
    lanes): shift 8 (2 cycles, 2 lanes), or 12, convert 10 (5, 4 lanes), fma 14."""
    fmt = preset("w3.5-g128")
    hand = 67 * (1.5 + 8) + 5 * (1.5 + 12) + 32 * (1.5 + 10) + 33 * (1.5 + 14)
    assert float(PE.dequant(fmt, 32, 8).dequant) == pytest.approx(hand)
    # 2 outputs: every instruction waits its latency (2 x 7 / 4 = 3.5 < 4 for an fma)
    short = (67 + 5 + 32 + 33) * (1.5 + 4)
    assert float(PE.dequant(fmt, 32, 2).dequant) == pytest.approx(short)
    # no stored scale: a scalar multiply per input (11 cycles), no fma
    raw = preset("w3.5-dense")
    hand_raw = 67 * (1.5 + 8) + 5 * (1.5 + 12) + 32 * (1.5 + 10) + 32 * 11
    assert float(PE.dequant(raw, 32, 8).dequant) == pytest.approx(hand_raw)
    # fp16 weights: nothing; everything is the dequant cause
    assert float(PE.dequant(preset("fp16"), 32, 8).dequant) == 0
    c = PE.dequant(fmt, 32, 8)
    assert float(c.compute) == float(c.overhead) == 0


def test_blocks_as_arrays_price_each_block():
    fmt = preset("int4-g128")
    k, n = np.array([0, 10, 128]), np.array([5, 0, 36])
    each = PE.dequant(fmt, k, n).dequant
    assert list(each) == [0, 0, float(PE.dequant(fmt, 128, 36).dequant)]


# ----------------------------------------------------------------- profile keys
def test_shipped_profiles_leave_the_lanes_to_the_fitted_fp16_rate():
    # a copy of macs_per_cycle.fp16 would go stale when calibrate --write refits it
    for name in ("wse2", "wse3"):
        hw = load_hardware(name)
        assert hw.kernel.dequant.fp16_lanes is None
        assert hw.kernel.dequant.int16_lanes is None
        costs = PECompute.of(hw, preset("fp16")).dequant_costs
        assert costs.fp16_lanes == costs.int16_lanes == hw.macs_per_cycle["fp16"]


def _tiny_pe(fp16: float, activation_bits: int = 16, **lanes: float | None) -> PECompute:
    """PECompute.of a tiny profile whose fp16 rate is ``fp16``; ``lanes``: the
    dequant lane counts it states (a key given as None is written as null)."""
    raw = tiny_hardware(8, 8)
    raw["macs_per_cycle"] = {"fp16": fp16, "fp32": 0.5}
    dq = {k: v for k, v in raw["kernel"]["dequant"].items() if not k.endswith("_lanes")}
    raw["kernel"]["dequant"] = {**dq, **lanes}
    return PECompute.of(HardwareProfile.model_validate(raw),
                        QuantFormat(bits=activation_bits))


@pytest.mark.parametrize("written", [{}, {"int16_lanes": None, "fp16_lanes": None}])
def test_absent_lanes_follow_the_fp16_rate(written):
    explicit = {k: v for k, v in tiny_hardware()["kernel"]["dequant"].items()
                if not k.endswith("_lanes")}
    costs = []
    for fp16 in (4.0, 8.0):
        pe = _tiny_pe(fp16, **written)
        got = float(pe.dequant(W35, 128, 256).dequant)
        # the same as stating both lanes as the rate
        stated = PECompute(pe.rate, pe.op_cycles, pe.latency, {}, DequantCosts(
            **explicit, int16_lanes=fp16, fp16_lanes=fp16))
        assert got == float(stated.dequant(W35, 128, 256).dequant)
        costs.append(got)
    assert costs[1] < costs[0]
    # fp32 activations stream at the fp32 rate; the dequant lanes still follow fp16
    assert float(_tiny_pe(8.0, 32, **written).dequant(W35, 128, 256).dequant) == costs[1]


def test_stated_lanes_override_the_fp16_rate():
    slow, fast = (_tiny_pe(fp16, int16_lanes=2, fp16_lanes=3) for fp16 in (4.0, 8.0))
    assert slow.dequant_costs.int16_lanes == 2 and slow.dequant_costs.fp16_lanes == 3
    assert float(slow.dequant(W35, 128, 256).dequant) == \
        float(fast.dequant(W35, 128, 256).dequant)
    # one stated, the other follows the rate
    one = _tiny_pe(8.0, fp16_lanes=3).dequant_costs
    assert (one.int16_lanes, one.fp16_lanes) == (8.0, 3)


def test_unresolved_lanes_are_refused_not_guessed():
    bare = DequantCosts(shift_cycles=1, logic_cycles=1, convert_cycles=1, fma_cycles=1,
                        scalar_cycles=1)
    with pytest.raises(ValueError, match="not resolved"):
        PECompute(4, 1, 1, {}, bare).dequant(W35, 128, 256)


def test_a_sweep_varies_a_dequantization_cost_by_its_dotted_path():
    base = {"name": "dq", "model": tiny_model(), "hardware": tiny_hardware(8, 8),
            "wafers": 1, "quantization": {"weights": "w3.5-g128", "embeddings": "bf16"},
            "workload": {"batch_size": 1, "prompt_tokens": 8, "output_tokens": 4},
            "mapping": {"strategy": "pipeline"}}
    spec = load_sweep({"base": base,
                       "grid": {"hardware.kernel.dequant.shift_cycles": [1, 3]}})
    rows = run_sweep(spec).rows
    assert [r["error"] for r in rows] == ["", ""]
    cheap, dear = (r["token_breakdown_s.dequant"] for r in rows)
    assert dear > cheap > 0
    # a shipped profile by name, memory only
    named = load_sweep({"base": {**base, "hardware": "wse3"}, "performance": False,
                        "grid": {"hardware.kernel.dequant.fp16_lanes": [4, 8]}})
    assert [r["error"] for r in run_sweep(named).rows] == ["", ""]


def test_a_key_that_is_not_a_cost_is_refused_by_the_sweep():
    # a dict entry (the old per-format guess) was no field; a cost's name is
    with pytest.raises(SpecError, match="'w3' is not a key of hardware.kernel.dequant"):
        load_sweep({"base": {"name": "x"},
                    "grid": {"hardware.kernel.dequant.w3.5": [1, 2]}})


@pytest.mark.parametrize("key,value,says", [
    ("shift_cycles", -1, "greater than or equal to 0"),
    ("fma_cycles", 1e9, "must be at most 1,000"),
    ("convert_cycles", ".nan", "finite"),
    ("logic_cycles", "true", "expected a number"),
    ("scalar_cycles", "'1'", "expected a number"),
    ("int16_lanes", 0, "greater than 0"),
    ("fp16_lanes", 1e6, "must be at most 1,024"),
    ("shift_cycles", None, "required key is missing"),
    ("load_cycles", 1, "unknown key"),
])
def test_bad_dequantization_costs_are_one_located_line(tmp_path, capsys, key, value,
                                                       says):
    lines = []
    text = Path("hardware_profiles/wse3.yaml").read_text()
    stated = any(ln.strip().startswith(f"{key}:") for ln in text.splitlines())
    for line in text.splitlines():
        if line.strip().startswith(f"{key}:"):
            if value is None:
                continue
            line = f"    {key}: {value}"
        lines.append(line)
        if line.strip() == "dequant:" and not stated:   # the lanes, an unknown key
            lines.append(f"    {key}: {value}")
    prof = tmp_path / "bad.yaml"
    prof.write_text("\n".join(lines) + "\n")
    dep = tmp_path / "dep.yaml"
    dep.write_text(yaml.safe_dump({"model": "llama-3.1-8b", "hardware": str(prof),
                                   "wafers": 1, "quantization": "w3.5-g128",
                                   "workload": {"batch_size": 1}}))
    assert main(["run", str(dep)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: {prof}: kernel.dequant.{key}: ") and says in err


def test_the_old_per_format_guess_is_an_unknown_key():
    data = tiny_hardware()
    data["kernel"]["dequant_ops_per_weight"] = {"w3.5": 6}
    with pytest.raises(SpecError, match="kernel.dequant_ops_per_weight"):
        load_hardware(data)


# ----------------------------------------------------------------- shown
def test_formats_cost_prints_every_preset(capsys):
    assert main(["formats", "--cost", "--hardware", "wse3", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hardware"] == "wse3" and out["derived"] is True
    assert out["block"] == {"inputs": 256, "outputs": 256} and out["wsesim_version"]
    rows = {r["name"]: r for r in out["formats"]}
    assert set(rows) == set(PRESETS)
    assert rows["w3.5-g128"]["ops_total"] == 67 / 32 + 5 / 32 + 2 + 1 / 128
    pe = PECompute.of(load_hardware("wse3"), preset("fp16"))
    for name, r in rows.items():
        cycles = float(pe.dequant(PRESETS[name], 256, 256).dequant) / 256 ** 2
        assert r["cycles_per_weight"] == pytest.approx(cycles)
    assert rows["fp16"]["cycles_per_weight"] == 0
    assert main(["formats", "--cost", "--inputs", "128", "--outputs", "36"]) == 0
    text = capsys.readouterr().out
    assert "DERIVED" in text and "NOT measured" in text and "w3.5-byte-g128" in text


def test_formats_cost_with_a_bad_profile_is_one_line(capsys):
    assert main(["formats", "--cost", "--hardware", "wse9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: formats: --hardware: ")


def test_the_report_states_the_derived_cost():
    dep = deployment(quantization="w3.5-g128")
    plan = make_plan(dep, 1)
    line = dequant_assumption(plan)
    assert "DERIVED" in line and "NOT measured" in line
    assert "operations per weight" in line and "cycles per weight" in line
    assert dequant_assumption(make_plan(deployment(quantization="fp16"), 1)) is None
