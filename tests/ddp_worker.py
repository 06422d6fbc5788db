"""One rank of tests/test_distributed.py: ``rtbwe-train fit`` as torchrun would start it
(RANK/WORLD_SIZE/LOCAL_RANK/MASTER_* in the environment), recording after every optimizer step
a digest of the weights and of the segment RNG state to ``$DDP_RECORD/rank<R>.json``.
``$DDP_STOP_AFTER=R:N``: rank R alone behaves as if SIGTERM came after step N."""
import hashlib
import json
import os
import sys
from pathlib import Path

import torch

from rtbwe.training import cli, distributed


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def main() -> int:
    record: list[dict] = []
    stop_rank, _, stop_step = os.environ.get("DDP_STOP_AFTER", "-1:0").partition(":")
    original = distributed.DistributedTrainer.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)

        def after_step(optimizer, *_):
            weights = torch.cat([p.detach().cpu().flatten() for p in self.model.parameters()])
            record.append({"step": self.step + 1, "weights": digest(weights.numpy().tobytes()),
                           "sampler": digest(repr(self.sampler.state()).encode())})
            if self.info.rank == int(stop_rank) and self.step + 1 == int(stop_step):
                self._stop = True  # what the SIGTERM handler does
        self.opt.register_step_post_hook(after_step)

    distributed.DistributedTrainer.__init__ = init
    status = cli.main(sys.argv[1:])
    out = Path(os.environ["DDP_RECORD"]) / f"rank{os.environ['RANK']}.json"
    out.write_text(json.dumps(record))
    return status


if __name__ == "__main__":
    sys.exit(main())
