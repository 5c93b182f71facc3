"""Configuration of the Emotional Retrieval Module (paper Sec. 3.3)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RetrieverConfig:
    encoder: str = "builtin:char"
    """Sentence encoder: a local sentence-transformers folder (production: m3e-base), or
    'builtin:char', the small character-bigram encoder the project trains itself."""
    lr: float = 5e-5
    """AdamW learning rate of the encoder (paper: 5e-5)."""
    head_lr: float = 1e-3
    """AdamW learning rate of the freshly initialised SSC head."""
    batch_size: int = 32
    """Anchors per batch (paper: 32)."""
    epochs: int = 3
    """Training epochs."""
    tau: float = 0.5
    """Temperature of the contrastive losses (paper: 0.5)."""
    n_e: int = 2
    """Group size per anchor: one positive and n_e - 1 negatives (paper's figure: 2)."""
    s: int = 4
    """Number of self-separated sub-vectors (paper: 4)."""
    lam: float = 1.0
    """Weight lambda of the emotion-contrastive loss L_e in L_r."""
    ert: bool = True
    """Train with the emotion-contrastive loss (False = the 'w/o ERT' ablation)."""
    ssc: bool = True
    """Use the self-separated component (False = the 'w/o SSC' ablation)."""
    seed: int = 42
    """Seed for group sampling and init."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    eval_k: int = 5
    """Validation after each epoch: emotion agreement@1 (selects the best epoch) and @eval_k."""
    max_valid: int = 2000
    """Validation queries per epoch (0 = all of the valid split)."""
    encode_batch_size: int = 256
    """Texts per batch when encoding for an index or validation."""
    device: str = "auto"
    """Torch device of the encoder: 'auto' (cuda when available), 'cpu', 'cuda', 'cuda:1'."""
    builtin_dim: int = 256
    """Builtin encoder: embedding size (a multiple of s)."""
    builtin_vocab: int = 8000
    """Builtin encoder: BPE vocabulary trained in-process on the training texts (chars + merges)."""
    negatives: str = "group"
    """ERT negatives: 'group' (the n_e - 1 sampled ones, Eq. 2) or 'batch' (also every item of the
    batch whose emotion differs from the anchor's: in-batch negatives across all classes)."""
    emotion_head: bool = True
    """Train an emotion classifier P(emotion | u) on the search representation jointly with ERT
    (and SSC); needed by emotion-aware scoring. Off when ert is off (the w/o ERT ablation)."""
    emotion_lr: float = 1.0e-2
    """AdamW learning rate of the freshly initialised emotion head (a linear layer)."""
    emotion_weight: float = 1.0
    """Weight of the emotion head's cross-entropy in the training loss."""
    emotion_all_turns: bool = True
    """Also train the emotion head on the labelled responses r of the training samples that are not
    an utterance u of another sample (every labelled turn of the training dialogues, not only u)."""
    class_balanced: bool = True
    """Weight the emotion head's cross-entropy (and the TF-IDF classifier's logistic loss) by inverse
    class frequency (per-class recall matters for macro agreement; false = plain loss)."""
    emotion_classifier: str = "auto"
    """Where emotion-aware scoring takes P(emotion | q) from: 'head' (the emotion head above), 'tfidf'
    (a character n-gram TF-IDF logistic regression of the query, retrieval/tfidf.py, fitted on the
    training turns, its settings chosen on the valid split), 'mean' (the average of both) or
    'auto' (tuning picks among those the retriever has). `retriever train` fits the TF-IDF
    classifier unless this is 'head'; at index build / search a value other than 'auto'
    overrides the tuned choice (an index is refused by a search asking for another one)."""
    scoring: str = "auto"
    """Search-time scoring: 'auto' (what `elmd retriever train` tuned on the valid split, stored
    in retriever.json; cosine without an emotion head), 'cosine' (the paper), 'soft'
    (cos + beta * P(emotion(u') | q)) or 'filter' (u' of the predicted emotion first, cosine
    order otherwise). Index build stores the resolved scoring in the index's meta.json."""
    beta: float | None = None
    """Soft scoring weight beta (null = the tuned value)."""
    pool: int | None = None
    """Candidates re-scored per query: the top `pool` cosine hits (null = the tuned value)."""
    tune_metric: str = "mean"
    """What tuning maximises on the valid split: 'utt_agree@1', 'macro_agree@1' or 'mean' of both."""
    min_f1_ratio: float = 0.95
    """Tuning keeps only scorings whose valid r' char-F1 is >= this ratio of plain cosine's."""
    tune_whole_index: bool = False
    """Tuning also tries 'filter' over the whole index (the nearest u' of the predicted emotion,
    searched per emotion: retrieval/partition.py). Off by default: on CPED's valid split it ties
    the tuned scorings (retrieval/README.md), so it was not made the default."""

    def check(self) -> None:
        """Raise ConfigError naming the key, value and allowed range for a bad setting."""
        self.validate()

    def validate(self, prefix: str = "retrieval") -> None:
        """One-line :class:`~elmd.errors.ConfigError` naming the first bad key, its value and range."""
        from elmd.configio import bad_value, check_choice, check_device, check_range

        if not self.encoder:
            bad_value(prefix, "encoder", self.encoder, "a local sentence-transformers folder or builtin:char")
        check_choice(prefix, self, "negatives", ("group", "batch"))
        check_choice(prefix, self, "scoring", ("auto", "cosine", "soft", "filter"))
        check_choice(prefix, self, "emotion_classifier", ("auto", "head", "tfidf", "mean"))
        check_choice(prefix, self, "tune_metric", ("utt_agree@1", "macro_agree@1", "mean"))
        for key in ("lr", "head_lr", "emotion_lr", "tau"):
            check_range(prefix, self, key, 0, lo_open=True)
        for key in ("n_e", "s", "batch_size", "eval_k", "encode_batch_size", "builtin_dim", "builtin_vocab", "pool"):
            check_range(prefix, self, key, 1)
        for key in ("epochs", "lam", "weight_decay", "max_valid", "emotion_weight", "beta", "seed"):
            check_range(prefix, self, key, 0)
        check_range(prefix, self, "min_f1_ratio", 0, 1)
        if self.builtin_dim % self.s:
            bad_value(prefix, "builtin_dim", self.builtin_dim, f"a multiple of retrieval.s ({self.s})")
        check_device(prefix, self)


@dataclass
class IndexConfig:
    factory: str = "Flat"
    """FAISS index factory string: 'Flat' (exact), 'IVF256,Flat', 'HNSW32', ..."""
    k: int = 1
    """Demonstrations retrieved per query (the prompt uses the top one)."""
    path: str = "runs/sample/index"
    """Index folder used by training and generation."""
    nprobe: int = 16
    """IVF indexes: inverted lists visited per query (ignored by Flat / HNSW)."""
    use_gpu: bool = True
    """Search on a GPU when faiss-gpu and CUDA are present (the saved index is always CPU)."""
    threads: int = 0
    """FAISS OpenMP threads (0 = FAISS default, all cores; 1 is fastest on an oversubscribed machine)."""

    def validate(self, prefix: str = "index") -> None:
        """One-line :class:`~elmd.errors.ConfigError` naming the first bad key, its value and range."""
        from elmd.configio import bad_value, check_range

        if not self.factory.strip():
            bad_value(prefix, "factory", self.factory, "a FAISS factory string such as Flat, IVF256,Flat or HNSW32")
        check_range(prefix, self, "k", 1)
        check_range(prefix, self, "nprobe", 1)
        check_range(prefix, self, "threads", 0)
