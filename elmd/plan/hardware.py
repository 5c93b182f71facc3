"""What ``elmd plan`` assumes about the GPUs (paper Sec. 4.3: 4 x A100 40G), and byte sizes like ``40GiB``.

Step time is estimated from the step's FLOPs (counted by ``torch.utils.flop_counter`` on the meta
device: matmuls and attention, forward + backward, recomputation included) as

    time = FLOPs per GPU per optimizer step / (peak_tflops x 1e12 x mfu)

with A100's dense bf16 tensor-core peak (312 TFLOP/s, NVIDIA A100 datasheet) and a model-FLOPs
utilisation of 0.40, a typical figure for a transformers model with SDPA attention at ~1k tokens
(measured MFU of real runs is usually 0.3-0.5). Both are CLI options; the table states them.

Memory per GPU adds, on top of what the tensors need, ``overhead_gib`` for the CUDA context,
cuBLAS workspaces and NCCL buffers (not seen by torch's allocator) and ``fragmentation`` x the
tensor total for the caching allocator's rounding and fragmentation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from elmd.errors import ConfigError

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


@dataclass
class Hardware:
    """The GPUs a plan is checked against."""

    gpus: int = 4
    """Data-parallel ranks (GPUs); each holds the whole frozen LLM (no model sharding)."""
    gpu_mem: int = 40 * 2**30
    """Memory of one GPU in bytes (an A100 40G reports 42.5e9 bytes = 39.6 GiB to torch)."""
    peak_tflops: float = 312.0
    """Dense bf16/fp16 tensor-core peak of one GPU in TFLOP/s (A100: 312; H100 SXM: 989); fp32 runs use it too."""
    mfu: float = 0.40
    """Assumed model-FLOPs utilisation: the fraction of the peak a training step really achieves."""
    overhead_gib: float = 1.0
    """GiB per GPU outside torch's tensors: CUDA context, cuBLAS workspace, NCCL buffers."""
    fragmentation: float = 0.10
    """Extra fraction of the tensor bytes lost to the caching allocator's rounding / fragmentation."""

    def __post_init__(self):
        if self.gpus < 1:
            raise ConfigError(f"--gpus {self.gpus}: must be >= 1")
        if self.gpu_mem <= 0:
            raise ConfigError(f"--gpu-mem {self.gpu_mem}: must be > 0 (e.g. 40GiB)")
        if not 0 < self.mfu <= 1:
            raise ConfigError(f"--mfu {self.mfu}: must be in (0, 1]")
        if self.peak_tflops <= 0:
            raise ConfigError(f"--gpu-tflops {self.peak_tflops}: must be > 0")

    def usable(self, tensor_bytes: int) -> int:
        """Bytes the GPU really needs for ``tensor_bytes`` of tensors (overhead + fragmentation added)."""
        return int(tensor_bytes * (1 + self.fragmentation) + self.overhead_gib * 2**30)

    def seconds(self, flops: float) -> float:
        return flops / (self.peak_tflops * 1e12 * self.mfu)


def parse_size(text: str) -> int:
    """'40GiB' / '40GB' / '80 gib' / '1234' -> bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ConfigError(f"--gpu-mem '{text}': not a size — write e.g. 40GiB, 40GB or 80GiB")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def fmt_bytes(n: float) -> str:
    """Bytes as GiB / MiB / KiB with 2 significant decimals."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"
