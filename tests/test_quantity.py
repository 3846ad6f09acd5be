"""Kubernetes quantities parse exactly, as resource.Quantity reads them."""

from __future__ import annotations

from fractions import Fraction

import pytest

from lunettes.model.quantity import parse_quantity


@pytest.mark.parametrize("text, value", [
    ("100m", Fraction(1, 10)), ("1.5", Fraction(3, 2)), ("512Mi", 512 * 2**20),
    ("1G", 10**9), ("2e3", 2000), ("1E3", 1000), ("1E", 10**18), ("1Ki", 1024),
    ("250u", Fraction(1, 4000)), ("5n", Fraction(5, 10**9)), (".5", Fraction(1, 2)),
    ("2.", 2), ("+3k", 3000), ("-1", -1), ("1e-3", Fraction(1, 1000)), (4, 4),
    (0.25, Fraction(1, 4)), (" 2Gi ", 2 * 2**30), ("0.1Ei", Fraction(2**60, 10)),
])
def test_parse(text: str | int | float, value: Fraction | int) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "m", "1mi", "1e", "1KiB", "2 cores", "1.2.3", "0x10",
                                  "1ki", "e3"])
def test_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="invalid quantity"):
        parse_quantity(text)


def test_sums_do_not_drift() -> None:
    assert sum((parse_quantity("100m") for _ in range(10)), Fraction(0)) == 1
