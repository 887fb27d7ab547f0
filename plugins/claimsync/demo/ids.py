"""Vectorised formatting for the demo rows: system ids, invoice numbers, money, local times.

All inputs are numpy arrays; outputs are pyarrow arrays ready for the CSV writer. Nothing
here draws random numbers: identifiers are bijections of ordinals, so they are unique and
the same for the same plan.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

I64 = npt.NDArray[np.int64]

_BASE62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
_MASK59 = np.uint64((1 << 59) - 1)
_CENT = pa.scalar(Decimal("0.01"), pa.decimal128(3, 2))

# System-id namespaces: ids of different tables never coincide.
KIND_DEPARTMENT = 1
KIND_STAFF = 2
KIND_FLOW = 3
KIND_DETAIL = 4
KIND_PAYMENT = 5


def _scramble(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """A bijection of [0, 2**59): affine map then xorshift, so consecutive ordinals look random."""
    x = (values * np.uint64(0x9E3779B97F4A7C15) + np.uint64(0x2545F4914F6CDD1D)) & _MASK59
    x ^= x >> np.uint64(29)
    x = (x * np.uint64(0xBF58476D1CE4E5B9)) & _MASK59
    x ^= x >> np.uint64(31)
    return x


def system_ids(kind: int, ordinals: npt.ArrayLike) -> pa.Array:
    """合思-style ids ``ID01`` + 10 base-62 characters, unique per (kind, ordinal).

    Like many system ids they are time-ordered: six characters grow with the ordinal (so
    rows load into the primary-key and foreign-key indexes near their right edge, which
    makes COPY several times faster than scattered ids), four look random.
    """
    n = np.asarray(ordinals, dtype=np.uint64)
    head = np.uint64(62**5) * np.uint64(10 + kind) + n  # a leading letter per kind, then the ordinal
    x = head * np.uint64(62**4) + _scramble(n + np.uint64(kind << 40)) % np.uint64(62**4)
    digits = np.empty((len(n), 14), dtype=np.uint8)
    digits[:, :4] = np.frombuffer(b"ID01", dtype=np.uint8)
    for pos in range(13, 3, -1):
        digits[:, pos] = _BASE62[(x % np.uint64(62)).astype(np.intp)]
        x //= np.uint64(62)
    return pa.array(digits.reshape(-1).view("S14"), type=pa.binary(14)).cast(pa.string())


def system_id(kind: int, ordinal: int) -> str:
    return str(system_ids(kind, [ordinal])[0].as_py())


def zero_pad(values: npt.ArrayLike, width: int) -> pa.Array:
    """Integers as decimal text, left-padded with zeros to at least ``width`` digits."""
    text = pa.array(np.asarray(values, dtype=np.int64)).cast(pa.string())
    return pc.utf8_lpad(text, width=width, padding="0")


def money(cents: npt.ArrayLike) -> pa.Array:
    """Integer cents → exact decimal text with two places (``12345`` → ``123.45``)."""
    dec = pa.array(np.asarray(cents, dtype=np.int64)).cast(pa.decimal128(19, 0))
    return pc.multiply(dec, _CENT).cast(pa.string())


def money_text(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(int(cents)), 100)
    return f"{sign}{whole}.{frac:02d}"


def local_seconds(epoch: npt.ArrayLike, tz: str) -> I64:
    """Epoch seconds → seconds of the wall clock in ``tz`` (naive), honouring its offsets."""
    utc = pd.DatetimeIndex(np.asarray(epoch, dtype="datetime64[s]"), tz="UTC")
    local = utc.tz_convert(tz).tz_localize(None).as_unit("s")
    return np.asarray(local.asi8, dtype=np.int64)


def wall_text(local: npt.ArrayLike) -> pa.Array:
    """Naive wall-clock seconds → ``'YYYY-MM-DD HH:MM:SS'``."""
    return pa.array(np.asarray(local, dtype=np.int64).astype("datetime64[s]")).cast(pa.string())


def date_part(text: pa.Array) -> pa.Array:
    return pc.utf8_slice_codeunits(text, 0, 10)


def time_part(text: pa.Array) -> pa.Array:
    return pc.utf8_slice_codeunits(text, 11, 19)


def timestamptz(epoch: npt.ArrayLike) -> pa.Array:
    """Epoch seconds → ``'YYYY-MM-DD HH:MM:SS+00'`` for a timestamptz column."""
    text = pa.array(np.asarray(epoch, dtype=np.int64).astype("datetime64[s]")).cast(pa.string())
    return pc.binary_join_element_wise(text, "+00", "")


def with_nulls(values: pa.Array, null_mask: npt.NDArray[np.bool_]) -> pa.Array:
    """``values`` with nulls where ``null_mask`` is true."""
    if not null_mask.any():
        return values
    return pc.if_else(pa.array(null_mask), pa.scalar(None, values.type), values)


def take(choices: tuple[str, ...] | list[str] | pa.Array, index: npt.ArrayLike) -> pa.Array:
    """``choices[index]`` for every index, as a pyarrow string array."""
    source = choices if isinstance(choices, pa.Array) else pa.array(list(choices), type=pa.string())
    return source.take(pa.array(np.asarray(index, dtype=np.int64)))


def join(*parts: Any) -> pa.Array:
    """Element-wise string concatenation of arrays and plain strings."""
    return pc.binary_join_element_wise(*parts, "")


# Invoice numbers. Every line of every claim gets a distinct *serial*; the number is a
# bijection of it, so two lines share an invoice only where the plan puts the same serial.
_NUMBER8_MUL = 73_856_093  # coprime to 10
_NUMBER15_MUL = 3_141_592_653


def invoice_number8(serial: npt.ArrayLike) -> I64:
    s = np.asarray(serial, dtype=np.int64)
    return (s * _NUMBER8_MUL + 13_572_468) % 10**8


def invoice_number15(serial: npt.ArrayLike) -> I64:
    s = np.asarray(serial, dtype=np.int64)
    return (s * _NUMBER15_MUL + 246_801_357_913) % 10**15


# Invoice kinds per line: none, 10-digit code + 8-digit number, 12-digit code + 8-digit number,
# or a 20-digit 全电 number with no code.
INVOICE_NONE = 0
INVOICE_CODE10 = 1
INVOICE_CODE12 = 2
INVOICE_FULL_E = 3
_INVOICE_REGIONS = ("1100", "3100", "4403", "4401", "3301", "3201", "5101", "4201", "6101", "5000", "1200", "3205")


def invoice_texts(serial: npt.ArrayLike, kind: npt.ArrayLike, yy: int) -> tuple[pa.Array, pa.Array]:
    """(发票代码, 发票号码) for each line; nulls where the line has no invoice (or no code)."""
    s = np.asarray(serial, dtype=np.int64)
    k = np.asarray(kind, dtype=np.int8)
    year = f"{yy % 100:02d}"
    region = take(_INVOICE_REGIONS, s % len(_INVOICE_REGIONS))
    batch = zero_pad((s // 7) % 1000, 3)
    code10 = join(region, year, pc.utf8_slice_codeunits(batch, 0, 1), take(("130", "170", "160"), s % 3))
    code12 = join("0", region, year, batch, take(("11", "12", "04"), s % 3))
    number8 = zero_pad(invoice_number8(s), 8)
    full_e = join(year, pc.utf8_slice_codeunits(region, 0, 2), "2", zero_pad(invoice_number15(s), 15))
    code = pc.if_else(pa.array(k == INVOICE_CODE10), code10, code12)
    code = with_nulls(code, (k == INVOICE_NONE) | (k == INVOICE_FULL_E))
    number = pc.if_else(pa.array(k == INVOICE_FULL_E), full_e, number8)
    return code, with_nulls(number, k == INVOICE_NONE)
