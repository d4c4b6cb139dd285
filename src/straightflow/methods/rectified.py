"""``rectified``: the independent coupling with the velocity objective (1-rectified flow,
flow matching; the baseline of both papers)."""

from __future__ import annotations

from .base import Method


class Rectified(Method):
    name = "rectified"
    description = "rectified flow / flow matching with the independent coupling (Liu et al. 2022)"
