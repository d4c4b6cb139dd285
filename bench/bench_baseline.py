"""Baseline vs torchcfm's I-CFM: same data, network, batch and steps, one process.

Prints training steps/s of each and their ratio, and W2 (exact, POT) against
held-out data at NFE 1, 2, 4, 8 and 100 (Euler) for each; then the image row:
training images/s on ``digits`` (default UNet preset) against torchcfm's loop on
the same UNet, and sampling images/s at NFE 1. Pairs/s and the lines method
against OT-CFM are in ``bench/bench_lines.py``.

    python bench/bench_baseline.py --data moons --steps 3000 --batch-size 256

torchcfm uses t = 0 noise, t = 1 data; its network is trained in its own
convention and converted at the boundary for sampling: v(x, t) = -v_peer(x, 1 - t).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from straightflow.config import TrainConfig
from straightflow.data import load_data
from straightflow.metrics import wasserstein2
from straightflow.models import MLPVelocity
from straightflow.noise import seeded_noise
from straightflow.priors import DiagonalGaussianPrior
from straightflow.run import Run
from straightflow.solvers import euler
from straightflow.training import train

NFES = [1, 2, 4, 8, 100]


def torchcfm_icfm(data_name: str, steps: int, batch: int, width: int, depth: int, lr: float, seed: int,
                  ot: bool = False):
    """torchcfm's training loop as in its examples, sigma = 0: I-CFM (ConditionalFlowMatcher)
    or, with ``ot``, OT-CFM (ExactOptimalTransportConditionalFlowMatcher: exact minibatch OT)."""
    from torchcfm.conditional_flow_matching import ConditionalFlowMatcher, ExactOptimalTransportConditionalFlowMatcher

    torch.manual_seed(seed)
    data = load_data(data_name)
    net = MLPVelocity(data.shape[0], width=width, depth=depth)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    fm = ExactOptimalTransportConditionalFlowMatcher(sigma=0.0) if ot else ConditionalFlowMatcher(sigma=0.0)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        x1, _ = data.sample_train(batch, g)
        x0 = torch.randn_like(x1)
        t, xt, ut = fm.sample_location_and_conditional_flow(x0, x1)
        loss = torch.mean((net(xt, t) - ut) ** 2)
        loss.backward()
        opt.step()
    elapsed = time.perf_counter() - t0
    net.eval()
    return net, steps / elapsed


def images_row(steps: int, batch: int, seed: int, work: Path, loaders: list[str]) -> dict:
    """Image row: straightflow's trainer on ``digits`` (default CPU preset UNet) against
    torchcfm's I-CFM loop on the same UNet and batch, plus sampling images/s at NFE 1.
    ``loaders``: our trainer once per ``--loader`` (``stream``: through the DataLoader,
    default workers), before and after torchcfm's loop alternately."""
    from torchcfm.conditional_flow_matching import ConditionalFlowMatcher

    from straightflow.methods import build_module
    from straightflow.models import count_parameters

    ours: dict[str, float] = {}

    def ours_run(loader: str) -> Path:
        t0 = time.perf_counter()
        run_dir = train(data="digits", method="rectified", steps=steps, batch_size=batch, seed=seed,
                        out=str(work / f"digits-{loader}"), progress=False, ckpt_every=steps,
                        log_every=max(10, steps // 5), loader=loader)
        ours[loader] = steps * batch / (time.perf_counter() - t0)
        return run_dir

    run_dir = ours_run(loaders[0])
    run = Run.load(run_dir, device="cpu")

    torch.manual_seed(seed)
    cfg = TrainConfig(data="digits")
    data = load_data("digits", cfg)
    net = build_module(cfg, data)[0].velocity
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    fm, g = ConditionalFlowMatcher(sigma=0.0), torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        x1, _ = data.sample_train(batch, g)
        t, xt, ut = fm.sample_location_and_conditional_flow(torch.randn_like(x1), x1)
        torch.mean((net(xt, t) - ut) ** 2).backward()
        opt.step()
    theirs = steps * batch / (time.perf_counter() - t0)
    for loader in loaders[1:]:
        ours_run(loader)

    z = seeded_noise(1000, tuple(data.shape), 1, "sample", run.prior)
    with torch.inference_mode():
        euler(run.velocity, z, 1)  # warm-up
        t0 = time.perf_counter()
        for _ in range(5):
            euler(run.velocity, z, 1)
        sample = 5 * 1000 / (time.perf_counter() - t0)
    return {"params": count_parameters(net), "ours_train_img_s": ours[loaders[0]], "ours_train_img_s_by_loader": ours,
            "torchcfm_train_img_s": theirs, "sample_img_s_nfe1": sample}


@torch.inference_mode()
def w2_per_nfe(velocity, reference: torch.Tensor, n: int, seed: int) -> dict[int, float]:
    z = seeded_noise(n, (2,), seed, "sample", DiagonalGaussianPrior())
    return {k: wasserstein2(euler(velocity, z, k).samples, reference) for k in NFES}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="moons")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS") or 2),
                    help="torch threads (default: $OMP_NUM_THREADS, else 2)")
    ap.add_argument("--images-steps", type=int, default=100, help="steps of the digits image row (0 skips it)")
    ap.add_argument("--image-batch", type=int, default=128)
    ap.add_argument("--image-loaders", default="memory,stream",
                    help="our image row once per --loader, comma-separated (stream: through the DataLoader, "
                         "docs/data.md)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    # warm-up both code paths so neither pays one-off costs in its timing
    torchcfm_icfm(args.data, 50, args.batch_size, args.width, args.depth, args.lr, args.seed)

    workdir = Path(tempfile.mkdtemp(prefix="sf-bench-"))
    try:
        t0 = time.perf_counter()
        run_dir = train(
            data=args.data, method="rectified", steps=args.steps, batch_size=args.batch_size, width=args.width,
            depth=args.depth, lr=args.lr, seed=args.seed, out=str(workdir / "run"), progress=False,
            ckpt_every=args.steps, log_every=max(100, args.steps // 10),
        )
        ours_sps = args.steps / (time.perf_counter() - t0)  # whole call: setup, EMA, logging and checkpoint included
        run = Run.load(run_dir, device="cpu")
        net, theirs_sps = torchcfm_icfm(args.data, args.steps, args.batch_size, args.width, args.depth, args.lr,
                                        args.seed)
        reference, _ = run.data.reference(args.n, seed=0)
        floor = wasserstein2(run.data.floor_reference(args.n, seed=0)[0], reference)
        ours = w2_per_nfe(run.velocity, reference, args.n, seed=1)
        theirs = w2_per_nfe(lambda x, t: -net(x, 1.0 - t), reference, args.n, seed=1)
        loaders = [v.strip() for v in args.image_loaders.split(",") if v.strip()]
        images = images_row(args.images_steps, args.image_batch, args.seed, workdir,
                            loaders) if args.images_steps > 0 else None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    cfg = TrainConfig()
    print(f"data {args.data}, MLP width {args.width} depth {args.depth} ({sum(p.numel() for p in net.parameters()):,} "
          f"params), batch {args.batch_size}, {args.steps} steps, lr {args.lr}, {args.threads} threads; W2 on "
          f"n={args.n}, floor {floor:.4f}")
    print(f"{'':28}{'steps/s':>9} " + " ".join(f"{'W2@' + str(k):>9}" for k in NFES))
    print(f"{'straightflow rectified (EMA)':28}{ours_sps:9.1f} " + " ".join(f"{ours[k]:9.4f}" for k in NFES))
    print(f"{'torchcfm I-CFM':28}{theirs_sps:9.1f} " + " ".join(f"{theirs[k]:9.4f}" for k in NFES))
    print(f"speed ratio straightflow / torchcfm: {ours_sps / theirs_sps:.2f}x; W2@100 ratio: "
          f"{ours[100] / theirs[100]:.3f}")
    if images is not None:
        theirs_img = images["torchcfm_train_img_s"]
        ours_txt = ", ".join(f"straightflow --loader {k} {v:.0f} img/s (ratio {v / theirs_img:.2f}x)"
                             for k, v in images["ours_train_img_s_by_loader"].items())
        print(f"images: digits 8x8, UNet digits-cpu ({images['params']:,} params), batch {args.image_batch}, "
              f"{args.images_steps} steps: {ours_txt}, torchcfm I-CFM {theirs_img:.0f} img/s; sampling at NFE 1: "
              f"{images['sample_img_s_nfe1']:.0f} img/s")
    if args.json:
        Path(args.json).write_text(json.dumps({"ours_steps_per_sec": ours_sps, "torchcfm_steps_per_sec": theirs_sps,
                                               "floor": floor, "ours_w2": ours, "torchcfm_w2": theirs, "images": images,
                                               "args": vars(args), "ema_decay": cfg.ema_decay}, indent=1))


if __name__ == "__main__":
    main()
