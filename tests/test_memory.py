"""The per-PE ledger: hand-computed bytes on small grids, and invariants."""
from __future__ import annotations

from conftest import deployment, tiny_hardware, tiny_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsesim.fit import plan_fits
from wsesim.run import fewest_wafers
from wsesim.mapping.plan import make_plan, max_wafers
from wsesim.memory import build_ledger, fullest_pe_bytes
from wsesim.quant import packed_bytes


def test_sequential_fp16_by_hand():
    """hidden 256, MLP 512, 2 layers, 4 heads / 2 KV heads of 64, vocab 1000, 8 x 8 PEs,
    2 sequences of 64 tokens, every cut even so every PE holds the same bytes."""
    dep = deployment(hardware=tiny_hardware(sram=65536))
    ledger = build_ledger(make_plan(dep, 1))
    w = ledger.wafers[0]
    layer = (2048 + 1024 + 1024 + 2048 + 64) + (3 * 4096 + 64)  # attention + MLP blocks
    tables = 125 * 32 * 2 + 32 * 125 * 2 + 32 * 2  # embedding, LM head, final norm
    assert (w.weights == 2 * layer + tables).all()          # 53,184
    assert (w.quant_metadata == 0).all()
    assert (w.kv_cache == 2 * (2 * (8 * 2) * 16 * 2)).all()  # 2 layers x K,V x 16 tok x 16
    assert (w.activations == (32 + 125 + 32) * 2).all()      # LM head's buffers, the largest
    assert (w.used == 53_184 + 2_048 + 378 + 4_176).all()
    assert ledger.fits and fullest_pe_bytes(ledger.plan) == 59_786


def test_sequential_int4_g128_by_hand():
    dep = deployment(hardware=tiny_hardware(sram=65536),
                     quantization={"weights": "int4-g128"})
    w = build_ledger(make_plan(dep, 1)).wafers[0]
    # 32-weight pieces of 128-weight groups: 16 B payload + 4 B scale/zero per row
    payload = 2 * (512 + 256 + 256 + 512 + 1024 + 1024 + 1024)
    meta = 2 * (128 + 64 + 64 + 128 + 256 + 256 + 128)
    vectors_and_tables = 2 * 128 + 16_064
    assert (w.weights == payload + vectors_and_tables).all()
    assert (w.quant_metadata == meta).all()
    assert (w.used == 25_536 + 2_048 + 2_048 + 378 + 4_176).all()


def test_uneven_cut_is_counted_per_pe():
    # vocab 1001 over 8 rows: the last row holds 126 entries, the others 125
    dep = deployment(model=tiny_model(vocab_size=1001), hardware=tiny_hardware(sram=65536))
    ledger = build_ledger(make_plan(dep, 1))
    w = ledger.wafers[0]
    assert w.weights.max() - w.weights.min() == 32 * 2 + 32 * 2  # a row of each table
    assert ledger.by_tensor["embed_tokens"].imbalance_bytes == 7 * 8 * 32 * 2


def test_pipeline_regions_hold_their_stage_only():
    dep = deployment(hardware=tiny_hardware(rows=24, cols=24, sram=65536),
                     mapping={"strategy": "pipeline"})
    plan = make_plan(dep, 1)
    ledger = build_ledger(plan)
    w = ledger.wafers[0]
    for stage in plan.stages:
        r = stage.region
        assert (w.stage_map[r.row0:r.row0 + r.rows, r.col0:r.col0 + r.cols] == stage.index).all()
    assert (w.stage_map >= 0).all()
    # the LM head's region holds vocab x hidden at 2 bytes, once
    head = next(s for s in plan.stages if s.part == "lm_head")
    r = head.region
    window = w.weights[r.row0:r.row0 + r.rows, r.col0:r.col0 + r.cols]
    assert window.sum() == 1000 * 256 * 2 + 256 * 2 * r.cols


# ---- invariants over random small deployments ---------------------------------------

formats = st.sampled_from(["fp16", "int8", "int4-g128", "w3.5-g128", "w3.5-dense",
                           "w3.5-byte-g128", "int4-raw"])


@st.composite
def small_deployments(draw):
    heads = draw(st.sampled_from([2, 4]))
    model = tiny_model(
        hidden_size=draw(st.sampled_from([128, 256])),
        intermediate_size=draw(st.sampled_from([256, 384, 640])),
        num_hidden_layers=draw(st.integers(1, 4)),
        num_attention_heads=heads,
        num_key_value_heads=draw(st.sampled_from([1, heads])),
        vocab_size=draw(st.integers(50, 700)),
        tie_word_embeddings=draw(st.booleans()),
    )
    hw = tiny_hardware(rows=draw(st.integers(6, 20)), cols=draw(st.integers(6, 20)),
                       sram=draw(st.sampled_from([16384, 49152])))
    return deployment(
        model=model, hardware=hw, wafers=draw(st.integers(1, 3)),
        quantization={"weights": draw(formats), "embeddings": draw(formats),
                      "kv_cache": draw(st.sampled_from(["fp16", "int8"]))},
        workload={"batch_size": draw(st.integers(1, 3)),
                  "prompt_tokens": draw(st.integers(1, 40)),
                  "output_tokens": draw(st.integers(1, 40))},
        mapping={"strategy": draw(st.sampled_from(["pipeline", "sequential"]))},
    )


SLOW = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@SLOW
@given(small_deployments())
def test_every_layer_placed_once_in_order(dep):
    plan = make_plan(dep, dep.wafers)
    layers = [s.layer for s in plan.stages if s.layer is not None]
    n = dep.model.num_hidden_layers
    assert sorted(layers) == sorted(list(range(n)) * 2)  # attention + MLP each
    assert layers == sorted(layers)  # contiguous ranges, in order across wafers
    assert all(w.stages for w in plan.wafers)
    assert plan.wafers[-1].stages[-1].part == "lm_head"
    parts0 = [s.part for s in plan.wafers[0].stages]
    assert parts0[0] == "embedding" or (dep.model.tie_word_embeddings and dep.wafers == 1)


@SLOW
@given(small_deployments())
def test_ledger_totals_and_fit_are_consistent(dep):
    plan = make_plan(dep, dep.wafers)
    ledger = build_ledger(plan)
    used = max(int(w.used.max()) for w in ledger.wafers)
    assert ledger.fullest_pe().bytes == used
    assert ledger.fits == (used <= dep.hardware.pe_sram_bytes) == plan_fits(plan)
    stored = sum(t.payload_bytes + t.metadata_bytes for t in ledger.by_tensor.values())
    assert stored == ledger.total("weights") + ledger.total("quant_metadata") + \
        ledger.total("kv_cache")
    for name, t in ledger.by_tensor.items():
        # cutting never loses a byte: blocks hold at least the tensor packed whole
        assert t.payload_bytes >= t.whole_payload_bytes, name
        assert t.metadata_bytes >= t.whole_metadata_bytes, name


@st.composite
def tight_deployments(draw):
    """Deployments that often need several wafers: small grids, little SRAM."""
    model = tiny_model(num_hidden_layers=draw(st.integers(2, 6)),
                       intermediate_size=draw(st.sampled_from([512, 1024])),
                       vocab_size=draw(st.integers(100, 2000)))
    hw = tiny_hardware(rows=draw(st.integers(8, 16)), cols=draw(st.integers(8, 16)),
                       sram=draw(st.sampled_from([12288, 16384, 24576])))
    return deployment(model=model, hardware=hw, wafers=1,
                      quantization={"weights": draw(formats)},
                      mapping={"strategy": draw(st.sampled_from(["pipeline", "sequential"]))})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tight_deployments())
def test_min_wafers_is_the_first_count_that_fits(dep):
    # brute force over every wafer count, against the search that starts at a bound
    first = next((n for n in range(1, max_wafers(dep) + 1)
                  if plan_fits(make_plan(dep, n))), None)
    assert fewest_wafers(dep) == first


def test_whole_packed_bytes_match_the_packer_sizes():
    dep = deployment(quantization={"weights": "w3.5-g128"})
    ledger = build_ledger(make_plan(dep, 1))
    q = ledger.by_tensor["q_proj"]
    one = packed_bytes(dep.quantization.weights, 256, 256)
    # two layers of q_proj, each 256 rows of 112 B (128 pairs x 7 bits) + 2 groups x 4 B
    assert q.whole_payload_bytes == 2 * one.payload == 2 * 256 * 112
    assert q.whole_metadata_bytes == 2 * one.metadata == 2 * 256 * 2 * 4
