"""Distil a diffusers DDPM the user already has: a DDIM teacher on digits -> lines students at NFE 1 and 2.

    python bench/diffusers_digits.py --out runs/diffusers_digits            # about an hour on one core
    python bench/diffusers_digits.py --out /tmp/dd --quick                   # tiny sizes: checks that every stage runs

Stages (each resumable: rerun the same command and finished stages are skipped, a half-trained
network continues from its last checkpoint):

a. ``OUT/ddpm``: a small diffusers ``UNet2DModel`` (channels 32, 64; no attention) trained 3000 steps at batch 128
   as an epsilon-prediction DDPM
   (1000-step linear-beta ``DDPMScheduler``) on the digits training split, in straightflow's units
   (``pixels / 8 - 1``), EMA weights, saved with ``save_pretrained`` as a ``DDPMPipeline`` folder;
   progress is checkpointed in ``OUT/ddpm_train/state.pt``.
b. ``OUT/pairs``: 20,000 DDIM pairs, 25 steps, eta 0, ``clip_sample`` off
   (``straightflow pairs --teacher-diffusers``).
c. ``OUT/lines`` and ``OUT/lines_adv``: lines students (``--adv 0.1`` for the second) of the documented recipe
   (all t, lr 1e-3, MSE: pinned, not the current image default), and ``OUT/lines_default`` with no recipe flags
   (today's image default), at the documented digits budget (3000 steps at batch 128, the UNet ``digits-cpu``
   picked for 8x8 data; docs/experiments-full.md 4.3).
d. The teacher's FD / KID at its 25 steps (``straightflow score`` of the pairs' x*), the students'
   at NFE 1 and 2 over 6 noise seeds (``straightflow eval --seeds 6``), and the paired difference
   lines_adv - lines per seed. Reports are kept as ``OUT/teacher_score.json`` and ``OUT/STUDENT/eval.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

FULL = dict(ddpm_steps=3000, ddpm_batch=128, ddpm_channels=(32, 64), ddpm_layers=1, pairs=20000, teacher_steps=25,
            student_steps=3000, student_batch=128, student_flags=[], n=5000, seeds=6, ckpt_every=500)
QUICK = dict(ddpm_steps=60, ddpm_batch=32, ddpm_channels=(8, 16), ddpm_layers=1, pairs=600, teacher_steps=5,
             student_steps=20, student_batch=32, student_flags=["--channels", "8", "--num-res-blocks", "1"], n=200,
             seeds=2, ckpt_every=10)
#: the documented students' recipe (all t, lr 1e-3, MSE), pinned so that they do not move with the defaults
PLAIN = ["--sampler-steps", "0", "--t1-fraction", "none", "--lr", "0.001", "--recon", "mse"]
#: ``lines_default``: no recipe flags, the image default of today (docs/student_gap.md)
STUDENTS = {"lines": PLAIN, "lines_adv": [*PLAIN, "--adv", "0.1"], "lines_default": []}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sf(*args: str, stdout=None) -> None:
    """``straightflow ARGS`` in a subprocess (this interpreter, this environment); a failure stops the script."""
    cmd = [sys.executable, "-m", "straightflow", *args]
    log("+ straightflow " + " ".join(args))
    subprocess.run(cmd, check=True, stdout=stdout)


# ------------------------------------------------------------------ a. the DDPM teacher
def train_ddpm(out: Path, s: dict, seed: int = 0) -> Path:
    import copy

    import torch
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    from straightflow.data import load_data

    folder = out / "ddpm"
    if (folder / "model_index.json").is_file():
        log(f"skip DDPM training ({folder} exists)")
        return folder
    torch.manual_seed(seed)
    # pixels / 8 - 1, the training split only (the held-out set scores)
    images = load_data("digits").train_images().float()
    c = s["ddpm_channels"]
    # no attention: 0.65M parameters, ~0.25 s per step on one core
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=c,
                       layers_per_block=s["ddpm_layers"], norm_num_groups=min(8, c[0]),
                       down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon")
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    opt = torch.optim.Adam(unet.parameters(), lr=1e-3 if s is FULL else 2e-3)
    state_path = out / "ddpm_train" / "state.pt"
    step, gen = 0, torch.Generator().manual_seed(seed)
    if state_path.is_file():
        state = torch.load(state_path, weights_only=False)
        unet.load_state_dict(state["unet"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        step = state["step"]
        log(f"DDPM training resumes at step {step}")
    acp = sched.alphas_cumprod
    t0 = time.time()
    while step < s["ddpm_steps"]:
        idx = torch.randint(0, images.shape[0], (s["ddpm_batch"],), generator=gen)
        x0 = images[idx]
        t = torch.randint(0, 1000, (x0.shape[0],), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        a = acp[t].view(-1, 1, 1, 1)
        loss = (unet(a.sqrt() * x0 + (1 - a).sqrt() * eps, t).sample - eps).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(p, 1 - decay)
        if step % 100 == 0:
            log(f"DDPM step {step}/{s['ddpm_steps']} loss {loss.item():.4f} ({(time.time() - t0) / 60:.1f} min)")
        if step % s["ckpt_every"] == 0 or step == s["ddpm_steps"]:
            state_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = state_path.with_suffix(".tmp")
            torch.save({"unet": unet.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                        "gen": gen.get_state(), "step": step}, tmp)
            os.replace(tmp, state_path)
    tmp = out / "ddpm.tmp"
    DDPMPipeline(unet=ema, scheduler=sched).save_pretrained(str(tmp))
    os.replace(tmp, folder)  # whole or absent
    log(f"DDPM saved to {folder}")
    return folder


# ------------------------------------------------------------------ b, c. pairs and students
def make_pairs(out: Path, ddpm: Path, s: dict) -> Path:
    pairs = out / "pairs"
    if (pairs / "manifest.json").is_file():
        log(f"skip pairs ({pairs} complete)")
        return pairs
    # a rerun resumes finished shards
    sf("pairs", "--teacher-diffusers", str(ddpm), "--data", "digits", "-n", str(s["pairs"]), "--scheduler", "ddim",
       "--nfe", str(s["teacher_steps"]), "--clip-sample", "false", "--out", str(pairs), "--quiet")
    return pairs


def _trained_step(run: Path) -> int:
    steps = [json.loads(m.read_text()).get("step", 0) for m in run.glob("checkpoints/*/meta.json")]
    return max(steps, default=-1)


def train_student(out: Path, pairs: Path, name: str, s: dict) -> Path:
    run = out / name
    done = _trained_step(run)
    if done >= s["student_steps"]:
        log(f"skip {name} (trained to step {done})")
        return run
    resume = ["--resume"] if (run / "config.yaml").is_file() else []
    sf("train", "--method", "lines", *STUDENTS[name], "--pairs", str(pairs), "--steps", str(s["student_steps"]),
       "--batch-size", str(s["student_batch"]), "--ckpt-every", str(s["ckpt_every"]), "--progress", "false",
       *s["student_flags"], "--out", str(run), *resume)
    return run


# ------------------------------------------------------------------ d. scores
def json_of(path: Path, *args: str) -> dict:
    """The JSON report of ``straightflow ARGS --json``, kept in ``path`` (reused when present)."""
    if not path.is_file():
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            sf(*args, "--json", stdout=f)
        os.replace(tmp, path)
    return json.loads(path.read_text())


def summary(out: Path, pairs: Path, students: dict[str, Path], s: dict) -> str:
    teacher = json_of(out / "teacher_score.json", "score", str(pairs), "-n", str(s["n"]))
    reports = {name: json_of(run / "eval.json", "eval", str(run), "--nfe", "1,2", "--seeds", str(s["seeds"]),
                             "-n", str(s["n"]))
               for name, run in students.items()}
    t = teacher["results"][0]
    lines = [f"digits, diffusers DDPM teacher (DDIM {s['teacher_steps']} steps, eta 0, clip_sample off) vs lines "
             f"students; features {teacher.get('features')}, n={teacher['n']} vs {teacher['n_reference']} "
             f"held-out images; floor fd {teacher['fd_floor']:.4g}, kid {teacher['kid_floor']:.4g}",
             f"{'model':<12} {'NFE':>4} {'fd':>16} {'kid':>18} {'precision':>10} {'recall':>8} {'fd / teacher':>12}",
             f"{'teacher':<12} {s['teacher_steps']:>4} {t['fd']:>16.4g} {t['kid']:>18.4g} "
             f"{t.get('precision', float('nan')):>10.3f} {t.get('recall', float('nan')):>8.3f} {1.0:>12.3f}"]
    for name, rep in reports.items():
        for row in rep["results"]:
            fd = f"{row['fd']:.4g} ± {row.get('fd_sd', 0.0):.2g}"
            kid = f"{row['kid']:.4g} ± {row.get('kid_sd', 0.0):.2g}"
            lines.append(f"{name:<12} {row['nfe']:>4} {fd:>16} {kid:>18} {row.get('precision', float('nan')):>10.3f} "
                         f"{row.get('recall', float('nan')):>8.3f} {row['fd'] / t['fd']:>12.3f}")
    if {"lines", "lines_adv"} <= set(reports):
        for a, b in zip(reports["lines_adv"]["results"], reports["lines"]["results"]):
            diffs = [x - y for x, y in zip(a.get("fd_seeds", [a["fd"]]), b.get("fd_seeds", [b["fd"]]))]
            sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
            lines.append(f"paired fd difference lines_adv - lines at NFE {a['nfe']} over seeds "
                         f"{rep['seeds'][0]}-{rep['seeds'][-1]}: "
                         + " ".join(f"{d:+.3f}" for d in diffs) + f" | mean {statistics.fmean(diffs):+.3f} sd {sd:.3f}")
        one = next(r for r in reports["lines_adv"]["results"] if r["nfe"] == 1)
        lines.append(f"lines --adv at NFE 1: fd {one['fd']:.4g} = {one['fd'] / t['fd']:.3f} x the "
                     f"DDIM-{s['teacher_steps']} teacher's {t['fd']:.4g} (target <= 1.1x: "
                     f"{'met' if one['fd'] <= 1.1 * t['fd'] else 'not met'})")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/diffusers_digits")
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes: checks that every stage runs (numbers mean nothing)")
    args = ap.parse_args()
    s = QUICK if args.quick else FULL
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    ddpm = train_ddpm(out, s)
    pairs = make_pairs(out, ddpm, s)
    students = {name: train_student(out, pairs, name, s) for name in STUDENTS}
    text = summary(out, pairs, students, s)
    (out / "summary.txt").write_text(text + "\n")
    print(text)
    log(f"done in {(time.time() - start) / 60:.1f} min; summary in {out / 'summary.txt'}")


if __name__ == "__main__":
    main()
