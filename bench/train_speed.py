"""Steps/s of the whole ``straightflow.train()`` call (setup, EMA, logging, checkpoint included).

An A/B of two versions of the code on the same machine, alternating (the one importable
first on ``PYTHONPATH`` is measured)::

    git worktree add /tmp/before <commit>
    for i in 1 2 3; do PYTHONPATH=/tmp/before/src python bench/train_speed.py; python bench/train_speed.py; done
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

import straightflow as sf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="moons")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as work:
        t0 = time.perf_counter()
        sf.train(data=args.data, steps=args.steps, batch_size=args.batch_size, out=f"{work}/run", progress=False,
                 ckpt_every=args.steps, log_every=max(100, args.steps // 10))
        sps = args.steps / (time.perf_counter() - t0)
    print(json.dumps({"straightflow": sf.__file__, "version": sf.__version__, "steps_per_sec": round(sps, 1)}))


if __name__ == "__main__":
    main()
