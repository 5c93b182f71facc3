"""Frozen ViT + Q-Former: tiny model behaviour, BLIP-2 checkpoint round trip, VisualGLM key mapping."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
import torch.nn.functional as F
from transformers import Blip2QFormerConfig, Blip2VisionConfig

from elmd.errors import ElmdError
from elmd.models.config import VisionConfig
from elmd.models.visual_encoder import LazyVisualEncoder, VisualEncoder, build_visual_encoder


def _frames(n=2, m=3, size=224, seed=0):
    return torch.randn(n, m, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_tiny_encoder_shapes_frozen_and_eval(tiny_visual_encoder):
    enc = tiny_visual_encoder
    feats = enc.encode(_frames())
    assert feats.shape == (2, 3, 32, 64) and enc.q_dim == 64 and enc.num_query_tokens == 32
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.training and not enc.qformer.training


def test_encode_is_per_frame_and_batch_independent(tiny_visual_encoder):
    enc, x = tiny_visual_encoder, _frames()
    a = enc.encode(x, batch_size=32)
    b = enc.encode(x, batch_size=2)
    assert torch.allclose(a, b, atol=1e-5)
    single = enc(x[1, 2:3])  # frame 2 of video 1 alone
    assert torch.allclose(a[1, 2], single[0], atol=1e-5)
    assert not torch.allclose(a[0, 0], a[0, 1], atol=1e-3)  # different frames, different features


def test_tiny_is_deterministic_and_fingerprinted():
    a, b, c = VisualEncoder.tiny(seed=0), VisualEncoder.tiny(seed=0), VisualEncoder.tiny(seed=1)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    x = _frames(1, 2)
    assert torch.equal(a.encode(x), b.encode(x))
    d = VisualEncoder.tiny(seed=0)
    with torch.no_grad():
        d.qformer.encoder.layer[1].output_query.dense.weight[3, 5] += 1e-3  # a tiny weight change
    assert d.fingerprint() != a.fingerprint()


def test_build_visual_encoder_tiny_follows_config():
    enc = build_visual_encoder(VisionConfig(num_query_tokens=8, image_size=64))
    assert enc.num_query_tokens == 8 and enc.encode(_frames(1, 2, size=64)).shape == (1, 2, 8, 64)
    with pytest.raises(ElmdError, match="not found"):
        build_visual_encoder(VisionConfig(path="/nonexistent/blip2", format="visualglm"))


# -- BLIP-2 checkpoint ------------------------------------------------------------------------

def test_blip2_checkpoint_round_trip(blip2_folder):
    folder, ref = blip2_folder
    enc = build_visual_encoder(VisionConfig(path=str(folder)))  # format auto -> blip2
    assert enc.source.startswith("blip2:")
    x = _frames(1, 2)[0]
    with torch.no_grad():
        expected = ref.get_qformer_features(pixel_values=x)
    assert torch.allclose(enc(x), expected, atol=1e-5)
    assert not any(p.requires_grad for p in enc.parameters())
    with pytest.raises(ElmdError, match="vision.num_query_tokens=16"):
        build_visual_encoder(VisionConfig(path=str(folder), num_query_tokens=16))


def test_lazy_encoder_knows_the_fingerprint_without_loading(blip2_folder):
    folder, _ = blip2_folder
    cfg = VisionConfig(path=str(folder))
    lazy = LazyVisualEncoder(cfg)
    assert lazy.fingerprint() == build_visual_encoder(cfg).fingerprint() and not lazy.loaded
    assert lazy.encode(_frames(1, 1)).shape == (1, 1, 32, 64) and lazy.loaded
    (folder / "config.json").touch()  # same bytes: same fingerprint (only weight-file stats count)
    assert LazyVisualEncoder(cfg).fingerprint() == lazy.fingerprint()


def test_blip2_old_layout_with_q_and_v_bias(tmp_path, blip2_folder):
    """Older exports store the ViT's q_bias / v_bias instead of qkv.bias, as pytorch_model.bin."""
    folder, ref = blip2_folder
    sd = {k: v for k, v in ref.state_dict().items()}
    for k in [k for k in sd if k.endswith("self_attn.qkv.bias")]:
        q, _, v = sd.pop(k).chunk(3)
        sd[k.replace("qkv.bias", "q_bias")], sd[k.replace("qkv.bias", "v_bias")] = q, v
    torch.save(sd, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    enc = VisualEncoder.from_blip2(tmp_path)
    x = _frames(1, 1, seed=5)[0]
    with torch.no_grad():
        assert torch.allclose(enc(x), ref.get_qformer_features(pixel_values=x), atol=1e-5)


def test_blip2_mismatch_is_a_clear_error(tmp_path, blip2_folder):
    folder, _ = blip2_folder
    raw = json.loads((folder / "config.json").read_text())
    raw["qformer_config"]["num_hidden_layers"] = 3
    (tmp_path / "config.json").write_text(json.dumps(raw))
    (tmp_path / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    with pytest.raises(ElmdError, match="missing"):
        VisualEncoder.from_blip2(tmp_path)


# -- VisualGLM-6B key mapping -----------------------------------------------------------------

PREFIX = "mixins.eva.model."  # SAT checkpoint layout; the HF export uses "transformer.image_encoder."


def _small_encoder(seed=0):
    """4-layer Q-Former with cross-attention every 2nd layer; every weight (LayerNorms included)
    randomised so that a swapped or shifted key changes the output."""
    vision = Blip2VisionConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                               image_size=64, patch_size=32, initializer_range=0.02)
    qformer = Blip2QFormerConfig(hidden_size=24, intermediate_size=40, num_hidden_layers=4, num_attention_heads=4,
                                 encoder_hidden_size=32, cross_attention_frequency=2)
    torch.manual_seed(seed)
    enc = VisualEncoder(vision, qformer, num_query_tokens=8)
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return enc


def _to_sat(enc: VisualEncoder) -> dict:
    """The encoder's weights written in VisualGLM's SAT layout (written from SAT's module structure)."""
    s = enc.state_dict()
    out = {"vit.transformer.word_embeddings.weight": s["vision_model.embeddings.class_embedding"][0],
           "vit.transformer.position_embeddings.weight": s["vision_model.embeddings.position_embedding"][0],
           "qformer.transformer.word_embeddings.weight": s["query_tokens"][0],
           "glm_proj.weight": torch.randn(16, 24), "glm_proj.bias": torch.randn(16)}
    for wb in ("weight", "bias"):
        out[f"vit.mixins.patch_embedding.proj.{wb}"] = s[f"vision_model.embeddings.patch_embedding.{wb}"]
        out[f"vit.mixins.cls.ln_vision.{wb}"] = s[f"vision_model.post_layernorm.{wb}"]
        for i in range(2):
            v, t = f"vision_model.encoder.layers.{i}.", f"vit.transformer.layers.{i}."
            for src, dst in [("layer_norm1", "input_layernorm"), ("self_attn.qkv", "attention.query_key_value"),
                             ("self_attn.projection", "attention.dense"), ("layer_norm2", "post_attention_layernorm"),
                             ("mlp.fc1", "mlp.dense_h_to_4h"), ("mlp.fc2", "mlp.dense_4h_to_h")]:
                out[f"{t}{dst}.{wb}"] = s[f"{v}{src}.{wb}"]
        out[f"qformer.transformer.layers.0.input_layernorm.{wb}"] = s[f"qformer.layernorm.{wb}"]
        for i in range(4):
            h, t = f"qformer.encoder.layer.{i}.", f"qformer.transformer.layers.{i}."
            out[f"{t}attention.query_key_value.{wb}"] = torch.cat([s[f"{h}attention.attention.{p}.{wb}"] for p in ("query", "key", "value")])
            out[f"{t}attention.dense.{wb}"] = s[f"{h}attention.output.dense.{wb}"]
            out[f"{t}post_attention_layernorm.{wb}"] = s[f"{h}attention.output.LayerNorm.{wb}"]
            out[f"{t}mlp.dense_h_to_4h.{wb}"] = s[f"{h}intermediate_query.dense.{wb}"]
            out[f"{t}mlp.dense_4h_to_h.{wb}"] = s[f"{h}output_query.dense.{wb}"]
            nxt = f"qformer.transformer.layers.{i + 1}.input_layernorm" if i < 3 else "qformer.transformer.final_layernorm"
            out[f"{nxt}.{wb}"] = s[f"{h}output_query.LayerNorm.{wb}"]
            if i % 2 == 0:
                out[f"{t}cross_attention.query.{wb}"] = s[f"{h}crossattention.attention.query.{wb}"]
                out[f"{t}cross_attention.key_value.{wb}"] = torch.cat([s[f"{h}crossattention.attention.{p}.{wb}"] for p in ("key", "value")])
                out[f"{t}cross_attention.dense.{wb}"] = s[f"{h}crossattention.output.dense.{wb}"]
                out[f"{t}post_cross_attention_layernorm.{wb}"] = s[f"{h}crossattention.output.LayerNorm.{wb}"]
    return {PREFIX + k: v.clone() for k, v in out.items()}


def _mha(x, kv, wq, bq, wk, bk, wv, bv, heads):
    q, k, v = F.linear(x, wq, bq), F.linear(kv, wk, bk), F.linear(kv, wv, bv)
    split = lambda t: t.view(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)  # noqa: E731
    ctx = F.scaled_dot_product_attention(split(q), split(k), split(v))
    return ctx.transpose(1, 2).reshape(x.shape)


def _sat_forward(sd: dict, pixels: torch.Tensor, heads=4) -> torch.Tensor:
    """Reference forward pass with SAT semantics (pre-LN EVA ViT + ln_vision, post-LN Q-Former whose
    layers normalise their input first) read straight from the SAT keys."""
    g = lambda k: sd[PREFIX + k]  # noqa: E731
    ln = lambda x, k, eps: F.layer_norm(x, x.shape[-1:], g(k + ".weight"), g(k + ".bias"), eps)  # noqa: E731
    lin = lambda x, k: F.linear(x, g(k + ".weight"), g(k + ".bias"))  # noqa: E731
    x = F.conv2d(pixels, g("vit.mixins.patch_embedding.proj.weight"), g("vit.mixins.patch_embedding.proj.bias"), stride=32)
    x = torch.cat([g("vit.transformer.word_embeddings.weight").expand(len(x), 1, -1), x.flatten(2).transpose(1, 2)], 1)
    x = x + g("vit.transformer.position_embeddings.weight")
    for i in range(2):
        L = f"vit.transformer.layers.{i}."
        a = ln(x, L + "input_layernorm", 1e-6)
        wq, wk, wv = g(L + "attention.query_key_value.weight").chunk(3)
        bq, bk, bv = g(L + "attention.query_key_value.bias").chunk(3)
        x = x + lin(_mha(a, a, wq, bq, wk, bk, wv, bv, heads), L + "attention.dense")
        x = x + lin(F.gelu(lin(ln(x, L + "post_attention_layernorm", 1e-6), L + "mlp.dense_h_to_4h")), L + "mlp.dense_4h_to_h")
    image = ln(x, "vit.mixins.cls.ln_vision", 1e-5)  # nn.LayerNorm default eps in LNFinalyMixin
    h = g("qformer.transformer.word_embeddings.weight").expand(len(x), -1, -1)
    for i in range(4):
        L = f"qformer.transformer.layers.{i}."
        a = ln(h, L + "input_layernorm", 1e-12)
        wq, wk, wv = g(L + "attention.query_key_value.weight").chunk(3)
        bq, bk, bv = g(L + "attention.query_key_value.bias").chunk(3)
        mlp_in = ln(a + lin(_mha(a, a, wq, bq, wk, bk, wv, bv, heads), L + "attention.dense"), L + "post_attention_layernorm", 1e-12)
        if PREFIX + L + "cross_attention.query.weight" in sd:
            wk, wv = g(L + "cross_attention.key_value.weight").chunk(2)
            bk, bv = g(L + "cross_attention.key_value.bias").chunk(2)
            c = _mha(mlp_in, image, g(L + "cross_attention.query.weight"), g(L + "cross_attention.query.bias"), wk, bk, wv, bv, heads)
            mlp_in = ln(mlp_in + lin(c, L + "cross_attention.dense"), L + "post_cross_attention_layernorm", 1e-12)
        h = mlp_in + lin(F.gelu(lin(mlp_in, L + "mlp.dense_h_to_4h")), L + "mlp.dense_4h_to_h")
    return ln(h, "qformer.transformer.final_layernorm", 1e-12)


@pytest.fixture(scope="module")
def visualglm_folder(tmp_path_factory):
    """A fake SAT checkpoint: <dir>/1/mp_rank_00_model_states.pt = {"module": state dict, "args"} with
    LLM keys beside the visual ones, and model_config.json with the head counts."""
    enc = _small_encoder()
    sd = _to_sat(enc)
    sd["transformer.layers.0.attention.dense.weight"] = torch.randn(4, 4)  # ChatGLM weights: ignored
    folder = tmp_path_factory.mktemp("visualglm")
    (folder / "1").mkdir()
    # SAT pickles its argparse args beside the weights (not loadable with weights_only=True)
    torch.save({"module": sd, "args": argparse.Namespace(mode="inference")}, folder / "1" / "mp_rank_00_model_states.pt")
    (folder / "model_config.json").write_text(json.dumps({"eva_args": {"num_attention_heads": 4, "layernorm_epsilon": 1e-6},
                                                          "qformer_args": {"num_attention_heads": 4, "layernorm_epsilon": 1e-12}}))
    return folder, enc, sd


def test_visualglm_loads_to_the_same_encoder(visualglm_folder):
    folder, enc, _ = visualglm_folder
    loaded = build_visual_encoder(VisionConfig(path=str(folder), num_query_tokens=8, image_size=64))  # auto -> visualglm
    assert loaded.source.startswith("visualglm:")
    assert loaded.qformer.config.cross_attention_frequency == 2 and loaded.qformer.config.num_hidden_layers == 4
    x = _frames(1, 2, size=64)[0]
    assert torch.allclose(loaded(x), enc(x), atol=1e-5)
    assert loaded.fingerprint() == VisualEncoder.from_visualglm(folder).fingerprint()


def test_visualglm_mapping_matches_sat_semantics(visualglm_folder):
    """The mapped HF model computes what the SAT modules compute from the original keys
    (catches e.g. a Q-Former output LayerNorm taken from the wrong layer)."""
    folder, _, sd = visualglm_folder
    loaded = VisualEncoder.from_visualglm(folder)
    x = _frames(1, 3, size=64, seed=7)[0]
    assert torch.allclose(loaded(x), _sat_forward(sd, x), atol=1e-4)


def test_visualglm_hf_export_prefix_and_missing_key(tmp_path, visualglm_folder):
    from safetensors.torch import save_file

    _, enc, sd = visualglm_folder
    hf = {"transformer.image_encoder." + k[len(PREFIX):]: v.contiguous() for k, v in sd.items() if k.startswith(PREFIX)}
    save_file(hf, tmp_path / "model.safetensors")
    loaded = VisualEncoder.from_visualglm(tmp_path, vision_heads=4, qformer_heads=4)
    x = _frames(1, 1, size=64, seed=2)[0]
    assert torch.allclose(loaded(x), enc(x), atol=1e-5)
    del hf["transformer.image_encoder.vit.mixins.cls.ln_vision.bias"]
    save_file(hf, tmp_path / "model.safetensors")
    with pytest.raises(ElmdError, match="ln_vision.bias"):
        VisualEncoder.from_visualglm(tmp_path, vision_heads=4, qformer_heads=4)
