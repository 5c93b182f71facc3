"""The p-tuning v2 prefix of stage eerg (Eq. 11): shapes (tiny and ChatGLM2-6B on meta), effect on the
outputs, what trains, generation with prefix + video tokens equal to the training-time forward (left-padded
batch, greedy and sampling), the optional projection, and the trainable-state round trip."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from elmd.config import load_config
from elmd.data.jsonl import read_samples
from elmd.data.labels import label_set_from_config
from elmd.errors import ElmdError
from elmd.models.elmd_model import ELMDModel
from elmd.models.glm import chatglm2_6b_config, random_glm, tiny_config
from elmd.models.pooling import VideoProjector, num_video_tokens
from elmd.models.config import PrefixConfig
from elmd.models.prefix import PrefixEncoder, extend_attention_mask
from elmd.models.prompt import collate, encode_prompt, encode_sample

Q_DIM = 64
P = 6


@pytest.fixture(scope="module")
def env(tiny_tokenizer, llm_dialogues_jsonl):
    cfg = load_config("tiny")
    labels = label_set_from_config(cfg.data.labels, cfg.data.label_names)
    n_video = num_video_tokens(cfg.vision.num_frames, cfg.vision.num_query_tokens)
    return cfg, tiny_tokenizer, labels, n_video, read_samples(llm_dialogues_jsonl)


def build(env, prefix=True, seed=0, **kw) -> ELMDModel:
    """A fresh model (own LLM copy: this module's optimizer steps never touch the session fixtures)."""
    _, tok, _, _, _ = env
    torch.manual_seed(seed)
    model = ELMDModel(random_glm(tiny_config(tok.vocab_size, tok.pad_id, tok.eos_id)), VideoProjector(Q_DIM, 64))
    if prefix:
        model.attach_prefix(PrefixConfig(P, **{"dropout": 0.0, **kw}), seed=seed)
    return model.eval()


def batch(env, ids, target=True, seed=0):
    cfg, tok, labels, n_video, samples = env
    enc = encode_sample if target else encode_prompt
    out = collate([enc(samples[i], "", tok, labels, "eerg", n_video, cfg.prompt) for i in ids], tok.pad_id)
    g = torch.Generator().manual_seed(seed)
    out["video_feats"] = torch.randn(len(ids), cfg.vision.num_frames, cfg.vision.num_query_tokens, Q_DIM, generator=g)
    return out


def test_prefix_encoder_shapes_tiny_and_chatglm2_on_meta():
    tiny = tiny_config(100)
    enc = PrefixEncoder.for_llm(tiny, PrefixConfig(P, dropout=0.0))
    kv = enc(3)
    assert kv.shape == (2, 2, 3, 2, P, 16)  # layers, (key, value), B, kv groups, P, head dim
    # layout: embedding row p = [layer][key/value][group][head dim]
    row = enc.embedding.weight[4].view(2, 2, 2, 16)
    assert torch.equal(kv[1, 0, 2, :, 4], row[1, 0]) and torch.equal(kv[0, 1, 0, :, 4], row[0, 1])
    cache = enc.cache(3, tiny)
    assert len(cache.layers) == 2 and cache.get_seq_length() == P
    assert torch.equal(cache.layers[1].values, kv[1, 1])

    big = chatglm2_6b_config()
    with torch.device("meta"):
        enc = PrefixEncoder.for_llm(big, PrefixConfig(128, projection=True))
        pairs = enc.key_values(16, torch.bfloat16)
    assert enc.embedding.weight.shape == (128, 28 * 2 * 2 * 128)  # 14336 numbers per prefix position
    assert enc.trans[0].weight.shape == (4096, 14336)  # ChatGLM2's projection width = hidden size
    assert all(p.is_meta for p in enc.parameters())
    assert len(pairs) == 28
    assert all(k.shape == v.shape == (16, 2, 128, 128) and k.dtype == torch.bfloat16 for k, v in pairs)


def test_prefix_changes_the_outputs_and_only_prefix_and_projector_train(env):
    model = build(env)
    plain = ELMDModel(model.llm, model.projector)  # same LLM and projector, no prefix
    b = batch(env, [0, 4, 5])
    with torch.no_grad():
        diff = (model(**b).logits - plain(**b).logits).abs().amax(dim=(1, 2))
    assert (diff > 1e-3).all()  # every row, the no-video one included

    llm_before = {k: v.clone() for k, v in model.llm.state_dict().items()}
    train_before = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    assert set(train_before) == {"projector.proj.weight", "projector.proj.bias", "prefix.embedding.weight"}
    opt = torch.optim.AdamW(model.parameters(), lr=2e-2)  # everything offered: frozen tensors must not move
    model.train()
    loss = model(**b).loss
    loss.backward()
    opt.step()
    model.eval()
    assert all(p.grad is None and not p.requires_grad for p in model.llm.parameters())
    assert all(torch.equal(v, llm_before[k]) for k, v in model.llm.state_dict().items())
    after = model.trainable_state_dict()
    assert all(not torch.equal(after[k], train_before[k]) for k in after)
    with torch.no_grad():
        assert model(**b).loss < loss  # the step on the eerg loss helped


def test_prefix_keeps_left_padding_invariance(env):
    model = build(env)
    alone, both = batch(env, [5]), batch(env, [0, 5])
    both["video_feats"][1] = alone["video_feats"][0]
    with torch.no_grad():
        a, b = model(**alone).logits[0], model(**both).logits[1]
    n = a.shape[0]
    assert both["attention_mask"][1].eq(0).sum() > 0  # sample 5 is left-padded in the pair
    assert torch.allclose(a, b[-n:], atol=1e-5)

    # reference: the LLM with the prefix as cache, P + n ones, positions 0..n-1 (ChatGLM2: prefix not counted)
    embeds = model.embed(alone["input_ids"], alone["video_mask"], alone["video_feats"])

    def ref(start):
        with torch.no_grad():
            return model.llm(inputs_embeds=embeds, attention_mask=torch.ones(1, P + n, dtype=torch.long),
                             position_ids=torch.arange(start, start + n)[None],
                             cache=model.prefix.cache(1, model.llm.config)).logits[0]

    assert torch.allclose(a, ref(0), atol=1e-5)
    assert (a - ref(P)).abs().max() > 1e-3  # counting the prefix would give other logits


def _prompts(env):
    b = batch(env, [0, 5], target=False, seed=3)
    pad = b["attention_mask"].eq(0).sum(1)
    assert b["video_present"].all() and (pad > 0).sum() == 1  # both with video, one row left-padded
    return b


def test_generate_first_step_logits_equal_the_training_forward(env):
    model = build(env, dropout=0.1)  # eval mode: no dropout
    b = _prompts(env)
    with torch.no_grad():
        want = model(**b).logits[:, -1]
    out = model.generate(**b, max_new_tokens=1, do_sample=False, output_logits=True, return_dict_in_generate=True)
    err = (out.logits[0] - want).abs().max().item()
    print(f"max abs diff of first-step logits (generate vs forward): {err:.3g}")
    assert err < 1e-5
    assert out.sequences[:, 0].tolist() == want.argmax(-1).tolist()


def test_generate_without_dummies_drops_the_first_prompt_embeddings(env):
    """The naive call (prefix cache + mask, no dummy embeddings/positions) never sees the first P embeddings."""
    model = build(env)
    b = {k: v[:1] for k, v in _prompts(env).items()}  # row 0: no padding
    embeds = model.embed(b["input_ids"], b["video_mask"], b["video_feats"])
    changed = embeds.clone()
    changed[:, :P] += 1.0

    def naive(e):
        cache = model.prefix.cache(1, model.llm.config)
        mask = extend_attention_mask(b["attention_mask"], P)
        return model.llm.generate(inputs_embeds=e, attention_mask=mask, cache=cache, max_new_tokens=1,
                                  do_sample=False, output_logits=True, return_dict_in_generate=True).logits[0]

    with torch.no_grad():
        assert torch.equal(naive(embeds), naive(changed))  # the first P embeddings are dropped
        want = model(**b).logits[:, -1]
        assert (naive(embeds) - want).abs().max() > 1e-3
        ids = b["input_ids"].clone()
        ids[:, 0] = ids[:, 0] + 1  # ELMDModel.generate sees the first token
        logits = model.generate(**{**b, "input_ids": ids}, max_new_tokens=1, output_logits=True,
                                return_dict_in_generate=True).logits[0]
        assert (logits - want).abs().max() > 1e-4


def test_greedy_generation_equals_a_manual_loop_over_forward(env):
    model = build(env)
    b = _prompts(env)
    n = 4
    out = model.generate(**b, max_new_tokens=n, do_sample=False, output_logits=True, return_dict_in_generate=True)
    assert out.sequences.shape == (2, n) and not (out.sequences == model.llm.config.eos_token_id).any()
    ids, mask, vmask = b["input_ids"], b["attention_mask"], b["video_mask"]
    with torch.no_grad():
        for step in range(n):  # the full forward again at every step
            logits = model(ids, mask, video_feats=b["video_feats"], video_mask=vmask).logits[:, -1]
            assert torch.allclose(out.logits[step], logits, atol=1e-5)
            nxt = logits.argmax(-1, keepdim=True)
            assert nxt.squeeze(1).tolist() == out.sequences[:, step].tolist()
            ids, mask = torch.cat([ids, nxt], 1), torch.cat([mask, torch.ones_like(nxt)], 1)
            vmask = torch.cat([vmask, torch.zeros_like(nxt, dtype=torch.bool)], 1)


def test_sampling_with_top_p_and_temperature(env):
    model = build(env)
    b = _prompts(env)
    torch.manual_seed(0)
    out = model.generate(**b, max_new_tokens=3, do_sample=True, top_p=0.7, temperature=0.95, top_k=0,
                         num_return_sequences=2, output_scores=True, output_logits=True, return_dict_in_generate=True)
    assert out.sequences.shape == (4, 3)  # the prefix cache is sized for the returned sequences
    with torch.no_grad():
        want = model(**b).logits[:, -1].repeat_interleave(2, dim=0)
    assert torch.allclose(out.logits[0], want, atol=1e-5)
    # the processed scores keep exactly the top-p nucleus of softmax(logits / T) (top_k=0: no top-k cut)
    probs = (want / 0.95).softmax(-1)
    sorted_p, order = probs.sort(-1, descending=True)
    keep_sorted = (sorted_p.cumsum(-1) - sorted_p) < 0.7
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    assert torch.equal(torch.isfinite(out.scores[0]), keep)
    assert keep.gather(-1, out.sequences[:, :1]).all()


def test_prefix_projection_trains_its_mlp(env):
    model = build(env, projection=True, hidden_size=24)
    names = set(model.trainable_state_dict())
    assert names == {"projector.proj.weight", "projector.proj.bias", "prefix.embedding.weight",
                     "prefix.trans.0.weight", "prefix.trans.0.bias", "prefix.trans.2.weight", "prefix.trans.2.bias"}
    enc = model.prefix
    assert enc.trans[0].weight.shape == (24, 2 * 2 * 2 * 16)
    kv = enc(1)  # = Linear2(tanh(Linear1(embedding))), laid out per layer
    mlp = enc.trans[2](torch.tanh(enc.trans[0](enc.embedding.weight)))
    assert torch.allclose(kv[1, 0, 0, :, 3], mlp[3].view(2, 2, 2, 16)[1, 0])
    model(**batch(env, [0, 5])).loss.backward()
    grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    assert set(grads) == names and all(g.abs().sum() > 0 for g in grads.values())


def test_trainable_state_round_trip_into_a_fresh_model(env, tmp_path):
    model = build(env, projection=True, hidden_size=16, seed=1)
    b = batch(env, [0, 5])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    model(**b).loss.backward()
    opt.step()
    save_file({k: v.contiguous() for k, v in model.trainable_state_dict().items()}, str(tmp_path / "t.safetensors"))

    fresh = build(env, projection=True, hidden_size=16, seed=7)  # other init of projector and prefix
    with torch.no_grad():
        assert not torch.equal(fresh(**b).logits, model(**b).logits)
        assert fresh.load_trainable_state_dict(load_file(str(tmp_path / "t.safetensors"))) == []
        assert torch.equal(fresh(**b).logits, model(**b).logits)

    state = load_file(str(tmp_path / "t.safetensors"))
    with pytest.raises(ElmdError, match="attach the prefix first"):
        build(env, prefix=False).load_trainable_state_dict(state)
    rep = {k: v for k, v in state.items() if k.startswith("projector.")}  # rep's Linear initialises eerg
    with pytest.raises(ElmdError, match="lacks"):
        build(env).load_trainable_state_dict(rep)
    eerg = build(env)
    assert eerg.load_trainable_state_dict(rep, strict=False) == ["prefix.embedding.weight"]
    assert torch.equal(eerg.projector.proj.weight, state["projector.proj.weight"])
    with pytest.raises(ElmdError, match="shape"):
        build(env).load_trainable_state_dict(rep | {"prefix.embedding.weight": torch.zeros(P + 1, 128)})


def test_prefix_from_the_config_and_its_legacy_train_keys(env):
    cfg = load_config("tiny", ["prefix.projection=true", "prefix.hidden_size=8", "prefix.dropout=0.5"])
    legacy = load_config("tiny", ["train.prefix_projection=true", "train.prefix_hidden_size=8",
                                  "train.prefix_dropout=0.5"])  # keys of run folders saved before PrefixConfig
    assert cfg.prefix == legacy.prefix
    model = build(env, prefix=False)
    enc = model.attach_prefix(cfg.prefix, seed=cfg.train.seed)
    assert (enc.pre_seq_len, enc.trans[0].out_features, enc.dropout.p) == (cfg.prefix.pre_seq_len, 8, 0.5)
    enc.train()
    assert not torch.equal(enc(1), enc(1))  # dropout while training
    enc.eval()
    assert torch.equal(enc(1), enc(1))
