"""The bounds wsesim puts on every count and size a user can type, and the annotated
types the specs declare their fields with.

Each bound is far past any model, wafer or study of today (the largest real value is
given beside it), and close enough that nothing wsesim computes can overflow or run
away: a PE's byte count stays below 2**55 in int64, a simulation stays within seconds
to a minute and a few hundred MB. A value past a bound is refused with one line naming
the key and the bound: ``workload.context_length: must be at most 16,777,216 tokens (a
bound of wsesim), got 9223372036854775807``.

Numbers that are not counts (rates, latencies, clock) must be finite and within a
sane range: a rate near zero is as absurd as an infinite one, and would turn the
simulation's times into infinities and its rates into NaN. Booleans are refused
wherever a number is expected (YAML's ``true`` is not one wafer).
"""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

from wsesim.errors import shown

# ---- model shapes (Hugging Face config keys) ------------------------------------
MAX_WIDTH = 2**20          # hidden, intermediate, attention width: 1,048,576 (largest real: 53,248)
MAX_HEAD_DIM = 2**16       # one head's width: 65,536 (largest real: 256)
MAX_LAYERS = 4096          # transformer layers (largest real: 126)
MAX_HEADS = 4096           # attention or KV heads (largest real: 128)
MAX_VOCAB = 2**24          # vocabulary: 16,777,216 tokens (largest real: 262,144)
MAX_POSITIONS = 2**31 - 1  # max_position_embeddings: positions are int32 in every framework
MAX_ROPE_THETA = 1e12      # RoPE base (largest real: 1e8); only checked for sanity
# Weights plus KV cache elements of a deployment: 2**50 (1.1e15, some 2,800 times a 405B
# model). With it, the bytes of one PE (at most 10 B of payload and metadata per element)
# stay below 2**55, so the ledger's int64 per-PE arithmetic cannot wrap.
MAX_STORED_ELEMENTS = 2**50

# ---- workload -------------------------------------------------------------------
MAX_CONTEXT_TOKENS = 2**24  # context_length, sliding_window: 16,777,216 (largest real: 10M)
MAX_PROMPT_TOKENS = 2**20   # prompt_tokens, prefill chunk: 1,048,576 (a 1M-token prompt)
MAX_OUTPUT_TOKENS = 2**15   # output_tokens: 32,768 (longest generation limits: 32K)
MAX_BATCH = 2**16           # batch_size: 65,536 sequences (serving batches: hundreds)

# ---- hardware and mapping -------------------------------------------------------
MAX_GRID_SIDE = 4096        # grid rows or cols (WSE-3: 1,170 x 755)
MAX_GRID_PES = 2**21        # PEs per wafer: 2,097,152, 2.4x WSE-3 (per-PE arrays: ~500 MB at most)
MAX_PE_SRAM_BYTES = 2**24   # SRAM per PE: 16 MiB (WSE-3: 48 KiB)
MAX_WAFERS = 4096           # wafers (a deployment needs a handful)
MAX_PE_COUNT = 2**32        # vendor_pe_count, a reference figure only
MAX_COLORS = 1024           # routing colors (WSE: 24)
MAX_GROUPS = MAX_GRID_SIDE  # two-level allreduce groups along a row or column
MIN_CLOCK_HZ, MAX_CLOCK_HZ = 1e6, 1e11            # 1 MHz .. 100 GHz (WSE: 1.1 GHz)
MIN_RATE, MAX_RATE = 1e-3, 1e6                    # per-cycle rates: MACs, bytes (WSE: 0.5..16)
MIN_LINK_BYTES_PER_S, MAX_LINK_BYTES_PER_S = 1e6, 1e15  # inter-wafer (CS-3: 1.5e11)
MAX_LATENCY_CYCLES = 1e6     # hop, ramp, turn latency; kernel's fixed costs (WSE: 0..640)
MAX_LATENCY_S = 10.0         # inter-wafer latency (assumed: 5e-6)
# kernel.elementwise_ops: vector instructions per element of rope, exp, rsqrt, silu
# (WSE: 3..10); at least MIN_RATE, as none of them is free
MAX_OPS_PER_ELEMENT = 1e4

# ---- simulation work ------------------------------------------------------------
# The tile simulation sends every sequence's tokens (and prompt chunks) one by one
# through every element of the pipeline (stages, paths into them, wafer links): about
# 7 us per token plus 30 ns per element visited on the test machine (2 cores), and two
# tables of (decode steps + prompt chunks) x elements floats. At each budget:
MAX_TOKEN_STEPS = 2**21      # batch x (decode steps + prompt chunks): 8B, 64 x 32,768: 19 s
MAX_ELEMENT_VISITS = 2**30   # token steps x elements: 405B on 6 wafers, 127 x 16,000: 31 s
MAX_STEP_ELEMENTS = 2**23    # (decode steps + prompt chunks) x elements: 430 MB at peak
# fabric-check simulates every PE of every stage: layers x rows x cols PEs at most
# (a 128 x 128 grid with 2 layers, or 8 x 8 with 512: ~10 s and ~450 MB)
MAX_FABRIC_CHECK_PE_LAYERS = 2**15

# ---- input files ----------------------------------------------------------------
MAX_FILE_BYTES = 2**20       # a deployment, model, profile or sweep file: 1 MiB (real: < 10 KB)
MAX_NESTING = 64             # mappings and lists inside each other (real: 4)
MAX_NODES = 2**18            # values after expanding YAML aliases: 262,144 (real: hundreds)


def _fmt(value: float) -> str:
    """1048576 -> '1,048,576'; 1e6 -> '1,000,000'; 0.001 -> '0.001'; 1e15 -> '1e+15'."""
    if float(value).is_integer() and abs(value) < 1e13:
        return f"{int(value):,}"
    return f"{value:g}"


def no_bool(value: Any) -> Any:
    """Refuse YAML's ``true``/``false`` where a number is expected (Python counts
    ``True`` as 1)."""
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


def number_only(value: Any) -> Any:
    """:func:`no_bool`, and refuse text (``'12'``, quoted): a number is written as one."""
    if isinstance(value, str):
        raise ValueError(f"expected a number, not the text {shown(value)}")
    return no_bool(value)


def _at_most(bound: int | float, unit: str) -> Any:
    def check(value: Any) -> Any:
        if value > bound:
            raise ValueError(f"must be at most {_fmt(bound)}{unit} (a bound of wsesim), got "
                             f"{shown(value)}")
        return value
    return check


def _at_least(bound: float, unit: str, why: str) -> Any:
    def check(value: Any) -> Any:
        if value < bound:
            raise ValueError(f"must be at least {_fmt(bound)}{unit} (a bound of wsesim: "
                             f"{why}), got {shown(value)}")
        return value
    return check


def count(maximum: int, unit: str = "", minimum: int = 1) -> Any:
    """An integer type in ``[minimum, maximum]``, booleans refused; ``unit`` names what
    is counted in the error (``" tokens"``)."""
    low = Field(gt=0) if minimum == 1 else Field(ge=minimum)
    return Annotated[int, BeforeValidator(number_only), low,
                     AfterValidator(_at_most(maximum, unit))]


def number(low: float, high: float, unit: str = "", low_inclusive: bool = True,
           why: str = "a smaller value is not physical") -> Any:
    """A finite float in ``[low, high]`` (``(0, high]`` when ``low`` is 0 and not
    inclusive), booleans refused; ``why`` says why nothing below a positive ``low``
    is taken."""
    parts: list[Any] = [BeforeValidator(number_only), Field(allow_inf_nan=False)]
    if low == 0:
        parts.append(Field(ge=0) if low_inclusive else Field(gt=0))
    else:
        parts.append(Field(gt=0))
        parts.append(AfterValidator(_at_least(low, unit, why)))
    parts.append(AfterValidator(_at_most(high, unit)))
    return Annotated.__class_getitem__((float, *parts))  # type: ignore[attr-defined]


# Shared field types
Width = count(MAX_WIDTH)
HeadDim = count(MAX_HEAD_DIM)
Layers = count(MAX_LAYERS, " layers")
WindowLayers = count(MAX_LAYERS, " layers", minimum=0)
Heads = count(MAX_HEADS, " heads")
Vocab = count(MAX_VOCAB, " tokens")
Positions = count(MAX_POSITIONS, " positions")
NormEps = number(0, 1, low_inclusive=False)
RopeTheta = number(0, MAX_ROPE_THETA, low_inclusive=False)
ContextTokens = count(MAX_CONTEXT_TOKENS, " tokens")
PromptTokens = count(MAX_PROMPT_TOKENS, " tokens")
OutputTokens = count(MAX_OUTPUT_TOKENS, " tokens")
Batch = count(MAX_BATCH, " sequences")
GridSide = count(MAX_GRID_SIDE, " PEs")
PESramBytes = count(MAX_PE_SRAM_BYTES, " B")
ReserveBytes = count(MAX_PE_SRAM_BYTES, " B", minimum=0)
Wafers = count(MAX_WAFERS, " wafers")
PECount = count(MAX_PE_COUNT, " PEs")
Colors = count(MAX_COLORS, " colors")
ColorsReserved = count(MAX_COLORS, " colors", minimum=0)
Groups = count(MAX_GROUPS, " groups")
ClockHz = number(MIN_CLOCK_HZ, MAX_CLOCK_HZ, " Hz")
Rate = number(MIN_RATE, MAX_RATE, " per cycle")
LinkBytesPerS = number(MIN_LINK_BYTES_PER_S, MAX_LINK_BYTES_PER_S, " B/s")
LatencyCycles = number(0, MAX_LATENCY_CYCLES, " cycles")
LatencyS = number(0, MAX_LATENCY_S, " s")
PositiveOpsPerElement = number(MIN_RATE, MAX_OPS_PER_ELEMENT, " operations")
