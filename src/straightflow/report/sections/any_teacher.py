"""Section 11, ``any-teacher``: a torchcfm-trained model as the teacher of a lines student, through
``--teacher-callable``.

``bench/torchcfm_teacher.py`` trains a plain MLP with torchcfm's I-CFM, makes pairs from it with
``straightflow pairs --teacher-callable`` (docs/teachers.md) and trains a lines student on them;
the target is the student at NFE 1 within 1.3x of its teacher's W2 at NFE 100.
"""

from __future__ import annotations

from ..document import Block, Code, Text
from ..jobs import Job
from .budgets import Scale
from .commands import python_command
from .spec import Context, SectionSpec

WORK = "runs/any-teacher"


def any_teacher_jobs(scale: Scale) -> list[Job]:
    """The one script run (needs torchcfm), at the scale's 2D budget."""
    argv = python_command("bench/torchcfm_teacher.py", "--data", "moons", "--steps", scale.steps, "--student-steps",
                          scale.steps, "--pairs", scale.any_teacher_pairs, "--batch-size", scale.batch,
                          *scale.network_flags, "-n", scale.eval_samples, "--work", WORK,
                          "--json", f"{WORK}/result.json")
    return [Job(WORK, argv, outputs=(f"{WORK}/result.json",), stdout=f"{WORK}/output.txt", requires=("torchcfm",))]


def render_any_teacher(ctx: Context, scale: Scale) -> list[Block]:
    r = ctx.results.get(WORK)
    if r is not None and r.status == "unavailable":
        return [Text(f"**Not run** — {r.reason}.")]
    res = ctx.json(f"{WORK}/result.json")
    return [Code(ctx.text(f"{WORK}/output.txt")),
            Text(f"The lines student of the torchcfm teacher reaches {res['ratio']:.3g}x its teacher's W2 at NFE 100 "
                 f"with one step (target <= 1.3: **{'met' if res['ratio'] <= 1.3 else 'missed'}**).")]


SECTION = SectionSpec(
    "any-teacher", "11. Any teacher: a torchcfm-trained model through `--teacher-callable`",
    "`bench/torchcfm_teacher.py` trains a plain MLP with torchcfm's I-CFM, makes pairs from it through "
    "`straightflow pairs --teacher-callable`, and trains a lines student on them (needs `make bench`).",
    any_teacher_jobs, render_any_teacher)
