"""The sticker head (PEGS: Zhang et al., "STICKERCONV: Generating Multimodal Empathetic Responses from
Scratch", ACL 2024; built on GILL, Koh et al., NeurIPS 2023): the reply comes with a sticker that
matches its emotion, retrieved from a library or generated with Stable Diffusion.

Modules: :mod:`.config` (StickerConfig), :mod:`.draw` (the bundled sticker set), :mod:`.library`
(stickers.jsonl), :mod:`.tokens` (the ``[IMG]`` run), :mod:`.data` (stickers on dialogue turns), :mod:`.encoders` (frozen image encoders),
:mod:`.index` (the embedded library), :mod:`.select` (top-k choice), :mod:`.modules` (retrieval
projection, InfoNCE, feature mapper, MSE), :mod:`.head_model` (the trainable part of stage `sticker`),
:mod:`.diffusion` (Stable Diffusion), :mod:`.backends` (retrieve / generate / rag), :mod:`.head` (the
head on replies), :mod:`.metrics` (Freq, emotion accuracy, recall@k, MMr / f-MMr), :mod:`.workflows`
(what `elmd sticker ...` runs), :mod:`.objective` / :mod:`.stage` / :mod:`.validate` (stage `sticker`:
targets, loss, training, teacher-forced validation), :mod:`.evaluate` (the scores `elmd evaluate` adds). README.md beside this file shows the commands.
"""
