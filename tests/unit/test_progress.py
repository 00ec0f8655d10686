"""When long jobs draw progress bars (``shared.progress``)."""

from __future__ import annotations

import io

import pytest

from shared.progress import Board, wanted


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("terminal", "env", "draws"),
    [
        (True, {}, True),  # unset: auto, follow the terminal
        (True, {"ORDERBRIDGE_LOG_FORMAT": "auto"}, True),
        (True, {"ORDERBRIDGE_LOG_FORMAT": "console"}, True),
        (True, {"ORDERBRIDGE_LOG_FORMAT": "json"}, False),
        (True, {"ORDERBRIDGE_LOG_FORMAT": " JSON "}, False),
        (False, {}, False),
        (False, {"ORDERBRIDGE_LOG_FORMAT": "console"}, False),
    ],
)
def test_bars_only_on_a_terminal_and_never_in_json_mode(
    terminal: bool, env: dict[str, str], draws: bool
) -> None:
    stream = Terminal() if terminal else io.StringIO()
    assert wanted(stream, env) is draws


def test_a_closed_stream_is_no_terminal() -> None:
    stream = io.StringIO()
    stream.close()  # isatty() raises ValueError now
    assert wanted(stream, {}) is False


def test_a_disabled_board_accepts_every_call_and_writes_nothing() -> None:
    out = io.StringIO()
    with Board(enabled=False, stream=out) as board:
        bar = board.bar("replay", total=None)
        bar.advance(3, note="3 published")
        bar.update(completed=5, total=10, note="x")
    assert out.getvalue() == ""


def test_an_enabled_board_draws_its_bars() -> None:
    out = Terminal()
    with Board(enabled=True, stream=out) as board:
        bar = board.bar("replay erp", total=4)
        bar.advance(2, note="2 published")
        bar.update(completed=4)
    assert "replay erp" in out.getvalue()
    assert "4/4" in out.getvalue()
