"""Personal data never shows in clear: the shared masking helpers."""

from __future__ import annotations

import pytest

from claimsync.masking import mask_bank_account, mask_id_number, mask_phone, mask_record, mask_text


@pytest.mark.parametrize(
    ("account", "masked"),
    [
        ("6222021234567891234", "6222 **** **** 1234"),
        ("6222 0212 3456 7891 234", "6222 **** **** 1234"),
        ("6217-0000-1111-2222", "6217 **** **** 2222"),
        ("12345678", "**** 5678"),
        ("1234", "****"),
        ("", ""),
        (None, None),
    ],
)
def test_mask_bank_account(account: str | None, masked: str | None) -> None:
    assert mask_bank_account(account) == masked


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("13812345678", "138****5678"),
        ("+86 138 1234 5678", "+86 138****5678"),
        ("010-62345678", "010****5678"),
        ("12345", "***45"),
        (None, None),
    ],
)
def test_mask_phone(phone: str | None, masked: str | None) -> None:
    assert mask_phone(phone) == masked


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("110101199003074518", "1****************8"),
        ("11010119900307451X", "1****************X"),
        ("12", "**"),
        (None, None),
    ],
)
def test_mask_id_number(number: str | None, masked: str | None) -> None:
    assert mask_id_number(number) == masked


def test_no_masked_value_keeps_the_middle_digits() -> None:
    account, phone, id_number = "6222021234567891234", "13987654321", "110101199003074518"
    assert "02123456789" not in (mask_bank_account(account) or "")
    assert "8765" not in (mask_phone(phone) or "")
    assert "19900307" not in (mask_id_number(id_number) or "")


def test_mask_record_masks_known_fields_only() -> None:
    record = {"payee_account": "6222021234567891234", "mobile": "13812345678", "certificatenum": "110101199003074518"}
    record |= {"payee_name": "张伟", "amount": 12, "cellphone": None}
    assert mask_record(record) == {
        "payee_account": "6222 **** **** 1234",
        "mobile": "138****5678",
        "certificatenum": "1****************8",
        "payee_name": "张伟",
        "amount": 12,
        "cellphone": None,
    }


def test_mask_text_finds_personal_data_inside_sentences() -> None:
    text = "张伟 身份证 110101199003074518 手机13812345678 账户 6222021234567891234 发票 044031900111:12345678"
    assert mask_text(text) == (
        "张伟 身份证 1****************8 手机138****5678 账户 6222 **** **** 1234 发票 044031900111:12345678"
    )
    assert mask_text("全电 24442000000012345678 stays") == "全电 24442000000012345678 stays"
    assert mask_text(None) is None
