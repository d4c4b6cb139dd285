"""Image row of the benchmark: training images/s and sampling images/s
at NFE 1 for the default digits preset (digits-cpu UNet, batch 128).

    python bench/images_throughput.py [--steps 30] [--device auto]

Prints one JSON object. Timings exclude a few warm-up steps.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from straightflow.config import TrainConfig
from straightflow.data import load_data
from straightflow.device import resolve_device
from straightflow.methods import build_module
from straightflow.models import count_parameters
from straightflow.solvers import euler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--sample-batch", type=int, default=1000)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    cfg = TrainConfig(data="digits", device=str(dev))
    data = load_data("digits", cfg).to(dev)
    torch.manual_seed(0)
    module, _, _ = build_module(cfg, data)
    module.to(dev).train()
    opt = torch.optim.Adam(module.parameters(), lr=cfg.lr)
    g = torch.Generator(device=dev).manual_seed(0)

    def step():
        x, _ = data.sample_train(args.batch_size, g)
        loss, _ = module(x, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    train_s = time.perf_counter() - t0
    module.eval()
    z = torch.randn(args.sample_batch, *data.shape, device=dev)
    with torch.inference_mode():
        euler(module.velocity, z, 1)
        sync()
        t0 = time.perf_counter()
        reps = 5
        for _ in range(reps):
            euler(module.velocity, z, 1)
        sync()
        sample_s = time.perf_counter() - t0
    print(json.dumps({
        "row": "images: digits, preset digits-cpu, rectified",
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "parameters": count_parameters(module.velocity),
        "train_images_per_s": args.steps * args.batch_size / train_s,
        "train_steps_per_s": args.steps / train_s,
        "sample_images_per_s_nfe1": reps * args.sample_batch / sample_s,
    }))


if __name__ == "__main__":
    main()
