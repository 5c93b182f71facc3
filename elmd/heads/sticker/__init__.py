"""The sticker head (PEGS: Zhang et al., "STICKERCONV: Generating Multimodal Empathetic Responses from
Scratch", ACL 2024; built on GILL, Koh et al., NeurIPS 2023): the reply comes with a sticker that
matches its emotion, retrieved from a library or generated with Stable Diffusion.

Modules: :mod:`.config` (StickerConfig), :mod:`.draw` (the bundled sticker set), :mod:`.library`
(stickers.jsonl), :mod:`.encoders` (frozen image encoders), :mod:`.index` (the embedded library),
:mod:`.select` (top-k choice), :mod:`.modules` (retrieval projection, InfoNCE, feature mapper),
:mod:`.diffusion` (generate / rag backends), :mod:`.metrics` (Freq, emotion accuracy, recall@k, MMr).
"""
