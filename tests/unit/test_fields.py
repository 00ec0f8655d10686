from datetime import UTC, datetime
from decimal import Decimal

import pytest

from shared.errors import InvalidPayload
from shared.normalize import fields


@pytest.mark.parametrize(
    ("text", "kind", "utc"),
    [
        ("2025-04-23T10:01:53.812Z", "instant", datetime(2025, 4, 23, 10, 1, 53, 812000, UTC)),
        (
            "2024-05-13T09:41:27.512000+02:00",
            "instant",
            datetime(2024, 5, 13, 7, 41, 27, 512000, UTC),
        ),
        ("2019-12-31T10:11:12", "local", None),
        ("2025-05-01", "date", None),
        ("next tuesday", "unparsed", None),
    ],
)
def test_timestamps_keep_text_and_parse_instants_to_utc(
    text: str, kind: str, utc: datetime | None
) -> None:
    stamp = fields.timestamp({"t": text}, "t", "x")
    assert stamp == {"text": text, "kind": kind, "utc": utc}


def test_cursor_comparison_is_strict_and_needs_instants() -> None:
    cursor = fields.parse_timestamp("2025-04-23T10:01:53.812Z")
    assert fields.after(fields.parse_timestamp("2025-04-23T10:01:53.813Z"), cursor) is True
    assert fields.after(fields.parse_timestamp("2025-04-23T10:01:53.812Z"), cursor) is False
    assert fields.after(fields.parse_timestamp("2025-04-23T10:01:53"), cursor) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (Decimal("1234.5678901234567890"), "1234.5678901234567890"),
        (Decimal("78.90"), "78.90"),
        (125, "125"),
        ("26.10", "26.10"),
        (Decimal("1E+2"), "100"),
        (Decimal("1E-7"), "0.0000001"),
        (Decimal("0E-40"), "0.0000000000000000000000000000000000000000"),
    ],
)
def test_decimals_are_exact_and_fixed_point(raw: object, expected: str) -> None:
    value = fields.decimal({"v": raw}, "v", "p")
    assert isinstance(value, Decimal)
    assert format(value, "f") == expected  # the wire form (see ExactDecimal)


def test_a_float_is_refused_with_a_hint() -> None:
    with pytest.raises(InvalidPayload, match="loads_exact") as info:
        fields.decimal({"value": 78.9}, "value", "lines[0].prices")
    assert info.value.path == "lines[0].prices.value"


@pytest.mark.parametrize("bad", ["12,50", "abc", True, [1], {"v": 1}])
def test_non_numbers_name_the_field(bad: object) -> None:
    with pytest.raises(InvalidPayload) as info:
        fields.decimal({"quantity": bad}, "quantity", "order.lines[3]")
    assert info.value.path == "order.lines[3].quantity"


def test_structure_errors_name_the_path() -> None:
    with pytest.raises(InvalidPayload) as info:
        fields.obj({"buyerLine": ["not", "an", "object"]}, "buyerLine", "orderEvent.lines[2]")
    assert info.value.path == "orderEvent.lines[2].buyerLine"
    with pytest.raises(InvalidPayload, match="required identifier") as info:
        fields.required_text({"orderId": " "}, "orderId", "orderEvent")
    assert info.value.path == "orderEvent.orderId"


def test_scalars_are_coerced_to_text() -> None:
    assert fields.text({"p": 10}, "p", "") == "10"
    assert fields.text({"p": Decimal("1.50")}, "p", "") == "1.50"
    assert fields.nonempty_text({"p": ""}, "p", "") is None


def test_versions_accept_integral_numbers_only() -> None:
    assert fields.integer({"version": Decimal("7")}, "version", "") == 7
    assert fields.integer({"version": "8"}, "version", "") == 8
    with pytest.raises(InvalidPayload, match="whole number"):
        fields.integer({"version": Decimal("7.5")}, "version", "orderEvent")


@pytest.mark.parametrize("huge", [Decimal("1E+31"), Decimal("1E-31"), Decimal("-9.5E+999999")])
def test_numbers_that_would_explode_in_fixed_point_are_refused(huge: Decimal) -> None:
    with pytest.raises(InvalidPayload, match="out of range"):
        fields.decimal({"quantity": huge}, "quantity", "line")


# --- bounds (issue 14: poison input is 422, never a stall or a 503) -------------------

INTEGER_CASES: list[tuple[object, int | str | None]] = [
    (7, 7),
    (0, 0),
    (2**63 - 1, 2**63 - 1),
    (Decimal("7"), 7),
    (Decimal("7.0"), 7),
    (Decimal("1E+18"), 10**18),
    (" 12 ", 12),
    (None, None),
    (-1, "error"),
    (2**63, "error"),
    (int("9" * 40), "error"),
    (Decimal("1e1000000"), "error"),
    (Decimal("7.5"), "error"),
    ("-3", "error"),
    ("1" * 20, "error"),
    ("\uff11\uff12", "error"),  # full-width digits
    (True, "error"),
]


@pytest.mark.parametrize(("value", "expected"), INTEGER_CASES)
def test_integers_fit_a_signed_64_bit_header(value: object, expected: int | str | None) -> None:
    if expected == "error":
        with pytest.raises(InvalidPayload) as caught:
            fields.integer({"version": value}, "version", "orderEvent")
        assert caught.value.path == "orderEvent.version"
    else:
        assert fields.integer({"version": value}, "version", "orderEvent") == expected


def test_identifiers_and_words_are_bounded() -> None:
    limit, words = fields.MAX_IDENTIFIER, fields.MAX_WORD
    assert fields.required_text({"id": "x" * limit}, "id", "o") == "x" * limit
    assert fields.identifier({"id": ""}, "id", "o") is None
    assert fields.word({"s": "Issued"}, "s", "o") == "Issued"
    for call, key, length in (
        (fields.required_text, "id", limit + 1),
        (fields.identifier, "id", limit + 1),
        (fields.word, "s", words + 1),
    ):
        with pytest.raises(InvalidPayload) as caught:
            call({key: "x" * length}, key, "o")
        assert caught.value.path == f"o.{key}"
