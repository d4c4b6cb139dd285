"""Section 10, ``ot-dimension``: how much exact minibatch OT lowers the pairing cost as the dimension grows (the lines
paper's argument).

``bench/ot_dimension.py`` measures the mean squared pairing distance per dimension between
data and N(0, I): independent pairing, exact minibatch OT at the batch size and at a large batch.
"""

from __future__ import annotations

from ..document import Block, Table, Text
from ..jobs import Job
from .budgets import Scale
from .commands import python_command
from .spec import Context, SectionSpec

RESULT = "runs/ot_dimension.json"


def ot_dimension_jobs(scale: Scale) -> list[Job]:
    return [Job("runs/ot_dimension", python_command("bench/ot_dimension.py", *scale.ot_dimension_args, "--json"),
                stdout=RESULT)]


def _cell(row: dict, key: str, percent: list[str]) -> str:
    """A share as a percentage (the gains), another float to 3 decimals, anything else as it is."""
    value = row[key]
    if key in percent:
        return f"{value:.1%}"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def render_ot_dimension(ctx: Context, scale: Scale) -> list[Block]:
    rows = ctx.json(RESULT)
    keys = list(rows[0])
    percent = [k for k in keys if k.startswith("gain") or k == "of_reachable"]
    table = Table(keys, [[_cell(r, k, percent) for k in keys] for r in rows])
    g = [r for r in rows if r["data"] == "gaussian"]
    gain = next(k for k in keys if k.startswith("gain@"))
    text = (f"At {gain[5:]} per batch, OT removes {g[0][gain]:.0%} of the independent pairing cost at d = "
            f"{g[0]['dim']} (Gaussian data) and {g[-1][gain]:.0%} at d = {g[-1]['dim']}." if g else "")
    return [Text("Mean squared pairing distance per dimension between data and N(0, I): independent pairing, exact "
                 "minibatch OT at the batch size and at a large batch; gain = the share of the independent cost "
                 "OT removes."), table, Text(text)]


SECTION = SectionSpec(
    "ot-dimension", "10. Minibatch OT pairing vs dimension (the lines paper's argument)",
    "How much exact minibatch OT lowers the pairing cost as the dimension grows (`bench/ot_dimension.py`).",
    ot_dimension_jobs, render_ot_dimension)
