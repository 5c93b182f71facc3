"""The meta-response (EmpathyEar's structured LLM output, issue 15 item 1): its format, its strict
parser and the target built from a data sample.

EmpathyEar's LLM writes emotion + cause, scenario, response and the agent's gender / age / timbre /
tone, parsed by regular expressions that skip every failure silently. Ours is a fixed block of
``key：value`` lines, one per field, in this order (stage ``eerg``'s target under
``train.target=meta``; the default target stays "emotion word, newline, reply")::

    情绪：高兴
    场景：学校
    行为：说明
    性别：女
    年龄：青年
    语气：轻快
    回复：太好了，终于可以好好休息了！

Keys are Chinese (the LLM's language); values are the label's word (情绪), a scene word (场景,
CPED's Scene in Chinese: :data:`elmd.data.cped.SCENES_ZH`), a dialogue act (行为, CPED's DA in
Chinese: :data:`ACTS_ZH`), 男/女 (性别), 青年/中年/老年 (年龄), and the voice style that
:data:`VOICE_STYLE` derives from the emotion (语气). An unknown scene or act is written 未知.

Parsing (:func:`parse_meta`): only ``回复`` is required; a missing optional field takes its default
(emotion neutral, the default profile, the emotion's voice style) and is counted; a malformed line,
an unknown key, a repeated or out-of-order key, or an unknown value makes the parse fail.
:class:`MetaStats` counts both, so a report says how many outputs did not parse instead of
dropping them.

Target from data (:func:`meta_of_sample`): the reply turn's own ``scene`` (else the utterance's),
``act`` and ``profile`` (:mod:`elmd.data.schema`); a field the data lacks takes the documented
default: scene / act 未知, gender / age of :data:`DEFAULT_PROFILE` (female, young: the avatar
head's rule 3, ``avatar.gender`` / ``avatar.age``), also for CPED's ``unknown``. The bundled sample
has no profiles, so all its targets say 女 / 青年. A newline inside the reply becomes a space (the
block is line-based).

In the prompt (:mod:`elmd.models.prompt`), the answer part opens with :data:`OPEN` (``情绪：``) and
the target starts at the emotion word, so the constrained emotion decision (scoring the label words
at the first answer position and forcing word + newline) works unchanged; the full block is
``OPEN + generated text``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from elmd.data.cped import SCENES_ZH
from elmd.errors import ElmdError

GENDERS = ("female", "male")
"""Genders a voice / face is made for (CPED's 'unknown' takes the default)."""
AGES = ("young", "middle-aged", "elderly")
"""Age groups a voice / face is made for."""
GENDER_WORDS = {"female": "女", "male": "男"}
AGE_WORDS = {"young": "青年", "middle-aged": "中年", "elderly": "老年"}
VOICE_STYLE = {"happy": "轻快", "surprise": "惊奇", "sad": "低沉", "disgust": "冷淡", "anger": "激烈",
               "fear": "紧张", "neutral": "平稳"}
"""Voice style (语气) of each emotion: what the speech backends render (see the avatar's speech.py)."""
ACTS_ZH = {
    "statement-non-opinion": "说明", "statement-opinion": "观点", "question": "提问", "answer": "回答",
    "command": "命令", "acknowledge": "确认", "other": "其他", "conventional-closing": "结束语", "irony": "反话",
    "disagreement": "反对", "interjection": "惊呼", "comfort": "安慰", "reject": "拒绝", "thanking": "感谢",
    "quotation": "引用", "apology": "道歉", "greeting": "问候", "agreement": "同意", "appreciation": "欣赏",
}
"""CPED's dialogue acts (DA column) in Chinese; another value is written as it is."""
KEYS = ("情绪", "场景", "行为", "性别", "年龄", "语气", "回复")
UNKNOWN = "未知"
"""Value of an unknown scene or act."""
OPEN = "情绪："
"""The block's opening, given in the prompt (the target starts at the emotion word)."""
_LINE = re.compile(r"^\s*([^：:\s]+)\s*[：:]\s*(.*?)\s*$")


@dataclass(frozen=True)
class Profile:
    """Who speaks the reply: drives the voice variant and the drawn identity."""

    gender: str = "female"
    """'female' or 'male'."""
    age: str = "young"
    """'young', 'middle-aged' or 'elderly'."""

    def __post_init__(self):
        if self.gender not in GENDERS:
            raise ElmdError(f"unknown gender '{self.gender}' — use one of {list(GENDERS)}")
        if self.age not in AGES:
            raise ElmdError(f"unknown age group '{self.age}' — use one of {list(AGES)}")

    def as_dict(self) -> dict:
        return {"gender": self.gender, "age": self.age}


DEFAULT_PROFILE = Profile()
"""The profile of a target whose data has none (female, young)."""


@dataclass
class MetaResponse:
    """One parsed meta-response."""

    emotion: str
    """Label id of the reply's emotion."""
    reply: str
    """The reply text."""
    scene: str = ""
    """Scene of the dialogue (CPED: home, office, ...), '' when not given / 未知."""
    act: str = ""
    """Dialogue act of the reply (CPED: statement, question, comfort, ...), '' when not given / 未知."""
    profile: Profile = field(default_factory=Profile)
    """Responder's gender and age group."""
    style: str = ""
    """Voice style; '' = :data:`VOICE_STYLE` of the emotion."""


@dataclass
class MetaStats:
    """How many meta-responses parsed, how many failed and which fields were defaulted."""

    parsed: int = 0
    failed: int = 0
    defaulted: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    """The first few failure messages (at most 20)."""

    def as_dict(self) -> dict:
        return {"parsed": self.parsed, "failed": self.failed, "defaulted": dict(self.defaulted), "errors": list(self.errors)}


class MetaParseError(ValueError):
    """A meta-response that does not follow the format (the message says which line and why)."""


def format_meta(meta: MetaResponse, label_words: dict[str, str]) -> str:
    """The block of ``meta`` (``label_words``: label id -> its word, e.g. happy -> 高兴)."""
    values = (label_words[meta.emotion], meta.scene or UNKNOWN, meta.act or UNKNOWN, GENDER_WORDS[meta.profile.gender],
              AGE_WORDS[meta.profile.age], meta.style or VOICE_STYLE.get(meta.emotion, ""),
              " ".join(meta.reply.split("\n")))
    return "\n".join(f"{k}：{v}" for k, v in zip(KEYS, values))


def meta_of_sample(sample, default: Profile = DEFAULT_PROFILE) -> MetaResponse:
    """The meta-response target of a data sample (the rule in the module docstring)."""
    r, u = sample.response, sample.utterance
    scene = r.scene or u.scene or ""
    prof = r.profile if isinstance(r.profile, dict) else {}
    gender = prof.get("gender") if prof.get("gender") in GENDERS else default.gender
    age = prof.get("age") if prof.get("age") in AGES else default.age
    return MetaResponse(sample.target_emotion, r.text, SCENES_ZH.get(scene, scene), ACTS_ZH.get(r.act or "", r.act or ""),
                        Profile(gender, age))


def meta_strings(label_words: dict[str, str] | None = None) -> list[str]:
    """Every fixed string of the format (keys, profile / style / scene / act words): text a tiny
    tokenizer trains on so that a model can write the block."""
    fixed = [f"{k}：" for k in KEYS] + [UNKNOWN] + list(GENDER_WORDS.values()) + list(AGE_WORDS.values())
    return fixed + list(VOICE_STYLE.values()) + list(SCENES_ZH.values()) + list(ACTS_ZH.values()) + \
        list((label_words or {}).values())


def parse_meta(text: str, label_words: dict[str, str], default: Profile = DEFAULT_PROFILE,
               stats: MetaStats | None = None) -> MetaResponse:
    """Parse a meta-response strictly; raises :class:`MetaParseError` (counted in ``stats``)."""
    try:
        meta, missing = _parse(text, label_words, default)
    except MetaParseError as e:
        if stats is not None:
            stats.failed += 1
            if len(stats.errors) < 20:
                stats.errors.append(str(e))
        raise
    if stats is not None:
        stats.parsed += 1
        for key in missing:
            stats.defaulted[key] = stats.defaulted.get(key, 0) + 1
    return meta


def _parse(text: str, label_words: dict[str, str], default: Profile) -> tuple[MetaResponse, list[str]]:
    found: dict[str, str] = {}
    for n, line in enumerate(text.strip().splitlines(), start=1):
        if not line.strip():
            continue
        m = _LINE.match(line)
        if not m:
            raise MetaParseError(f"line {n} is not 'key：value': {line[:40]!r}")
        key, value = m.groups()
        if key not in KEYS:
            raise MetaParseError(f"line {n}: unknown key {key!r} (keys: {'、'.join(KEYS)})")
        if key in found:
            raise MetaParseError(f"line {n}: key {key!r} given twice")
        if KEYS.index(key) < max((KEYS.index(k) for k in found), default=-1):
            raise MetaParseError(f"line {n}: key {key!r} out of order (order: {'、'.join(KEYS)})")
        found[key] = value
    if not found.get("回复"):
        raise MetaParseError("no reply (回复：...) line, or an empty one")
    words_to_label = {w: k for k, w in label_words.items()}
    missing = [k for k in KEYS[:-1] if not found.get(k)]
    emotion = "neutral" if not found.get("情绪") else _lookup(found["情绪"], words_to_label, "情绪")
    gender = default.gender if not found.get("性别") else _lookup(found["性别"], _invert(GENDER_WORDS), "性别")
    age = default.age if not found.get("年龄") else _lookup(found["年龄"], _invert(AGE_WORDS), "年龄")
    free = lambda k: "" if found.get(k, UNKNOWN) == UNKNOWN else found[k]  # noqa: E731
    meta = MetaResponse(emotion=emotion, reply=found["回复"], scene=free("场景"), act=free("行为"),
                        profile=Profile(gender, age), style=found.get("语气") or VOICE_STYLE.get(emotion, ""))
    return meta, missing


def meta_extras(text: str, label_words: dict[str, str], stats: MetaStats | None = None) -> dict:
    """``Reply.extras["meta"]`` of a generated block: ``{"ok": True, "emotion", "scene", "act",
    "profile": {"gender", "age"}, "style"}`` (the 回复 field is the reply's ``response``) or
    ``{"ok": False, "error": "..."}``."""
    try:
        m = parse_meta(text, label_words, stats=stats)
    except MetaParseError as e:
        return {"ok": False, "error": str(e)}
    return {"ok": True, "emotion": m.emotion, "scene": m.scene, "act": m.act, "profile": m.profile.as_dict(),
            "style": m.style, "reply": m.reply}


def _invert(d: dict[str, str]) -> dict[str, str]:
    return {v: k for k, v in d.items()}


def _lookup(value: str, table: dict[str, str], key: str) -> str:
    if value not in table:
        raise MetaParseError(f"{key}：{value!r} is not one of {'、'.join(table)}")
    return table[value]
