"""Loading a run and running `elmd serve` under uvicorn (the one library call of the CLI).

:func:`build` returns the started :class:`~elmd.serve.backend.Backend` and its app (tests and the
benchmark use it with a live uvicorn on a random loopback port); :func:`serve` blocks until Ctrl-C.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from elmd.serve.config import ServeConfig


def build(checkpoint: str | Path, cfg: ServeConfig, overrides: Sequence[str] = (), device: str = "auto", pipe=None):
    """``(backend, app)`` for the run ``checkpoint`` (or an already loaded ``pipe``), engine started."""
    from elmd.serve.app import create_app
    from elmd.serve.backend import Backend

    cfg.validate()
    if pipe is None:
        from elmd.inference import load

        pipe = load(checkpoint, device=device, overrides=list(overrides), heads=list(cfg.heads))
    backend = Backend(pipe, cfg)
    app = create_app(backend)
    return backend.start(), app


def serve(checkpoint: str | Path, cfg: ServeConfig, overrides: Sequence[str] = (), device: str = "auto",
          log=print) -> None:
    """Serve ``checkpoint`` at ``cfg.host:cfg.port`` until interrupted."""
    import uvicorn

    cfg.validate()  # refuse a bad bind before the model is loaded
    backend, app = build(checkpoint, cfg, overrides, device)
    log(f"elmd serve — {checkpoint} as '{backend.model_name}' on http://{cfg.host}:{cfg.port} "
        f"(API /v1, page {'/' if cfg.page else 'off'}, batch <= {cfg.max_batch}, queue <= {cfg.max_queue}"
        f"{', API key required' if cfg.api_key else ''})")
    try:
        uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False,
                    timeout_graceful_shutdown=5)
    finally:
        backend.close()
