"""`elmd chat`: multi-turn emotional dialogue with a trained ELMD model in the terminal (paper Fig. 1).

Each line the user types is the current utterance u; the turns so far (user and model, alternating
speakers) are the history H; the background B is ``--background``; a video (``--video PATH`` for
the first turn, or a line ``/video PATH`` before any turn) gives that turn's video tokens; the
demonstration R is retrieved from the run's index (when the run used demonstrations). The model's
emotion word, the demonstration and the response are shown, and the response joins the history.
Lines come from stdin (a terminal or a pipe); end of input (Ctrl-D) ends the chat.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from elmd.data.schema import Sample, Turn


@dataclass
class Reply:
    """One turn's result: parsed emotion id (or None), demonstration, response and the prompt text."""

    emotion: str | None
    emotion_word: str
    demonstration: str
    response: str
    prompt: str


@dataclass
class ChatSession:
    """History across turns; :meth:`say` runs one turn through a :class:`~elmd.evaluation.generate.Generator`."""

    generator: object
    index: object = None
    background: str = ""
    user: str = "用户"
    bot: str = "助手"
    history: list[Turn] = field(default_factory=list)

    def demonstration(self, text: str) -> str:
        if self.index is None or not self.generator.cfg.prompt.use_demonstration:
            return ""
        from retrieval.demonstration import format_demonstration

        hits = self.index.search([text], 1)[0]
        return format_demonstration(hits[0] if hits else None, self.generator.labels)

    def sample(self, text: str, video: str | None) -> Sample:
        """The turn as a sample: the history so far, the utterance, and an unlabelled reply slot."""
        n = len(self.history)
        return Sample(sample_id=f"chat#{n}", dialogue_id="chat", series="", background=self.background,
                      history=list(self.history), utterance=Turn(self.user, text, None, video),
                      response=Turn(self.bot, "", None))

    def say(self, text: str, video: str | None = None) -> Reply:
        gen = self.generator
        sample, demo = self.sample(text, video), self.demonstration(text)
        encoded = gen.encode(sample, demo)
        (out,) = gen.generate([encoded], [video], [sample.sample_id])
        self.history += [Turn(self.user, text, None, video), Turn(self.bot, out.response, out.emotion)]
        word = gen.labels.word(out.emotion) if out.emotion else "?"
        return Reply(out.emotion, word, demo, out.response, gen.tokenizer.decode(encoded["input_ids"]))


def open_chat(checkpoint, cfg, background: str = "", user: str = "用户", bot: str = "助手") -> ChatSession:
    """Load the checkpoint (and the run's index when it used demonstrations) into a ChatSession."""
    from elmd.evaluation.generate import Generator, resolve_device
    from elmd.training.session import load_trained

    model, tokenizer, _ = load_trained(checkpoint, resolve_device(cfg.generate.device))
    index = None
    if cfg.prompt.use_demonstration:
        from elmd.training.data import open_index

        index = open_index(cfg)
    return ChatSession(Generator(model, tokenizer, cfg), index, background, user, bot)


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
            echo(f"[prompt] {reply.prompt}")
        echo(f"[emotion] {reply.emotion_word}" + (f" ({reply.emotion})" if reply.emotion else " (not parsable)"))
        echo(f"[demonstration] {reply.demonstration or '-'}")
        echo(f"{session.bot}：{reply.response}")
    return turns
