"""`elmd chat`: multi-turn emotional dialogue with a trained ELMD model in the terminal (paper Fig. 1).

Each line the user types is the current utterance u; the turns so far (user and model, alternating
speakers) are the history H; the background B is ``--background``; a video (``--video PATH`` for
the first turn, or a line ``/video PATH`` before any turn) gives that turn's video tokens; the
demonstration R is retrieved from the run's index (when the run used demonstrations). Every turn
is answered by the run's :class:`~elmd.inference.pipeline.Pipeline` (the code `elmd generate` and
`elmd serve` use). The model's emotion word, the demonstration and the response are shown, and the
response joins the history. Lines come from stdin (a terminal or a pipe); end of input (Ctrl-D)
ends the chat.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from elmd.data.schema import Turn
from elmd.inference.pipeline import Pipeline, request_seed
from elmd.inference.reply import Reply, Request


@dataclass
class ChatSession:
    """History across turns; :meth:`say` answers one turn with the pipeline."""

    pipeline: Pipeline
    background: str = ""
    user: str = "用户"
    bot: str = "助手"
    history: list[Turn] = field(default_factory=list)

    def request(self, text: str, video: str | None) -> Request:
        """The turn as a request: the history so far, the utterance, its video; seeded per turn."""
        n = len(self.history)
        return Request(text, tuple(self.history), video, self.background,
                       request_seed(self.pipeline.cfg.generate.seed, f"chat#{n}"), f"chat#{n}", "chat",
                       self.user, self.bot)

    last_prompt: str = ""
    """The decoded prompt of the last turn (``--show-prompt``)."""

    def say(self, text: str, video: str | None = None) -> Reply:
        pipe, request = self.pipeline, self.request(text, video)
        demos = pipe.demonstrations([request])
        self.last_prompt = pipe.tokenizer.decode(pipe.encode(request, demos[0])["input_ids"])
        reply = pipe.respond_batch([request], demos)[0]
        self.history += [Turn(self.user, text, None, video), Turn(self.bot, reply.response, reply.emotion)]
        return reply


def open_chat(checkpoint, overrides=(), background: str = "", user: str = "用户", bot: str = "助手",
              heads=(), media_dir=None) -> ChatSession:
    """Load the checkpoint (and the run's index when it used demonstrations) into a ChatSession."""
    from elmd.inference import load

    return ChatSession(load(checkpoint, overrides=overrides, heads=heads, media_dir=media_dir), background, user, bot)


HELP = """commands (anything else is your utterance):
  /video PATH   use this video for your next utterance (checked at once)
  /video        no video for the next utterance
  /history      show the conversation so far
  /reset        forget the conversation (start a new one)
  /help         this text
  Ctrl-D        end the chat"""


def run_chat(session: ChatSession, lines, echo, video: str | None = None, show_prompt: bool = False) -> int:
    """Read utterances and commands from ``lines`` until they end; ``echo(text)`` prints.

    A command or a turn that fails prints one ``error:`` line and the chat goes on (nothing of the
    conversation is lost). Returns the turns answered."""
    from elmd.errors import ElmdError

    turns = 0
    video = _checked_video(session, video, echo) if video else None
    for raw in lines:
        text = raw.strip()
        if not text:
            continue
        if text.startswith("/"):
            video = _command(session, text, video, echo)
            continue
        try:
            reply = session.say(text, video)
        except ElmdError as e:
            echo(f"error: {e} (the chat goes on)")
            continue
        video, turns = None, turns + 1
        if show_prompt:
            echo(f"[prompt] {session.last_prompt}")
        echo(f"[emotion] {reply.emotion_word or '?'}" + (f" ({reply.emotion})" if reply.emotion else " (not parsable)"))
        echo(f"[demonstration] {reply.demonstration or '-'}")
        for name, value in reply.extras.items():
            echo(f"[{name}] {_media_line(value)}")
        echo(f"{session.bot}：{reply.response}")
    return turns


def _command(session: ChatSession, text: str, video: str | None, echo) -> str | None:
    """Run a /command; returns the video for the next turn."""
    name, _, arg = text.partition(" ")
    if name == "/video":
        if arg.strip():
            return _checked_video(session, arg.strip(), echo)
        echo("[video] none (for the next turn)")
        return None
    if name == "/history":
        echo("\n".join(f"{t.speaker}：{t.text}" + (f"  [{t.emotion}]" if t.emotion else "") for t in session.history)
             or "(no turns yet)")
    elif name == "/reset":
        session.history.clear()
        echo("[reset] a new conversation")
        return None
    elif name == "/help":
        echo(HELP)
    else:
        echo(f"error: unknown command {name} — /help lists them")
    return video


def _checked_video(session: ChatSession, path: str, echo) -> str | None:
    """``path`` when the run can use it, else None after an ``error:`` line."""
    from elmd.errors import ElmdError

    try:
        session.pipeline.check_video(path)
    except ElmdError as e:
        echo(f"error: {e} (no video for the next turn)")
        return None
    echo(f"[video] {path} (for the next turn)")
    return path


def _media_line(value) -> str:
    """A head's extras as one line: its files first (video / audio / path), then the rest."""
    if not isinstance(value, dict):
        return str(value)
    files = [f"{k}={value[k]}" for k in ("video", "audio", "path", "image") if value.get(k)]
    rest = [f"{k}={v}" for k, v in value.items() if k not in ("video", "audio", "path", "image") and not isinstance(v, (list, dict))]
    return "  ".join(files + rest)
