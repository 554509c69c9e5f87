"""Hugging Face transformer entries, built from configs (no downloads).

``tiny`` configs keep each export to a few seconds; ``full`` uses the
library's default config for the family, which is the base-size model.
"""

from __future__ import annotations

import transformers as hf

from model_zoo.registry import zoo_entry

_TINY_TEXT = {"vocab_size": 128, "max_position_embeddings": 64}


@zoo_entry("bert", family="bert", kind="transformer", notes="encoder, absolute positions")
def bert(tier: str) -> hf.PreTrainedModel:
    if tier == "full":
        return hf.BertModel(hf.BertConfig())
    return hf.BertModel(hf.BertConfig(hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, intermediate_size=64,
                                      **_TINY_TEXT))


@zoo_entry("gpt2", family="gpt2", kind="transformer",
           notes="decoder with a tied lm_head (wte shared)")
def gpt2(tier: str) -> hf.PreTrainedModel:
    if tier == "full":
        return hf.GPT2LMHeadModel(hf.GPT2Config())
    return hf.GPT2LMHeadModel(hf.GPT2Config(vocab_size=128, n_positions=64, n_embd=32,
                                            n_layer=2, n_head=2, bos_token_id=0,
                                            eos_token_id=0))


@zoo_entry("llama", family="llama", kind="transformer",
           notes="RoPE, RMSNorm, grouped-query attention")
def llama(tier: str) -> hf.PreTrainedModel:
    if tier == "full":
        config = hf.LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                                num_attention_heads=32, num_key_value_heads=4)
        return hf.LlamaForCausalLM(config)
    return hf.LlamaForCausalLM(hf.LlamaConfig(hidden_size=32, intermediate_size=64,
                                              num_hidden_layers=2, num_attention_heads=4,
                                              num_key_value_heads=2, bos_token_id=0,
                                              eos_token_id=0, pad_token_id=0, **_TINY_TEXT))


@zoo_entry("vit", family="vit", kind="transformer", notes="patch embedding + CLS token")
def vit(tier: str) -> hf.PreTrainedModel:
    if tier == "full":
        return hf.ViTModel(hf.ViTConfig())
    return hf.ViTModel(hf.ViTConfig(image_size=32, patch_size=8, hidden_size=32,
                                    num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64))
