"""`elmd plan`: memory, tokens and time per training step of a full-size config, on the meta device."""

from __future__ import annotations

import sys

import click

from elmd.cli.common import config_options, friendly_errors, resolve

NO_FIT_EXIT = 3


@click.command("plan")
@click.option("--gpus", default=4, show_default=True, type=int, help="Data-parallel GPUs.")
@click.option("--gpu-mem", "gpu_mem", default="40GiB", show_default=True, help="Memory of one GPU (e.g. 40GiB, 80GiB).")
@click.option("--data", "data", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Split whose real prompt lengths are used (default: the config's length limits).")
@click.option("--stage", "stage", default="both", show_default=True, type=click.Choice(["rep", "eerg", "both"]))
@click.option("--gpu-tflops", "tflops", default=312.0, show_default=True, type=float,
              help="Dense bf16 peak of one GPU in TFLOP/s (A100: 312).")
@click.option("--mfu", default=0.40, show_default=True, type=float, help="Assumed model-FLOPs utilisation.")
@config_options
@friendly_errors
def cli(gpus, gpu_mem, data, stage, tflops, mfu, config, overrides):
    """Check a training config before renting GPUs: builds the full model on the meta device (no
    weights, no memory), runs one step's shapes per stage and prints memory per GPU, tokens and
    time. Exits 3 when it does not fit, naming the setting to change."""
    from elmd.plan import Hardware, make_plan, parse_size, render

    cfg = resolve(config, overrides)
    hw = Hardware(gpus=gpus, gpu_mem=parse_size(gpu_mem), peak_tflops=tflops, mfu=mfu)
    plan = make_plan(cfg, hw, ("rep", "eerg") if stage == "both" else (stage,), data, config)
    click.echo(render(plan))
    if not plan.fits:
        sys.exit(NO_FIT_EXIT)
