"""Masking of personal data: the one place that decides what a shown value looks like.

Bank accounts, ID numbers (身份证号) and phone numbers never appear in clear in a report,
a log line, a quarantine row or the UI; every place that shows one calls these helpers.
Each helper accepts ``None`` (→ ``None``) and any text, and never returns more digits than
it should: a value too short to mask safely is masked entirely.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

_NON_ALNUM = re.compile(r"[^0-9A-Za-z]")
MASK: Final = "****"


def _compact(value: str) -> str:
    return _NON_ALNUM.sub("", value)


def mask_bank_account(value: str | None) -> str | None:
    """``'6222021234567891234'`` → ``'6222 **** **** 1234'`` (first and last four kept).

    Accounts shorter than 12 characters keep only their last four.
    """
    if value is None:
        return None
    digits = _compact(value)
    if not digits:
        return ""
    if len(digits) < 12:
        return f"{MASK} {digits[-4:]}" if len(digits) > 4 else MASK
    return f"{digits[:4]} {MASK} {MASK} {digits[-4:]}"


def mask_phone(value: str | None) -> str | None:
    """``'13812345678'`` → ``'138****5678'``; ``'+86 138 1234 5678'`` → ``'+86 138****5678'``.

    Numbers of fewer than 7 digits keep only their last two.
    """
    if value is None:
        return None
    stripped = value.strip()
    prefix = ""
    if stripped.startswith("+86"):
        prefix, stripped = "+86 ", stripped[3:]
    digits = re.sub(r"\D", "", stripped)
    if not digits:
        return prefix.strip() or ""
    if len(digits) < 7:
        return f"{prefix}{'*' * max(len(digits) - 2, 1)}{digits[-2:] if len(digits) > 2 else ''}"
    return f"{prefix}{digits[:3]}{MASK}{digits[-4:]}"


def mask_id_number(value: str | None) -> str | None:
    """A 身份证号 keeps its first and last character only: ``'110101199003074518'`` → ``'1****************8'``."""
    if value is None:
        return None
    compact = _compact(value)
    if len(compact) <= 2:
        return "*" * len(compact)
    return f"{compact[0]}{'*' * (len(compact) - 2)}{compact[-1]}"


# Field names (any system's, lower case) whose values are personal data, and how to mask them.
_SENSITIVE_FIELDS: Final = {
    "payee_account": mask_bank_account,
    "bank_account": mask_bank_account,
    "account_no": mask_bank_account,
    "mobile": mask_phone,
    "cellphone": mask_phone,
    "phone": mask_phone,
    "telephone": mask_phone,
    "certificatenum": mask_id_number,
    "id_number": mask_id_number,
    "id_card": mask_id_number,
}


def mask_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``record`` with every known personal-data field masked (for logs, quarantine, UI)."""
    masked: dict[str, Any] = {}
    for key, value in record.items():
        masker = _SENSITIVE_FIELDS.get(key.lower())
        masked[key] = masker(str(value)) if masker is not None and value is not None else value
    return masked


# Free text (remarks, titles, error messages) can carry personal data too.
_ID_IN_TEXT = re.compile(r"(?<![0-9])[1-9][0-9]{5}(?:19|20)[0-9]{2}[01][0-9][0-3][0-9][0-9]{3}[0-9Xx](?![0-9])")
_PHONE_IN_TEXT = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")
# Bank cards are 16-19 digits; shorter runs (12-digit 发票代码) and 20-digit 全电 numbers stay.
_ACCOUNT_IN_TEXT = re.compile(r"(?<![0-9])[0-9]{16,19}(?![0-9])")


def mask_text(text: str | None) -> str | None:
    """Mask ID numbers, mainland mobile numbers and bank-account-like digit runs inside free text."""
    if text is None:
        return None
    text = _ID_IN_TEXT.sub(lambda m: mask_id_number(m.group(0)) or "", text)
    text = _PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)) or "", text)
    return _ACCOUNT_IN_TEXT.sub(lambda m: mask_bank_account(m.group(0)) or "", text)
