"""Beta by KL budget (docs/kl_target.md): fixed-beta sweep vs --kl-target vs --beta auto.

    OMP_NUM_THREADS=1 python bench/kl_target.py --out runs/kl_target            # 4 2D sets, 3000 steps
    OMP_NUM_THREADS=1 python bench/kl_target.py --out runs/kl_target --quick    # 1000 steps
    python bench/kl_target.py --out runs/kl_target --sweep-dir runs/curvature   # reuse straightflow sweep folders
    # another training seed, auto only
    OMP_NUM_THREADS=1 python bench/kl_target.py --out runs/kl_target_s1 --seed 1 --targets ""
    python bench/kl_target.py --across runs/kl_target,runs/kl_target_s1               # the Done-when lines across seeds
    python bench/kl_target.py --across runs/kl_target,runs/kl_target_s1 --recheck-seed 200  # and on 30 further draws

Per dataset: the fixed-beta sweep (``straightflow sweep``'s ``run_sweep``: betas 0.3,1,3,10,30,inf,
in ``OUT/<set>/sweep`` or ``SWEEP_DIR/2d-<set>`` when given and present), ``--kl-target`` runs at
``--targets`` and one ``--beta auto`` run, all at the experiments page's 2D settings (MLP width 256,
depth 3, batch 256, n = 2000; docs/experiments-full.md 3.1). ``--seed`` (default 0) is every run's
training seed. The held-out KL is ``evaluate``'s (at that seed); the W2 columns and the checks are
the mean over ``--eval-draws`` (default 5) draws of noise and reference (Euler, NFE 1 and 100,
``QualityProbe`` seeds 100.., disjoint from the seeds 0.. on which ``--beta auto``'s pilots price
themselves; ``--auto-draws`` sets their number, ``--beta-auto-draws``): one draw at n = 2000 varies
too much to judge a 1.5x line (docs/kl_target.md). ``--across`` also tallies the lines judged on
the first 5 draws alone, which is the default judge, for folders judged on more; with ``--recheck-seed S`` it
also judges each same-seed case on ``--recheck-draws`` (30) further draws, seeds S.., and on those pooled with
the check's (``recheck``: the baseline, auto, the check's best admissible beta and the next lower one are
drawn again, cached in eval_recheck.json; the other betas are clear of the line and keep the check's draws). Prints per
set a table (target K, measured held-out KL, ratio, W2 at NFE 1 and 100) and the Done-when lines with PASS/FAIL:

* auto W2 at NFE 100 <= 1.5x the baseline's (beta = inf);
* auto W2 at NFE 1 <= 1.15x the best W2 at NFE 1 among the fixed betas whose W2 at NFE 100 is
  within 1.5x of the baseline's ("admissible");
* every --kl-target run (and auto): |held-out KL - K| <= 20% of K.

Everything resumes: finished runs and their evaluations are reused. ``--digits`` adds the digits
set (UNet, its sweep settings; slow on CPU).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from straightflow.evaluate import evaluate
from straightflow.experiments.sweep import run_sweep
from straightflow.metrics import wasserstein2
from straightflow.noise import seeded_noise
from straightflow.run import Run
from straightflow.solvers import solve
from straightflow.training import train
from straightflow.training.monitor import QualityProbe

SETS = ("moons", "8gaussians", "checkerboard", "spirals")
BETAS = (0.3, 1.0, 3.0, 10.0, 30.0, math.inf)
NFES = (1, 100)
#: the checks' W2: the mean of EVAL_DRAWS draws (``--eval-draws``) of noise and reference, seeds
#: EVAL_SEED.., disjoint from the seeds 0.. on which --beta auto's pilots price themselves (so the
#: check is not their own draw); OLD_DRAWS: the default judge, tallied beside a longer one by --across
EVAL_SEED, EVAL_DRAWS, OLD_DRAWS = 100, 5, 5


def _label(b: float) -> str:
    return "inf" if math.isinf(b) else f"{b:g}"


def _quality_key(scores: dict, nfe: int) -> str:
    return next(name for name in scores if name.endswith(f"_nfe{nfe}") and not name.startswith("energy"))


def _draws(run_dir: Path, n: int, draws: int) -> dict:
    """W2 at NFES as the mean of ``draws`` draws and each draw's value (``{"mean": {nfe: w2}, "per_draw":
    {nfe: [w2, ...]}}``; FD for images), cached in eval_draws.json."""
    cache = run_dir / "eval_draws.json"
    key = {"n": n, "seed": EVAL_SEED, "draws": draws}
    saved = json.loads(cache.read_text()) if cache.exists() else {}
    if saved.get("key") == key and "per_draw" in saved:  # (an older bench kept only the means: evaluated again)
        return {part: {int(k): v for k, v in saved[part].items()} for part in ("mean", "per_draw")}
    run = Run.load(run_dir, device="cpu")
    probe = QualityProbe(run.data, list(NFES), n=n, solver=run.method.default_solver, prior=run.prior, seed=EVAL_SEED,
                         draws=draws)
    result = probe(run.velocity_fn())
    keys = {k: _quality_key(result.scores, k) for k in NFES}
    quality = {"mean": {k: result.scores[keys[k]] for k in NFES},
               "per_draw": {k: [d[keys[k]] for d in result.draws] for k in NFES}}
    cache.write_text(json.dumps({"key": key, **quality}, indent=1))
    return quality


def _recheck_draws(run_dir: Path, n: int, seed: int, draws: int) -> dict:
    """W2 at NFES of each of ``draws`` further draws (seeds ``seed``..; noise and held-out reference as
    ``QualityProbe``'s, no floor), ``{nfe: [w2, ...]}``, cached in eval_recheck.json."""
    cache = run_dir / "eval_recheck.json"
    key = {"n": n, "seed": seed, "draws": draws}
    saved = json.loads(cache.read_text()) if cache.exists() else {}
    if saved.get("key") == key:
        return {int(k): v for k, v in saved["per_draw"].items()}
    run = Run.load(run_dir, device="cpu")
    velocity, data = run.velocity_fn(), getattr(run.data, "base", run.data)
    per_draw: dict = {k: [] for k in NFES}
    for s in range(seed, seed + draws):
        (reference, _), noise = data.reference(n, s), seeded_noise(n, tuple(data.shape), s, "sample", run.prior)
        with torch.inference_mode():
            for k in NFES:
                samples = data.denormalize(solve(velocity, noise, run.method.default_solver, k).samples).float()
                per_draw[k].append(wasserstein2(samples, reference, []))
    cache.write_text(json.dumps({"key": key, "per_draw": per_draw}, indent=1))
    return per_draw


def _train_eval(run_dir: Path, n: int, draws: int, **kw) -> dict:
    """Train ``run_dir`` (resuming / skipping when done) and evaluate it (cached in eval_kl.json)."""
    cache = run_dir / "eval_kl.json"
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved.get("key") == {"steps": kw["steps"], "n": n}:
            return saved["report"] | {"draws": _draws(run_dir, n, draws)}
    done = (run_dir / "config.yaml").exists()
    if done:
        train(out=str(run_dir), resume=True, steps=kw["steps"], progress=False)
    else:
        train(out=str(run_dir), progress=False, **kw)
    report = evaluate(Run.load(run_dir, device="cpu"), list(NFES), n=n, seed=kw.get("seed", 0), progress=False)
    cache.write_text(json.dumps({"key": {"steps": kw["steps"], "n": n}, "report": report}, indent=1))
    return report | {"draws": _draws(run_dir, n, draws)}


def _row(name: str, report: dict, target: float | None) -> dict:
    """One table row; ``w2_<nfe>`` is the mean of the draws (W2 for vectors, FD for digits, in the same
    columns), ``w2_<nfe>_draws`` each draw's value."""
    kl = float(report.get("kl", 0.0))
    draws = report["draws"]
    return {"run": name, "target": target, "kl": kl, "ratio": kl / target if target else None,
            **{f"w2_{k}": draws["mean"][k] for k in NFES}, **{f"w2_{k}_draws": draws["per_draw"][k] for k in NFES}}


def bench_set(data: str, out: Path, steps: int, targets: list[float], common: dict, n: int, sweep_dir: Path | None,
              seed: int = 0, auto_kw: dict | None = None, draws: int = EVAL_DRAWS) -> dict:
    common = dict(common, seed=seed)
    sweep_out = (sweep_dir / f"2d-{data}"
                 if sweep_dir is not None and (sweep_dir / f"2d-{data}").is_dir() else out / data / "sweep")
    sweep = run_sweep(sweep_out, data, list(BETAS), steps, batch_size=common["batch_size"], nfes=list(NFES), n=n,
                      seed=seed, trajectories=False, quiet=True, width=common["width"], depth=common["depth"],
                      progress=False)
    fixed = [_row(f"beta={_label(float(r['beta']))}", r["report"] | {"draws": _draws(Path(r["run"]), n, draws)}, None)
             | {"beta": float(r["beta"])} for r in sweep["runs"]]
    base = next(r for r in fixed if math.isinf(r["beta"]))
    rows = []
    for k in targets:
        rep = _train_eval(out / data / f"kl-{k:g}", n, draws, data=data, method="curvature", kl_target=k, steps=steps,
                          **common)
        rows.append(_row(f"kl_target={k:g}", rep, k))
    auto_dir = out / data / "auto"
    rep = _train_eval(auto_dir, n, draws, data=data, method="curvature", beta="auto", steps=steps, **common,
                      **(auto_kw or {}))
    auto_k = Run.load(auto_dir, device="cpu").cfg.kl_target
    auto = _row("beta=auto", rep, auto_k)
    rows.append(auto)
    limit = 1.5 * base["w2_100"]
    admissible = [r for r in fixed if r["w2_100"] <= limit]
    best = min(admissible, key=lambda r: r["w2_1"])
    checks = {
        "auto W2@100 <= 1.5x baseline": (auto["w2_100"] <= limit,
                                         f"{auto['w2_100']:.4g} vs {limit:.4g} "
                                         f"({auto['w2_100'] / base['w2_100']:.3g}x)"),
        "auto W2@1 <= 1.15x best admissible": (auto["w2_1"] <= 1.15 * best["w2_1"],
                                               f"{auto['w2_1']:.4g} vs {best['run']} {best['w2_1']:.4g} "
                                               f"({auto['w2_1'] / best['w2_1']:.3g}x)"),
        "held-out KL within 20% of K": (all(abs(r["ratio"] - 1) <= 0.2 for r in rows),
                                        ", ".join(f"{r['ratio']:.3g}" for r in rows)),
    }
    return {"data": data, "steps": steps, "seed": seed, "fixed": fixed, "targets": rows, "baseline": base,
            "best_admissible": best["run"],
            "checks": {k: {"pass": bool(ok), "detail": d} for k, (ok, d) in checks.items()},
            "auto_record": (json.loads((auto_dir / "beta_auto.json").read_text())
                            if (auto_dir / "beta_auto.json").exists() else None)}


def _f(v) -> str:
    return "-" if v is None else f"{v:.4g}"


def format_set(res: dict) -> str:
    limit = 1.5 * res["baseline"]["w2_100"]
    lines = [f"**{res['data']}** ({res['steps']} steps, training seed {res.get('seed', 0)})", "",
             "| run | target K | held-out KL | KL / K | W2 NFE 1 | W2 NFE 100 | W2@100 / baseline |",
             "|---|---|---|---|---|---|---|"]
    for r in res["fixed"] + res["targets"]:
        mark = " (best admissible)" if r["run"] == res["best_admissible"] else ""
        adm = "" if r["w2_100"] <= limit else " (over 1.5x)"
        lines.append(f"| {r['run']}{mark} | {_f(r['target'])} | {_f(r['kl'])} | {_f(r['ratio'])} | {_f(r['w2_1'])} | "
                     f"{_f(r['w2_100'])} | {r['w2_100'] / res['baseline']['w2_100']:.3g}{adm} |")
    lines.append("")
    for name, c in res["checks"].items():
        lines.append(f"- {'PASS' if c['pass'] else 'FAIL'}: {name}: {c['detail']}")
    rec = res.get("auto_record")
    if rec:
        lines.append(f"- auto: K = {rec['kl_target']:.4g} ({rec['why']}); pilots ({rec['pilot_steps']} steps) beta: "
                     "W2@100 ratio "
                     + ", ".join(f"{p['beta']}: {p['ratio']:.3g}" for p in rec["pilots"]))
    return "\n".join(lines)


def across_seeds(folders: list[Path]) -> str:
    """The two ``--beta auto`` Done-when lines with every seed's auto run judged against every
    seed's sweep (``kl_target.json`` of bench folders run with different ``--seed``): the
    diagonal is the paired check the bench prints, the rest says whether the choice holds up
    against a sweep trained on other batches and noise."""
    runs = [json.loads((f / "kl_target.json").read_text()) for f in folders]
    old_judge = [0, 0]  # the same-seed lines judged on the first OLD_DRAWS draws only
    lines = ["| set | auto seed | sweep seed | auto K | auto W2@1 | best admissible | its W2@1 | W2@1 ratio | "
             "auto W2@100 / baseline | both lines |", "|---|---|---|---|---|---|---|---|---|---|"]
    tally = {"paired": [0, 0], "unpaired": [0, 0]}
    for data in dict.fromkeys(r["data"] for rs in runs for r in rs):
        per_seed = [next(r for r in rs if r["data"] == data) for rs in runs if any(r["data"] == data for r in rs)]
        for a in per_seed:
            auto = next(r for r in a["targets"] if r["run"] == "beta=auto")
            for b in per_seed:
                best = next(r for r in b["fixed"] if r["run"] == b["best_admissible"])
                r1, r100 = auto["w2_1"] / best["w2_1"], auto["w2_100"] / b["baseline"]["w2_100"]
                ok = r1 <= 1.15 and r100 <= 1.5
                kind = "paired" if a["seed"] == b["seed"] else "unpaired"
                if kind == "paired" and "w2_1_draws" in auto:
                    old_judge[0] += _both_lines(auto, b, OLD_DRAWS)
                    old_judge[1] += 1
                tally[kind][0] += ok
                tally[kind][1] += 1
                lines.append(f"| {data} | {a['seed']} | {b['seed']} | {auto['target']:.4g} | {auto['w2_1']:.4g} | "
                             f"{best['run']} | {best['w2_1']:.4g} | {r1:.3g} | {r100:.3g} | "
                             f"{'PASS' if ok else 'FAIL'} |")
    lines += ["", f"- same seed: {tally['paired'][0]}/{tally['paired'][1]} pass both lines; "
                  f"other seeds: {tally['unpaired'][0]}/{tally['unpaired'][1]}"]
    if old_judge[1]:
        lines.append(f"- same seed, judged on the first {OLD_DRAWS} draws only (seeds "
                     f"{EVAL_SEED}-{EVAL_SEED + OLD_DRAWS - 1}, the default judge): {old_judge[0]}/{old_judge[1]}")
    return "\n".join(lines)


def _lines(auto: dict, baseline: dict, fixed: list[dict], q) -> tuple[bool, float, float, dict]:
    """The two auto lines with every W2 read by ``q(row, nfe)``: (both hold, auto W2@100 / baseline's, auto W2@1 /
    the best admissible fixed beta's, that beta's row)."""
    limit = 1.5 * q(baseline, 100)
    best = min((r for r in fixed if q(r, 100) <= limit), key=lambda r: q(r, 1))
    r100, r1 = q(auto, 100) / q(baseline, 100), q(auto, 1) / q(best, 1)
    return r100 <= 1.5 and r1 <= 1.15, r100, r1, best


def _both_lines(auto: dict, res: dict, draws: int) -> bool:
    """The two auto lines of ``res``'s sweep, every W2 the mean of its first ``draws`` draws."""
    def q(row: dict, nfe: int) -> float:
        vals = row[f"w2_{nfe}_draws"][:draws]
        return sum(vals) / len(vals)
    return _lines(auto, res["baseline"], res["fixed"], q)[0]


def recheck(folders: list[Path], seed: int, draws: int, n: int) -> str:
    """The same-seed auto lines of ``folders`` on ``draws`` further draws (seeds ``seed``..), and on those pooled with
    the check's own: how much of a verdict near a line is the check's draw. Rechecked: the baseline, auto, the best
    admissible fixed beta of the check and the next lower beta; the other betas, clear of the line, keep the check's
    draws."""
    lines = ["| set | seed | draws | baseline W2@100 | auto W2@100 / baseline | best admissible | auto W2@1 / its | "
             "both lines |",
             "|---|---|---|---|---|---|---|---|"]
    tally = {"check": [0, 0], "recheck": [0, 0], "pooled": [0, 0]}
    for folder in folders:
        for res in json.loads((folder / "kl_target.json").read_text()):
            root = folder / res["data"]
            auto = next(r for r in res["targets"] if r["run"] == "beta=auto")
            fixed = sorted(res["fixed"], key=lambda r: -r["beta"])
            i = next(j for j, r in enumerate(fixed) if r["run"] == res["best_admissible"])
            again = {"beta=auto": root / "auto"} | {r["run"]: root / "sweep" / f"beta-{_label(r['beta'])}" for r in
                                                   [fixed[0]] + fixed[i:i + 2]}
            fresh = {name: _recheck_draws(path, n, seed, draws) for name, path in again.items()}
            for kind in tally:
                def q(row: dict, nfe: int) -> float:
                    again_draws = fresh.get(row["run"], {}).get(nfe, [])
                    vals = {"check": row[f"w2_{nfe}_draws"], "recheck": again_draws,
                            "pooled": row[f"w2_{nfe}_draws"] + again_draws}[kind]
                    return sum(vals) / len(vals) if vals else row[f"w2_{nfe}"]
                ok, r100, r1, best = _lines(auto, fixed[0], fixed, q)
                tally[kind][0] += ok
                tally[kind][1] += 1
                label = {"check": f"check, {len(auto['w2_100_draws'])}", "recheck": f"seeds {seed}-{seed + draws - 1}",
                         "pooled": f"pooled, {len(auto['w2_100_draws']) + draws}"}[kind]
                lines.append(f"| {res['data']} | {res['seed']} | {label} | {q(fixed[0], 100):.4g} | {r100:.3g} | "
                             f"{best['run']} | {r1:.3g} | {'PASS' if ok else 'FAIL'} |")
    lines += [""] + [f"- {kind}: {a}/{b} pass both lines" for kind, (a, b) in tally.items()]
    return "\n".join(lines)


def _merge(out: Path, results: list[dict]) -> list[dict]:
    """Write ``results`` into ``OUT/kl_target.json``, keeping the other sets' entries there (a folder
    may be filled by several processes, one per ``--data``); returns the merged list."""
    path = out / "kl_target.json"
    mine = {r["data"] for r in results}
    merged = [r for r in (json.loads(path.read_text()) if path.exists() else []) if r["data"] not in mine] + results
    merged.sort(key=lambda r: (SETS + ("digits",)).index(r["data"])
                if r["data"] in SETS + ("digits",) else len(SETS) + 1)
    path.write_text(json.dumps(merged, indent=1))
    return merged


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="bench folder (resumable)")
    p.add_argument("--across", default=None, help="comma-separated finished bench folders (different --seed): "
                                                  "print the auto lines of every seed's auto run against every seed's "
                                                  "sweep, and exit")
    p.add_argument("--data", default=",".join(SETS), help="comma-separated 2D sets (default the four)")
    p.add_argument("--digits", action="store_true", help="also the digits set (UNet; slow on CPU)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--quick", action="store_true", help="1000 steps")
    p.add_argument("--targets", default="0.03,0.1,0.3", help="--kl-target values (nats per dimension)")
    p.add_argument("--seed", type=int, default=0,
                   help="training seed of every run (the sweep's, the targets' and auto's)")
    p.add_argument("--sweep-dir", default=None, help="a folder of `straightflow sweep` outputs named 2d-<set> to reuse")
    p.add_argument("-n", type=int, default=2000)
    p.add_argument("--eval-draws", type=int, default=EVAL_DRAWS,
                   help="draws of noise and reference each check averages")
    p.add_argument("--auto-draws", type=int, default=None,
                   help="--beta-auto-draws of the auto runs (default the library's)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--recheck-seed", type=int, default=None, help="with --across: also judge each same-seed case on "
                                                                   "--recheck-draws further draws from this seed, "
                                                                   "and pooled")
    p.add_argument("--recheck-draws", type=int, default=30)
    args = p.parse_args(argv)
    if args.across:
        folders = [Path(f) for f in args.across.split(",") if f.strip()]
        print(across_seeds(folders))
        if args.recheck_seed is not None:
            print("\n" + recheck(folders, args.recheck_seed, args.recheck_draws, args.n))
        return 0
    if not args.out:
        p.error("--out is required (or --across)")
    steps = 1000 if args.quick else args.steps
    targets = [float(t) for t in args.targets.split(",") if t.strip()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = dict(batch_size=args.batch_size, width=args.width, depth=args.depth)
    auto_kw = {} if args.auto_draws is None else {"beta_auto_draws": args.auto_draws}
    sets = [s for s in args.data.split(",") if s.strip()] + (["digits"] if args.digits else [])
    results, texts = [], []
    for data in sets:
        res = bench_set(data, out, steps, targets,
                        common if data != "digits" else dict(batch_size=128, width=args.width, depth=args.depth),
                        args.n, Path(args.sweep_dir) if args.sweep_dir else None, args.seed, auto_kw, args.eval_draws)
        results.append(res)
        texts.append(format_set(res))
        print(texts[-1] + "\n", flush=True)
        _merge(out, results)
    (out / "kl_target.md").write_text("\n\n".join(format_set(r) for r in _merge(out, results)) + "\n")
    ok = all(c["pass"] for r in results for c in r["checks"].values())
    print(f"overall: {'PASS' if ok else 'FAIL'} ({sum(c['pass'] for r in results for c in r['checks'].values())}/"
          f"{sum(len(r['checks']) for r in results)} checks)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
