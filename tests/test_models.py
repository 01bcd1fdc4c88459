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
