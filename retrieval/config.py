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
