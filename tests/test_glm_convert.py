"""`elmd convert chatglm2`: round trip of every tensor, and the converted GlmForCausalLM's logits
against a from-scratch ChatGLM2 forward written here from the model's description."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from elmd.cli.main import main
from elmd.errors import ElmdError
from elmd.convert import convert_chatglm2

# A tiny ChatGLM2 in the official layout (config.json names of THUDM/chatglm2-6b).
SRC_CONFIG = dict(
    model_type="chatglm", num_layers=2, hidden_size=64, num_attention_heads=4, multi_query_group_num=2,
    kv_channels=16, ffn_hidden_size=96, padded_vocab_size=128, layernorm_epsilon=1e-5, seq_length=256,
    add_bias_linear=False, add_qkv_bias=True, rmsnorm=True, post_layer_norm=True, multi_query_attention=True,
    apply_residual_connection_post_layernorm=False, original_rope=True, torch_dtype="float32",
)


def chatglm2_state(seed: int = 0, vocab: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    c = dict(SRC_CONFIG, padded_vocab_size=vocab or SRC_CONFIG["padded_vocab_size"])
    H, d, nh, ng, F, V = c["hidden_size"], c["kv_channels"], c["num_attention_heads"], c["multi_query_group_num"], c["ffn_hidden_size"], c["padded_vocab_size"]

    def r(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    sd = {"transformer.embedding.word_embeddings.weight": r(V, H, scale=1.0),
          "transformer.rotary_pos_emb.inv_freq": torch.ones(d // 4)}
    for n in range(c["num_layers"]):
        p = f"transformer.encoder.layers.{n}."
        sd[p + "input_layernorm.weight"] = 1 + r(H, scale=0.1)
        sd[p + "self_attention.query_key_value.weight"] = r(nh * d + 2 * ng * d, H)
        sd[p + "self_attention.query_key_value.bias"] = r(nh * d + 2 * ng * d)
        sd[p + "self_attention.dense.weight"] = r(H, nh * d)
        sd[p + "post_attention_layernorm.weight"] = 1 + r(H, scale=0.1)
        sd[p + "mlp.dense_h_to_4h.weight"] = r(2 * F, H)
        sd[p + "mlp.dense_4h_to_h.weight"] = r(H, F)
    sd["transformer.encoder.final_layernorm.weight"] = 1 + r(H, scale=0.1)
    sd["transformer.output_layer.weight"] = r(V, H)
    return sd


def write_checkpoint(folder, sd, fmt: str):
    """Two shards (layer 0 + embeddings | the rest) with an index, as the official repo ships them."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = sd["transformer.output_layer.weight"].shape[0]
    (folder / "config.json").write_text(json.dumps(dict(SRC_CONFIG, padded_vocab_size=vocab)))
    (folder / "tokenizer.model").write_bytes(b"not-a-real-model")
    first = {k: v for k, v in sd.items() if "layers.1." not in k and "output_layer" not in k and "final" not in k}
    parts = [first, {k: v for k, v in sd.items() if k not in first}]
    ext = "safetensors" if fmt == "safetensors" else "bin"
    base = "model" if fmt == "safetensors" else "pytorch_model"
    weight_map = {}
    for i, part in enumerate(parts, start=1):
        name = f"{base}-{i:05d}-of-00002.{ext}"
        if fmt == "safetensors":
            save_file({k: v.contiguous() for k, v in part.items()}, str(folder / name))
        else:
            torch.save(part, folder / name)
        weight_map.update({k: name for k in part})
    index = "model.safetensors.index.json" if fmt == "safetensors" else "pytorch_model.bin.index.json"
    (folder / index).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


# ---- ChatGLM2 forward, from the architecture's description (not transformers) -------------------

def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotary(x, base=10000.0):
    """x [T, heads, d]: rotate the first d/2 dims as pairs (x[2i], x[2i+1]) by angle t * base^(-2i/(d/2))."""
    T, _, d = x.shape
    rot = d // 2
    theta = 1.0 / base ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot)  # [rot/2]
    ang = torch.arange(T, dtype=torch.float64)[:, None] * theta[None, :]  # [T, rot/2]
    cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]
    a, b = x[..., 0:rot:2], x[..., 1:rot:2]
    out = torch.stack([a * cos - b * sin, b * cos + a * sin], dim=-1).flatten(-2)
    return torch.cat([out, x[..., rot:]], dim=-1)


def chatglm2_logits(sd, ids: list[int]) -> torch.Tensor:
    c = SRC_CONFIG
    nh, ng, d, eps = c["num_attention_heads"], c["multi_query_group_num"], c["kv_channels"], c["layernorm_epsilon"]
    sd = {k: v.double() for k, v in sd.items()}
    x = sd["transformer.embedding.word_embeddings.weight"][torch.tensor(ids)]  # [T, H]
    T = len(ids)
    causal = torch.ones(T, T).tril().bool()
    for n in range(c["num_layers"]):
        p = f"transformer.encoder.layers.{n}."
        h = rms_norm(x, sd[p + "input_layernorm.weight"], eps)
        qkv = h @ sd[p + "self_attention.query_key_value.weight"].T + sd[p + "self_attention.query_key_value.bias"]
        q = qkv[:, : nh * d].view(T, nh, d)
        k = qkv[:, nh * d: nh * d + ng * d].view(T, ng, d)
        v = qkv[:, nh * d + ng * d:].view(T, ng, d)
        q, k = rotary(q), rotary(k)
        heads = []
        for head in range(nh):
            group = head // (nh // ng)  # multi-query: consecutive heads share a key/value group
            s = (q[:, head] @ k[:, group].T) / math.sqrt(d)
            s = s.masked_fill(~causal, float("-inf"))
            heads.append(torch.softmax(s, dim=-1) @ v[:, group])
        x = x + torch.cat(heads, dim=-1) @ sd[p + "self_attention.dense.weight"].T
        h = rms_norm(x, sd[p + "post_attention_layernorm.weight"], eps)
        gate, up = (h @ sd[p + "mlp.dense_h_to_4h.weight"].T).chunk(2, dim=-1)
        x = x + (torch.nn.functional.silu(gate) * up) @ sd[p + "mlp.dense_4h_to_h.weight"].T
    x = rms_norm(x, sd["transformer.encoder.final_layernorm.weight"], eps)
    return x @ sd["transformer.output_layer.weight"].T


@pytest.fixture(scope="module")
def source_state():
    return chatglm2_state()


@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
def test_convert_round_trip_and_logits_match_chatglm2_math(tmp_path, source_state, fmt):
    from transformers import GlmForCausalLM

    src = write_checkpoint(tmp_path / "src", source_state, fmt)
    result = CliRunner().invoke(main, ["convert", "chatglm2", "--src", str(src), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert (out / "tokenizer.model").read_bytes() == b"not-a-real-model"

    # every source tensor comes back exactly from the converted ones
    conv = {}
    for f in out.glob("*.safetensors"):
        conv.update(load_file(str(f)))
    for n in range(2):
        p, q = f"transformer.encoder.layers.{n}.", f"model.layers.{n}."
        for kind in ("weight", "bias"):
            fused = torch.cat([conv[f"{q}self_attn.{x}_proj.{kind}"] for x in "qkv"])
            assert torch.equal(fused, source_state[p + f"self_attention.query_key_value.{kind}"])
        assert torch.equal(conv[q + "mlp.gate_up_proj.weight"], source_state[p + "mlp.dense_h_to_4h.weight"])
        assert torch.equal(conv[q + "self_attn.o_proj.weight"], source_state[p + "self_attention.dense.weight"])
    assert torch.equal(conv["lm_head.weight"], source_state["transformer.output_layer.weight"])
    assert len(conv) == 3 + 2 * 11  # embed, norm, head + per layer: q/k/v (w, b), o, gate_up, down, 2 norms

    model = GlmForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    assert model.config.model_type == "glm" and not model.config.tie_word_embeddings
    assert model.config.rope_parameters["partial_rotary_factor"] == 0.5
    ids = [5, 17, 99, 3, 64, 127, 0, 42, 8, 8, 1, 77]
    with torch.no_grad():
        got = model(torch.tensor([ids])).logits[0].double()
    want = chatglm2_logits(source_state, ids)
    diff = (got - want).abs().max().item()
    print(f"max |logits diff| = {diff:.2e} (logit scale {want.abs().max().item():.1f})")
    assert diff < 1e-4


def test_convert_goes_shard_by_shard_resumes_and_rejects_wrong_checkpoints(tmp_path, source_state, monkeypatch):
    import elmd.convert as conv

    src = write_checkpoint(tmp_path / "src", source_state, "bin")
    seen, real_load = [], conv.load_shard

    def spy(path):  # when a shard is read, every earlier shard is already written out
        seen.append((path.name, sorted(p.name for p in (tmp_path / "out").glob("model-*.safetensors"))))
        return real_load(path)

    monkeypatch.setattr(conv, "load_shard", spy)
    out = convert_chatglm2(src, tmp_path / "out")
    assert seen == [("pytorch_model-00001-of-00002.bin", []),
                    ("pytorch_model-00002-of-00002.bin", ["model-00001-of-00002.safetensors"])]
    stamp = {p.name: p.stat().st_mtime_ns for p in out.glob("*.safetensors")}
    monkeypatch.setattr(conv, "load_shard", lambda p: pytest.fail("a written shard was converted again"))
    convert_chatglm2(src, out)  # both shards exist: nothing reloaded
    assert stamp == {p.name: p.stat().st_mtime_ns for p in out.glob("*.safetensors")}
    monkeypatch.undo()

    other = write_checkpoint(tmp_path / "other", chatglm2_state(seed=1), "bin")
    with pytest.raises(ElmdError, match="another checkpoint"):
        convert_chatglm2(other, out)

    bad = dict(source_state, **{"transformer.encoder.layers.0.self_attention.extra.weight": torch.ones(2)})
    with pytest.raises(ElmdError, match="unexpected tensor"):
        convert_chatglm2(write_checkpoint(tmp_path / "bad", bad, "bin"), tmp_path / "out_bad")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ElmdError, match="config.json: not found"):
        convert_chatglm2(tmp_path / "empty", tmp_path / "out2")
    result = CliRunner().invoke(main, ["convert", "chatglm2", "--src", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "download THUDM/chatglm2-6b" in result.output


def test_chatglm2_preset_loads_the_converted_folder(tmp_path, tiny_tokenizer):
    from elmd.config import load_config
    from elmd.models.presets import load_llm, load_tokenizer

    sd = chatglm2_state(vocab=tiny_tokenizer.vocab_size + 11)
    out = convert_chatglm2(write_checkpoint(tmp_path / "src", sd, "safetensors"), tmp_path / "hf")
    cfg = load_config("chatglm2-6b", [f"llm.path={out}", f"llm.tokenizer={tiny_tokenizer.path}", "llm.dtype=float32",
                                      "vision.use_video=false"])
    tok = load_tokenizer(cfg)
    llm = load_llm(cfg, tok)
    ids = tok.encode_input("你好，好久不见！")
    with torch.no_grad():
        got = llm(torch.tensor([ids])).logits[0].double()
    assert (got - chatglm2_logits(sd, ids)).abs().max().item() < 1e-4
    small = convert_chatglm2(write_checkpoint(tmp_path / "src2", chatglm2_state(), "bin"), tmp_path / "hf2")
    with pytest.raises(ElmdError, match="use ChatGLM2-6B's own tokenizer.model"):
        load_llm(load_config("chatglm2-6b", [f"llm.path={small}", f"llm.tokenizer={tiny_tokenizer.path}",
                                             "vision.use_video=false"]), tok)


def test_chatglm2_6b_config_has_the_official_sizes():
    from transformers import GlmForCausalLM

    from elmd.models.glm import chatglm2_6b_config

    with torch.device("meta"):
        model = GlmForCausalLM(chatglm2_6b_config())
    # hand count: 2 x 65024*4096 (embedding, untied output) + 4096 (final norm) + 28 x per layer
    # (qkv 4608*4096 + 4608, dense 4096*4096, h_to_4h 27392*4096, 4h_to_h 4096*13696, 2 norms 4096)
    per_layer = 4608 * 4096 + 4608 + 4096 * 4096 + 27392 * 4096 + 4096 * 13696 + 2 * 4096
    assert sum(p.numel() for p in model.parameters()) == 2 * 65024 * 4096 + 4096 + 28 * per_layer == 6_243_584_000
    attn = model.model.layers[0].self_attn
    assert (attn.k_proj.weight.shape, attn.q_proj.bias is not None, attn.o_proj.bias) == ((256, 4096), True, None)
    assert model.model.layers[0].mlp.gate_up_proj.weight.shape == (2 * 13696, 4096)
    assert model.config.rms_norm_eps == 1e-5 and model.config.rope_parameters["rope_theta"] == 10000.0
