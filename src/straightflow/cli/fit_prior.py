"""``straightflow fit-prior``: a Gaussian mixture fitted to a curvature run's aggregate posterior, stored beside its
checkpoint's weights, that sampling then draws its noise from (``docs/guide.md``, "A fitted prior")."""

from __future__ import annotations

from pathlib import Path

from .common import add_dry_run_flag


def _add_fit_prior(p):
    p.add_argument("rundir", help="a curvature run directory (finite --beta, unconditional)")
    p.add_argument("--components", type=int, default=8, help="Gaussians in the mixture (default 8)")
    p.add_argument("-n", type=int, default=20_000, help="training points whose z ~ q(z|x) it is fitted to")
    p.add_argument("--covariance", choices=("full", "diag"), default="full",
                   help="per-component covariance (default full; diag above 1024 dimensions)")
    p.add_argument("--checkpoint", default=None, metavar="STEP|NAME|PATH",
                   help="the checkpoint whose encoder it fits (default: the latest); the fit is stored there")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    add_dry_run_flag(p, "fit")


def _run_fit_prior(args) -> int:
    from ..export import resolve_checkpoint
    from ..priors import FITTED_PRIOR_FILE
    from ..run import Run

    ckpt = resolve_checkpoint(Path(args.rundir), args.checkpoint) if args.checkpoint is not None else None
    run = Run.load(args.rundir, device=args.device, checkpoint=ckpt)
    target = run.checkpoint / FITTED_PRIOR_FILE
    what = (f"a mixture of {args.components} Gaussians ({args.covariance} covariance) to z ~ q(z|x) of {args.n} "
            f"training points of {run.dir} (step {run.step})")
    if args.dry_run:
        run.fit_prior(args.components, args.n, args.covariance, args.seed, save=False, dry_run=True)
        print(f"straightflow: dry run: would fit {what} and write {target}; nothing written")
        return 0
    run.fit_prior(args.components, args.n, args.covariance, args.seed)
    print(f"straightflow: fitted {what}; written to {target}: sample, eval and plot now draw noise from it (delete "
          "the file to go back to the training prior)")
    return 0
