"""PE-level fidelity: the operations of a decode layer simulated PE by PE and link by
link (``wsesim.sim.fabric_net``), the referee of the closed forms in ``wsesim.perf``.

Every operation is an SPMD program (``wsesim.sim.program``): each PE of a region runs
the same list of parts, local work (the kernels' vector instructions on the PE's own
block: uneven cuts show) or a fabric operation on the lines of the region
(``wsesim.sim.collectives``: the SDK's chain, tree, two-level allreduce, multicast
broadcast, point-to-point lanes, MeshGEMM shifts), each paying its call, hops, ramps,
receive-add-forward stages and wavelets as the engine moves its trains. A PE starts
each part as soon as its own previous part is done, so consecutive phases overlap where
their dependencies allow; the closed forms add the busiest PE's costs phase after phase.

This module gathers the public names. Single operations (``wsesim.sim.operations``,
each an ``OpResult`` with the closed form beside it): ``broadcast``, ``allreduce``,
``gemv``, ``transfer`` (activations between regions), ``stage`` (a layer's attention or
MLP, the LM head, the embeddings, at a context and a number of tokens), ``layer``
(attention then MLP), ``prefill`` (a prompt through a stage spread over the whole grid
by MeshGEMM), ``decode_token`` (a whole small model, every stage and the paths between
them, one decode step), ``kernel_op`` (a kernel measurement's setting). The stage
programs are in ``wsesim.sim.stage_programs``; ``pe_stage_costs``
(``wsesim.sim.coster``) is the ``StageCoster`` that ``simulation: {fidelity: pe}``
uses, and ``pe_utilization(result)`` gives the busy fractions of such a run in the
ledger's grid shape. ``kernels_for`` builds the kernels and plan of a LLaMA-shaped
model for them.
"""
from __future__ import annotations

import math
from typing import Any

from wsesim.mapping.plan import make_plan
from wsesim.perf.stages import Kernels
from wsesim.sim.coster import MAX_SAMPLES, pe_stage_costs, pe_utilization
from wsesim.sim.operations import (
    OpResult,
    allreduce,
    broadcast,
    decode_token,
    gemv,
    kernel_op,
    layer,
    prefill,
    stage,
    transfer,
)
from wsesim.sim.program import Program, area
from wsesim.sim.stage_programs import MESH_ROUNDS, StageProgram, mesh_prefill, simulate_stage
from wsesim.specs import deployment_from_mapping


def kernels_for(hardware: Any, rows: int, cols: int, hidden: int = 256,
                context: int = 256, algorithm: str = "auto", groups: int | None = None,
                layers: int = 1, strategy: str = "sequential") -> tuple[Kernels, Any]:
    """Kernels and a one-wafer plan of a LLaMA-shaped fp16 model on a ``rows x cols``
    grid of ``hardware`` (a profile name, path or mapping): what ``wsesim
    fabric-check`` and the tests build single operations from. Its shape follows
    LLaMA's: hidden ``hidden``, heads of 64 (at least one), half as many KV heads (all
    of them for an odd count), an MLP of about 8/3 the hidden size rounded up to a
    multiple of 32 (as LLaMA rounds its own to 256; twice the hidden size below 32),
    a small vocabulary of 1,024 (only the LM-head and embedding operations use it)."""
    heads = max(1, hidden // 64)
    inter = max(1, math.ceil(8 * hidden / 3 / 32) * 32) if hidden >= 32 else 2 * hidden
    dep = deployment_from_mapping({
        "name": "fabric-check",
        "model": {"name": f"llama-h{hidden}", "hidden_size": hidden,
                  "intermediate_size": inter, "num_hidden_layers": layers,
                  "num_attention_heads": heads,
                  "num_key_value_heads": max(1, heads // 2) if heads % 2 == 0 else heads,
                  "head_dim": max(1, hidden // heads), "vocab_size": 1024},
        "hardware": hardware, "wafers": 1, "quantization": "fp16",
        "workload": {"batch_size": 1, "prompt_tokens": max(1, context - 1),
                     "output_tokens": 1},
        "mapping": {"strategy": strategy, "grid": [rows, cols], "allreduce": algorithm,
                    **({"allreduce_groups": groups} if groups else {})},
    }, "fabric-check")
    return Kernels.of(dep), make_plan(dep, 1)


__all__ = ["MAX_SAMPLES", "MESH_ROUNDS", "Kernels", "OpResult", "Program", "StageProgram",
           "allreduce", "area", "broadcast", "decode_token", "gemv", "kernel_op",
           "kernels_for", "layer", "mesh_prefill", "pe_stage_costs", "pe_utilization",
           "prefill", "simulate_stage", "stage", "transfer"]
