"""elmd: ELMD (Speak From Heart, ICMR 2024) — emotion-guided multimodal dialogue generation."""

from setuptools import find_packages, setup

setup(
    name="elmd",
    version="0.1.0",
    description="Emotion-guided multimodal dialogue generation with ChatGLM2 (ELMD, ICMR 2024)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["elmd", "elmd.*", "retrieval", "retrieval.*"]),
    install_requires=[
        "torch>=2.1",
        "transformers>=5.0",
        "sentence-transformers>=3.0",
        "tokenizers",
        "sentencepiece",
        "safetensors",
        "peft>=0.13",
        "accelerate>=1.0",
        "faiss-cpu>=1.8",
        "decord",
        "opencv-python-headless",
        "imageio-ffmpeg",
        "numpy",
        "pillow",
        "pyyaml",
        "click>=8",
        "tqdm",
        "jieba",
        "rouge-chinese",
        "nltk>=3.8",
        "matplotlib",
        "scikit-learn",  # the retriever's TF-IDF emotion classifier (fit only; prediction is numpy)
        "diffusers>=0.30",  # sticker head's SD backends (+65 MB with its deps)
        "espeakng-loader>=0.2.4",  # avatar head's offline Mandarin TTS: bundled libespeak-ng + cmn data (10 MB)
    ],
    extras_require={
        "gpu": ["faiss-gpu-cu12"],
        "test": ["pytest>=7", "openai>=1.40", "selenium>=4.20"],  # the serve tests' client and browser driver
        "serve": ["fastapi>=0.110", "uvicorn>=0.29", "python-multipart>=0.0.9", "httpx>=0.27",
                  "gradio>=5.0,<7"],  # `elmd serve` (+255 MB with openai + selenium, ~30 s)
    },
    entry_points={"console_scripts": ["elmd=elmd.cli.main:main"]},
)
