"""The stage registry (elmd/stages.py) and the training loop's loss hook: a new stage changes the
prompt through its target without an if-branch, unknown stages are one-line errors, and a loss_fn
adds terms that are summed, back-propagated and logged."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from elmd.errors import ConfigError
from elmd.stages import StageSpec, get_stage, register_stage, stage_names, trainer_of


def test_builtin_stages_say_what_they_train_and_target():
    rep, eerg = get_stage("rep"), get_stage("eerg")
    assert (rep.target, rep.trainable, rep.uses_prefix, rep.starts_from) == ("emotion", ("projector",), False, None)
    assert (eerg.target, eerg.uses_prefix, eerg.starts_from, eerg.lr_key) == ("emotion_response", True, "rep", "eerg_lr")
    assert trainer_of(rep).__name__ == "train_rep" and {"rep", "eerg", "sticker"} <= set(stage_names())


def test_a_registered_stage_drives_the_prompt_by_its_target(train_cfg):
    from elmd.data.jsonl import read_samples
    from elmd.models.presets import load_tokenizer
    from elmd.models.prompt import encode_prompt, instruction, target_ids
    from elmd.resources import labels_of

    register_stage(StageSpec("probe", "emotion_response", ("projector",), "elmd.training.rep:train_rep"))
    cfg = train_cfg()
    tok, labels = load_tokenizer(cfg), labels_of(cfg)
    sample = read_samples(cfg.data.train, labels)[0]
    assert instruction("probe", labels) == instruction("eerg", labels) != instruction("rep", labels)
    assert target_ids(sample, tok, labels, "probe", cfg.prompt) == target_ids(sample, tok, labels, "eerg", cfg.prompt)
    assert encode_prompt(sample, "", tok, labels, "probe", 0, cfg.prompt) == encode_prompt(sample, "", tok, labels, "eerg",
                                                                                             0, cfg.prompt)
    with pytest.raises(ValueError, match="already registered"):
        register_stage(StageSpec("probe", "emotion", ("projector",), "x:y"))
    with pytest.raises(ConfigError, match="unknown stage 'nope'"):
        instruction("nope", labels)


def test_train_cli_lists_the_registry_and_refuses_unknown_stages():
    from elmd.cli.main import main

    res = CliRunner().invoke(main, ["train", "--help"])
    assert "rep" in res.output and "eerg" in res.output
    res = CliRunner().invoke(main, ["train", "--stage", "nope"])
    assert res.exit_code == 2 and "nope" in res.output and "Traceback" not in res.output


from fixtures_train import Toy as _Toy  # noqa: E402  (one toy model for the loop tests)


def test_a_loss_hook_adds_a_term_that_trains_and_is_reported():
    from elmd.training.dist import DistInfo
    from elmd.training.loop import LoopSpec, make_optimizer, make_scheduler, target_token_loss, train_step

    x = torch.tensor([[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]])
    labels = torch.tensor([[-100, 2]])

    def with_l2(output, batch):
        base = target_token_loss(output, batch)
        l2 = 0.5 * (output.logits ** 2).sum() / batch["global_samples"]
        return {"loss": base["loss"] + l2, "lm": base["loss"], "l2": l2}

    results = {}
    for name, fn in (("plain", target_token_loss), ("hooked", with_l2)):
        model = _Toy()
        spec = LoopSpec(model, [model.w], 1, lambda idx: {"x": x, "labels": labels}, lambda idx: 1, lambda e: {}, 0.1, 1,
                        loss_fn=fn, model_inputs=("x",))
        opt = make_optimizer([model.w], 0.1, 0.0)
        loss, ok, parts = train_step(spec, [0], opt, make_scheduler(opt, 10, 0, "constant"),
                                     SimpleNamespace(grad_accum=1, max_grad_norm=0.0), DistInfo())
        results[name] = (loss, parts, model.w.detach().clone())
    (plain, _, w_plain), (hooked, parts, w_hooked) = results["plain"], results["hooked"]
    assert parts["lm"] == pytest.approx(plain) and parts["l2"] == pytest.approx(0.5 * 14.0)  # 1 + 4 + 9
    assert hooked == pytest.approx(plain + 7.0) and not torch.allclose(w_plain, w_hooked)  # the term has a gradient
