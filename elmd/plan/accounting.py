"""Counting what a training step allocates, saves for backward and computes, on any device (meta included).

* :class:`LiveBytes` - a ``TorchDispatchMode`` that sees every tensor an op creates and keeps the
  sum of the bytes of the distinct storages still alive (a weak reference per storage drops them
  when freed), and its peak. Views and in-place results share their storage and are not counted
  twice. Tensors created before the mode (weights, inputs) are not counted.
* :class:`SavedBytes` - ``torch.autograd.graph.saved_tensors_hooks`` that add up the distinct
  storages autograd keeps for backward, parameters excluded (they are counted as weights): the
  activation memory of a step. Used on the meta device by the planner and on real tensors by the
  tests, which compare the two.
* FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions, attention).
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def _storage(t: torch.Tensor):
    try:
        return t.untyped_storage()
    except (RuntimeError, NotImplementedError):  # tensors without storage (e.g. sparse)
        return None


class LiveBytes(TorchDispatchMode):
    """Live bytes of the storages created under the mode: ``current``, ``peak``, and ``mark(name)``
    snapshots (e.g. at the end of forward). ``existing``: tensors made before (weights, buffers)
    whose views (e.g. a weight's transpose) must not count as new memory."""

    def __init__(self, existing=()):
        super().__init__()
        self.current = 0
        self.peak = 0
        self.marks: dict[str, int] = {}
        self._live: dict[int, int] = {}
        self._old = {st._cdata for t in existing if (st := _storage(t)) is not None}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out

    def _track(self, t: torch.Tensor) -> None:
        st = _storage(t)
        if st is None:
            return
        key = st._cdata
        if key in self._live or key in self._old:
            return
        n = st.nbytes()
        self._live[key] = n
        self.current += n
        self.peak = max(self.peak, self.current)
        weakref.finalize(st, self._free, key)

    def _free(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)

    def mark(self, name: str) -> None:
        self.marks[name] = self.current

    def reset_peak(self) -> None:
        self.peak = self.current


class SavedBytes:
    """``with SavedBytes(params) as saved: loss = f(x)`` -> ``saved.total``: bytes of the distinct
    storages autograd saved for backward during the block, ``params``' storages excluded."""

    def __init__(self, params=()):
        self.exclude = {p.untyped_storage()._cdata for p in params}
        self.sizes: dict[int, int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._keep: list[torch.Tensor] = []

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        st = _storage(t)
        if st is not None and st._cdata not in self.exclude and st._cdata not in self.sizes:
            self.sizes[st._cdata] = st.nbytes()
            self._keep.append(t)  # keeps the key unique while we count (the graph holds it anyway)
        return t

    @property
    def total(self) -> int:
        return sum(self.sizes.values())

    def __enter__(self) -> "SavedBytes":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)

    def release(self) -> None:
        """Drop the references kept while counting (call after backward)."""
        self._keep.clear()
