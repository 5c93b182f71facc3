"""`elmd serve`: an OpenAI-compatible HTTP API and a web chat page over one trained run (issue 16).

    from elmd.serve import ServeConfig, serve
    serve("runs/sample/eerg", ServeConfig(port=8000))          # blocks; Ctrl-C stops it

Layers: :mod:`.protocol` (pydantic models of the wire format), :mod:`.engine` (bounded queue +
batching worker thread, no HTTP), :mod:`.videos` / :mod:`.media` (uploads in, generated files out),
:mod:`.backend` (what the routes and the page share), :mod:`.app` (FastAPI routes), :mod:`.page`
(gradio page), :mod:`.server` (loading + uvicorn).
"""

from elmd.serve.config import ServeConfig, is_loopback
from elmd.serve.server import build, serve

__all__ = ["ServeConfig", "build", "is_loopback", "serve"]
