"""`elmd avatar ...`: speak and show one reply (`render`), measure the avatar on a fixed set (`evaluate`)."""

from __future__ import annotations

import click

from elmd.cli.common import config_options, friendly_errors, resolve


@click.group(name="avatar")
def cli():
    """Avatar head (EmpathyEar-style): emotional Mandarin speech and a talking face of a reply."""


@cli.command("render")
@click.option("--text", required=True, help="Reply text to speak (Chinese).")
@click.option("--emotion", required=True, help="One of happy, surprise, sad, disgust, anger, fear, neutral.")
@click.option("--gender", type=click.Choice(["female", "male"]), default=None, help="Responder's gender [avatar.gender].")
@click.option("--age", type=click.Choice(["young", "middle-aged", "elderly"]), default=None, help="Age group [avatar.age].")
@click.option("--out", required=True, help="Output folder (speech.wav, avatar.mp4, reference.png, meta.json).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@config_options
@friendly_errors
def render_cmd(text, emotion, gender, age, out, overwrite, config, overrides):
    """Render TEXT with EMOTION into --out (written whole or not at all)."""
    from elmd.heads.avatar.meta import Profile
    from elmd.heads.avatar.render import render_avatar

    cfg = resolve(config, overrides)
    profile = Profile(gender or cfg.avatar.gender, age or cfg.avatar.age)
    r = render_avatar(text, emotion, out, cfg.avatar, profile, overwrite=overwrite)
    click.echo(f"{r.duration:.2f} s of speech, {r.frames} frames, {r.emotion}, {r.profile.gender}/{r.profile.age}  ->  "
               f"{r.video} ({r.audio.name}, meta.json)")


@cli.command("evaluate")
@click.option("--out", default="runs/sample/avatar_eval", show_default=True, help="Folder for renders/, report.json, report.md.")
@click.option("--rep-run", default=None, help="Stage-rep run folder for the closed-loop emotion check (e.g. runs/sample/rep).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@config_options
@friendly_errors
def evaluate_cmd(out, rep_run, overwrite, config, overrides):
    """Render the fixed reply set; print prosody, lip sync, identity and closed-loop emotion per emotion."""
    from elmd.heads.avatar.evaluate import evaluate_avatars, format_table

    cfg = resolve(config, overrides)
    result = evaluate_avatars(out, cfg.avatar, rep_run=rep_run, overwrite=overwrite)
    click.echo(format_table(result))
    if result.closed_loop:
        cl = result.closed_loop
        click.echo(f"closed-loop emotion accuracy {cl['accuracy']:.3f} over {cl['videos']} videos (chance {cl['chance']:.3f})")
    click.echo(f"-> {out}/report.md, report.json")
