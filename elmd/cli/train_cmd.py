"""`elmd train --stage rep|eerg|...`: the training stages of the registry (:mod:`elmd.stages`;
paper Sec. 3.4-3.5, Eq. 10-11).

The same command runs in one process, under ``torchrun --nproc_per_node N`` and under
``accelerate launch`` (DDP over the trainable part: NCCL on GPU, gloo on CPU).
"""

from __future__ import annotations

import click

from elmd.cli.common import config_options, friendly_errors, resolve
from elmd.stages import stage_names


@click.command("train")
@click.option("--stage", type=click.Choice(stage_names()), required=True,
              help="rep: video Linear on the response emotion (Eq. 10); eerg: prefix + Linear on emotion + response "
                   "(Eq. 11); a head's stage (see elmd/stages.py).")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Output folder of the stage [default: train.out/STAGE].")
@click.option("--resume", is_flag=True, help="Continue from the folder's latest checkpoint (same final weights as an "
              "uninterrupted run); refused when the result-deciding settings differ.")
@click.option("--overwrite", is_flag=True, help="Replace a result already in the folder (the new one is trained "
              "beside it and swapped in when complete).")
@click.option("--ablation", type=click.Choice(["none", "wo_erm", "wo_ert", "wo_ssc", "wo_v", "wo_rep"]), default="none",
              show_default=True, help="A row of the paper's Table 3 (see elmd/training/run.py).")
@config_options
@friendly_errors
def cli(stage, out, resume, overwrite, ablation, config, overrides):
    """Train one stage; writes trainable.safetensors, config.yaml, meta.json, metrics.jsonl, loss.png."""
    import os

    from elmd.training.run import train

    main = os.environ.get("RANK", "0") == "0"
    cfg = resolve(config, overrides, quiet=not main)
    meta = train(cfg, stage, out, resume, ablation, overwrite=overwrite)
    if main:
        final = meta.get("final", {})
        click.echo(f"{stage} ({meta['ablation']}): valid emotion accuracy {final.get('valid_accuracy', float('nan')):.4f}  "
                   f"valid loss {final.get('valid_loss', float('nan')):.4f}  label prior {meta['label_prior_accuracy']:.4f}  "
                   f"-> {meta['out']}")
