"""Section 7, ``digits-lines``: the students of section 6 on digits, and their spread over sampling seeds.

The teacher is the digits baseline of section 2; its pairs use Euler 16. ``bench/seed_spread.py``
evaluates the same models with several noise seeds on the same held-out set.
"""

from __future__ import annotations

from ..document import Block, Code, Text
from ..jobs import Job
from .budgets import DIGITS_SKIP_NOTE, Scale, runs_digits
from .commands import STUDENTS, python_command, student_jobs
from .lines import students_table
from .spec import Context, SectionSpec

ROOT = "runs/digits"


def digits_lines_jobs(scale: Scale) -> list[Job]:
    """Every student of the digits teacher's pairs, and the seed spreads of the teacher (NFE 100) and the students (NFE
    1)."""
    jobs = student_jobs(scale, "digits")
    seeds = str(scale.spread_seeds)
    jobs.append(Job(f"{ROOT}/seed_spread_teacher",
                    python_command("bench/seed_spread.py", f"{ROOT}/teacher", "--nfe", 100, "--seeds", seeds,
                                   "-n", scale.digits_eval_samples),
                    stdout=f"{ROOT}/seed_spread_teacher.txt", after=(f"{ROOT}/teacher",)))
    students = [f"{ROOT}/{s}" for s in STUDENTS]
    jobs.append(Job(f"{ROOT}/seed_spread_students",
                    python_command("bench/seed_spread.py", *students, "--nfe", 1, "--seeds", seeds,
                                   "-n", scale.digits_eval_samples),
                    stdout=f"{ROOT}/seed_spread_students.txt", after=tuple(students)))
    return jobs


def render_digits_lines(ctx: Context, scale: Scale) -> list[Block]:
    blocks, _ = students_table(ctx, "digits", ("teacher",) + tuple(STUDENTS))
    blocks.append(Text("Sampling-seed spread (same models, same held-out set, noise seeds "
                       f"0-{scale.spread_seeds - 1}):"))
    for rel in (f"{ROOT}/seed_spread_teacher.txt", f"{ROOT}/seed_spread_students.txt"):
        blocks += ctx.part(lambda rel=rel: [Code(ctx.text(rel))])
    return blocks


SECTION = SectionSpec(
    "digits-lines", "7. Teacher pairs on digits",
    "The same students on `digits`: the teacher is the digits baseline of section 2, pairs with Euler 16.",
    digits_lines_jobs, render_digits_lines, runs_digits, DIGITS_SKIP_NOTE)
