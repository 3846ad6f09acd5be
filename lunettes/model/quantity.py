"""Kubernetes resource quantities (``100m``, ``1.5``, ``512Mi``, ``1G``, ``2e3``), exactly.

The grammar is the one of k8s.io/apimachinery ``resource.Quantity``::

    <quantity> ::= <signedNumber><suffix>
    <suffix>   ::= <binarySI> | <decimalExponent> | <decimalSI>
    binarySI   Ki Mi Gi Ti Pi Ei          (powers of 1024)
    decimalSI  n u m "" k M G T P E      (powers of 1000)
    decimalExponent  e<int> | E<int>      (``1E3`` is 1000; a bare ``E`` is exa)

Values are :class:`fractions.Fraction`, so ``100m`` is exactly 1/10 and sums never drift.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import lru_cache

__all__ = ["parse_quantity"]

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15,
            "E": 18}
_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:[eE](?P<exponent>[+-]?\d+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)")


def parse_quantity(text: str | int | float) -> Fraction:
    """The value of a quantity; raises ValueError naming the text when it is not one."""
    if isinstance(text, bool):
        raise ValueError(f"invalid quantity {text!r}")
    if isinstance(text, int):
        return Fraction(text)
    if isinstance(text, float):
        return Fraction(Decimal(repr(text)))
    return _parse(text)


@lru_cache(maxsize=4096)
def _parse(text: str) -> Fraction:
    """Parse a quantity string (cached: clusters repeat a handful of values)."""
    match = _QUANTITY.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid quantity {text!r} (expected e.g. 500m, 2, 1.5, 512Mi, 1G, "
                         f"2e3)")
    try:
        number = Fraction(Decimal(match["number"]))
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only numbers
        raise ValueError(f"invalid quantity {text!r}") from exc
    if match["exponent"] is not None:
        exponent = int(match["exponent"])
        if abs(exponent) > 100:
            raise ValueError(f"invalid quantity {text!r}: exponent out of range")
        return number * Fraction(10) ** exponent
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * 1024 ** _BINARY[suffix]
    return number * Fraction(10) ** _DECIMAL[suffix]
