"""Shrinking any Hugging Face config to a tiny one, generically.

The wide tier builds every architecture of the installed transformers from
its *default* config, which describes a real-size model (often billions of
parameters).  Instead of a hand-written tiny config per architecture, the
config's dictionary is rewritten by the rules below, nested sub-configs
(``text_config``, ``vision_config``, ``encoder`` ...) included, and the
config class rebuilds itself from the result so derived fields are
recomputed.

The rules only ever *shrink* a value (``min(value, target)``): a model that
is already small keeps its shape.  Per-layer lists (``layer_types``,
``mlp_only_layers`` ...) follow the layer count they were sized for.
"""

from __future__ import annotations

from typing import Any

# Scalar ceilings, by attribute name.  Width 32 with 2 heads of 16 keeps every
# head-divisibility constraint we know of; key/value heads go to 1 so that
# grouped-query attention stays grouped.
WIDTH, HEADS, HEAD_DIM, FFN, LAYERS = 32, 2, 16, 64, 2
SCALAR_CEILINGS: dict[str, int] = {
    **dict.fromkeys(
        ("hidden_size", "d_model", "n_embd", "n_embed", "embed_dim", "dim", "d_embed",
         "embedding_size", "embedding_dim", "word_embed_proj_dim", "projection_dim",
         "text_embed_dim", "vision_embed_dim", "hidden_dim", "proj_dim", "d_inner",
         "encoder_hidden_size", "decoder_hidden_size", "hidden_channels",
         "kv_lora_rank", "q_lora_rank", "projector_hidden_size", "text_hidden_size",
         "vision_hidden_size", "cross_attention_hidden_size", "rnn_hidden_size"),
        WIDTH),
    **dict.fromkeys(
        ("num_attention_heads", "n_head", "n_heads", "num_heads", "encoder_attention_heads",
         "decoder_attention_heads", "num_attention_heads_per_layer"),
        HEADS),
    # Key/value heads equal to the heads: several configs refuse grouping
    # (ESMC) or demand an even count (DiffLlama); 2 satisfies all of them.
    **dict.fromkeys(("num_key_value_heads", "n_kv_heads", "num_kv_heads",
                     "multi_query_group_num"), HEADS),
    **dict.fromkeys(
        ("head_dim", "d_kv", "attention_head_dim", "kv_channels", "qk_nope_head_dim",
         "qk_rope_head_dim", "v_head_dim", "attention_head_size", "key_value_proj_dim",
         "global_head_dim", "d_head", "rotary_dim", "rotary_emb_dim"),
        HEAD_DIM),
    **dict.fromkeys(("n_group", "topk_group", "num_expert_group"), 1),
    **dict.fromkeys(
        ("intermediate_size", "ffn_dim", "encoder_ffn_dim", "decoder_ffn_dim", "d_ff",
         "n_inner", "mlp_dim", "ffn_hidden_size", "moe_intermediate_size",
         "shared_expert_intermediate_size", "intermediate_size_mlp", "expert_hidden_size",
         "dim_feedforward", "decoder_intermediate_size", "encoder_intermediate_size"),
        FFN),
    **dict.fromkeys(
        ("num_hidden_layers", "n_layer", "n_layers", "num_layers", "encoder_layers",
         "decoder_layers", "num_decoder_layers", "num_encoder_layers", "text_layers",
         "vision_layers", "num_hidden_blocks"),
        LAYERS),
    **dict.fromkeys(("num_experts", "num_local_experts", "n_routed_experts",
                     "moe_num_experts"), 4),
    **dict.fromkeys(("num_experts_per_tok", "moe_topk", "top_k", "num_selected_experts"), 2),
    "vocab_size": 1024,
    "max_position_embeddings": 512,
    "n_positions": 512,
    "max_source_positions": 64,
    "num_latents": 16,
}

# Name endings that mark the same kinds of size, for the many spellings the
# table above does not list (``audio_hidden_size``, ``entity_vocab_size``,
# ``out_hidden_size``); checked after the exact names.
SUFFIX_CEILINGS: tuple[tuple[str, int], ...] = (
    ("intermediate_size", FFN), ("ffn_dim", FFN), ("ffn_hidden_size", FFN),
    ("hidden_size", WIDTH), ("hidden_dim", WIDTH), ("embed_dim", WIDTH),
    ("embedding_dim", WIDTH), ("emb_dim", WIDTH), ("emb_size", WIDTH), ("d_model", WIDTH),
    ("_latents", WIDTH), ("condition_dim", WIDTH),
    ("vocab_size", 1024),
    ("key_value_heads", HEADS), ("attention_heads", HEADS), ("_n_heads", HEADS),
    ("num_hidden_layers", LAYERS),
)

# Keys that name layers by index; they are re-derived by the config once the
# layer count has changed (a backbone's ``out_features``: ['stage12']).
DERIVED_FROM_LAYERS = ("out_features", "out_indices")

# Lists that describe stages of a hierarchical model.  Depth lists go to one
# block per stage; width lists are divided by one power of two so that their
# ratios (and so their divisibility) are kept.
DEPTH_LISTS = frozenset({"depths", "num_layers_per_stage", "layers", "stage_depths",
                         "block_repeats", "encoder_layers_per_stage", "num_blocks"})
WIDTH_LISTS = frozenset({"hidden_sizes", "embed_dims", "dims", "hidden_dims", "channels",
                         "embed_dim_per_stage", "widths", "out_channels", "in_channels",
                         "stage_channels", "encoder_hidden_sizes", "neck_hidden_sizes"})
HEAD_LISTS = frozenset({"num_heads", "num_attention_heads", "heads"})
WIDTH_LIST_CEILING = 128

# Which key names hold the layer count that per-layer lists were sized for.
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "n_layers", "num_layers", "encoder_layers",
               "decoder_layers")


def _shrink_width_list(values: list[int]) -> list[int]:
    factor = 1
    while max(values) // factor > WIDTH_LIST_CEILING and all(v % (2 * factor) == 0
                                                              for v in values):
        factor *= 2
    return [v // factor for v in values]


def _ceiling(key: str) -> int | None:
    if key in SCALAR_CEILINGS:
        return SCALAR_CEILINGS[key]
    return next((limit for suffix, limit in SUFFIX_CEILINGS if key.endswith(suffix)), None)


def _rescale_sections(sections: list[int], total: int) -> list[int]:
    """Split ``total`` in the ratios of ``sections`` (rotary sections of a head)."""
    whole = sum(sections)
    scaled = [max(1, s * total // whole) for s in sections]
    scaled[-1] += total - sum(scaled)
    return scaled


def _is_int_list(value: Any) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value))


def shrink_dict(config: dict[str, Any]) -> dict[str, Any]:
    """A shrunk copy of one config level (and, recursively, its sub-configs)."""
    layers_before = {config[k] for k in _LAYER_KEYS
                     if isinstance(config.get(k), int) and config[k] > 0}
    shrunk: dict[str, Any] = {}
    for key, value in config.items():
        limit = _ceiling(key)
        if isinstance(value, dict) and ("model_type" in value or key.endswith("config")):
            shrunk[key] = shrink_dict(value)
        elif isinstance(value, dict) and _is_int_list(value.get("mrope_section")):
            # rotary sections cover half a head: they follow the head size
            shrunk[key] = {**value, "mrope_section": _rescale_sections(
                value["mrope_section"], HEAD_DIM // 2)}
        elif key in DERIVED_FROM_LAYERS:
            shrunk[key] = None
        elif isinstance(value, int) and not isinstance(value, bool) and limit is not None:
            shrunk[key] = min(value, limit) if value > 0 else value
        elif _is_int_list(value) and key in DEPTH_LISTS:
            shrunk[key] = [min(v, 1) for v in value]
        elif _is_int_list(value) and key in WIDTH_LISTS:
            shrunk[key] = _shrink_width_list(value)
        elif _is_int_list(value) and key in HEAD_LISTS:
            shrunk[key] = [min(v, HEADS) for v in value]
        else:
            shrunk[key] = value
    layers_after = min((shrunk[k] for k in _LAYER_KEYS
                        if isinstance(shrunk.get(k), int) and shrunk[k] > 0), default=None)
    if layers_after is not None:
        for key, value in shrunk.items():
            if isinstance(value, list) and len(value) in layers_before \
                    and len(value) > layers_after:
                shrunk[key] = value[:layers_after]
            elif isinstance(value, dict) and value and all(_is_index(k) for k in value):
                # per-layer settings keyed by layer index
                shrunk[key] = {k: v for k, v in value.items() if int(k) < layers_after}
    _fit_token_ids(shrunk)
    return shrunk


def _is_index(key: Any) -> bool:
    return isinstance(key, int) or (isinstance(key, str) and key.isdigit())


def _fit_token_ids(config: dict[str, Any]) -> None:
    """Special token ids past a shrunk vocabulary move to its top, each kept distinct."""
    vocab = config.get("vocab_size")
    if not isinstance(vocab, int) or vocab <= 0:
        return
    taken: set[int] = set()
    for key in sorted(config):
        value = config[key]
        if not key.endswith(("_token_id", "_token_index")) or isinstance(value, bool):
            continue
        if isinstance(value, int) and value >= vocab:
            candidate = vocab - 1
            while candidate in taken:
                candidate -= 1
            config[key] = candidate
            taken.add(candidate)
        elif _is_int_list(value):
            config[key] = [v if v < vocab else vocab - 1 for v in value]


def shrink_config(config: Any) -> Any:
    """A new config of the same class, shrunk by :func:`shrink_dict`."""
    data = shrink_dict(config.to_dict())
    data.pop("transformers_version", None)
    return type(config).from_dict(data)
