"""Run by tests/test_train_dist.py under ``torch.distributed.run``: train stage eerg from a saved
config, then write this rank's trainable tensors to OUT/rank<R>.safetensors."""

from __future__ import annotations

import os
import sys

from safetensors.torch import save_file

from elmd.config import load_config
from elmd.training import eerg
from elmd.training.dist import cleanup


def main(config: str, out: str) -> None:
    s = eerg.setup(load_config(config), out, show_progress=False)
    eerg.fit(s, show_progress=False)
    state = {k: v.detach().contiguous().cpu() for k, v in s.model.trainable_state_dict().items()}
    save_file(state, os.path.join(out, f"rank{s.info.rank}.safetensors"))
    cleanup(s.info)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
