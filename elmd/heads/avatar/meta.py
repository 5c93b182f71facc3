"""The meta-response (issue 15 item 1) as the avatar head uses it: re-exported from
:mod:`elmd.data.meta_response`, where the format lives so that the prompt (:mod:`elmd.models.prompt`,
target ``train.target=meta``) can build it without importing the heads (layering: models never
import heads). See that module for the block, the parser's rules and the data's defaults.
"""

from __future__ import annotations

from elmd.data.meta_response import (ACTS_ZH, AGE_WORDS, DEFAULT_PROFILE, GENDER_WORDS, KEYS, OPEN, UNKNOWN,  # noqa: F401
                                     VOICE_STYLE, MetaParseError, MetaResponse, MetaStats, Profile, format_meta,
                                     meta_extras, meta_of_sample, meta_strings, parse_meta)

__all__ = ["ACTS_ZH", "AGE_WORDS", "DEFAULT_PROFILE", "GENDER_WORDS", "KEYS", "OPEN", "UNKNOWN", "VOICE_STYLE",
           "MetaParseError", "MetaResponse", "MetaStats", "Profile", "format_meta", "meta_extras", "meta_of_sample",
           "meta_strings", "parse_meta"]
