"""Hugging Face transformer entries, built from configs (no downloads).

``tiny`` configs keep each export to a few seconds; ``full`` uses the
library's default config for the family, which is the base-size model.
"""

from __future__ import annotations

import torch
import transformers as hf

from model_zoo.registry import zoo_entry

_TINY_TEXT = {"vocab_size": 128, "max_position_embeddings": 64}


@zoo_entry("bert", family="bert", kind="transformer",
           pretrained="google-bert/bert-base-uncased",
           notes="encoder, absolute positions")
def bert(tier: str) -> hf.PreTrainedModel:
    if tier == "full":
        return hf.BertModel(hf.BertConfig())
    return hf.BertModel(hf.BertConfig(hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=2, intermediate_size=64,
                                      **_TINY_TEXT))


@zoo_entry("gpt2", family="gpt2", kind="transformer",
           pretrained="openai-community/gpt2", generation=True,
           notes="decoder with a tied lm_head (wte shared)")
def gpt2(tier: str) -> hf.PreTrainedModel:
    if tier == "full":
        return hf.GPT2LMHeadModel(hf.GPT2Config())
    return hf.GPT2LMHeadModel(hf.GPT2Config(vocab_size=128, n_positions=64, n_embd=32,
                                            n_layer=2, n_head=2, bos_token_id=0,
                                            eos_token_id=0))


@zoo_entry("llama", family="llama", kind="transformer",
           pretrained="HuggingFaceTB/SmolLM-360M", generation=True,
           notes="RoPE, RMSNorm, grouped-query attention")
def llama(tier: str) -> hf.PreTrainedModel:
    if tier == "full":
        # SmolLM-360M's layout: a real Llama-style size that a 24 GB machine can export
        config = hf.LlamaConfig(vocab_size=49152, hidden_size=960, intermediate_size=2560,
                                num_hidden_layers=32, num_attention_heads=15,
                                num_key_value_heads=5, tie_word_embeddings=True)
        return hf.LlamaForCausalLM(config)
    return hf.LlamaForCausalLM(hf.LlamaConfig(hidden_size=32, intermediate_size=64,
                                              num_hidden_layers=2, num_attention_heads=4,
                                              num_key_value_heads=2, bos_token_id=0,
                                              eos_token_id=0, pad_token_id=0, **_TINY_TEXT))


@zoo_entry("vit", family="vit", kind="transformer",
           pretrained="google/vit-base-patch16-224-in21k",
           notes="patch embedding + CLS token")
def vit(tier: str) -> hf.PreTrainedModel:
    if tier == "full":
        return hf.ViTModel(hf.ViTConfig())
    return hf.ViTModel(hf.ViTConfig(image_size=32, patch_size=8, hidden_size=32,
                                    num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64))


@zoo_entry("distilbert", family="distilbert", kind="transformer",
           pretrained="distilbert/distilbert-base-uncased",
           notes="no token types")
def distilbert(tier: str) -> hf.PreTrainedModel:
    if tier == "full":
        return hf.DistilBertModel(hf.DistilBertConfig())
    return hf.DistilBertModel(hf.DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                                  **_TINY_TEXT))


@zoo_entry("roberta", family="roberta", kind="transformer",
           pretrained="FacebookAI/roberta-base",
           notes="padding-offset position ids computed from input_ids")
def roberta(tier: str) -> hf.PreTrainedModel:
    if tier == "full":
        return hf.RobertaModel(hf.RobertaConfig())
    return hf.RobertaModel(hf.RobertaConfig(hidden_size=32, num_hidden_layers=2,
                                            num_attention_heads=2, intermediate_size=64,
                                            vocab_size=128, max_position_embeddings=80,
                                            pad_token_id=1))


@zoo_entry("t5", family="t5", kind="transformer",
           pretrained="google-t5/t5-small",
           notes="encoder-decoder with relative position buckets")
def t5(tier: str) -> hf.PreTrainedModel:
    if tier == "full":
        return hf.T5Model(hf.T5Config())
    return hf.T5Model(hf.T5Config(vocab_size=128, d_model=32, d_kv=16, d_ff=64, num_layers=2,
                                  num_decoder_layers=2, num_heads=2, decoder_start_token_id=0))


@zoo_entry("deit", family="deit", kind="transformer",
           pretrained="facebook/deit-tiny-patch16-224",
           notes="CLS + distillation tokens")
def deit(tier: str) -> hf.PreTrainedModel:
    if tier == "full":
        return hf.DeiTModel(hf.DeiTConfig())
    return hf.DeiTModel(hf.DeiTConfig(image_size=32, patch_size=8, hidden_size=32,
                                      num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=64))


@zoo_entry("swin", family="swin", kind="transformer",
           pretrained="microsoft/swin-tiny-patch4-window7-224",
           notes="shifted windows, patch merging")
def swin(tier: str) -> hf.PreTrainedModel:
    if tier == "full":
        return hf.SwinModel(hf.SwinConfig())
    return hf.SwinModel(hf.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1],
                                      num_heads=[1, 2], window_size=4))


@zoo_entry("clip_text", family="clip", kind="transformer",
           pretrained="openai/clip-vit-base-patch32",
           notes="causal-mask text tower")
def clip_text(tier: str) -> hf.PreTrainedModel:
    if tier == "full":
        return hf.CLIPTextModel(hf.CLIPTextConfig())
    return hf.CLIPTextModel(hf.CLIPTextConfig(vocab_size=128, hidden_size=32,
                                              intermediate_size=64, num_hidden_layers=2,
                                              num_attention_heads=2, max_position_embeddings=64,
                                              eos_token_id=2, bos_token_id=0, pad_token_id=1))


@zoo_entry("whisper_encoder", family="whisper", kind="transformer",
           notes="audio encoder on log-mel features; conv front end")
def whisper_encoder(tier: str) -> torch.nn.Module:
    if tier == "full":
        return hf.WhisperModel(hf.WhisperConfig()).get_encoder()
    config = hf.WhisperConfig(num_mel_bins=16, d_model=32, encoder_layers=2,
                              encoder_attention_heads=2, encoder_ffn_dim=64,
                              decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64,
                              max_source_positions=16, vocab_size=128, pad_token_id=0,
                              bos_token_id=0, eos_token_id=0, decoder_start_token_id=0)
    return hf.WhisperModel(config).get_encoder()


@zoo_entry("wav2vec2", family="wav2vec2", kind="transformer",
           pretrained="facebook/wav2vec2-base",
           notes="raw waveform, conv feature encoder, positional conv")
def wav2vec2(tier: str) -> hf.PreTrainedModel:
    if tier == "full":
        return hf.Wav2Vec2Model(hf.Wav2Vec2Config())
    return hf.Wav2Vec2Model(hf.Wav2Vec2Config(hidden_size=32, num_hidden_layers=2,
                                              num_attention_heads=2, intermediate_size=64,
                                              conv_dim=(16, 16), conv_stride=(5, 2),
                                              conv_kernel=(10, 3), num_conv_pos_embeddings=16,
                                              num_conv_pos_embedding_groups=2,
                                              vocab_size=32))
