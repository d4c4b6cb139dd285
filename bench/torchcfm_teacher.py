"""Any teacher: a torchcfm-trained model distilled into a lines student through ``--teacher-callable``.

1. trains a plain MLP on (x, t_peer) with torchcfm's I-CFM (``ConditionalFlowMatcher(sigma=0)``,
   torchcfm's convention: t_peer = 0 noise, t_peer = 1 data) on moons, keeping an EMA of its
   weights (straightflow's schedule: decay min(--ema-decay, (1 + step) / (10 + step))), and
   saves both weight sets to ``WORK/teacher_raw.pt`` and ``WORK/teacher_ema.pt``;
2. ``straightflow pairs --teacher-callable bench/torchcfm_teacher_fn.py:velocity --data moons
   -n N --solver euler --nfe 100 --out WORK/pairs`` (the EMA weights, found by the teacher module
   through ``TORCHCFM_TEACHER_WEIGHTS``), timed;
3. ``straightflow train --method lines --pairs WORK/pairs --steps S --batch-size 256 --out WORK/student``;
4. the teacher's W2 with Euler at NFE 1, 2, 4, 100 (the same held-out reference and sampling
   noise as ``straightflow eval``), and ``straightflow eval WORK/student --nfe 1,2,4 -n 2000 --json``;
5. a table, the two-sample floor and the ratio student W2@1 / teacher W2@100 (target <= 1.3).

    python bench/torchcfm_teacher.py                    # defaults: 3000 + 3000 steps, 100,000 pairs
    python bench/torchcfm_teacher.py --steps 500 --student-steps 500 --pairs 20000   # quick look

Needs torchcfm (``make .venv/.bench``). With ``--work DIR`` the folder is kept; its
``pairs/`` and ``student/`` are deleted first, since the teacher is retrained each time and a
callable teacher's pair folder does not record which weights made it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import torchcfm_teacher_fn as teacher_fn
from straightflow.data import load_data
from straightflow.metrics import wasserstein2
from straightflow.noise import seeded_noise
from straightflow.solvers import solve
from straightflow.teachers import from_peer_velocity

REPO = Path(__file__).resolve().parent.parent
TEACHER_SPEC = "bench/torchcfm_teacher_fn.py:velocity"  # relative to the repository root (the subprocesses' cwd)
TEACHER_NFES = [1, 2, 4, 100]
STUDENT_NFES = [1, 2, 4]


def train_torchcfm(data_name: str, steps: int, batch: int, width: int, depth: int, lr: float, seed: int,
                   ema_decay: float):
    """torchcfm's I-CFM loop in its own convention; returns (raw net, EMA net, seconds)."""
    from torchcfm.conditional_flow_matching import ConditionalFlowMatcher

    torch.manual_seed(seed)
    data = load_data(data_name)
    dim = data.shape[0]
    net = teacher_fn.TimeMLP(dim, width, depth)
    ema = teacher_fn.TimeMLP(dim, width, depth)
    ema.load_state_dict(net.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    fm = ConditionalFlowMatcher(sigma=0.0)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for step in range(steps):
        x1, _ = data.sample_train(batch, g)  # data at t_peer = 1
        x0 = torch.randn_like(x1)  # noise at t_peer = 0
        t, xt, ut = fm.sample_location_and_conditional_flow(x0, x1)
        loss = torch.mean((net(xt, t) - ut) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), net.parameters()):
                pe.lerp_(p, 1.0 - decay)
    seconds = time.perf_counter() - t0
    return net.eval().requires_grad_(False), ema.eval(), seconds


def run_cli(args: list[str], env: dict, what: str) -> tuple[str, float]:
    exe = Path(sys.executable).parent / "straightflow"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "straightflow"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd + args, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"{what} failed (exit status {proc.returncode}): straightflow {' '.join(args)}")
    return proc.stdout, seconds


@torch.inference_mode()
def teacher_w2(velocity, reference: torch.Tensor, n: int) -> dict[int, float]:
    z = seeded_noise(n, tuple(reference.shape[1:]), 0, "sample")  # what `straightflow eval` uses (seed 0)
    return {k: wasserstein2(solve(velocity, z, "euler", k).samples, reference) for k in TEACHER_NFES}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=None, help="work folder (default: a temporary folder, removed at the end)")
    ap.add_argument("--data", default="moons")
    ap.add_argument("--steps", type=int, default=3000, help="torchcfm teacher training steps")
    ap.add_argument("--student-steps", type=int, default=3000, help="lines student training steps")
    ap.add_argument("--pairs", type=int, default=100_000, help="teacher pairs")
    ap.add_argument("--pairs-nfe", type=int, default=100, help="teacher Euler steps per pair")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ema-decay", type=float, default=0.9999,
                    help="EMA decay ceiling of the teacher (0: the pairs use the raw weights)")
    ap.add_argument("-n", type=int, default=2000, help="held-out points for W2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS") or 2),
                    help="torch threads (default: $OMP_NUM_THREADS, else 2)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    temp = args.work is None
    work = Path(tempfile.mkdtemp(prefix="sf-torchcfm-teacher-") if temp else args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    for sub in ("pairs", "student"):
        shutil.rmtree(work / sub, ignore_errors=True)
    try:
        # 1. the torchcfm teacher
        raw, ema, train_s = train_torchcfm(args.data, args.steps, args.batch_size, args.width, args.depth, args.lr,
                                           args.seed, args.ema_decay)
        dim = load_data(args.data).shape[0]
        teacher_fn.save_net(raw, work / "teacher_raw.pt", dim, args.width, args.depth)
        teacher_fn.save_net(ema, work / "teacher_ema.pt", dim, args.width, args.depth)
        weights = work / ("teacher_ema.pt" if args.ema_decay > 0 else "teacher_raw.pt")
        env = {**os.environ, teacher_fn.WEIGHTS_ENV: str(weights), "OMP_NUM_THREADS": str(args.threads),
               "MKL_NUM_THREADS": str(args.threads)}

        # 2. pairs through the CLI
        pairs_args = ["pairs", "--teacher-callable", TEACHER_SPEC, "--data", args.data, "-n", str(args.pairs),
                      "--solver", "euler", "--nfe", str(args.pairs_nfe), "--seed", str(args.seed),
                      "--out", str(work / "pairs"), "--device", "cpu", "--quiet"]
        pairs_out, pairs_s = run_cli(pairs_args, env, "straightflow pairs")

        # 3. the lines student
        train_args = ["train", "--method", "lines", "--pairs", str(work / "pairs"), "--steps", str(args.student_steps),
                      "--batch-size", str(args.batch_size), "--width", str(args.width), "--depth", str(args.depth),
                      "--lr", str(args.lr), "--seed", str(args.seed), "--out", str(work / "student"),
                      "--progress", "false", "--device", "cpu"]
        _, student_s = run_cli(train_args, env, "straightflow train")

        # 4. quality: the teacher in-process (the same callable the pairs used), the student through `straightflow eval`
        data = load_data(args.data)
        reference, _ = data.reference(args.n, 0)
        floor = wasserstein2(data.floor_reference(args.n, 0)[0], reference)
        os.environ[teacher_fn.WEIGHTS_ENV] = str(weights)
        teacher = teacher_w2(teacher_fn.velocity, reference, args.n)
        other = teacher_w2(from_peer_velocity(raw if args.ema_decay > 0 else ema), reference, args.n)
        eval_out, _ = run_cli(["eval", str(work / "student"), "--nfe", ",".join(map(str, STUDENT_NFES)),
                               "-n", str(args.n), "--json", "--device", "cpu"],
                              env, "straightflow eval")
        report = json.loads([line for line in eval_out.splitlines() if line.startswith("{")][-1])
    finally:
        if temp:
            shutil.rmtree(work, ignore_errors=True)

    student = {row["nfe_requested"]: row["w2"] for row in report["results"]}
    student_solver = report["results"][0]["solver"]
    params = sum(p.numel() for p in raw.parameters())
    ratio = student[1] / teacher[100]
    pairs_line = pairs_out.strip().splitlines()[-1] if pairs_out.strip() else ""
    print(f"teacher: torchcfm I-CFM (ConditionalFlowMatcher, sigma 0) on {args.data}, MLP(x, t) width {args.width} "
          f"depth {args.depth} SiLU ({params:,} params), batch {args.batch_size}, {args.steps} steps, Adam {args.lr}, "
          f"EMA ceiling {args.ema_decay}; trained in {train_s:.0f} s")
    command = " ".join(pairs_args).replace(str(work), "WORK")
    print(f"pairs ({'EMA' if args.ema_decay > 0 else 'raw'} weights): `straightflow {command}`: {pairs_s:.0f} s wall "
          "incl. start-up")
    print(f"  {pairs_line.replace(str(work), 'WORK')}")
    print(f"student: lines on those pairs, MLP width {args.width} depth {args.depth}, batch {args.batch_size}, "
          f"{args.student_steps} steps (init from teacher: off); trained in {student_s:.0f} s; {args.threads} threads")
    print(f"W2 on n={args.n} held-out points (the reference and noise of `straightflow eval`); "
          f"two-sample floor {floor:.4f} (eval's: {report.get('w2_floor', float('nan')):.4f})")
    print(f"{'':40}{'solver':>8} " + " ".join(f"{'W2@' + str(k):>8}" for k in TEACHER_NFES))
    label = "EMA" if args.ema_decay > 0 else "raw"
    print(f"{'teacher, torchcfm I-CFM (' + label + ')':40}{'euler':>8} "
          + " ".join(f"{teacher[k]:8.4f}" for k in TEACHER_NFES))
    other_label = "raw, not used" if args.ema_decay > 0 else "EMA, not used"
    print(f"{'teacher, torchcfm I-CFM (' + other_label + ')':40}{'euler':>8} "
          + " ".join(f"{other[k]:8.4f}" for k in TEACHER_NFES))
    print(f"{'student, lines':40}{student_solver:>8} "
          + " ".join(f"{student[k]:8.4f}" if k in student else f"{'-':>8}" for k in TEACHER_NFES))
    print(f"student W2@1 / teacher W2@100: {ratio:.3f} (target <= 1.3: {'met' if ratio <= 1.3 else 'missed'})")
    if args.json:
        Path(args.json).write_text(json.dumps({"teacher_w2": teacher, "teacher_other_w2": other, "student_w2": student,
                                               "floor": floor, "ratio": ratio, "pairs_seconds": pairs_s,
                                               "train_seconds": train_s, "student_seconds": student_s,
                                               "args": vars(args)}, indent=1))


if __name__ == "__main__":
    main()
