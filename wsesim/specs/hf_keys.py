"""Hugging Face ``config.json`` keys beyond the ones wsesim models: those it may ignore
and those it must refuse.

A key is *harmless* when it changes no shape, no parameter count and no attention
pattern (token ids, dtypes, dropout, RoPE scaling, generation defaults): ignored. A key
is *unmodelled* when it changes the architecture in a way wsesim does not model
(mixture of experts, latent or chunked attention, layers of different kinds): running
such a model as a dense LLaMA would print a wrong number that looks right, so it is a
located error, unless its value switches the feature off (``null``, ``false``, ``0``,
an empty list). Any other key is unknown: a config.json gets one warning line naming
them all (a model YAML, wsesim's own format, refuses them).
"""
from __future__ import annotations

from typing import Any

# Keys that change neither shapes, parameter counts nor attention (a model YAML may carry
# them too, so that a config.json can be pasted as is).
IGNORED_HF_KEYS: tuple[str, ...] = (
    # identity, tooling and dtypes
    "architectures", "_name_or_path", "auto_map", "transformers_version", "torch_dtype",
    "dtype", "quantization_config", "tokenizer_class", "use_cache", "return_dict",
    "output_hidden_states", "output_attentions", "torchscript", "use_bfloat16",
    "is_decoder", "is_encoder_decoder", "add_cross_attention", "tie_encoder_decoder",
    "pruned_heads", "chunk_size_feed_forward", "tf_legacy_loss", "problem_type",
    "finetuning_task", "id2label", "label2id", "prefix", "task_specific_params",
    "model_max_length", "_attn_implementation_autoset", "pretraining_tp",
    # token ids
    "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id",
    "decoder_start_token_id",
    # training only
    "initializer_range", "attention_dropout", "hidden_dropout", "mlp_dropout",
    "embd_pdrop", "resid_pdrop", "attn_pdrop",
    # RoPE variants change the rotation, not the shapes or the work
    "rope_scaling", "rope_type", "rope_parameters",
    # generation defaults
    "max_length", "min_length", "do_sample", "early_stopping", "num_beams",
    "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p",
    "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
    "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences",
    "output_scores", "return_dict_in_generate", "forced_bos_token_id",
    "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty",
    "suppress_tokens", "begin_suppress_tokens",
)

_MOE = "mixture of experts"
_MLA = "multi-head latent attention (MLA)"
_HYBRID = "layers of different attention kinds (hybrid or chunked attention)"

# Keys that change the architecture in ways wsesim does not model, and what they are.
UNMODELLED_HF_KEYS: dict[str, str] = {
    **{k: _MOE for k in (
        "num_local_experts", "num_experts", "n_routed_experts", "n_shared_experts",
        "num_shared_experts", "num_experts_per_tok", "first_k_dense_replace",
        "shared_expert_intermediate_size", "decoder_sparse_step", "mlp_only_layers",
        "interleave_moe_layer_step", "intermediate_size_mlp", "output_router_logits",
        "norm_topk_prob", "routed_scaling_factor", "topk_method", "n_group",
        "topk_group", "scoring_func", "aux_loss_alpha", "seq_aux", "ep_size")},
    **{k: _MLA for k in ("kv_lora_rank", "q_lora_rank", "qk_nope_head_dim",
                         "qk_rope_head_dim", "v_head_dim")},
    **{k: _HYBRID for k in (
        "attention_chunk_size", "no_rope_layers", "no_rope_layer_interval",
        "sliding_window_pattern", "global_attn_every_n_layers", "full_attention_interval",
        "attn_temperature_tuning", "cross_attention_layers")},
    "use_qk_norm": "norms on queries and keys",
    "qk_layernorm": "norms on queries and keys",
    "attn_logit_softcapping": "soft-capped attention logits",
    "final_logit_softcapping": "soft-capped output logits",
    "num_nextn_predict_layers": "multi-token prediction layers",
}
# Families of keys: any key starting with these is an expert (router) setting.
UNMODELLED_PREFIXES: dict[str, str] = {"moe_": _MOE, "router_": _MOE}

# layer_types entries: one kind for every layer is modelled; a mix is not.
FULL_ATTENTION, SLIDING_ATTENTION = "full_attention", "sliding_attention"


def unmodelled(key: str) -> str | None:
    """What architecture feature ``key`` sets, if wsesim does not model it."""
    if key in UNMODELLED_HF_KEYS:
        return UNMODELLED_HF_KEYS[key]
    return next((what for p, what in UNMODELLED_PREFIXES.items() if key.startswith(p)),
                None)


def is_off(value: Any) -> bool:
    """A value that switches a feature off: null, false, 0, an empty list or mapping."""
    if value is None or value is False:
        return True
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value == 0
    return isinstance(value, (list, dict, tuple)) and len(value) == 0


def refusal(key: str, value: Any) -> str | None:
    """Why ``key: value`` cannot be modelled (None if it can, or is off)."""
    what = unmodelled(key)
    if what is None or is_off(value):
        return None
    return (f"sets {what}, which wsesim does not model (it would run the model as a "
            "dense LLaMA and print wrong numbers); remove the key only if the model "
            "really is dense")
