"""Settings of `elmd serve` (issue 16): where it listens, who may call it, how requests are batched.

One dataclass, :class:`ServeConfig`, filled from the command line; :meth:`ServeConfig.validate`
stops a bad value with one line naming the field, the value and what is allowed, and refuses a
non-loopback address without an API key (anchor: vLLM's OpenAI server arguments).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from elmd.configio import bad_value, check_range
from elmd.errors import ConfigError


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    """Address to bind. Anything but a loopback address (127.0.0.0/8, ::1, localhost) needs ``api_key``."""
    port: int = 8000
    """TCP port (0 = any free port, for tests)."""
    api_key: str = ""
    """Bearer token required on every API route ('' = none; only allowed on loopback)."""
    heads: tuple[str, ...] = ()
    """Downstream heads to run on every reply: sticker, avatar."""
    model_name: str = ""
    """Model id shown by ``/v1/models`` and in responses ('' = the run folder's name)."""
    max_batch: int = 8
    """Most requests answered by one ``Pipeline.respond_batch`` call."""
    max_wait_ms: float = 20.0
    """How long the worker waits for more requests after the first one of a batch arrives."""
    max_queue: int = 64
    """Most requests waiting for the worker; one more is answered 503 with ``Retry-After``."""
    request_timeout_s: float = 120.0
    """Seconds a request may wait and run before it is answered 504 (its result is dropped)."""
    retry_after_s: int = 1
    """Value of the ``Retry-After`` header of a 503."""
    max_history_turns: int = 32
    """Most earlier turns kept from a request's messages (the newest; the prompt encoder then drops
    the oldest of those that do not fit ``prompt.max_source_length``)."""
    max_message_chars: int = 2000
    """Longest text of one message (characters); longer is a 400."""
    max_messages: int = 512
    """Most messages in one request; more is a 400 (bounds the work before trimming)."""
    max_tokens_limit: int = 512
    """Largest ``max_tokens`` a request may ask for."""
    max_upload_mb: float = 50.0
    """Largest video upload (MiB); larger is a 413."""
    max_videos: int = 256
    """Most uploaded videos kept at once (the oldest expire first)."""
    video_ttl_s: float = 3600.0
    """Seconds an uploaded video (and its cached features) stays usable."""
    media_ttl_s: float = 3600.0
    """Seconds a generated sticker / avatar file stays downloadable under ``/media/``."""
    work_dir: str = ""
    """Folder for uploads and generated media ('' = a new temporary folder, removed at exit)."""
    page: bool = True
    """Mount the web chat page at ``/`` (needs gradio: ``pip install -e .[serve]``)."""

    def validate(self, prefix: str = "serve") -> None:
        """Check every field; raises :class:`~elmd.errors.ConfigError` with one line."""
        check_range(prefix, self, "port", 0, 65535)
        for key in ("max_batch", "max_queue", "max_history_turns", "max_message_chars", "max_messages",
                    "max_tokens_limit", "max_videos"):
            check_range(prefix, self, key, 1)
        check_range(prefix, self, "retry_after_s", 0)
        for key in ("max_wait_ms",):
            check_range(prefix, self, key, 0, 10_000)
        for key in ("request_timeout_s", "max_upload_mb", "video_ttl_s", "media_ttl_s"):
            check_range(prefix, self, key, 0, lo_open=True)
        from elmd.inference.heads import HEADS

        unknown = [h for h in self.heads if h not in HEADS]
        if unknown:
            bad_value(prefix, "heads", ",".join(unknown), f"a comma list of {', '.join(sorted(HEADS))}")
        if not is_loopback(self.host) and not self.api_key:
            raise ConfigError(f"--host {self.host} is reachable from other machines — pass --api-key KEY "
                              "(or bind 127.0.0.1)")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IPs (127.0.0.0/8, ::1); False for 0.0.0.0, :: and other addresses."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: could resolve anywhere
