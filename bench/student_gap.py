"""The lines student vs its teacher as dimension grows, lever by lever (docs/student_gap.md).

    python bench/student_gap.py --out runs/gap                               # everything (hours on CPU)
    python bench/student_gap.py --out runs/gap --only mog10 --lever plain --lever cosine --seeds 1
    python bench/student_gap.py --out runs/gap --only mog10 --part curvature  # the curvature method vs dimension
    python bench/student_gap.py --out runs/gap --only mog10 --part fitted     # ... sampled from a fitted prior
    python bench/student_gap.py --out runs/gap --table                        # print the tables only
    python bench/student_gap.py --out /tmp/gap-smoke --quick                  # every command at tiny sizes

Data sets: the built-in 2D sets (moons 8gaussians checkerboard spirals), a generated 2D pinwheel and
a 10-D and a 32-D mixture of 8 Gaussians with unequal weights (0.75^k, normalised) and anisotropic,
randomly rotated components (per-axis scales log-uniform in [0.05, 0.6], centres at radius 4), written
seeded to OUT/data/NAME.npy (50,000 rows; `--data OUT/data/NAME.npy` loads them, 20% held out), and
digits.

Per data set: the teacher (rectified flow, seed 0, the experiments' budget: 3000 steps, batch 256;
digits 3000 at batch 128), its Euler pairs (100,000 at NFE 100; digits 20,000 at NFE 16; other counts
where a lever asks), and for every lever a lines student per training seed (0..--seeds-1), each
trained by `straightflow train` in a subprocess (nice 10, OMP_NUM_THREADS=1, one at a time) and scored
by `straightflow eval --seeds E` (noise seeds 0..E-1, the same held-out reference; W2 for vectors,
FD and KID for digits). The headline is a student's quality at NFE 1 and 2 (line sampler) divided by
the teacher's at NFE 100 (Euler) on the same noise seeds; mean and sd over training seeds. Each run is
also scored against a validation sample carved from the training rows (OUT/NAME/validation.npy: 2,000
points, digits all 288 carved images), and the "val" column, the same ratio on it, is the one that
chooses a recipe: the held-out numbers only report. "cost" is
the student's training wall time over the plain student's on the same set (pairs are counted apart;
on a shared machine the wall time moves with the load, so read it beside the nominal cost: steps,
width, the critic's extra step).

Every lever spells out all the fields the levers touch (so a changed default never changes what a
lever measured); `default` passes none of them: it is whatever `train --method lines` does now.

`--part curvature`: on a set, the rectified baseline (the teacher) against curvature-method runs at
the same budget (fixed beta, --kl-target, encoder size); W2 at NFE 1, 2, 100, the gain at NFE 1
(baseline / run), the price at NFE 100 (run / baseline) and the held-out KL per dimension.
`--part aggregate`: those runs from N(0, I) and from one Gaussian fitted to the aggregate posterior.
`--part fitted`: those runs sampled from a mixture of 8 Gaussians fitted to the aggregate posterior
(`Run.fit_prior`, the `fit-prior` command), evaluated as `eval` evaluates.
`--part overfit`: every finished student's one-step error on 2,000 of its training pairs against the
2,000 held-out pairs (a student that memorised its pairs scores far lower on the first).

Everything resumes: a run folder with an eval.json is reused; a half-trained one is resumed.
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

import numpy as np

SETS_2D = ("moons", "8gaussians", "checkerboard", "spirals")
ALL_SETS = (*SETS_2D, "pinwheel", "mog10", "mog32", "digits")

#: the fields every lever pins (the pre-study `train --method lines` recipe); a lever overrides some
BASE = {"--init-from-teacher": "true", "--lr-schedule": "constant", "--ema-decay": "0.9999", "--recon": "mse",
        "--adv": "0", "--sampler-steps": "0", "--t1-fraction": "none", "--lr": "0.001"}

_K2H = {"--sampler-steps": "2", "--lr": "0.002", "--recon": "pseudo-huber"}

#: lever -> (overrides of BASE, pair count (None = the set's), note); `default` passes no flags at all
LEVERS: dict[str, tuple[dict, int | None, str]] = {
    "plain": ({}, None, "the pre-study recipe: init from teacher, MSE, constant lr, EMA 0.9999"),
    "default": ({}, None, "train --method lines with no flags (the current default)"),
    "default+pairs20k": ({}, 20_000, "the current default on 20,000 pairs"),
    "default+pairs100k": ({}, 100_000, "the current default on 100,000 pairs"),
    "default+pairs500k": ({}, 500_000, "the current default on 500,000 pairs"),
    "fresh": ({"--init-from-teacher": "false"}, None, "fresh weights instead of the teacher's"),
    "pairs20k": ({}, 20_000, "20,000 pairs"),
    "pairs100k": ({}, 100_000, "100,000 pairs (the vector sets' count; digits default to 20,000)"),
    "pairs500k": ({}, 500_000, "500,000 pairs"),
    "steps2x": ({"--steps": "2x"}, None, "twice the steps"),
    "cosine": ({"--lr-schedule": "cosine"}, None, "cosine lr decay to 0"),
    "lr3e-4": ({"--lr": "0.0003"}, None, "lr 3e-4"),
    "lr2e-3": ({"--lr": "0.002"}, None, "lr 2e-3"),
    "width512": ({"--width": "512", "--init-from-teacher": "false"}, None,
                 "width 512 (fresh: the teacher's weights do not fit)"),
    "ema0.99": ({"--ema-decay": "0.99"}, None, "EMA decay ceiling 0.99 (0.999 = 0.9999 below 9,000 steps)"),
    "ema0": ({"--ema-decay": "0"}, None, "no EMA (the raw weights)"),
    "k1": ({"--sampler-steps": "1"}, None, "--sampler-steps 1 (t = 1 only: the distill objective)"),
    "k2": ({"--sampler-steps": "2"}, None, "--sampler-steps 2"),
    "huber": ({"--recon": "pseudo-huber"}, None, "pseudo-Huber endpoint loss"),
    "adv": ({"--adv": "0.1"}, None, "adversarial term, weight 0.1"),
    # combinations (chosen after the single levers; docs/student_gap.md)
    "k1+lr2e-3": ({"--sampler-steps": "1", "--lr": "0.002"}, None, "--sampler-steps 1 + lr 2e-3"),
    "k2+lr2e-3": ({"--sampler-steps": "2", "--lr": "0.002"}, None, "--sampler-steps 2 + lr 2e-3"),
    "k1+lr4e-3": ({"--sampler-steps": "1", "--lr": "0.004"}, None, "--sampler-steps 1 + lr 4e-3"),
    "k2+lr4e-3": ({"--sampler-steps": "2", "--lr": "0.004"}, None, "--sampler-steps 2 + lr 4e-3"),
    "k2+lr2e-3+adv": ({"--sampler-steps": "2", "--lr": "0.002", "--adv": "0.1"}, None, "the default + --adv 0.1"),
    "k2+lr2e-3+huber": ({"--sampler-steps": "2", "--lr": "0.002", "--recon": "pseudo-huber"}, None,
                        "the default + pseudo-Huber"),
    "k2+lr2e-3+huber+adv": ({"--sampler-steps": "2", "--lr": "0.002", "--recon": "pseudo-huber", "--adv": "0.1"}, None,
                            "the default + pseudo-Huber + --adv 0.1"),
    "k1+lr2e-3+huber": ({"--sampler-steps": "1", "--lr": "0.002", "--recon": "pseudo-huber"}, None,
                        "--sampler-steps 1 + lr 2e-3 + pseudo-Huber"),
    # a share of the training times at t = 1 (--t1-fraction), on top of the recipe above
    "k2+lr2e-3+huber+t1=0.6": ({**_K2H, "--t1-fraction": "0.6"}, None, "k2+lr2e-3+huber, 60% of the times at t = 1"),
    "k2+lr2e-3+huber+t1=0.75": ({**_K2H, "--t1-fraction": "0.75"}, None, "... 75% at t = 1"),
    "k2+lr2e-3+huber+t1=0.9": ({**_K2H, "--t1-fraction": "0.9"}, None, "... 90% at t = 1"),
    "k2+lr2e-3+huber+t1=0.95": ({**_K2H, "--t1-fraction": "0.95"}, None, "... 95% at t = 1"),
    "k2+lr2e-3+huber+t1=0.98": ({**_K2H, "--t1-fraction": "0.98"}, None, "... 98% at t = 1"),
    "k2+lr1e-3+huber+t1=0.9": ({**_K2H, "--lr": "0.001", "--t1-fraction": "0.9"}, None, "90% at t = 1, lr 1e-3"),
    "k2+lr3e-3+huber+t1=0.9": ({**_K2H, "--lr": "0.003", "--t1-fraction": "0.9"}, None, "90% at t = 1, lr 3e-3"),
    "k2+lr3e-3+huber+t1=0.95": ({**_K2H, "--lr": "0.003", "--t1-fraction": "0.95"}, None, "95% at t = 1, lr 3e-3"),
    "k2+lr4e-3+huber+t1=0.95": ({**_K2H, "--lr": "0.004", "--t1-fraction": "0.95"}, None, "95% at t = 1, lr 4e-3"),
    "k2+lr2e-3+huber+pairs100k": ({**_K2H}, 100_000, "k2+lr2e-3+huber on 100,000 pairs"),
    "k2+lr3e-3+huber+t1=0.9+pairs100k": ({**_K2H, "--lr": "0.003", "--t1-fraction": "0.9"}, 100_000,
                                         "90% at t = 1, lr 3e-3, on 100,000 pairs"),
    "k2+lr1e-3+huber+t1=0.9+pairs100k": ({**_K2H, "--lr": "0.001", "--t1-fraction": "0.9"}, 100_000,
                                         "90% at t = 1, lr 1e-3, on 100,000 pairs"),
    "k2+steps2x": ({"--sampler-steps": "2", "--steps": "2x"}, None, "--sampler-steps 2 + twice the steps"),
    "cosine+huber": ({"--lr-schedule": "cosine", "--recon": "pseudo-huber"}, None, "cosine + pseudo-Huber"),
    "cosine+k2": ({"--lr-schedule": "cosine", "--sampler-steps": "2"}, None, "cosine + --sampler-steps 2"),
    "cosine+pairs500k": ({"--lr-schedule": "cosine"}, 500_000, "cosine + 500,000 pairs"),
    "cosine+steps2x": ({"--lr-schedule": "cosine", "--steps": "2x"}, None, "cosine + twice the steps"),
}

#: curvature part: name -> train flags (the baseline is the teacher itself)
CURVATURE: dict[str, list[str]] = {
    "beta1": ["--beta", "1"],
    "beta0.3": ["--beta", "0.3"],
    "beta0.1": ["--beta", "0.1"],
    "beta1-same": ["--beta", "1", "--encoder", "same"],
    "beta0.3-same": ["--beta", "0.3", "--encoder", "same"],
    "beta3": ["--beta", "3"],
    "kl0.45": ["--kl-target", "0.45", "--beta", "1"],  # the KL per dimension beta = 1 reaches on the 2D sets
    "beta1-w512": ["--beta", "1", "--width", "512"],
    "baseline-w512": ["--method", "rectified", "--width", "512"],
    "beta0.3-steps2x": ["--beta", "0.3", "--steps", "6000"],  # not the same budget: is it a budget question?
    "beta1-lr2e-3": ["--beta", "1", "--lr", "0.002"],  # is it the step size, as for the lines students?
    "beta1-lr3e-3": ["--beta", "1", "--lr", "0.003"],
}


# ------------------------------------------------------------------ data


def mixture(dim: int, n: int = 50_000, k: int = 8, seed: int = 0) -> np.ndarray:
    """k anisotropic, randomly rotated Gaussians with weights 0.75^j (normalised), centres at radius 4."""
    rng = np.random.default_rng(1000 + dim + seed)
    w = 0.75 ** np.arange(k)
    w /= w.sum()
    means = rng.standard_normal((k, dim))
    means *= 4.0 / np.linalg.norm(means, axis=1, keepdims=True)
    comp = rng.choice(k, size=n, p=w)
    x = np.empty((n, dim))
    for c in range(k):
        q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        scales = np.exp(rng.uniform(np.log(0.05), np.log(0.6), dim))
        idx = comp == c
        x[idx] = means[c] + (rng.standard_normal((int(idx.sum()), dim)) * scales) @ q.T
    return x.astype(np.float32)


def pinwheel(n: int = 50_000, arms: int = 5, seed: int = 0) -> np.ndarray:
    """The pinwheel of Johnson et al. (2016): arms stretched radially, sheared by their radius."""
    rng = np.random.default_rng(2000 + seed)
    label = rng.integers(0, arms, n)
    feats = rng.standard_normal((n, 2)) * np.array([0.3, 0.05]) + np.array([1.0, 0.0])
    ang = 2 * np.pi * label / arms + 0.25 * np.exp(feats[:, 0])
    rot = np.stack([np.cos(ang), -np.sin(ang), np.sin(ang), np.cos(ang)], 1).reshape(n, 2, 2)
    return (2.0 * np.einsum("ni,nji->nj", feats, rot)).astype(np.float32)


def data_arg(name: str, out: Path, rows: int) -> str:
    """The --data value of a set; generated sets are written to OUT/data/NAME.npy once."""
    if name in SETS_2D or name == "digits":
        return name
    path = out / "data" / f"{name}.npy"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        arr = pinwheel(rows) if name == "pinwheel" else mixture(int(name[3:]), rows)
        np.save(path, arr)
    return str(path.resolve())


def settings(name: str, quick: bool) -> dict:
    if quick:
        s = dict(steps=40, batch=64, pairs=2000, nfe=4, rows=6000, eval_n=200, quick=True)
        return {**s, "batch": 16, "pairs": 200, "steps": 10} if name == "digits" else s
    if name == "digits":
        return dict(steps=3000, batch=128, pairs=20_000, nfe=16, rows=0, eval_n=None)
    return dict(steps=3000, batch=256, pairs=100_000, nfe=100, rows=50_000, eval_n=None)


# ------------------------------------------------------------------ running


def sf(args: list[str], stdout=None) -> float:
    """Run `straightflow ARGS` (nice 10, one thread); the wall time in seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    cmd = ["nice", "-n", "10", sys.executable, "-m", "straightflow", *args]
    print("+ straightflow " + " ".join(args), flush=True)
    subprocess.run(cmd, env=env, check=True, stdout=stdout if stdout is not None else subprocess.DEVNULL)
    return time.perf_counter() - t0


def train(run: Path, args: list[str]) -> None:
    """Train into RUN unless finished; the wall time goes to RUN/time.json (a resumed run's is partial)."""
    if (run / "time.json").exists():
        return
    resume = ["--resume"] if (run / "config.yaml").exists() else []
    sec = sf(["train", *args, "--out", str(run), "--progress", "false", *resume])
    (run / "time.json").write_text(json.dumps({"train_seconds": sec, "resumed": bool(resume)}))


def evaluate(run: Path, nfes: str, seeds: int, n: int | None, reference: Path | None = None) -> dict:
    """``eval`` of RUN into RUN/eval.json, or with ``reference`` (the validation sample) into RUN/eval_val.json."""
    path = run / ("eval_val.json" if reference else "eval.json")
    if not path.exists():
        extra = (["-n", str(n)] if n else []) + (["--reference", str(reference)] if reference else [])
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # two bench processes on one run never share a file
        with open(tmp, "w") as f:
            sf(["eval", str(run), "--nfe", nfes, "--seeds", str(seeds), "--json", *extra], stdout=f)
        tmp.replace(path)
    return json.loads(path.read_text())


def per_seed(report: dict) -> dict[int, list[float]]:
    key = report["quality_metric"]
    return {r["nfe_requested"]: r.get(f"{key}_seeds", [r[key]]) for r in report["results"]}


def make_pairs(out: Path, name: str, n: int, nfe: int) -> Path:
    pdir = out / name / (f"pairs{n}" if n != settings_cache[name]["pairs"] else "pairs")
    done = pdir / "time.json"
    if not done.exists():
        sec = sf(["pairs", str(out / name / "teacher"), "-n", str(n), "--solver", "euler", "--nfe", str(nfe),
                  "--out", str(pdir), "--quiet"])
        done.write_text(json.dumps({"pairs_seconds": sec}))
    return pdir


settings_cache: dict[str, dict] = {}


def validation_sample(out: Path, name: str, s: dict) -> Path:
    """OUT/NAME/validation.npy: 2,000 points carved from the training rows (digits: all of a 20% carve), in data
    units; what chooses a recipe (never the held-out split that eval reports on)."""
    path = out / name / "validation.npy"
    if not path.exists():
        from straightflow.data import load_data
        from straightflow.data.base import DataOptions

        fraction = 0.2 if name == "digits" else 0.05
        data = load_data(data_arg(name, out, s["rows"]), DataOptions(validation_fraction=fraction, split_seed=0))
        x, _ = data.validation(10**9 if name == "digits" else 2000, 0)  # digits: every carved image
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, x.numpy().astype(np.float32))
    return path


def teacher(out: Path, name: str, s: dict, eval_seeds: int) -> dict:
    data = data_arg(name, out, s["rows"])
    run = out / name / "teacher"
    train(run, ["--data", data, "--method", "rectified", "--steps", str(s["steps"]), "--batch-size", str(s["batch"])])
    evaluate(run, str(s["nfe"]), eval_seeds, s["eval_n"], validation_sample(out, name, s))
    return evaluate(run, f"1,2,{s['nfe']}", eval_seeds, s["eval_n"])


def lever_args(lever: str, s: dict) -> tuple[list[str], int]:
    over, npairs, _ = LEVERS[lever]
    steps = s["steps"] * 2 if over.get("--steps") == "2x" else s["steps"]
    flags = {} if lever.startswith("default") else {**BASE, **over}
    flags.pop("--steps", None)
    args = ["--method", "lines", "--steps", str(steps), "--batch-size", str(s["batch"])]
    for k, v in flags.items():
        args += [k, v]
    if npairs and s.get("quick"):
        npairs = max(200, npairs // 50)
    return args, npairs or s["pairs"]


def students(out: Path, name: str, s: dict, levers: list[str], seeds: list[int], eval_seeds: int) -> None:
    for lever in levers:
        args, npairs = lever_args(lever, s)
        pdir = make_pairs(out, name, npairs, s["nfe"])
        for seed in seeds:
            run = out / name / "students" / f"{lever}_s{seed}"
            train(run, [*args, "--pairs", str(pdir), "--seed", str(seed)])
            evaluate(run, "1,2", eval_seeds, s["eval_n"])
            evaluate(run, "1,2", eval_seeds, s["eval_n"], validation_sample(out, name, s))


def curvature(out: Path, name: str, s: dict, eval_seeds: int, variants: list[str]) -> None:
    data = data_arg(name, out, s["rows"])
    for v in variants:
        run = out / name / "curvature" / v
        method = [] if "--method" in CURVATURE[v] else ["--method", "curvature"]
        steps = [] if "--steps" in CURVATURE[v] else ["--steps", str(s["steps"])]
        train(run, ["--data", data, *method, *CURVATURE[v], *steps, "--batch-size", str(s["batch"])])
        evaluate(run, f"1,2,{s['nfe']}", eval_seeds, s["eval_n"])


def _encoder_runs(out: Path, name: str, variants: list[str], result: str):
    """(run folder, RUN/result) of each finished curvature run with an encoder whose ``result`` is not written yet."""
    for v in variants:
        run_dir = out / name / "curvature" / v
        path = run_dir / result
        if not path.exists() and (run_dir / "eval.json").exists() and "--method" not in CURVATURE[v]:
            yield run_dir, path


def aggregate_check(out: Path, name: str, variants: list[str]) -> None:
    """Does prior noise, rather than the coupling, cost the curvature runs their NFE-1 quality? For each run with an
    encoder: W2 at Euler NFE 1, 2, 100 from N(0, I) and from a Gaussian fitted (mean, full covariance) to the
    aggregate posterior z ~ q(z|x) over 20,000 training points; 3 noise seeds, eval's reference (seed 0), in
    RUN/aggregate.json. In this process (one thread), not a subprocess."""
    import torch

    import straightflow as sf
    from straightflow.metrics.distances import wasserstein2

    torch.set_num_threads(1)
    for run_dir, path in _encoder_runs(out, name, variants, "aggregate.json"):
        run = sf.Run.load(run_dir, device="cpu")
        x, _ = run.data.sample_train(20_000, torch.Generator().manual_seed(123))
        with torch.no_grad():
            mu, logvar = run.module.coupling.encode(x, None)
            z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=torch.Generator().manual_seed(7))
        mean, chol = z.mean(0), torch.linalg.cholesky(torch.cov(z.T))
        ref, _ = run.data.reference(2000, 0)
        res: dict = {}
        for source in ("prior", "aggregate"):
            for k in (1, 2, 100):
                vals = []
                for seed in range(3):
                    eps = torch.randn(2000, z.shape[1], generator=torch.Generator().manual_seed(1000 + seed))
                    with torch.no_grad():
                        samples = run.solve_from(eps if source == "prior" else mean + eps @ chol.T, k, "euler").samples
                    vals.append(wasserstein2(samples, ref))
                res[f"{source}@{k}"] = statistics.mean(vals)
        print(f"{run_dir}: {json.dumps({k: round(v, 4) for k, v in res.items()})}", flush=True)
        path.write_text(json.dumps(res))


def fitted_check(out: Path, name: str, variants: list[str], eval_seeds: int, s: dict) -> None:
    """The curvature runs again, sampling from a mixture of 8 full-covariance Gaussians fitted to the aggregate
    posterior of 20,000 training points (`Run.fit_prior`, not saved into the run): `sf.evaluate` as `eval` does
    (same noise seeds, same reference), into RUN/eval_fitted.json. In this process (one thread)."""
    import torch

    import straightflow as sf

    torch.set_num_threads(1)
    for run_dir, path in _encoder_runs(out, name, variants, "eval_fitted.json"):
        run = sf.load(run_dir, device="cpu")
        run.fit_prior(components=8, n=20_000, save=False)
        rep = sf.evaluate(run, nfes=[1, 2, s["nfe"]], seeds=eval_seeds, n=s["eval_n"])
        print(f"{run_dir}: fitted prior, {rep['quality_metric']} "
              + " ".join(f"@{r['nfe_requested']} {r[rep['quality_metric']]:.4g}" for r in rep["results"]), flush=True)
        path.write_text(json.dumps(rep))


# ------------------------------------------------------------------ tables


def overfit_check(out: Path, name: str) -> None:
    """Does a student fit its training pairs better than held-out ones? One-step MSE (model units) on the
    first 2,000 training pairs against the 2,000 held-out pairs, for every finished student of NAME."""
    import torch

    import straightflow as sfl
    from straightflow.data.pairs import PairData
    from straightflow.objectives import one_step

    print(f"\n#### {name}: one-step MSE to x* on training vs held-out pairs\n")
    print("| student | pairs | train pairs | held-out pairs | held-out / train |\n|---|---|---|---|---|")
    for f in sorted((out / name / "students").glob("*_s*/eval.json")):
        run = sfl.load(str(f.parent), device="cpu")
        pairs = PairData.open(run.cfg.pairs, base=run.data)
        xh, zh = pairs.heldout_pairs(2000)
        xt, zt = pairs.gather(np.arange(min(2000, pairs.n_train)))
        with torch.no_grad():
            tr = float((one_step(run.velocity, zt) - xt).pow(2).mean())
            he = float((one_step(run.velocity, zh) - xh).pow(2).mean())
        print(f"| {f.parent.name} | {pairs.n_train:,} | {tr:.4g} | {he:.4g} | {he / tr:.2f}x |")


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def _student_rows(folder: Path) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for f in sorted(folder.glob("*_s*/eval.json")):
        lever, seed = f.parent.name.rsplit("_s", 1)
        q = per_seed(json.loads(f.read_text()))
        timing = f.parent / "time.json"
        tm = json.loads(timing.read_text())["train_seconds"] if timing.exists() else None
        val = f.parent / "eval_val.json"
        v = per_seed(json.loads(val.read_text())) if val.exists() else None
        rows.setdefault(lever, []).append({"seed": int(seed), "q1": statistics.mean(q[1]), "q2": statistics.mean(q[2]),
                                           "v1": statistics.mean(v[1]) if v else None,
                                           "time": tm, "distill": json.loads(f.read_text()).get("distill_error")})
    return rows


def table(out: Path, name: str) -> None:
    tdir = out / name / "teacher"
    if not (tdir / "eval.json").exists():
        return
    trep = json.loads((tdir / "eval.json").read_text())
    metric = trep["quality_metric"]
    tq = per_seed(trep)
    top = max(tq)
    t1, t_top = statistics.mean(tq[1]), statistics.mean(tq[top])
    floor = trep.get(metric + "_floor", float("nan"))
    print(f"\n### {name} ({metric}; floor {floor:.4g}; teacher {metric} at NFE 1 / 2 / {top}: {t1:.4g} / "
          f"{statistics.mean(tq[2]):.4g} / {t_top:.4g}, noise seeds {trep['seeds'][0]}-{trep['seeds'][-1]})\n")
    tval = tdir / "eval_val.json"
    t_val = statistics.mean(per_seed(json.loads(tval.read_text()))[top]) if tval.exists() else None
    rows = _student_rows(out / name / "students")
    base_t = statistics.mean([r["time"] for r in rows.get("plain", []) if r["time"]] or [float("nan")])
    head = ["lever", "seeds", f"val {metric}@1 / teacher@{top} (chooses)", f"{metric}@1 / teacher@{top}",
            f"{metric}@2 / teacher@{top}", f"{metric}@1", "distill err", "train s", "cost"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for lever in [x for x in LEVERS if x in rows] + sorted(x for x in rows if x not in LEVERS):
        rs = rows[lever]
        times = [r["time"] for r in rs if r["time"]]
        t = statistics.mean(times) if times else float("nan")
        distill = f"{statistics.mean(r['distill'] for r in rs):.4g}" if rs[0]["distill"] is not None else "-"
        val = _ms([r["v1"] / t_val for r in rs]) if t_val and all(r["v1"] for r in rs) else "-"
        cells = [lever, ",".join(str(r["seed"]) for r in rs), val, _ms([r["q1"] / t_top for r in rs]),
                 _ms([r["q2"] / t_top for r in rs]), _ms([r["q1"] for r in rs]), distill, f"{t:.0f}",
                 f"{t / base_t:.2f}x" if base_t == base_t else "-"]
        print("| " + " | ".join(cells) + " |")
    curv = sorted((out / name / "curvature").glob("*/eval.json"))
    if curv:
        print(f"\n#### curvature method on {name} (baseline = the teacher, rectified flow; "
              "-w512 runs against baseline-w512)\n")
        print(f"| run | {metric}@1 | {metric}@2 | {metric}@{top} | gain @1 (baseline / run) "
              f"| price @{top} (run / baseline) | KL/dim | {metric}@1 from encoder z | z norm / prior's "
              f"| {metric}@1 from N(0, I) / fitted aggregate | train s |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        print(f"| baseline | {t1:.4g} | {statistics.mean(tq[2]):.4g} | {t_top:.4g} | 1 | 1 | - | - | - | - | - |")
        means = {f.parent.name: {k: statistics.mean(v) for k, v in per_seed(json.loads(f.read_text())).items()}
                 for f in curv}
        for f in curv:
            rep, q = json.loads(f.read_text()), means[f.parent.name]
            b1, btop = (t1, t_top)
            if f.parent.name.endswith("-w512") and "baseline-w512" in means:
                b1, btop = means["baseline-w512"][1], means["baseline-w512"][top]
            timing = f.parent / "time.json"
            tm = f"{json.loads(timing.read_text())['train_seconds']:.0f}" if timing.exists() else "-"
            recon = next((r.get(f"recon_{metric}") for r in rep.get("recon_results", []) if r["nfe_requested"] == 1),
                         None)
            znorm = rep["z_norm"] / rep["z_norm_prior"] if rep.get("z_norm_prior") else None
            extra = [f"{v:.4g}" if v is not None else "-" for v in (rep.get("kl"), recon, znorm)]
            agg = f.parent / "aggregate.json"
            if agg.exists():
                a = json.loads(agg.read_text())
                extra.append(f"{a['prior@1']:.4g} / {a['aggregate@1']:.4g}")
            else:
                extra.append("-")
            print(f"| {f.parent.name} | {q[1]:.4g} | {q[2]:.4g} | {q[top]:.4g} | {b1 / q[1]:.2f}x | "
                  f"{q[top] / btop:.2f}x | {' | '.join(extra)} | {tm} |")
    fitted = sorted((out / name / "curvature").glob("*/eval_fitted.json"))
    if fitted:
        print(f"\n#### curvature method on {name}, sampled from a fitted prior (8 Gaussians fitted to the aggregate "
              "posterior; baseline = the teacher from N(0, I))\n")
        print(f"| run | {metric}@1 | {metric}@2 | {metric}@{top} | gain @1 (baseline / run) "
              f"| price @{top} (run / baseline) | gain @1 from N(0, I) |")
        print("|---|---|---|---|---|---|---|")
        for f in fitted:
            q = {k: statistics.mean(v) for k, v in per_seed(json.loads(f.read_text())).items()}
            plain_rep = json.loads((f.parent / "eval.json").read_text())
            plain = {k: statistics.mean(v) for k, v in per_seed(plain_rep).items()}
            print(f"| {f.parent.name} | {q[1]:.4g} | {q[2]:.4g} | {q[top]:.4g} | {t1 / q[1]:.2f}x | "
                  f"{q[top] / t_top:.2f}x | {t1 / plain[1]:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/student_gap")
    ap.add_argument("--only", action="append", choices=ALL_SETS, help="data set (repeatable; default: all)")
    ap.add_argument("--lever", action="append", choices=list(LEVERS), help="lever (repeatable; default: all)")
    ap.add_argument("--part", choices=("students", "curvature", "aggregate", "fitted", "overfit"), default="students",
                    help="aggregate: the prior-vs-aggregate-posterior check of finished curvature runs; fitted: "
                         "those runs sampled from a mixture fitted to the aggregate posterior; overfit: finished "
                         "students' one-step error on training vs held-out pairs")
    ap.add_argument("--curvature", action="append", choices=list(CURVATURE), help="curvature runs (default: all)")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per student: 0 .. N-1 (default 3)")
    ap.add_argument("--seed", type=int, action="append", help="train only these seeds (repeatable; instead of --seeds)")
    ap.add_argument("--eval-seeds", type=int, default=3, help="noise seeds per evaluation (default 3; digits: 6)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks every command, measures nothing")
    ap.add_argument("--table", action="store_true", help="print the tables only")
    args = ap.parse_args()
    out = Path(args.out)
    sets = args.only or list(ALL_SETS)
    for name in sets:
        settings_cache[name] = settings(name, args.quick)
    if args.part == "overfit":
        for name in sets:
            overfit_check(out, name)
        return
    if not args.table:
        for name in sets:
            s = settings_cache[name]
            es = args.eval_seeds if name != "digits" or args.quick else max(args.eval_seeds, 6)
            teacher(out, name, s, es)
            if args.part == "students":
                seeds = [0] if args.quick else args.seed or list(range(args.seeds))
                students(out, name, s, args.lever or list(LEVERS), seeds, es)
            elif args.part == "curvature" and name != "digits":
                curvature(out, name, s, es, args.curvature or list(CURVATURE))
            elif args.part == "aggregate" and name != "digits":
                aggregate_check(out, name, args.curvature or list(CURVATURE))
            elif name != "digits":
                fitted_check(out, name, args.curvature or list(CURVATURE), es, s)
    for name in sets:
        table(out, name)


if __name__ == "__main__":
    main()
