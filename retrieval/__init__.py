"""ELMD's Emotional Retrieval Module (paper Sec. 3.3): emotion-contrastive, self-separated
sentence retriever, FAISS demonstration index and demonstration builder."""
