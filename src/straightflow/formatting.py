"""Numbers as text, both ways: the formatters of tables and log lines, ``beta_label``, and integer lists.

The one home of these conversions for the whole package (report, sweep tables, model
cards, training log lines, config and command-line parsing). It imports only the standard
library, so the command line's parser can use it without loading torch (docs/architecture.md).

Where two callers print a value differently (what ``None`` becomes, how many digits), both
behaviours are kept, each as its own named function below.
"""

from __future__ import annotations

import math


# ------------------------------------------------------------------ numbers -> text
def significant(value, digits: int = 4) -> str:
    """A float to ``digits`` significant digits (``%g``: 0.1235, 1.235e-05, inf), ``None`` as ``-``, anything else
    ``str()``.

    The cells of the report's and ``straightflow sweep``'s tables.
    """
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def significant_or_str(value) -> str:
    """A float to 4 significant digits, anything else (``None`` included) ``str()``: the model card's values
    (docs/portable.md)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def significant_or_na(value) -> str:
    """A float to 4 significant digits, anything else ``n/a``: the training log's quality line (docs/monitoring.md)."""
    return f"{value:.4g}" if isinstance(value, float) else "n/a"


def whole_number(value: float | None) -> str:
    """Rounded to an integer without a decimal point (``417.6`` -> ``418``), ``None`` as ``-``: seconds and rates."""
    return "-" if value is None else f"{value:.0f}"


def three_significant_digits(value: float | None) -> str:
    """Three significant digits without an exponent (0.0417, 3.52, 41.7, 418, 1234), ``-`` for ``None`` or non-finite.

    Values of 100 and above keep every integer digit (``1234``, not ``1.23e+03``): seconds in the report.
    """
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def beta_label(beta: float) -> str:
    """The curvature method's beta as written in folder names, logs and tables: ``inf`` (the baseline) or ``%g``
    (``0.3``, ``10``)."""
    return "inf" if math.isinf(beta) else f"{beta:g}"


# ------------------------------------------------------------------ text -> numbers
def parse_int_list(text: str) -> list[int]:
    """``"1,2,100"`` -> ``[1, 2, 100]``: comma-separated integers, blank items skipped (``"1,,2,"`` -> ``[1, 2]``).

    Raises ``ValueError`` when an item is not an integer; the callers turn that (and an empty
    or out-of-range list) into their own error: ``config.int_list`` for config fields, the
    command line's ``--nfe`` type, the UNet's channel multipliers.
    """
    return [int(v) for v in str(text).split(",") if v.strip()]
