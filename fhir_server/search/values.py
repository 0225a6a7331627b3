"""Value normalisation shared by index extraction and query parsing (pure functions).

* Strings: https://hl7.org/fhir/R4/search.html#string — matching is case- and accent-insensitive; we index
  ``normalize_text`` (NFKD, combining marks removed, casefolded, whitespace collapsed).
* Dates: https://hl7.org/fhir/R4/search.html#date — every date is an *implicit range* given by its precision:
  ``2020`` is ``[2020-01-01T00:00Z, 2021-01-01T00:00Z)``. Ranges are half-open ``[lo, hi)`` in UTC.

  Time-zone choice (the spec leaves it to the server): a value *without* time zone (``2020-03-04``, or a
  search value ``2020-03-04T10:00``) is read as a *floating* local time in :data:`FLOATING_TZ` (UTC), on
  both the resource side and the query side. So a date matches the same calendar date, whatever the
  server's zone, and never shifts by the server's offset (the Blaze #1498 trap). Values with an offset are
  converted to UTC.
  MongoDB keeps milliseconds, so ``lo`` is truncated and ``hi`` rounded up to the millisecond.
* Numbers: https://hl7.org/fhir/R4/search.html#number — ``100`` means ``[99.5, 100.5)``: the implicit range is
  the value +/- half a unit of its last significant digit (``Decimal`` exponent). Exact ``Decimal`` arithmetic
  is used; values are stored as BSON ``Decimal128`` (exact, and compared numerically with ints/doubles by
  MongoDB).
"""

from __future__ import annotations

import re
import struct
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from bson.decimal128 import Decimal128, create_decimal128_context

FLOATING_TZ = UTC
MIN_DATETIME = datetime(1, 1, 1, tzinfo=UTC)
MAX_DATETIME = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)

_WHITESPACE = re.compile(r"\s+")
_DATE = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_D128_CONTEXT = create_decimal128_context()


@lru_cache(maxsize=65536)
def normalize_text(value: str) -> str:
    """Case- and accent-insensitive form of a string (search.html#string). Cached: displays repeat."""
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _WHITESPACE.sub(" ", stripped.casefold()).strip()


@dataclass(frozen=True)
class DateRange:
    """Half-open UTC range ``[lo, hi)``."""

    lo: datetime
    hi: datetime


def _add_months(moment: datetime, months: int) -> datetime:
    total = moment.year * 12 + (moment.month - 1) + months
    year, month = divmod(total, 12)
    if year > 9999:
        return MAX_DATETIME
    return moment.replace(year=year, month=month + 1)


def _zone(text: str | None) -> timezone:
    if text is None:
        return FLOATING_TZ
    if text == "Z":
        return UTC
    sign = 1 if text[0] == "+" else -1
    hours, minutes = int(text[1:3]), int(text[4:6])
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _truncate_ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _ceil_ms(moment: datetime) -> datetime:
    if moment.microsecond % 1000 == 0:
        return moment
    return min(_truncate_ms(moment) + timedelta(milliseconds=1), MAX_DATETIME)


def _fraction_range(start: datetime, fraction: str) -> tuple[datetime, datetime]:
    digits = fraction[:6].ljust(6, "0")
    lo = start.replace(microsecond=int(digits))
    step = timedelta(microseconds=10 ** max(0, 6 - len(fraction)))
    return lo, _shift(lo, step)


@lru_cache(maxsize=16384)  # a pure function of the text: dates repeat within a Bundle and across a registry
def parse_date_range(text: str) -> DateRange:
    """Implicit range of a FHIR date, dateTime or instant (or a search date value). Raises ``ValueError``
    (never cached: a bad text is parsed again). The range is immutable, so callers share one."""
    match = _DATE.match(text.strip())
    if match is None:
        raise ValueError(f"not a FHIR date/dateTime: {text!r}")
    g = match.groupdict()
    zone = _zone(g["tz"])
    year, month, day = int(g["year"]), int(g["month"] or 1), int(g["day"] or 1)
    hour, minute, second = int(g["hour"] or 0), int(g["minute"] or 0), int(g["second"] or 0)
    start = datetime(year, month, day, hour, minute, second, tzinfo=zone)
    if g["fraction"]:
        start, end = _fraction_range(start, g["fraction"])
    elif g["second"]:
        end = _shift(start, timedelta(seconds=1))
    elif g["minute"]:
        end = _shift(start, timedelta(minutes=1))
    elif g["day"]:
        end = _shift(start, timedelta(days=1))
    elif g["month"]:
        end = _add_months(start, 1)
    else:
        end = _add_months(start, 12)
    return DateRange(_truncate_ms(_utc(start)), _ceil_ms(_utc(end)))


def _shift(moment: datetime, delta: timedelta) -> datetime:
    try:
        return moment + delta
    except OverflowError:
        return MAX_DATETIME


def _utc(moment: datetime) -> datetime:
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # only at the edges of year 1 / 9999
        return MIN_DATETIME if moment.year == 1 else MAX_DATETIME


def parse_decimal(text: str) -> Decimal:
    """A FHIR/search number as an exact ``Decimal`` (keeps its precision). Raises ``ValueError``."""
    if not _NUMBER.match(text.strip()):
        raise ValueError(f"not a number: {text!r}")
    try:
        return Decimal(text.strip())
    except InvalidOperation as exc:  # pragma: no cover - guarded by the regex
        raise ValueError(f"not a number: {text!r}") from exc


def to_decimal(value: object) -> Decimal | None:
    """Decimal from a resource value (``Decimal``, ``Decimal128``, int, float as its repr, or numeric str)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, Decimal128):
        return value.to_decimal()
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return parse_decimal(value)
        except ValueError:
            return None
    return None


def precision_bounds(value: Decimal) -> tuple[Decimal, Decimal]:
    """``[value - ½ ulp, value + ½ ulp)`` where ulp is the unit of the last significant digit."""
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):  # NaN / Infinity
        return value, value
    half = Decimal(5).scaleb(exponent - 1)
    return value - half, value + half


_LOW_64 = (1 << 64) - 1
_EXPONENT_BIAS = 6176  # IEEE 754-2008 decimal128


def d128(value: Decimal) -> Decimal128:
    """Exact ``Decimal128`` (34 significant digits; more are rounded by the Decimal128 context).

    The BID encoding is built here from the coefficient and exponent: ``Decimal128(Decimal)`` sets the
    coefficient's bits one by one in Python, 8-10 us a value, most of what extracting a number or quantity cost
    (index values are extracted at every write). A coefficient of at most 34 digits is below 2**113, so it always
    takes the plain form (sign, 14-bit exponent, 113-bit coefficient); ``test_values`` compares every encoding
    with the driver's."""
    with_context = _D128_CONTEXT.create_decimal(value)
    if not with_context.is_finite():
        return Decimal128(with_context)
    sign, _digits, exponent = with_context.as_tuple()
    assert isinstance(exponent, int)  # finite
    coefficient = int(with_context.copy_abs().scaleb(-exponent, _D128_CONTEXT))
    high = (sign << 63) | ((exponent + _EXPONENT_BIAS) << 49) | (coefficient >> 64)
    return Decimal128.from_bid(struct.pack("<QQ", coefficient & _LOW_64, high))
