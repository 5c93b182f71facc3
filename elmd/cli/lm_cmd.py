"""`elmd lm pretrain`: pre-train the tiny preset's GLM on train-split dialogues (issue 12)."""

from __future__ import annotations

import click

from elmd.cli.common import config_options, friendly_errors, resolve


@click.group("lm")
def cli():
    """The tiny LLM (a CPU stand-in for ChatGLM2-6B)."""


@cli.command("pretrain")
@click.option("--data", "data", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="Canonical dialogue JSONL of a TRAIN split (repeatable; valid/test files are refused).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Output folder (HF config.json + model.safetensors + tokenizer.model + meta.json).")
@click.option("--overwrite", is_flag=True, help="Replace OUT when it holds an LM of other inputs or settings.")
@config_options
@friendly_errors
def pretrain(data, out, overwrite, config, overrides):
    """Pre-train a small GLM (lm_pretrain.*) as a causal LM on DATA; a rerun with the same inputs and
    settings reuses OUT, an interrupted one resumes. Then use it with
    --set llm.path=OUT --set llm.tokenizer=OUT/tokenizer.model."""
    from elmd.training.lm_pretrain import pretrain_lm

    cfg = resolve(config, overrides)
    res = pretrain_lm(list(data), out, cfg.lm_pretrain, overwrite=overwrite)
    m = res.meta
    how = "reused (same inputs and settings)" if res.reused else f"trained in {m['seconds']:.0f} s"
    click.echo(f"tiny LM {how}: {m['params'] / 1e6:.1f}M params, vocab {m['vocab_size']}, {m['tokens_seen']} tokens "
               f"({m['tokens_per_cpu_second']:.0f}/CPU-s), held-out loss {m['heldout_loss']} (ppl {m['heldout_ppl']}) "
               f"-> {out}  (use: --set llm.path={out} --set llm.tokenizer={out}/tokenizer.model)")
