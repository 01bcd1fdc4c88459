"""Model specs: shipped architectures, official parameter counts, Hugging Face configs."""
from __future__ import annotations

import json
import re

import pytest

from wsesim.errors import SpecError
from wsesim.paths import models_dir
from wsesim.specs import load_model, shipped

# Parameter counts as the model cards / safetensors indexes report them.
OFFICIAL = {
    "llama-2-7b": 6_738_415_616,
    "llama-2-13b": 13_015_864_320,
    "llama-2-70b": 68_976_648_192,
    "llama-3-8b": 8_030_261_248,
    "llama-3-70b": 70_553_706_496,
    "llama-3.1-8b": 8_030_261_248,
    "llama-3.1-70b": 70_553_706_496,
    "llama-3.1-405b": 405_853_388_800,
    "codellama-34b": 33_743_970_304,
    "qwen2-72b": 72_706_203_648,
}


def test_every_shipped_model_is_checked():
    assert set(shipped(models_dir())) == set(OFFICIAL)


@pytest.mark.parametrize("name,count", sorted(OFFICIAL.items()))
def test_parameter_count_is_official(name, count):
    assert load_model(name).parameters == count


def test_405b_by_hand():
    m = load_model("llama-3.1-405b")
    h, f, v = 16384, 53248, 128256
    layer = h * h * 2 + 2 * h * 1024 + 3 * h * f + 2 * h
    assert m.layer_parameters == layer
    assert m.parameters == 126 * layer + 2 * v * h + h


def test_qwen2_has_qkv_bias_only():
    m = load_model("qwen2-72b")
    names = {t.name for t in m.attention_tensors()}
    assert {"q_proj.bias", "k_proj.bias", "v_proj.bias"} <= names
    assert "o_proj.bias" not in names
    # 72.7B with 80 x (8192 + 2 x 1024) bias parameters
    assert m.layer_parameters - load_model("llama-3.1-70b").layer_parameters == (
        (8192 + 2 * 1024) + (29568 - 28672) * 8192 * 3)


def test_hf_config_json_with_real_keys(tmp_path):
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
        "vocab_size": 128256, "tie_word_embeddings": True, "attention_bias": False,
        "rope_scaling": {"factor": 32.0, "rope_type": "llama3"}, "torch_dtype": "bfloat16",
        "some_future_key": 1, "max_position_embeddings": 131072,
    }
    path = tmp_path / "Llama-3.2-1B" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(cfg))
    with pytest.warns(SpecWarning, match="unknown keys ignored: some_future_key"):
        m = load_model(str(path))
    assert m.name == "Llama-3.2-1B"
    # Llama-3.2-1B: 1,235,814,400 parameters with the tied head counted once.
    assert m.parameters == 1_235_814_400
    assert m.head_size == 64


def test_head_dim_differs_from_hidden_over_heads():
    m = load_model({"hidden_size": 96, "intermediate_size": 64, "num_hidden_layers": 1,
                    "num_attention_heads": 4, "head_dim": 32, "vocab_size": 10})
    assert m.q_dim == 128
    o = next(t for t in m.attention_tensors() if t.name == "o_proj")
    assert (o.rows, o.cols) == (96, 128)


def test_attention_bias_adds_four_biases():
    base = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
            "num_attention_heads": 4, "vocab_size": 10}
    plain = load_model(base)
    biased = load_model({**base, "attention_bias": True})
    assert biased.parameters - plain.parameters == 4 * 64


def test_non_llama_config_is_refused(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "gpt2", "hidden_size": 8}))
    with pytest.raises(SpecError, match="not a LLaMA-family"):
        load_model(str(path))


# What each model's Hugging Face config.json says (the repository its `source` names):
# hidden, intermediate, layers, heads, KV heads, vocab, tied embeddings, rope_theta
# (Llama 2's configs omit it: the transformers default 10000), max positions, RMSNorm eps.
HF_CONFIG = {
    "llama-2-7b": (4096, 11008, 32, 32, 32, 32000, False, 10000.0, 4096, 1e-5),
    "llama-2-13b": (5120, 13824, 40, 40, 40, 32000, False, 10000.0, 4096, 1e-5),
    "llama-2-70b": (8192, 28672, 80, 64, 8, 32000, False, 10000.0, 4096, 1e-5),
    "codellama-34b": (8192, 22016, 48, 64, 8, 32000, False, 1e6, 16384, 1e-5),
    "llama-3-8b": (4096, 14336, 32, 32, 8, 128256, False, 5e5, 8192, 1e-5),
    "llama-3-70b": (8192, 28672, 80, 64, 8, 128256, False, 5e5, 8192, 1e-5),
    "llama-3.1-8b": (4096, 14336, 32, 32, 8, 128256, False, 5e5, 131072, 1e-5),
    "llama-3.1-70b": (8192, 28672, 80, 64, 8, 128256, False, 5e5, 131072, 1e-5),
    "llama-3.1-405b": (16384, 53248, 126, 128, 8, 128256, False, 5e5, 131072, 1e-5),
    "qwen2-72b": (8192, 29568, 80, 64, 8, 152064, False, 1e6, 131072, 1e-5),
}
HF_SOURCE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+ config\.json$")


def test_every_shipped_model_has_its_config_checked():
    assert set(shipped(models_dir())) == set(HF_CONFIG)


@pytest.mark.parametrize("name", sorted(HF_CONFIG))
def test_shipped_model_matches_its_hf_config(name):
    m = load_model(name)
    assert (m.hidden_size, m.intermediate_size, m.num_hidden_layers, m.num_attention_heads,
            m.kv_heads, m.vocab_size, m.tie_word_embeddings, m.rope_theta,
            m.max_position_embeddings, m.rms_norm_eps) == HF_CONFIG[name]


@pytest.mark.parametrize("name", sorted(HF_CONFIG))
def test_shipped_model_names_its_source(name):
    """`<org>/<repo> config.json` (a Hugging Face repository and file) or a URL; not a
    bare placeholder such as `llama-3.1-405b2`."""
    source = load_model(name).source or ""
    assert HF_SOURCE.match(source) or source.startswith("https://"), source


# ---- config.json keys: modelled, ignored, refused, unknown ---------------------------

import warnings  # noqa: E402

from wsesim.errors import SpecWarning  # noqa: E402
from wsesim.specs.hf_keys import IGNORED_HF_KEYS, UNMODELLED_HF_KEYS  # noqa: E402

# Real configs (Hugging Face), abridged only of nothing: every key as published.
MISTRAL_7B_V01 = {
    "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
    "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.34.0.dev0", "use_cache": True, "vocab_size": 32000,
}
MIXTRAL_8X7B = {
    "architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1,
    "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
    "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mixtral",
    "num_attention_heads": 32, "num_experts_per_tok": 2, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "num_local_experts": 8, "output_router_logits": False,
    "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.02,
    "sliding_window": None, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.36.0.dev0", "use_cache": True, "vocab_size": 32000,
}
QWEN2_7B = {
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 3584,
    "initializer_range": 0.02, "intermediate_size": 18944, "max_position_embeddings": 131072,
    "max_window_layers": 28, "model_type": "qwen2", "num_attention_heads": 28,
    "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0, "sliding_window": 131072, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "transformers_version": "4.37.2", "use_cache": True,
    "use_sliding_window": False, "vocab_size": 152064,
}


def config_file(tmp_path, cfg: dict, name: str = "m"):
    path = tmp_path / name / "config.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(cfg))
    return path


def load_quietly(path):
    """The model and the SpecWarnings its loading issued."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = load_model(str(path))
    return m, [w.message for w in caught if isinstance(w.message, SpecWarning)]


def test_real_configs_load_without_warnings(tmp_path):
    m, warned = load_quietly(config_file(tmp_path, MISTRAL_7B_V01, "mistral"))
    assert warned == [] and m.attention_window == 4096
    m, warned = load_quietly(config_file(tmp_path, QWEN2_7B, "qwen2"))
    assert warned == [] and m.attention_window is None   # use_sliding_window: false


@pytest.mark.parametrize("model_type", ["mixtral", "mistral", "llama", None])
def test_a_mixture_of_experts_is_refused_not_run_dense(model_type, tmp_path):
    cfg = {k: v for k, v in MIXTRAL_8X7B.items() if k != "model_type"}
    if model_type:
        cfg["model_type"] = model_type
    with pytest.raises(SpecError) as info:
        load_model(str(config_file(tmp_path, cfg)))
    line = info.value.line()
    assert ("num_local_experts: sets mixture of experts" in line or "num_experts_per_tok" in
            line or "not a LLaMA-family" in line), line


@pytest.mark.parametrize("key", sorted(UNMODELLED_HF_KEYS) + ["moe_layer_freq",
                                                               "router_z_loss_coef"])
def test_every_unmodelled_key_is_a_located_error(key, tmp_path):
    cfg = {**MISTRAL_7B_V01, key: 8}
    with pytest.raises(SpecError) as info:
        load_model(str(config_file(tmp_path, cfg)))
    assert info.value.key == key and "does not model" in info.value.message
    # and in a model YAML too
    with pytest.raises(SpecError) as info:
        load_model({k: v for k, v in cfg.items() if k not in IGNORED_HF_KEYS})
    assert info.value.key == f"model.{key}"


@pytest.mark.parametrize("off", [None, False, 0, [], {}])
def test_an_unmodelled_key_switched_off_is_accepted(off, tmp_path):
    m, warned = load_quietly(config_file(tmp_path, {**MISTRAL_7B_V01, "num_experts": off,
                                                    "kv_lora_rank": off}))
    assert warned == [] and m.parameters == load_model(
        str(config_file(tmp_path, MISTRAL_7B_V01, "plain"))).parameters


def test_every_ignored_key_is_ignored_silently(tmp_path):
    cfg = {**MISTRAL_7B_V01, **{k: 1 for k in IGNORED_HF_KEYS}}
    m, warned = load_quietly(config_file(tmp_path, cfg))
    assert warned == [] and m.hidden_size == 4096


def test_unknown_keys_are_one_warning_line_with_a_suggestion(tmp_path):
    cfg = {**MISTRAL_7B_V01, "num_key_value_head": 8, "foo_bar": 1, "rope_thetta": 1.0}
    m, warned = load_quietly(config_file(tmp_path, cfg))
    assert len(warned) == 1
    line = warned[0].line()
    assert len(line.splitlines()) == 1
    assert line.startswith(f"warning: {tmp_path / 'm' / 'config.json'}: unknown keys "
                           "ignored: num_key_value_head, foo_bar, rope_thetta (did you mean")
    assert "'num_key_value_heads' for 'num_key_value_head'" in line
    assert "'rope_theta' for 'rope_thetta'" in line
    assert m.kv_heads == 8


def test_the_cli_prints_the_warning_as_one_line_and_runs_on(tmp_path, capsys):
    from wsesim.cli import main
    cfg = config_file(tmp_path, {**MISTRAL_7B_V01, "hidden_sizee": 1, "num_hidden_layers": 2})
    dep = tmp_path / "dep.yaml"
    dep.write_text(f"model: {cfg}\nhardware: wse3\nwafers: 1\n"
                   "workload: {batch_size: 1, prompt_tokens: 8, output_tokens: 4}\n")
    assert main(["run", str(dep), "--format", "json"]) == 0
    err = capsys.readouterr().err
    assert err == (f"warning: {cfg}: unknown keys ignored: hidden_sizee (did you mean "
                   "'hidden_size' for 'hidden_sizee'?)\n")


def test_many_or_huge_unknown_keys_make_a_bounded_line(tmp_path):
    cfg = {**MISTRAL_7B_V01, **{f"k{i}\n": i for i in range(1000)}, "x" * 100_000: 1}
    _, warned = load_quietly(config_file(tmp_path, cfg))
    line = warned[0].line()
    assert len(line.splitlines()) == 1 and len(line) < 3000 and "more" in line


# ---- sliding window ------------------------------------------------------------------

def kv_bytes(model, context: int, batch: int = 2) -> int:
    from conftest import deployment, tiny_hardware

    from wsesim.mapping.plan import make_plan
    from wsesim.memory import build_ledger
    dep = deployment(model=model, hardware=tiny_hardware(8, 8, sram=2**24),
                     workload={"batch_size": batch, "prompt_tokens": context - 8,
                               "output_tokens": 8})
    return build_ledger(make_plan(dep, 1)).total("kv_cache")


def test_a_sliding_window_bounds_the_kv_cache_by_hand():
    from conftest import tiny_model
    base = tiny_model()   # 2 layers, 2 KV heads of 64 -> KV width 128, fp16
    full = kv_bytes(base, 1024)
    windowed = kv_bytes({**base, "sliding_window": 256}, 1024)
    assert full == 2 * 2 * 2 * 1024 * 128 * 2     # layers x K,V x batch x tokens x width x B
    assert windowed == 2 * 2 * 2 * 256 * 128 * 2
    assert kv_bytes({**base, "sliding_window": 4096}, 1024) == full  # window > context
    off = {**base, "sliding_window": 256, "use_sliding_window": False}
    assert kv_bytes(off, 1024) == full


def test_mistral_kv_cache_at_32k_is_the_windows(tmp_path):
    """Mistral-7B-v0.1 at a 32K context: its 4K window holds 1/8 of the tokens."""
    from wsesim.specs import deployment_from_mapping
    m = load_model(str(config_file(tmp_path, MISTRAL_7B_V01)))
    dep = deployment_from_mapping({"model": m, "hardware": "wse3", "wafers": 1,
                                   "workload": {"batch_size": 1, "prompt_tokens": 32000,
                                                "output_tokens": 768}})
    assert dep.kv_tokens == 4096
    dense = deployment_from_mapping({"model": load_model({**MISTRAL_7B_V01,
                                                          "sliding_window": None}),
                                     "hardware": "wse3", "wafers": 1,
                                     "workload": dep.workload.model_dump()})
    assert dense.kv_tokens == 32768 == 8 * dep.kv_tokens


def test_attention_reads_at_most_the_window():
    from conftest import deployment, tiny_model

    from wsesim.mapping.plan import make_plan
    from wsesim.perf.stages import Kernels, attention_cost

    def cost(model, context):
        dep = deployment(model=model, workload={"batch_size": 1, "prompt_tokens": 2000,
                                                "output_tokens": 8})
        plan = make_plan(dep, 1)
        att = next(s for s in plan.stages if s.part == "attention")
        return float(attention_cost(Kernels.of(dep), att.content, 8, 8, context).total)
    windowed = tiny_model(sliding_window=512)
    assert cost(windowed, 512) == cost(windowed, 2000) == cost(tiny_model(), 512)
    assert cost(tiny_model(), 2000) > cost(windowed, 2000)


@pytest.mark.parametrize("over,key,words", [
    ({"model_type": "qwen2", "use_sliding_window": True, "max_window_layers": 14},
     "max_window_layers", "different attention kinds"),
    ({"layer_types": ["full_attention"] * 14 + ["sliding_attention"] * 14}, "layer_types",
     "different attention kinds"),
    ({"layer_types": ["chunked_attention"] * 28}, "layer_types", "not modelled"),
    ({"layer_types": ["full_attention"] * 3}, "layer_types", "3 entries for 28 layers"),
])
def test_layers_of_different_attention_kinds_are_refused(over, key, words, tmp_path):
    cfg = {**QWEN2_7B, **over}
    with pytest.raises(SpecError) as info:
        load_model(str(config_file(tmp_path, cfg)))
    assert info.value.key == key and words in info.value.message
    with pytest.raises(SpecError) as info:   # and in a model YAML
        load_model({k: v for k, v in cfg.items() if k not in IGNORED_HF_KEYS})
    assert info.value.key == f"model.{key}" and words in info.value.message


@pytest.mark.parametrize("over,window", [
    ({"use_sliding_window": True, "max_window_layers": 0}, 131072),
    ({"use_sliding_window": True, "max_window_layers": 28}, None),   # no layer from 28 on
    ({"use_sliding_window": True, "max_window_layers": 100}, None),
    ({"layer_types": ["full_attention"] * 28}, None),
    ({"layer_types": ["sliding_attention"] * 28}, 131072),
])
def test_one_attention_kind_for_every_layer_is_modelled(over, window):
    m = load_model({**{k: v for k, v in QWEN2_7B.items() if k not in IGNORED_HF_KEYS},
                    **over})
    assert m.attention_window == window
