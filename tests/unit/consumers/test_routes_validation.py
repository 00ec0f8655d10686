"""routes.toml is checked completely at load: every problem names file, route and key."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from services.consumers.adapters.file import FileAdapter
from services.consumers.adapters.http import HttpAdapter
from services.consumers.adapters.postgres import PostgresAdapter
from services.consumers.config import load_config, parse_config
from services.consumers.validate import BUILTIN_OPTIONS, AdapterKeys
from shared.errors import ConfigurationError
from shared.schema.vocabulary import EVENT_NAMES

HEAD = '[[routes]]\nname = "erp-orders"\nbindings = ["tradecloud.order.#"]\n'
FILE = '[routes.adapter]\ntype = "file"\npath = "./inbox"\n'


def with_filter(rules: str) -> str:
    return f"{HEAD}[routes.filter]\n{rules}\n{FILE}"


def with_adapter(table: str) -> str:
    return f"{HEAD}[routes.adapter]\n{table}\n"


BAD = {
    "kind typo": (
        with_filter('kinds = ["orders"]'),
        "route \"erp-orders\", filter.kinds: 'orders' is not a kind: order or order_documents "
        "or shipment; did you mean 'order'?",
    ),
    "event name typo": (
        with_filter('event_names = ["OrderLinesConfirmedBySuplier"]'),
        "filter.event_names: 'OrderLinesConfirmedBySuplier' is not a known Tradecloud event "
        f"name ({len(EVENT_NAMES)} known values); did you mean 'OrderLinesConfirmedBySupplier'?",
    ),
    "process status typo": (
        with_filter('line_process_statuses = ["Confimed"]'),
        "filter.line_process_statuses: 'Confimed' is not a known line process status (Issued, "
        "InProgress, Confirmed, Rejected, Completed, Cancelled); did you mean 'Confirmed'? "
        "If Tradecloud added it, list it under [known_values] line_process_statuses",
    ),
    "status in the wrong case": (
        with_filter('request_statuses = ["open"]'),
        "filter.request_statuses: 'open' is not a known request status "
        "(Open, Approved, Rejected, Closed); did you mean 'Open'?",
    ),
    "in-progress status": (
        with_filter('line_in_progress_statuses = ["OpenProposal"]'),
        "filter.line_in_progress_statuses: 'OpenProposal' is not a known line in-progress status",
    ),
    "request side": (
        with_filter('request_sides = ["seller"]'),
        "filter.request_sides: 'seller' is not a request side: buyer or supplier",
    ),
    "request kind in camelCase": (
        with_filter('request_kinds = ["reopenRequest"]'),
        "'reopenRequest' is not a known request kind (snake_case as in the event) "
        "(proposal, reopen_request); did you mean 'reopen_request'?",
    ),
    "unknown filter key": (
        with_filter('kind = ["order"]'),
        'route "erp-orders", filter.kind: unknown key (known: kinds, event_names, '
        "line_process_statuses, line_in_progress_statuses, request_sides, request_kinds, "
        "request_statuses); did you mean 'kinds'?",
    ),
    "unknown route key": (
        HEAD + "shard = 3\n" + FILE,
        'route "erp-orders", shard: unknown key (known: name, bindings, adapter, filter, '
        "shards, prefetch, retry_delays, delivery_limit, skip_echo, adapter_timeout); "
        "did you mean 'shards'?",
    ),
    "adapter type typo": (
        with_adapter('type = "fiel"\npath = "x"'),
        "route \"erp-orders\", adapter.type: unknown adapter type 'fiel' "
        "(available: file, http, postgres); did you mean 'file'?",
    ),
    "http adapter without url": (
        with_adapter('type = "http"'),
        "route \"erp-orders\", adapter.url: the 'http' adapter needs it: add it",
    ),
    "http adapter with a non-http url": (
        with_adapter('type = "http"\nurl = "erp.example/orders"'),
        "adapter.url: must start with http:// or https://, not 'erp.example/orders'",
    ),
    "unknown adapter key": (
        with_adapter('type = "http"\nurl = "https://erp.example"\ntimout = 5'),
        "adapter.timout: the 'http' adapter takes no such key (url, headers, timeout, method); "
        "did you mean 'timeout'?",
    ),
    "adapter key of the wrong type": (
        with_adapter('type = "file"\npath = "x"\ncsv = "yes"'),
        "adapter.csv: input should be a valid boolean",
    ),
    "postgres adapter without url": (
        with_adapter('type = "postgres"'),
        "adapter.url: the 'postgres' adapter needs it: add it",
    ),
    "unset variable": (
        with_adapter('type = "file"\npath = "${NO_SUCH_INBOX_VAR}/orders"'),
        'route "erp-orders", adapter.path: uses ${NO_SUCH_INBOX_VAR}, which is not set',
    ),
    "second route named by its position when nameless": (
        HEAD + FILE + '[[routes]]\nbindings = ["#"]\n' + FILE,
        'route "#2", name: required: add it',
    ),
    "unknown top-level key": (
        HEAD + FILE + "[known]\nevent_names = []\n",
        "known: unknown key (known: routes, known_values); did you mean 'known_values'?",
    ),
}


@pytest.mark.parametrize(("text", "message"), BAD.values(), ids=list(BAD))
def test_bad_routes_files_name_file_route_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "routes.toml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as caught:
        load_config(path, plugins={})
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    text = with_filter('kinds = ["orders"]\nrequest_statuses = ["open"]')
    with pytest.raises(ConfigurationError) as caught:
        parse_config(text, fmt="toml", source="routes.toml")
    assert "filter.kinds" in str(caught.value) and "filter.request_statuses" in str(caught.value)


def test_a_status_tradecloud_added_is_allowed_by_listing_it() -> None:
    text = '[known_values]\nline_in_progress_statuses = ["OpenBuyerPauseRequest"]\n' + with_filter(
        'line_in_progress_statuses = ["OpenBuyerPauseRequest"]'
    )
    config = parse_config(text, fmt="toml")
    assert config.routes[0].filter.line_in_progress_statuses == ("OpenBuyerPauseRequest",)


def test_plugin_keys_come_from_the_factory_signature() -> None:
    class Acme:
        def __init__(self, endpoint: str, retries: int = 3) -> None: ...

    plugins = {"acme": AdapterKeys.of(Acme)}
    ok = with_adapter('type = "acme"\nendpoint = "https://acme"')
    assert parse_config(ok, fmt="toml", plugins=plugins).routes[0].adapter.type == "acme"
    with pytest.raises(ConfigurationError, match=r"adapter\.endpoint: the 'acme' adapter needs it"):
        parse_config(with_adapter('type = "acme"'), fmt="toml", plugins=plugins)
    with pytest.raises(ConfigurationError, match="did you mean 'retries'"):
        parse_config(ok + "retry = 2\n", fmt="toml", plugins=plugins)


@pytest.mark.parametrize(
    ("kind", "adapter"),
    [("file", FileAdapter), ("http", HttpAdapter), ("postgres", PostgresAdapter)],
)
def test_option_models_match_the_adapters_constructors(kind: str, adapter: type) -> None:
    keys = AdapterKeys.of(adapter)
    model = BUILTIN_OPTIONS[kind]
    assert set(model.model_fields) == set(keys.required + keys.optional)
    assert {name for name, field in model.model_fields.items() if field.is_required()} == set(
        keys.required
    )
    for name, parameter in inspect.signature(adapter).parameters.items():
        if parameter.default is not parameter.empty:
            assert model.model_fields[name].default == parameter.default, name


def test_the_shipped_routes_files_are_valid() -> None:
    repo = Path(__file__).resolve().parents[3]
    for path in (repo / "deploy" / "consumer").glob("*.toml"):
        parse_config(path.read_text(), fmt="toml", env={"ORDERBRIDGE_ERP_INBOX": "/data"})
