"""Key mapping from VisualGLM-6B's visual weights to the BLIP-2 layout (paper Sec. 3.4).

VisualGLM-6B keeps a BLIP-2 (EVA ViT-g + Q-Former) trained with SwissArmyTransformer (SAT). Its
BLIP2 module has ``vit`` (EVAViT), ``qformer`` (QFormer) and ``glm_proj``; depending on the export
its keys are prefixed with e.g. ``mixins.eva.model.`` (SAT checkpoint) or
``transformer.image_encoder.`` (Hugging Face export). The prefix is found automatically.

Mapping (``L`` = layer i; SAT layers are ``{vit,qformer}.transformer.layers.L.*``)::

  vit.transformer.word_embeddings.weight [1, D]        -> vision_model.embeddings.class_embedding [1, 1, D]
  vit.transformer.position_embeddings.weight [P+1, D]  -> vision_model.embeddings.position_embedding [1, P+1, D]
  vit.mixins.patch_embedding.proj.{weight,bias}        -> vision_model.embeddings.patch_embedding.*
  vit L.input_layernorm / post_attention_layernorm     -> vision_model.encoder.layers.L.layer_norm1 / layer_norm2
  vit L.attention.query_key_value ([q; k; v] rows)     -> ...layers.L.self_attn.qkv
  vit L.attention.dense                                -> ...layers.L.self_attn.projection
  vit L.mlp.dense_h_to_4h / dense_4h_to_h              -> ...layers.L.mlp.fc1 / fc2
  vit.mixins.cls.ln_vision                             -> vision_model.post_layernorm   (BLIP-2's ln_vision)
  qformer.transformer.word_embeddings.weight [Q, q]    -> query_tokens [1, Q, q]  (input ids are 0..Q-1)
  qformer layers.0.input_layernorm                     -> qformer.layernorm        (BERT embedding LayerNorm)
  qformer L.attention.query_key_value                  -> qformer.encoder.layer.L.attention.attention.{query,key,value}
  qformer L.attention.dense / post_attention_layernorm -> ...attention.output.dense / LayerNorm
  qformer L.cross_attention.query                      -> ...crossattention.attention.query
  qformer L.cross_attention.key_value ([k; v] rows)    -> ...crossattention.attention.{key,value}
  qformer L.cross_attention.dense / post_cross_attention_layernorm -> ...crossattention.output.dense / LayerNorm
  qformer L.mlp.dense_h_to_4h / dense_4h_to_h          -> ...intermediate_query.dense / output_query.dense
  qformer layers.(L+1).input_layernorm, or final_layernorm for the last layer -> ...layer.L.output_query.LayerNorm
  glm_proj.*                                           -> not used (ELMD trains its own projector, Eq. 9)

The Q-Former is post-LayerNorm (SAT ``layernorm_order='post'``): a SAT layer normalises its input
first, so BERT's output LayerNorm of layer L lives in layer L+1 of the SAT checkpoint.

NOT YET VERIFIED on a real VisualGLM-6B checkpoint (no copy was available while writing this):
the prefixes, ``vit.mixins.patch_embedding.proj``, ``vit.mixins.cls.ln_vision``, the absence of
``vit.transformer.final_layernorm``, and the head counts / epsilons used when the folder has no
``model_config.json`` / ``config.json`` (16 / 1e-6 for the ViT, 12 / 1e-12 for the Q-Former).
The mapping is checked against a reference SAT-semantics forward pass in tests/test_visual_encoder.py.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from transformers import Blip2QFormerConfig, Blip2VisionConfig

from elmd.errors import ElmdError

VISUAL_MARKERS = ("vit.transformer.", "vit.mixins.", "qformer.transformer.")
_LAYER = re.compile(r"^(vit|qformer)\.transformer\.layers\.(\d+)\.(.+)$")


def strip_prefix(raw: dict) -> dict:
    """Keys relative to the BLIP2 module (``vit.*`` / ``qformer.*``), whatever the export prefix."""
    anchor = next((k for k in raw if ".vit.transformer.layers.0." in "." + k), None)
    if anchor is None:
        raise ElmdError("no 'vit.transformer.layers.0.*' key — not a VisualGLM-6B checkpoint (try vision.format=blip2)")
    prefix = ("." + anchor)[: ("." + anchor).index(".vit.transformer.layers.0.") + 1][1:]
    return {k[len(prefix):]: v for k, v in raw.items() if k.startswith(prefix)}


def _num_layers(sd: dict, part: str) -> int:
    ids = {int(m.group(2)) for k in sd if (m := _LAYER.match(k)) and m.group(1) == part}
    if not ids or sorted(ids) != list(range(len(ids))):
        raise ElmdError(f"{part}: layers missing or not numbered 0..n-1 ({sorted(ids)[:5]}...)")
    return len(ids)


def _read_args(folder: Path | None) -> tuple[dict, dict]:
    """eva / qformer args from SAT's model_config.json or the HF export's config.json, if present."""
    for name, keys in (("model_config.json", ("eva_args", "qformer_args")), ("config.json", ("eva_config", "qformer_config"))):
        if folder is not None and (folder / name).exists():
            raw = json.loads((folder / name).read_text(encoding="utf-8"))
            if keys[0] in raw:
                return raw.get(keys[0]) or {}, raw.get(keys[1]) or {}
    return {}, {}


def visualglm_to_blip2(raw: dict, source: str = "", vision_heads: int | None = None, qformer_heads: int | None = None):
    """(BLIP-2 state dict, vision config, Q-Former config, number of queries) from VisualGLM keys."""
    folder = Path(source) if source and Path(source).is_dir() else None
    eva_args, q_args = _read_args(folder)
    sd = strip_prefix(raw)
    if "vit.transformer.final_layernorm.weight" in sd:
        raise ElmdError(f"{source}: the ViT has a final_layernorm, which BLIP-2's ViT does not — unsupported layout")
    out = {}
    try:
        vision = _map_vit(sd, out, vision_heads or eva_args.get("num_attention_heads", 16), eva_args.get("layernorm_epsilon", 1e-6))
        qformer, nq = _map_qformer(sd, out, qformer_heads or q_args.get("num_attention_heads", 12),
                                   q_args.get("layernorm_epsilon", 1e-12), vision.hidden_size)
    except KeyError as e:
        raise ElmdError(f"{source}: VisualGLM weight {e.args[0]!r} not found — see the key mapping in elmd/models/visualglm_keys.py") from None
    return out, vision, qformer, nq


def _map_vit(sd: dict, out: dict, heads: int, eps: float) -> Blip2VisionConfig:
    g = sd.__getitem__
    cls_tok, pos = g("vit.transformer.word_embeddings.weight"), g("vit.transformer.position_embeddings.weight")
    patch_w = g("vit.mixins.patch_embedding.proj.weight")  # [D, 3, p, p]
    dim, patch = patch_w.shape[0], patch_w.shape[-1]
    out["vision_model.embeddings.class_embedding"] = cls_tok.reshape(1, 1, dim)
    out["vision_model.embeddings.position_embedding"] = pos.reshape(1, -1, dim)
    out["vision_model.embeddings.patch_embedding.weight"] = patch_w
    out["vision_model.embeddings.patch_embedding.bias"] = g("vit.mixins.patch_embedding.proj.bias")
    for wb in ("weight", "bias"):
        out[f"vision_model.post_layernorm.{wb}"] = g(f"vit.mixins.cls.ln_vision.{wb}")
    n = _num_layers(sd, "vit")
    names = {"input_layernorm": "layer_norm1", "post_attention_layernorm": "layer_norm2",
             "attention.query_key_value": "self_attn.qkv", "attention.dense": "self_attn.projection",
             "mlp.dense_h_to_4h": "mlp.fc1", "mlp.dense_4h_to_h": "mlp.fc2"}
    for i in range(n):
        for src, dst in names.items():
            for wb in ("weight", "bias"):
                out[f"vision_model.encoder.layers.{i}.{dst}.{wb}"] = g(f"vit.transformer.layers.{i}.{src}.{wb}")
    side = math.isqrt(pos.shape[0] - 1)
    return Blip2VisionConfig(hidden_size=dim, intermediate_size=g("vit.transformer.layers.0.mlp.dense_h_to_4h.weight").shape[0],
                             num_hidden_layers=n, num_attention_heads=heads, image_size=side * patch, patch_size=patch,
                             layer_norm_eps=eps, qkv_bias=True)


def _map_qformer(sd: dict, out: dict, heads: int, eps: float, enc_dim: int):
    g = sd.__getitem__
    queries = g("qformer.transformer.word_embeddings.weight")  # [Q, q]
    out["query_tokens"] = queries.unsqueeze(0)
    n = _num_layers(sd, "qformer")
    L = "qformer.transformer.layers"
    for wb in ("weight", "bias"):
        out[f"qformer.layernorm.{wb}"] = g(f"{L}.0.input_layernorm.{wb}")
    cross = [i for i in range(n) if f"{L}.{i}.cross_attention.query.weight" in sd]
    freq = cross[1] - cross[0] if len(cross) > 1 else n
    if not cross or cross[0] != 0 or cross != list(range(0, n, freq)):
        raise ElmdError(f"Q-Former cross-attention in layers {cross}: expected every k-th layer from 0")
    for i in range(n):
        dst = f"qformer.encoder.layer.{i}"
        nxt = f"{L}.{i + 1}.input_layernorm" if i + 1 < n else "qformer.transformer.final_layernorm"
        for wb in ("weight", "bias"):
            for part, t in zip(("query", "key", "value"), g(f"{L}.{i}.attention.query_key_value.{wb}").chunk(3)):
                out[f"{dst}.attention.attention.{part}.{wb}"] = t
            out[f"{dst}.attention.output.dense.{wb}"] = g(f"{L}.{i}.attention.dense.{wb}")
            out[f"{dst}.attention.output.LayerNorm.{wb}"] = g(f"{L}.{i}.post_attention_layernorm.{wb}")
            out[f"{dst}.intermediate_query.dense.{wb}"] = g(f"{L}.{i}.mlp.dense_h_to_4h.{wb}")
            out[f"{dst}.output_query.dense.{wb}"] = g(f"{L}.{i}.mlp.dense_4h_to_h.{wb}")
            out[f"{dst}.output_query.LayerNorm.{wb}"] = g(f"{nxt}.{wb}")
            if i in cross:
                out[f"{dst}.crossattention.attention.query.{wb}"] = g(f"{L}.{i}.cross_attention.query.{wb}")
                key, value = g(f"{L}.{i}.cross_attention.key_value.{wb}").chunk(2)
                out[f"{dst}.crossattention.attention.key.{wb}"] = key
                out[f"{dst}.crossattention.attention.value.{wb}"] = value
                out[f"{dst}.crossattention.output.dense.{wb}"] = g(f"{L}.{i}.cross_attention.dense.{wb}")
                out[f"{dst}.crossattention.output.LayerNorm.{wb}"] = g(f"{L}.{i}.post_cross_attention_layernorm.{wb}")
    hidden = queries.shape[1]
    config = Blip2QFormerConfig(hidden_size=hidden, intermediate_size=g(f"{L}.0.mlp.dense_h_to_4h.weight").shape[0],
                                num_hidden_layers=n, num_attention_heads=heads, layer_norm_eps=eps,
                                cross_attention_frequency=freq, encoder_hidden_size=enc_dim)
    return config, queries.shape[0]
