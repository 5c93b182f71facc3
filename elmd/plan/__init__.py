"""``elmd plan``: a full-size pre-flight of training on the meta device (ChatGLM2-6B + BLIP-2, paper Sec. 4.3).

    from elmd.plan import Hardware, make_plan, render
    plan = make_plan(load_config("chatglm2-6b"), Hardware(gpus=4, gpu_mem=40 * 2**30))
    print(render(plan)); plan.fits

Modules: :mod:`~elmd.plan.meta_model` (the model without weights), :mod:`~elmd.plan.lengths`
(prompt lengths of a split and the micro-batches they make), :mod:`~elmd.plan.step` (one
forward + backward with static shapes), :mod:`~elmd.plan.accounting` (live / saved bytes),
:mod:`~elmd.plan.estimate` (the typed plan and the knob to turn), :mod:`~elmd.plan.table`.
"""

from elmd.plan.estimate import Memory, Params, Plan, StagePlan, make_plan
from elmd.plan.hardware import Hardware, parse_size
from elmd.plan.table import render

__all__ = ["Hardware", "Memory", "Params", "Plan", "StagePlan", "make_plan", "parse_size", "render"]
