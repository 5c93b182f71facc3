"""elmd: emotion-guided multimodal dialogue generation (ELMD, "Speak From Heart", ICMR 2024)."""

__version__ = "0.1.0"
