"""LLaMA-family architecture, read with Hugging Face ``config.json`` key names."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from wsesim.errors import KeyedError
from wsesim.specs.bounds import (
    MAX_WIDTH,
    ContextTokens,
    HeadDim,
    Heads,
    Layers,
    NormEps,
    Positions,
    RopeTheta,
    Vocab,
    Width,
    WindowLayers,
)
from wsesim.specs.hf_keys import (
    FULL_ATTENTION,
    IGNORED_HF_KEYS,
    SLIDING_ATTENTION,
    refusal,
    unmodelled,
)

# transformers' Qwen2 defaults: a window only with use_sliding_window, and then only on
# layers from max_window_layers on
_QWEN2_MAX_WINDOW_LAYERS = 28


@dataclass(frozen=True)
class TensorShape:
    """One stored tensor: a ``rows x cols`` matrix (a vector has rows = 1).

    For linear weights ``rows`` is the output and ``cols`` the input dimension (PyTorch
    layout); quantization groups and 3.5-bit pairs run along ``cols``.
    """

    name: str
    rows: int
    cols: int
    kind: Literal["linear", "bias", "norm", "embedding"]

    @property
    def elements(self) -> int:
        return self.rows * self.cols


class ModelSpec(BaseModel):
    """A decoder-only LLaMA-like transformer (RMSNorm, SwiGLU MLP, RoPE, GQA)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "model"
    model_type: Literal["llama", "qwen2", "mistral"] = "llama"
    hidden_size: Width
    intermediate_size: Width
    num_hidden_layers: Layers
    num_attention_heads: Heads
    num_key_value_heads: Heads | None = None
    head_dim: HeadDim | None = None
    vocab_size: Vocab
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    max_position_embeddings: Positions | None = None
    hidden_act: Literal["silu"] = "silu"
    rms_norm_eps: NormEps = 1e-5
    rope_theta: RopeTheta = 10000.0
    source: str | None = None  # where the numbers come from (a URL), shown in reports
    # Sliding-window attention, as Hugging Face configs give it: each token attends to
    # (and the KV cache keeps) at most the last ``sliding_window`` tokens. Qwen2 configs
    # switch it with ``use_sliding_window`` (default off) and apply it from layer
    # ``max_window_layers`` on; wsesim models one window for every layer or none.
    sliding_window: ContextTokens | None = None
    use_sliding_window: bool | None = None
    max_window_layers: WindowLayers | None = None
    layer_types: list[str] | None = None  # one attention kind per layer

    @model_validator(mode="before")
    @classmethod
    def _hf_keys(cls, data: Any) -> Any:
        """Drop the harmless Hugging Face keys; refuse those that set an architecture
        wsesim does not model (mixture of experts, latent or chunked attention...)."""
        if not isinstance(data, dict):
            return data
        for key, value in data.items():
            why = refusal(key, value) if isinstance(key, str) else None
            if why:
                raise KeyedError(key, why)
        return {k: v for k, v in data.items()   # what is left is off: dropped too
                if k not in IGNORED_HF_KEYS and not (isinstance(k, str) and unmodelled(k))}

    @model_validator(mode="after")
    def _shapes_consistent(self) -> "ModelSpec":
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}; give head_dim explicitly"
            )
        if self.num_attention_heads % self.kv_heads:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads {self.kv_heads}"
            )
        if self.q_dim > MAX_WIDTH:
            raise KeyedError("head_dim", f"num_attention_heads x head_dim = {self.q_dim:,} "
                             f"must be at most {MAX_WIDTH:,} (a bound of wsesim)")
        self._check_window()
        return self

    def _check_window(self) -> None:
        """One attention kind for every layer: refuse a window on only some layers."""
        L = self.num_hidden_layers
        if self.layer_types is not None:
            kinds = set(self.layer_types)
            if len(self.layer_types) != L:
                raise KeyedError("layer_types", f"has {len(self.layer_types):,} entries for "
                                 f"{L:,} layers")
            if not kinds <= {FULL_ATTENTION, SLIDING_ATTENTION} or len(kinds) > 1:
                raise KeyedError("layer_types", "layers of different attention kinds (or "
                                 "kinds other than full_attention and sliding_attention) "
                                 "are not modelled by wsesim: it models one kind for every "
                                 "layer")
            if kinds == {SLIDING_ATTENTION} and self.sliding_window is None:
                raise KeyedError("layer_types", "says sliding_attention but no "
                                 "sliding_window is given")
            return
        first = self._first_window_layer()
        if first is not None and 0 < first < L:
            raise KeyedError("max_window_layers", f"{first} of the {L} layers attend to "
                             "the whole context and the rest through a sliding window: "
                             "layers of different attention kinds are not modelled by "
                             "wsesim (set use_sliding_window: false, or max_window_layers "
                             f"to 0 or {L})")

    def _first_window_layer(self) -> int | None:
        """The first layer with a sliding window (None: no window anywhere)."""
        if self.sliding_window is None:
            return None
        qwen2 = self.model_type == "qwen2"
        use = self.use_sliding_window if self.use_sliding_window is not None else not qwen2
        if not use:
            return None
        first = self.max_window_layers if self.max_window_layers is not None else (
            _QWEN2_MAX_WINDOW_LAYERS if qwen2 else 0)
        return first if first < self.num_hidden_layers else None

    @property
    def attention_window(self) -> int | None:
        """Tokens each token attends to and the KV cache keeps per sequence (every
        layer), or None for full attention."""
        if self.layer_types is not None:
            return self.sliding_window if self.layer_types[:1] == [SLIDING_ATTENTION] \
                else None
        return self.sliding_window if self._first_window_layer() is not None else None

    # ---- derived shapes -------------------------------------------------------------
    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def q_dim(self) -> int:
        return self.num_attention_heads * self.head_size

    @property
    def wafer_units(self) -> int:
        """The parts a wafer boundary may not cut (the embeddings, each layer, the LM
        head): the most wafers a deployment can be split over."""
        return self.num_hidden_layers + 2

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_size

    @property
    def qkv_bias(self) -> bool:
        # Qwen2 hard-codes bias on q, k, v (not o) without a config key.
        return self.attention_bias or self.model_type == "qwen2"

    @property
    def o_bias(self) -> bool:
        return self.attention_bias and self.model_type != "qwen2"

    def attention_tensors(self) -> list[TensorShape]:
        """Tensors of one layer's attention block, including its input RMSNorm."""
        h, q, kv = self.hidden_size, self.q_dim, self.kv_dim
        out = [
            TensorShape("input_layernorm", 1, h, "norm"),
            TensorShape("q_proj", q, h, "linear"),
            TensorShape("k_proj", kv, h, "linear"),
            TensorShape("v_proj", kv, h, "linear"),
            TensorShape("o_proj", h, q, "linear"),
        ]
        if self.qkv_bias:
            out += [TensorShape("q_proj.bias", 1, q, "bias"),
                    TensorShape("k_proj.bias", 1, kv, "bias"),
                    TensorShape("v_proj.bias", 1, kv, "bias")]
        if self.o_bias:
            out.append(TensorShape("o_proj.bias", 1, h, "bias"))
        return out

    def mlp_tensors(self) -> list[TensorShape]:
        """Tensors of one layer's SwiGLU MLP block, including its input RMSNorm."""
        h, f = self.hidden_size, self.intermediate_size
        out = [
            TensorShape("post_attention_layernorm", 1, h, "norm"),
            TensorShape("gate_proj", f, h, "linear"),
            TensorShape("up_proj", f, h, "linear"),
            TensorShape("down_proj", h, f, "linear"),
        ]
        if self.mlp_bias:
            out += [TensorShape("gate_proj.bias", 1, f, "bias"),
                    TensorShape("up_proj.bias", 1, f, "bias"),
                    TensorShape("down_proj.bias", 1, h, "bias")]
        return out

    def embedding_tensor(self) -> TensorShape:
        return TensorShape("embed_tokens", self.vocab_size, self.hidden_size, "embedding")

    def head_tensors(self) -> list[TensorShape]:
        """Final norm and LM head (the LM head is a vocab x hidden linear)."""
        return [TensorShape("norm", 1, self.hidden_size, "norm"),
                TensorShape("lm_head", self.vocab_size, self.hidden_size, "embedding")]

    @property
    def layer_parameters(self) -> int:
        return sum(t.elements for t in self.attention_tensors() + self.mlp_tensors())

    @property
    def parameters(self) -> int:
        """Parameter count as Hugging Face reports it (a tied LM head counts once)."""
        n = self.num_hidden_layers * self.layer_parameters
        n += self.embedding_tensor().elements
        norm, head = self.head_tensors()
        n += norm.elements + (0 if self.tie_word_embeddings else head.elements)
        return n
