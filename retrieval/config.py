"""Configuration of the Emotional Retrieval Module (paper Sec. 3.3)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RetrieverConfig:
    encoder: str = "builtin:char"
    """Sentence encoder: a local sentence-transformers folder (production: m3e-base), or
    'builtin:char', the small character-bigram encoder the project trains itself."""
    lr: float = 5e-5
    """AdamW learning rate (paper: 5e-5)."""
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


@dataclass
class IndexConfig:
    factory: str = "Flat"
    """FAISS index factory string: 'Flat' (exact), 'IVF256,Flat', 'HNSW32', ..."""
    k: int = 1
    """Demonstrations retrieved per query (the prompt uses the top one)."""
    path: str = "runs/sample/index"
    """Index folder used by training and generation."""
