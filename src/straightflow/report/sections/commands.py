"""The command lines the sections share: training, evaluation, pairs, plots, sweeps, at a scale's budget.

Every path in a command is relative to the report folder (jobs run inside it). Jobs shared
by several sections (the 2D teachers, their pairs, the students, the beta = 10 teachers)
are built here, so each has one id and one command and runs once.
"""

from __future__ import annotations

from ..jobs import Job
from .budgets import Scale


def straightflow_command(*args) -> tuple[str, ...]:
    """``straightflow ARGS`` as a job's argv (run as ``python -m straightflow``)."""
    return ("straightflow",) + tuple(str(a) for a in args)


def python_command(*args) -> tuple[str, ...]:
    """``python ARGS`` as a job's argv (``bench/`` scripts)."""
    return ("python",) + tuple(str(a) for a in args)


def network_flags(scale: Scale, data: str) -> tuple[str, ...]:
    """The scale's extra network flags for ``data`` (the UNet's for digits, the MLP's for 2D sets)."""
    return scale.digits_network_flags if data == "digits" else scale.network_flags


def steps_and_batch(scale: Scale, data: str) -> tuple[int, int]:
    """Training steps and batch size of every model of ``data`` at the scale."""
    return (scale.digits_steps, scale.digits_batch) if data == "digits" else (scale.steps, scale.batch)


def eval_samples(scale: Scale, data: str) -> int:
    """Samples per evaluation (``eval -n``) of ``data`` at the scale."""
    return scale.digits_eval_samples if data == "digits" else scale.eval_samples


def pairs_nfe(scale: Scale, data: str) -> int:
    """Euler steps of the teacher solve that makes the pairs of ``data``."""
    return scale.digits_teacher_nfe if data == "digits" else scale.teacher_nfe


def runs_folder(data: str) -> str:
    """Where the runs of ``data`` live in the report folder (``runs/2d/SET`` or ``runs/digits``)."""
    return "runs/digits" if data == "digits" else f"runs/2d/{data}"


def checkpoint_flags(data: str, steps: int) -> tuple[str, ...]:
    """``--ckpt-every 1000`` for digits runs longer than 1000 steps (an interrupted run resumes from there)."""
    return ("--ckpt-every", "1000") if data == "digits" and steps > 1000 else ()


def split_betas(text: str) -> list[str]:
    """``"0.3,1,inf"`` -> ``["0.3", "1", "inf"]`` (as written: they name the sweep's ``beta-B`` folders)."""
    return [b.strip() for b in text.split(",") if b.strip()]


def train_job(run: str, *flags, scale: Scale, data: str, after: tuple[str, ...] = ()) -> Job:
    """``straightflow train ... --out RUN`` with the scale's budget and network flags (students inherit the data from
    their pairs)."""
    steps, batch = steps_and_batch(scale, data)
    argv = straightflow_command("train", *flags, "--steps", steps, "--batch-size", batch, *network_flags(scale, data),
                                *checkpoint_flags(data, steps), "--progress", "false", "--out", run)
    return Job(run, argv, outputs=(f"{run}/config.yaml",), after=after, resume_dir=run)


def eval_job(run: str, nfe: str, *, scale: Scale, data: str, file: str = "eval.json", extra: tuple = ()) -> Job:
    """``straightflow eval RUN --nfe NFE -n N ... --json > RUN/FILE`` with the scale's evaluation samples."""
    argv = straightflow_command("eval", run, "--nfe", nfe, "-n", eval_samples(scale, data), *extra, "--json")
    return Job(f"{run}/{file}", argv, stdout=f"{run}/{file}", after=(run,))


def pairs_job(teacher: str, out: str, n: int, nfe: int, extra: tuple = ()) -> Job:
    """``straightflow pairs TEACHER -n N --solver euler --nfe NFE --out OUT``: a teacher's pair folder."""
    return Job(out,
               straightflow_command("pairs", teacher, "-n", n, "--solver", "euler", "--nfe", nfe, *extra, "--out", out,
                                    "--quiet"),
               outputs=(f"{out}/manifest.json",), after=(teacher,))


def plot_job(run: str, kind: str, name: str, *flags) -> Job:
    """``straightflow plot RUN --kind KIND ... --out figures/NAME``."""
    return Job(f"figures/{name}", straightflow_command("plot", run, "--kind", kind, *flags, "--out", f"figures/{name}"),
               outputs=(f"figures/{name}",), after=(run,))


def teacher_jobs(scale: Scale, data: str) -> list[Job]:
    """The baseline teacher (``--method rectified``) of ``data`` and its evaluation at 1, 2, 4, 8 and the pairs' NFE."""
    run = f"{runs_folder(data)}/teacher"
    return [train_job(run, "--data", data, "--method", "rectified", scale=scale, data=data),
            eval_job(run, scale.teacher_eval_nfe, scale=scale, data=data)]


def pairs_jobs(scale: Scale, data: str) -> list[Job]:
    """:func:`teacher_jobs` and the teacher's pairs (``RUNS/pairs``, Euler at the pairs' NFE)."""
    root = runs_folder(data)
    n = scale.digits_pairs if data == "digits" else scale.pairs
    return teacher_jobs(scale, data) + [pairs_job(f"{root}/teacher", f"{root}/pairs", n, pairs_nfe(scale, data))]


#: the lines recipe the report describes (all t, lr 1e-3, the MSE endpoint loss), pinned so that its sections do
#: not move with the measured defaults of a lines student (docs/student_gap.md)
PLAIN_LINES = ("--method", "lines", "--sampler-steps", "0", "--t1-fraction", "none", "--lr", "0.001", "--recon", "mse")

#: the students trained on the teacher's pairs: name -> train flags ("ADV": the scale's adversarial weight)
STUDENTS = {
    "reflow": ("--method", "reflow", "--init-from-teacher", "true"),
    "distill": ("--method", "distill"),
    "lines": PLAIN_LINES,
    "lines_k2": (*PLAIN_LINES, "--sampler-steps", "2"),
    "lines_adv": (*PLAIN_LINES, "--adv", "ADV"),
}


def student_jobs(scale: Scale, data: str, names: tuple[str, ...] = tuple(STUDENTS)) -> list[Job]:
    """:func:`pairs_jobs`, then each named student trained on the pairs and evaluated at NFE 1, 2, 4."""
    root = runs_folder(data)
    jobs = pairs_jobs(scale, data)
    for name in names:
        flags = tuple(str(scale.adv_weight) if f == "ADV" else f for f in STUDENTS[name])
        run = f"{root}/{name}"
        jobs += [train_job(run, *flags, "--pairs", f"{root}/pairs", scale=scale, data=data, after=(f"{root}/pairs",)),
                 eval_job(run, "1,2,4", scale=scale, data=data)]
    return jobs


def beta10_teacher_jobs(scale: Scale, data: str) -> list[Job]:
    """A curvature-method teacher at beta = 10 (``RUNS/teacher_beta10``): the other teacher of sections 8 and 9."""
    run = f"{runs_folder(data)}/teacher_beta10"
    return [train_job(run, "--data", data, "--method", "curvature", "--beta", 10, scale=scale, data=data)]


def sweep_job(scale: Scale, data: str, out: str, betas: str, *extra: str) -> Job:
    """``straightflow sweep --data DATA --betas BETAS ... --out OUT`` at the scale's budget."""
    steps, batch = steps_and_batch(scale, data)
    argv = straightflow_command("sweep", "--data", data, "--betas", betas, "--steps", steps, "--batch-size", batch,
                                "--nfe", scale.sweep_nfe, "-n", eval_samples(scale, data), *extra,
                                *network_flags(scale, data), *checkpoint_flags(data, steps),
                                "--progress", "false", "--out", out)
    return Job(out, argv, outputs=(f"{out}/sweep.json", f"{out}/sweep.md"))


def curvature_sweep_jobs(scale: Scale, data: str) -> list[Job]:
    """The beta sweep of ``data`` (sections 3 and 5) and its ``znorm`` (and, for digits, ``xhat``) plots."""
    out = "runs/curvature/digits" if data == "digits" else f"runs/curvature/2d-{data}"
    betas = split_betas(scale.digits_betas if data == "digits" else scale.betas)
    jobs = [sweep_job(scale, data, out, scale.digits_betas if data == "digits" else scale.betas)]
    for b in ("1", "10"):
        if b in betas and (data != "digits" or b == "10"):
            job = plot_job(f"{out}/beta-{b}", "znorm", f"curvature_{data}_znorm_beta{b}.png")
            jobs.append(Job(job.id, job.argv, job.outputs, after=(out,)))
    if data == "digits":
        for b in ("1", "10", "inf"):
            if b in betas:
                job = plot_job(f"{out}/beta-{b}", "xhat", f"curvature_digits_xhat_beta{b}.png", "--nfe", "100",
                               "-n", "6")
                jobs.append(Job(job.id, job.argv, job.outputs, after=(out,)))
    return jobs
