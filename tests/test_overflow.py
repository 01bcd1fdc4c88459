"""Byte totals are exact integers: per-PE int64 arrays summed over PEs and wafers never
wrap, and the ledger's totals equal hand-computed counts at sizes up to the bounds."""
from __future__ import annotations

import numpy as np
from conftest import deployment, tiny_hardware, tiny_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from wsesim.mapping.plan import make_plan
from wsesim.memory import build_ledger, exact_sum
from wsesim.run import memory_summary
from wsesim.specs import bounds as B

INT64 = st.integers(-(2**63), 2**63 - 1)


@given(arrays(np.int64, st.integers(0, 300), elements=INT64))
def test_exact_sum_equals_the_python_sum(a):
    assert exact_sum(a) == sum(int(v) for v in a)


@given(st.integers(1, 2**62), st.integers(2, 5000))
def test_exact_sum_does_not_wrap_where_numpy_does(value, n):
    a = np.full(n, value, np.int64)
    assert exact_sum(a) == value * n
    assert exact_sum(a.reshape(1, n)) == value * n      # any shape
    assert exact_sum(np.broadcast_to(a[:1], (n,))) == value * n


def test_numpy_alone_would_wrap():
    a = np.full(4, 2**62, np.int64)
    assert int(a.sum()) != 2**64 == exact_sum(a)


@st.composite
def large_deployments(draw):
    """Sequential deployments on small grids with KV caches up to the bounds."""
    layers = draw(st.integers(1, 3))
    kv_heads = draw(st.sampled_from([1, 2, 4]))
    head_dim = draw(st.sampled_from([16, 64, 128]))
    batch = draw(st.integers(1, B.MAX_BATCH))
    kv_width = kv_heads * head_dim
    room = B.MAX_STORED_ELEMENTS // (2 * layers * batch * kv_width) - 1
    context = draw(st.integers(16, min(B.MAX_CONTEXT_TOKENS, max(room, 16))))
    rows, cols = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    wafers = draw(st.integers(1, min(2, layers + 2)))
    return deployment(
        model=tiny_model(num_hidden_layers=layers, num_attention_heads=kv_heads * 2,
                         num_key_value_heads=kv_heads, head_dim=head_dim),
        hardware=tiny_hardware(rows, cols), wafers=wafers,
        workload={"batch_size": batch, "prompt_tokens": 8, "output_tokens": 2,
                  "context_length": context},
        mapping={"strategy": "sequential"})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(large_deployments())
def test_ledger_totals_are_exact_and_never_negative(dep):
    plan = make_plan(dep, dep.wafers)
    ledger = build_ledger(plan)
    m, wl = dep.model, dep.workload
    rows, cols = dep.grid_shape
    # fp16 KV cache: every token of every sequence, K and V, in every layer, 2 B each
    kv = m.num_hidden_layers * 2 * wl.batch_size * wl.context_tokens * m.kv_dim * 2
    assert ledger.total("kv_cache") == kv
    assert ledger.by_tensor["kv_cache"].payload_bytes == kv
    for name, (out, inp) in {"q_proj": (m.q_dim, m.hidden_size),
                             "down_proj": (m.hidden_size, m.intermediate_size)}.items():
        assert ledger.by_tensor[name].payload_bytes == m.num_hidden_layers * out * inp * 2
    pes = rows * cols * dep.wafers
    assert ledger.total("runtime_reserved") == dep.hardware.runtime_reserve_bytes * pes
    summary = memory_summary(ledger)
    parts = (summary.weights_bytes, summary.quant_metadata_bytes, summary.kv_cache_bytes,
             summary.activation_bytes, summary.runtime_reserved_bytes)
    assert all(isinstance(p, int) and p >= 0 for p in parts)
    assert summary.total_bytes == sum(parts)
    assert summary.capacity_bytes == pes * dep.hardware.pe_sram_bytes
    assert summary.max_pe_bytes > 0
    assert all(int(r.used.min()) >= 0 for r in ledger.regions)
