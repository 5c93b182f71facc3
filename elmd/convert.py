"""Convert the official ChatGLM2-6B checkpoint to transformers' ``GlmForCausalLM`` layout.

Source layout (THUDM/chatglm2-6b, sharded ``pytorch_model-*.bin`` or ``*.safetensors``)::

    transformer.embedding.word_embeddings.weight              -> model.embed_tokens.weight
    transformer.encoder.layers.N.input_layernorm.weight       -> model.layers.N.input_layernorm.weight
    transformer.encoder.layers.N.self_attention.query_key_value.{weight,bias}
        split rows q | k | v = heads*d | groups*d | groups*d (4096 | 256 | 256)
                                                              -> model.layers.N.self_attn.{q,k,v}_proj.*
    transformer.encoder.layers.N.self_attention.dense.weight  -> model.layers.N.self_attn.o_proj.weight
    transformer.encoder.layers.N.post_attention_layernorm.weight
                                                              -> model.layers.N.post_attention_layernorm.weight
    transformer.encoder.layers.N.mlp.dense_h_to_4h.weight     -> model.layers.N.mlp.gate_up_proj.weight
        (gate rows first in both layouts)
    transformer.encoder.layers.N.mlp.dense_4h_to_h.weight     -> model.layers.N.mlp.down_proj.weight
    transformer.encoder.final_layernorm.weight                -> model.norm.weight
    transformer.output_layer.weight                           -> lm_head.weight
    transformer.rotary_pos_emb.inv_freq                       (dropped: recomputed)

The conversion goes shard by shard: one source shard is loaded (memory-mapped), converted and
written as one safetensors shard before the next is read, so two full copies of the 12 GB model
are never in memory. Output shards are written atomically; a rerun skips shards already written.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from elmd.errors import ElmdError
from elmd.io import atomic_write_json
from elmd.models.glm import CHATGLM2_6B, glm_config

_LAYER = re.compile(r"transformer\.encoder\.layers\.(\d+)\.(.+)")
_LAYER_MAP = {
    "input_layernorm.weight": "input_layernorm.weight",
    "post_attention_layernorm.weight": "post_attention_layernorm.weight",
    "self_attention.dense.weight": "self_attn.o_proj.weight",
    "mlp.dense_h_to_4h.weight": "mlp.gate_up_proj.weight",
    "mlp.dense_4h_to_h.weight": "mlp.down_proj.weight",
}
_TOP_MAP = {
    "transformer.embedding.word_embeddings.weight": "model.embed_tokens.weight",
    "transformer.encoder.final_layernorm.weight": "model.norm.weight",
    "transformer.output_layer.weight": "lm_head.weight",
}
_DROPPED = {"transformer.rotary_pos_emb.inv_freq"}


def read_source_config(src: Path) -> dict:
    """Sizes of the source model, from its ``config.json`` (ChatGLM2 names), checked for support."""
    path = src / "config.json"
    if not path.exists():
        raise ElmdError(f"{path}: not found — --src must be the downloaded THUDM/chatglm2-6b folder")
    raw = json.loads(path.read_text(encoding="utf-8"))
    unsupported = {
        "add_bias_linear": (raw.get("add_bias_linear", False), False),
        "add_qkv_bias": (raw.get("add_qkv_bias", True), True),
        "rmsnorm": (raw.get("rmsnorm", True), True),
        "post_layer_norm": (raw.get("post_layer_norm", True), True),
        "apply_residual_connection_post_layernorm": (raw.get("apply_residual_connection_post_layernorm", False), False),
        "multi_query_attention": (raw.get("multi_query_attention", True), True),
        "rope_ratio": (raw.get("rope_ratio", 1), 1),
    }
    for key, (got, want) in unsupported.items():
        if got != want:
            raise ElmdError(f"{path}: {key}={got} is not ChatGLM2-6B's {want} — only the ChatGLM2-6B architecture is supported")
    heads = raw.get("num_attention_heads", CHATGLM2_6B["num_attention_heads"])
    return dict(
        num_hidden_layers=raw.get("num_layers", CHATGLM2_6B["num_hidden_layers"]),
        hidden_size=raw.get("hidden_size", CHATGLM2_6B["hidden_size"]),
        num_attention_heads=heads,
        num_key_value_heads=raw.get("multi_query_group_num", CHATGLM2_6B["num_key_value_heads"]),
        head_dim=raw.get("kv_channels", raw.get("hidden_size", 4096) // heads),
        intermediate_size=raw.get("ffn_hidden_size", CHATGLM2_6B["intermediate_size"]),
        vocab_size=raw.get("padded_vocab_size", CHATGLM2_6B["vocab_size"]),
        max_position_embeddings=raw.get("seq_length", CHATGLM2_6B["max_position_embeddings"]),
        rms_norm_eps=raw.get("layernorm_epsilon", CHATGLM2_6B["rms_norm_eps"]),
        dtype=raw.get("torch_dtype", "float16"),
    )


def source_shards(src: Path) -> list[Path]:
    """The weight files of ``src``: the index's shards, else the single file, safetensors first."""
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (src / index).exists():
            weight_map = json.loads((src / index).read_text(encoding="utf-8"))["weight_map"]
            return [src / name for name in sorted(set(weight_map.values()))]
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (src / single).exists():
            return [src / single]
    shards = sorted(src.glob("*.safetensors")) or sorted(src.glob("pytorch_model*.bin"))
    if not shards:
        raise ElmdError(f"{src}: no pytorch_model*.bin or *.safetensors weights — download THUDM/chatglm2-6b with git lfs (git lfs pull)")
    return shards


def load_shard(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of one shard, memory-mapped where the format allows."""
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) pickle: cannot be memory-mapped
        return torch.load(path, map_location="cpu", weights_only=True)


def convert_tensors(state: dict[str, torch.Tensor], sizes: dict) -> dict[str, torch.Tensor]:
    """Map one shard's ChatGLM2 tensors to GLM names (fused QKV split into q, k, v)."""
    q_rows = sizes["num_attention_heads"] * sizes["head_dim"]
    kv_rows = sizes["num_key_value_heads"] * sizes["head_dim"]
    out = {}
    for name, t in state.items():
        if name in _DROPPED:
            continue
        if name in _TOP_MAP:
            out[_TOP_MAP[name]] = t.clone()
            continue
        m = _LAYER.fullmatch(name)
        if not m:
            raise ElmdError(f"unexpected tensor '{name}' — is this a ChatGLM2-6B checkpoint?")
        prefix, rest = f"model.layers.{m.group(1)}.", m.group(2)
        if rest.startswith("self_attention.query_key_value."):
            kind = rest.rsplit(".", 1)[1]  # weight | bias
            if t.shape[0] != q_rows + 2 * kv_rows:
                raise ElmdError(f"{name}: {t.shape[0]} rows, expected {q_rows}+2*{kv_rows} from config.json")
            q, k, v = torch.split(t, [q_rows, kv_rows, kv_rows], dim=0)
            for proj, part in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
                out[f"{prefix}self_attn.{proj}.{kind}"] = part.clone()
        elif rest in _LAYER_MAP:
            out[prefix + _LAYER_MAP[rest]] = t.clone()
        else:
            raise ElmdError(f"unexpected tensor '{name}' — is this a ChatGLM2-6B checkpoint?")
    return out


def convert_chatglm2(src: str | Path, out: str | Path) -> Path:
    """Convert ``src`` (official ChatGLM2-6B folder) into ``out`` (GlmForCausalLM folder)."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise ElmdError(f"{src}: not a folder — download THUDM/chatglm2-6b (git lfs) and pass its folder as --src")
    if out.resolve() == src.resolve():
        raise ElmdError(f"{out}: --out must differ from --src — write the converted model to a new folder")
    sizes = read_source_config(src)
    shards = source_shards(src)
    _claim_output(out, src, shards)
    weight_map, total = {}, 0
    for i, shard in enumerate(tqdm(shards, desc="convert chatglm2", unit="shard"), start=1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        target = out / name
        if not target.exists():  # written atomically, so an existing shard is complete
            converted = convert_tensors(load_shard(shard), sizes)
            tmp = out / f".{name}.tmp"
            save_file(converted, str(tmp), metadata={"format": "pt"})
            tmp.replace(target)
            del converted
        with safe_open(str(target), framework="pt") as f:
            for key in f.keys():
                weight_map[key] = name
                sl = f.get_slice(key)
                total += _numel(sl.get_shape()) * _itemsize(sl.get_dtype())
    _check_complete(weight_map, sizes, src)
    atomic_write_json(out / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})
    dtype = sizes.pop("dtype")
    config = glm_config(**sizes)
    config.dtype = dtype
    config.save_pretrained(str(out))
    if (src / "tokenizer.model").exists():
        shutil.copyfile(src / "tokenizer.model", out / "tokenizer.model")
    atomic_write_json(out / "meta.json", {
        "converted_from": str(src.resolve()), "source_shards": [s.name for s in shards],
        "format": "transformers GlmForCausalLM (model_type glm)", "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    return out


def _claim_output(out: Path, src: Path, shards: list[Path]) -> None:
    """Record which source ``out`` converts; refuse to resume into a folder of another source."""
    source = {"src": str(src.resolve()), "shards": [[p.name, p.stat().st_size] for p in shards]}
    marker = out / ".convert_source.json"
    if marker.exists() and json.loads(marker.read_text(encoding="utf-8")) != source:
        raise ElmdError(f"{out}: holds a conversion of another checkpoint ({marker}) — use an empty --out folder")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(marker, source)


def _check_complete(weight_map: dict, sizes: dict, src: Path) -> None:
    expected = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}
    for n in range(sizes["num_hidden_layers"]):
        p = f"model.layers.{n}."
        expected |= {p + v for v in _LAYER_MAP.values()}
        expected |= {f"{p}self_attn.{x}_proj.{k}" for x in "qkv" for k in ("weight", "bias")}
    missing = sorted(expected - set(weight_map))
    if missing:
        raise ElmdError(f"{src}: {len(missing)} tensors missing after conversion (e.g. {missing[0]}) — is the download complete (git lfs pull)?")


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _itemsize(dtype: str) -> int:
    return {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4}.get(dtype, 1)
