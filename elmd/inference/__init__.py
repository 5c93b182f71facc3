"""Answering turns with a trained ELMD run: the seam that `elmd generate`, `elmd chat`, the baselines,
the server and the downstream heads stand on (nothing here imports :mod:`elmd.training`).

    from elmd.inference import load
    reply = load("runs/sample/eerg").respond("你回来啦")
"""

from elmd.inference.pipeline import Pipeline, load, request_of
from elmd.inference.reply import Reply, Request

__all__ = ["Pipeline", "Reply", "Request", "load", "request_of"]
