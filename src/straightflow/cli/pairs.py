"""``straightflow pairs``: (noise, teacher sample) pairs from a run, a callable, a diffusers folder or an
EDM denoiser (``docs/lines.md``, ``docs/teachers.md``)."""

from __future__ import annotations

import os

from ..errors import StraightflowError
from .common import absolute_paths, add_dry_run_flag, check_out


# ---------------------------------------------------------------- pairs
def _add_pairs(p) -> None:
    p.add_argument("teacher", nargs="?", help="teacher run directory (any trained run); or use --teacher-callable")
    p.add_argument("--teacher-callable", default=None, metavar="MODULE:FN",
                   help="a teacher of your own: package.module:function or path/to/file.py:function (needs --data)")
    p.add_argument("--teacher-kind", default=None,
                   help="velocity: FN(x, t) in straightflow's convention, solved by --solver; sampler: FN(z) -> x* "
                        "(default velocity; "
                        "with --teacher-diffusers / --teacher-edm: sampler, the model's own deterministic sampler)")
    p.add_argument("--teacher-arg", action="append", default=None, metavar="KEY=VALUE",
                   help="repeatable: the --teacher-callable / --teacher-edm function is a factory, called once as "
                        "FN(KEY=VALUE, ...) "
                        "(string values) to make the teacher; recorded with the pairs")
    p.add_argument("--teacher-diffusers", default=None, metavar="DIR",
                   help="a pretrained diffusers model (docs/teachers.md): a pipeline folder, or a UNet folder with "
                        "--scheduler-dir (needs --data)")
    p.add_argument("--scheduler", default=None,
                   help="with --teacher-diffusers: ddim | dpm | euler, the deterministic sampler its saved scheduler "
                        "is converted to (default ddim; --nfe = its steps)")
    p.add_argument("--scheduler-dir", default=None, metavar="DIR",
                   help="with --teacher-diffusers: the scheduler folder (scheduler_config.json); overrides a "
                        "pipeline's own")
    p.add_argument("--clip-sample", default=None, choices=("true", "false"),
                   help="with --teacher-diffusers --scheduler ddim: clamp DDIM's x0 prediction (default: as the saved "
                        "config says)")
    p.add_argument("--teacher-edm", default=None, metavar="MODULE:FN",
                   help="an EDM denoiser D(x, sigma) (VE, docs/teachers.md): sampler = EDM's Heun sampler at an odd "
                        "--nfe, velocity = solved by --solver (needs --data)")
    p.add_argument("--data", default=None,
                   help="with --teacher-callable: the data the teacher models (its shape, units and held-out set)")
    p.add_argument("-n", type=int, required=True, help="number of pairs")
    p.add_argument("--out", required=True, help="pairs folder (created; rerun the same command to resume)")
    p.add_argument("--solver", default="euler",
                   help="euler | heun | rk45 (default euler; rk45 pairs end at t = 0: x* = x_hat at t = 1e-3)")
    p.add_argument("--nfe", type=int, default=128,
                   help="teacher NFE per pair (default 128; ignored by rk45; a sampler's stated cost)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-size", type=int, default=None,
                   help="pairs per shard (default: ~32 MiB per array, at most 100,000)")
    p.add_argument("--heldout", type=int, default=None,
                   help="last pairs kept out of training (default min(2000, n/10))")
    p.add_argument("--batch-size", type=int, default=4096, help="pairs solved together (RK45's NFE depends on it)")
    p.add_argument("--device", default="auto")
    p.add_argument("--guidance", type=float, default=None, metavar="W",
                   help="a conditional teacher run: label every pair and solve the guided velocity at w (default 1); a "
                        "guided step costs 2 network evaluations")
    p.add_argument("--prior", default=None, metavar="standard|wide",
                   help="with --teacher-callable: the noise z is drawn from (default standard = N(0, I)); recorded, "
                        "and a student of another prior is refused")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_dry_run_flag(p, "pairs")


def parse_teacher_args(items: list[str] | None) -> dict[str, str]:
    """``--teacher-arg KEY=VALUE`` flags as a dict (values stay strings); a malformed or repeated key is a one-line
    error."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise StraightflowError(f"--teacher-arg {item!r}: use KEY=VALUE")
        if key in out:
            raise StraightflowError(f"--teacher-arg {key} given twice")
        out[key] = value
    return out


def _run_pairs(args) -> int:
    from ..experiments.pairs import pairs_from_callable, pairs_from_diffusers, pairs_from_edm, pairs_from_run

    check_out(args.out, "folder", "pairs")
    common = dict(solver=args.solver, nfe=args.nfe, seed=args.seed, shard_size=args.shard_size, heldout=args.heldout,
                  batch_size=args.batch_size, device=args.device, progress=not args.quiet, dry_run=args.dry_run)
    sources = [name for name, given in (("a teacher run directory", args.teacher),
                                        ("--teacher-callable", args.teacher_callable),
                                         ("--teacher-diffusers", args.teacher_diffusers),
                                         ("--teacher-edm", args.teacher_edm)) if given]
    teacher_args = parse_teacher_args(args.teacher_arg)
    if teacher_args and not (args.teacher_callable or args.teacher_edm):
        raise StraightflowError("pairs: --teacher-arg goes with --teacher-callable or --teacher-edm (a factory of "
                                "the teacher)")
    if not args.teacher_diffusers and (args.scheduler or args.scheduler_dir or args.clip_sample):
        raise StraightflowError("pairs: --scheduler, --scheduler-dir and --clip-sample go with --teacher-diffusers")
    if args.teacher_diffusers or args.teacher_edm:
        if len(sources) > 1:
            raise StraightflowError(f"pairs: give one teacher, not {' and '.join(sources)}")
        if args.guidance is not None:
            raise StraightflowError("pairs: --guidance applies to a conditional teacher run")
        if args.prior:
            raise StraightflowError("pairs: --prior goes with --teacher-callable; a diffusion model's noise is N(0, I)")
        data = absolute_paths({"data": args.data})["data"] if args.data else args.data
        kind = args.teacher_kind or "sampler"
        if args.teacher_diffusers:
            clip = None if args.clip_sample is None else args.clip_sample == "true"
            s = pairs_from_diffusers(args.teacher_diffusers, data=data, n=args.n, out=args.out, kind=kind,
                                     scheduler=args.scheduler or "ddim",
                                     scheduler_dir=args.scheduler_dir, clip_sample=clip, **common)
        else:
            s = pairs_from_edm(args.teacher_edm, data=data, n=args.n, out=args.out, kind=kind,
                               teacher_args=teacher_args, **common)
    elif args.teacher_callable:
        if args.teacher:
            raise StraightflowError("pairs: give a teacher run directory or --teacher-callable, not both")
        if args.guidance is not None:
            raise StraightflowError("pairs: --guidance applies to a conditional teacher run; a teacher callable "
                                    "guides itself")
        data = absolute_paths({"data": args.data})["data"] if args.data else args.data
        s = pairs_from_callable(args.teacher_callable, data, args.n, args.out, kind=args.teacher_kind or "velocity",
                                teacher_args=teacher_args,
                                prior=args.prior or "standard", **common)
    elif args.teacher:
        if args.data:
            raise StraightflowError("pairs: --data goes with --teacher-callable; a teacher run brings its own data")
        if args.prior:
            raise StraightflowError("pairs: --prior goes with --teacher-callable; a teacher run's pairs use its "
                                    "own prior")
        s = pairs_from_run(args.teacher, args.n, args.out, guidance=args.guidance, **common)
    else:
        raise StraightflowError("pairs: give a teacher run directory, --teacher-callable MODULE:FN, "
                                "--teacher-diffusers DIR or --teacher-edm MODULE:FN (the last three with --data DATA)")
    if s.get("dry_run"):
        print(f"straightflow: dry run: would make {args.n} pairs in {args.out} ({s['heldout']} held out) with "
              f"{s['settings'].get('solver')}@{s['settings'].get('nfe')} (the teacher ran on two noises: "
              f"{s['teacher_nfe']} evaluations each, finite samples of the data's shape); {s['reused_shards']} of "
              f"{s['shards']} shards reused, {s['generated_pairs']} pairs to generate; nothing written")
        return 0
    if os.environ.get("RANK", "0") == "0":
        rate = f", {s['pairs_per_sec']:.0f} pairs/s" if s["generated_pairs"] else ""
        print(f"straightflow: {args.n} pairs in {args.out} ({s['generated_shards']} shards generated, "
              f"{s['reused_shards']} reused{rate})")
    return 0
