"""LLaMA-family architecture, read with Hugging Face ``config.json`` key names."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, PositiveInt, model_validator

# Hugging Face config keys that do not change shapes or parameter counts. A model YAML
# may carry them (so a config.json can be pasted as is); wsesim does not use them.
IGNORED_HF_KEYS = (
    "architectures", "bos_token_id", "eos_token_id", "pad_token_id", "initializer_range",
    "pretraining_tp", "rope_scaling", "torch_dtype", "transformers_version", "use_cache",
    "attention_dropout", "max_window_layers", "sliding_window", "use_sliding_window",
    "_name_or_path", "rope_type", "mlp_dropout", "quantization_config", "auto_map",
)


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
    hidden_size: PositiveInt
    intermediate_size: PositiveInt
    num_hidden_layers: PositiveInt
    num_attention_heads: PositiveInt
    num_key_value_heads: PositiveInt | None = None
    head_dim: PositiveInt | None = None
    vocab_size: PositiveInt
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    max_position_embeddings: PositiveInt | None = None
    hidden_act: Literal["silu"] = "silu"
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    source: str | None = None  # where the numbers come from (a URL), shown in reports

    # accepted and ignored (see IGNORED_HF_KEYS); typed loosely on purpose
    architectures: Any = None
    bos_token_id: Any = None
    eos_token_id: Any = None
    pad_token_id: Any = None
    initializer_range: Any = None
    pretraining_tp: Any = None
    rope_scaling: Any = None
    torch_dtype: Any = None
    transformers_version: Any = None
    use_cache: Any = None
    attention_dropout: Any = None
    max_window_layers: Any = None
    sliding_window: Any = None
    use_sliding_window: Any = None
    rope_type: Any = None
    mlp_dropout: Any = None
    quantization_config: Any = None
    auto_map: Any = None

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
        return self

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
