"""Tiny LM pre-training (issue 12 item 1): speed, held-out perplexity and greedy replies.

Pre-trains (or reuses, when OUT holds the same inputs and settings) the tiny GLM of
``elmd lm pretrain`` on the given train files, then prints a Markdown table (tokens seen, tokens
per CPU-second, wall minutes, held-out loss / perplexity of the dialogue text and of the replies
in prompt rows) and the LM's greedy reply to stage eerg's prompt for a few samples of a *valid*
split (the emotion word given, as ``generate.emotion=constrained`` gives it), beside the reply
of the random tiny LM of the same size for contrast.

    python bench/lm_pretrain.py --data runs/sample/data/train.jsonl --out runs/sample/lm \\
        --valid runs/sample/data/valid.jsonl [--set lm_pretrain.max_tokens=600000] [--examples 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_BENCH = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if p != _BENCH]


def greedy_replies(model, tok, samples, max_new_tokens: int = 32) -> list[str]:
    """Greedy continuation of ``prompt + emotion word + \\n`` for each sample (no video, no demonstration)."""
    import torch

    from elmd.data.labels import LabelSet
    from elmd.models.config import PromptConfig
    from elmd.models.prompt import encode_prompt

    labels, out = LabelSet(), []
    for s in samples:
        ids = encode_prompt(s, "", tok, labels, "eerg", 0, PromptConfig(), has_video=False)["input_ids"]
        ids = ids + tok.encode(labels.word(s.target_emotion) + "\n")
        with torch.no_grad():
            gen = model.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
        out.append(tok.decode(gen[0, len(ids):]))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", action="append", required=True, help="train JSONL (repeatable)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--valid", default="", help="a valid split to draw the example prompts from")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--examples", type=int, default=3)
    args = ap.parse_args(argv)

    from elmd.config import load_config
    from elmd.data.jsonl import read_samples
    from elmd.models.glm import load_glm, random_glm
    from elmd.models.tokenizer import ChatGLMTokenizer
    from elmd.training.lm_pretrain import glm_config_for, pretrain_lm

    cfg = load_config("tiny", args.overrides)
    res = pretrain_lm(args.data, args.out, cfg.lm_pretrain)
    m = res.meta
    print(f"| inputs | params | vocab | tokens seen | tokens / CPU-s | minutes (wall) | held-out loss (ppl) | held-out reply loss (ppl) |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {' + '.join(Path(p).parent.parent.name + '/' + Path(p).name for p in args.data)} | {m['params'] / 1e6:.1f}M "
          f"| {m['vocab_size']} | {m['tokens_seen']} | {m['tokens_per_cpu_second']:.0f} | {m['seconds'] / 60:.1f} "
          f"| {m['heldout_loss']} ({m['heldout_ppl']}) | {m['heldout_reply_loss']} ({m['heldout_reply_ppl']}) |")
    print("\nloss curve (step, tokens, train, held-out, held-out reply):")
    for h in m["history"]:
        print(f"  {h['step']:5d} {h['tokens']:8d} {h['train_loss']:.3f} {h['heldout_loss']} {h.get('heldout_reply_loss')}")
    if not args.valid:
        return
    tok = ChatGLMTokenizer(Path(args.out) / "tokenizer.model")
    trained = load_glm(args.out)
    rand = random_glm(glm_config_for(cfg.lm_pretrain, tok), seed=cfg.lm_pretrain.seed)
    samples = read_samples(args.valid)[: args.examples]
    for s, a, b in zip(samples, greedy_replies(trained, tok, samples), greedy_replies(rand, tok, samples)):
        print(f"\n当前话语：{s.utterance.speaker}：{s.utterance.text}\n  gold ({s.target_emotion}): {s.response.text}"
              f"\n  pre-trained: {a!r}\n  random:      {b!r}")


if __name__ == "__main__":
    main()
