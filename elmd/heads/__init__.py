"""Downstream heads of ELMD's reply: the sticker head (PEGS-style) and the avatar head (EmpathyEar-style).

Each head is a sub-package that builds on :mod:`elmd.inference` (a head reads a ``Reply`` and fills
``reply.extras[<head name>]``) and, where it trains, plugs into the stage registry and the training
loop's ``loss_fn`` hook. Nothing below ``elmd.models`` / ``elmd.training`` imports a head.
"""
