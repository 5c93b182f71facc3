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


def run_chat(session: ChatSession, lines, echo, video: str | None = None, show_prompt: bool = False) -> int:
    """Read utterances from ``lines`` until they end; ``echo(text)`` prints. Returns the turns taken."""
    turns = 0
    for raw in lines:
        text = raw.strip()
        if not text:
            continue
        if text.startswith("/video"):
            video = text[len("/video"):].strip() or None
            echo(f"[video] {video or 'none'} (for the next turn)")
            continue
        reply = session.say(text, video)
        video, turns = None, turns + 1
        if show_prompt:
            echo(f"[prompt] {session.last_prompt}")
        echo(f"[emotion] {reply.emotion_word or '?'}" + (f" ({reply.emotion})" if reply.emotion else " (not parsable)"))
        echo(f"[demonstration] {reply.demonstration or '-'}")
        for name, value in reply.extras.items():
            echo(f"[{name}] {value}")
        echo(f"{session.bot}：{reply.response}")
    return turns
