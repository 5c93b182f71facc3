"""Training configuration for stages `rep` and `eerg` (paper Sec. 3.4-3.5, 4.3)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    stage: str = "rep"
    """'rep' (train the video Linear on the response emotion) or 'eerg' (prefix + Linear); chosen
    by `elmd train --stage` and recorded in each stage's saved config.yaml."""
    out: str = "runs/sample"
    """Run folder: stage outputs go to OUT/rep and OUT/eerg (weights, config.yaml, meta.json,
    metrics.jsonl, loss.png, checkpoints/); `elmd train --out DIR` names the stage folder itself."""
    batch_size: int = 16
    """Global batch (paper: 16)."""
    lr: float = 2e-5
    """AdamW learning rate of stage rep (paper: 2e-5)."""
    epochs: int = 3
    """Epochs of stage rep."""
    eerg_lr: float = 2e-2
    """AdamW learning rate of stage eerg (paper / ChatGLM2's p-tuning v2 recipe: 2e-2)."""
    eerg_epochs: int = 3
    """Epochs of stage eerg."""
    eerg_emotion_weight: float = 1.0
    """Stage eerg's loss = the target tokens' loss + this x the emotion word's own loss (one term per
    sample, :mod:`elmd.training.emotion_loss`); 0 = the paper's plain loss. Without it eerg forgets
    the emotion rep learnt (BENCHMARKS.md, "eerg keeps rep's emotion")."""
    grad_accum: int = 1
    """Gradient accumulation steps: each optimizer step sums batch_size / (grad_accum x ranks)
    samples per micro-batch; the loss is normalised by the target tokens of the whole global batch."""
    weight_decay: float = 0.0
    """AdamW weight decay (ChatGLM2's recipe: 0)."""
    scheduler: str = "linear"
    """Learning-rate schedule after warmup: 'linear' (decay to 0 at the last step) or 'constant'."""
    warmup_steps: int = 0
    """Optimizer steps of linear warmup from 0."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this (0 = no clipping). Steps whose gradient is not finite
    are skipped (counted in the log as skipped_steps)."""
    gradient_checkpointing: bool = False
    """Recompute the frozen LLM's activations in backward, one decoder layer at a time (less GPU
    memory, ~30% slower); the eerg prefix is passed into each checkpointed layer
    (:mod:`elmd.models.grad_ckpt`). `elmd plan` shows both memory figures."""
    device: str = "auto"
    """'auto' (cuda:LOCAL_RANK when CUDA is present), 'cpu' or 'cuda'."""
    save_every: int = 0
    """Write a resumable checkpoint every this many optimizer steps (0 = at the end of each epoch
    only); a killed run loses at most the steps since the last one."""
    keep_checkpoints: int = 2
    """Checkpoints kept in OUT/STAGE/checkpoints (older ones are deleted)."""
    log_every: int = 1
    """Write a metrics row (loss, lr, samples/s) every this many optimizer steps."""
    max_valid: int = 0
    """Validation samples scored after each epoch (0 = the whole valid split)."""
    features_in_memory: bool = True
    """Keep every video's Q-Former features in RAM for the run (read once from vision.feature_cache,
    or encoded once when no cache is set); False = read the cache (or encode) at every batch."""
    init_from_rep: bool = True
    """Stage eerg: initialise the video Linear from the rep output (False = a fresh Linear, the
    'w/o REP' ablation)."""
    rep_dir: str = ""
    """Stage eerg: the rep output folder to initialise from; empty = OUT/rep."""
    seed: int = 42
    """Seed of init, shuffling and dropout."""
    target: str = "reply"
    """What a stage that generates a reply (eerg) learns to write: 'reply' (the emotion word, newline,
    the reply) or 'meta' (the meta-response block: 情绪/场景/行为/性别/年龄/语气/回复 lines,
    :mod:`elmd.data.meta_response`; its profile feeds the avatar head). Stage rep keeps its emotion word."""

    def validate(self, prefix: str = "train") -> None:
        """One-line :class:`~elmd.errors.ConfigError` naming the first bad key, its value and range."""
        from elmd.configio import check_choice, check_device, check_range
        from elmd.stages import stage_names

        check_choice(prefix, self, "stage", stage_names())
        for key in ("batch_size", "epochs", "eerg_epochs", "grad_accum", "keep_checkpoints", "log_every"):
            check_range(prefix, self, key, 1)
        for key in ("lr", "eerg_lr"):
            check_range(prefix, self, key, 0, lo_open=True)
        for key in ("weight_decay", "eerg_emotion_weight", "warmup_steps", "max_grad_norm", "save_every", "max_valid", "seed"):
            check_range(prefix, self, key, 0)
        check_choice(prefix, self, "scheduler", ("linear", "constant"))
        check_choice(prefix, self, "target", ("reply", "meta"))
        check_device(prefix, self)
