"""Ingress settings (closed by default) and the answer of each failure."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from services.ingress import answers
from services.ingress.settings import IngressSettings
from services.ingress.verify import AuthenticationRequired, SignatureMismatch
from shared.clients.tradecloud import TradecloudSettings
from shared.errors import (
    Backpressure,
    BrokerUnavailable,
    ConfigurationError,
    InvalidPayload,
    PublishNacked,
    PublishTimeout,
    PublishUnroutable,
    UpstreamRejected,
    UpstreamUnavailable,
)
from shared.settings import SettingsError

ENV = (
    "ORDERBRIDGE_TRADECLOUD_WEBHOOK_USERNAME",
    "ORDERBRIDGE_TRADECLOUD_WEBHOOK_PASSWORD",
    "ORDERBRIDGE_TRADECLOUD_WEBHOOK_TOKEN",
    "ORDERBRIDGE_APICBASE_WEBHOOK_SECRET",
    "ORDERBRIDGE_INGRESS_INSECURE_NO_AUTH",
    "ORDERBRIDGE_INGRESS_FETCH_TIMEOUT_SECONDS",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    settings = IngressSettings()
    assert (settings.ingress_host, settings.ingress_port) == ("0.0.0.0", 8080)
    assert settings.ingress_max_body_bytes == 16 * 1024 * 1024
    assert settings.tradecloud_role is None and settings.echo_policy is None
    assert settings.ingress_fetch_timeout_seconds == 10.0


def test_the_fetch_budget_is_read_and_kept_well_under_the_platform_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERBRIDGE_INGRESS_FETCH_TIMEOUT_SECONDS", "2.5")
    assert IngressSettings().ingress_fetch_timeout_seconds == 2.5
    for bad in ("0", "-1", "60"):
        monkeypatch.setenv("ORDERBRIDGE_INGRESS_FETCH_TIMEOUT_SECONDS", bad)
        with pytest.raises(SettingsError, match="ORDERBRIDGE_INGRESS_FETCH_TIMEOUT_SECONDS"):
            IngressSettings()


def test_the_get_webhook_api_client_gives_up_within_the_budget() -> None:
    from services.ingress.__main__ import fetch_client_settings

    shared = TradecloudSettings(
        tradecloud_username="u",
        tradecloud_password=SecretStr("p"),
        tradecloud_retry_seconds=60.0,  # the poller's minute: far too long inside a webhook
        tradecloud_timeout_seconds=5.0,
    )
    mine = fetch_client_settings(shared, 10.0)
    assert mine.tradecloud_retry_seconds == 5.0
    assert mine.tradecloud_timeout_seconds == 5.0
    assert (mine.tradecloud_username, mine.tradecloud_api_url) == ("u", shared.tradecloud_api_url)
    assert shared.tradecloud_retry_seconds == 60.0  # a copy; the original is untouched
    short = TradecloudSettings(tradecloud_retry_seconds=1.0, tradecloud_timeout_seconds=0.5)
    lowered_only = fetch_client_settings(short, 10.0)
    assert (lowered_only.tradecloud_retry_seconds, lowered_only.tradecloud_timeout_seconds) == (
        1.0,
        0.5,
    )


def test_refuses_to_start_without_any_credentials() -> None:
    with pytest.raises(ConfigurationError, match="--insecure-no-auth"):
        IngressSettings().require_credentials()
    IngressSettings(ingress_insecure_no_auth=True).require_credentials()


def test_one_configured_source_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERBRIDGE_TRADECLOUD_WEBHOOK_TOKEN", "tok")
    settings = IngressSettings()
    settings.require_credentials()
    assert settings.tradecloud_configured and not settings.apicbase_configured


def test_basic_needs_both_halves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERBRIDGE_TRADECLOUD_WEBHOOK_USERNAME", "tradecloud")
    with pytest.raises(SettingsError, match="PASSWORD"):
        IngressSettings()


def test_apicbase_secret_list_and_secrets_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERBRIDGE_APICBASE_WEBHOOK_SECRET", " new-one , old-one,, ")
    monkeypatch.setenv("ORDERBRIDGE_TRADECLOUD_WEBHOOK_USERNAME", "tc")
    monkeypatch.setenv("ORDERBRIDGE_TRADECLOUD_WEBHOOK_PASSWORD", "pw-secret")
    settings = IngressSettings()
    assert settings.apicbase_secrets() == [b"new-one", b"old-one"]
    printed = repr(settings) + str(settings.model_dump())
    assert "new-one" not in printed and "pw-secret" not in printed


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (AuthenticationRequired("missing", challenge="Bearer"), 401, "unauthorized"),
        (SignatureMismatch("no"), 403, "bad_signature"),
        (InvalidPayload("orderEvent.lines[2].buyerLine", "not an object"), 422, "invalid_payload"),
        (Backpressure("busy", retry_after=1), 503, "backpressure"),
        (BrokerUnavailable("down", retry_after=2), 503, "broker_unavailable"),
        (PublishTimeout("slow", retry_after=5), 503, "publish_timeout"),
        (PublishNacked("nack", retry_after=5), 503, "publish_nacked"),
        (PublishUnroutable("unbound", retry_after=30), 503, "publish_unroutable"),
        (UpstreamUnavailable("api down", retry_after=None), 503, "upstream_unavailable"),
        (UpstreamRejected("forbidden", status=403), 502, "upstream_rejected"),
        # A 404 that is not known to be the document's (e.g. the login's): retried.
        (UpstreamRejected("login answered 404", status=404), 502, "upstream_rejected"),
        (KeyError("a bug"), 503, "internal_error"),
    ],
)
def test_each_failure_has_its_status(exc: Exception, status: int, code: str) -> None:
    problem = answers.problem_for(exc)
    assert (problem.status, problem.error) == (status, code)
    assert problem.error in answers.OUTCOMES
    body = json.loads(problem.body("req-1"))
    assert set(body) >= {"status", "error", "message", "path", "request_id"}
    assert body["status"] == status and body["request_id"] == "req-1"
    if status >= 500:
        retry_after = int(problem.headers()["Retry-After"])
        assert retry_after >= 1 and body["retry_after"] == retry_after
    else:
        assert "Retry-After" not in problem.headers()
    if status == 401:
        assert problem.headers()["WWW-Authenticate"] == "Bearer"
    if status == 422:
        assert body["path"] == "orderEvent.lines[2].buyerLine"


@pytest.mark.parametrize(
    ("problem", "status", "code"),
    [
        (answers.document_not_found("order", "o-9", "orderId"), 404, "document_not_found"),
        (answers.upstream_timeout("order", "o-9", 10.0), 503, "upstream_timeout"),
        (answers.quarantine_failed("order", "o-9", "broker down", 2), 503, "quarantine_failed"),
    ],
)
def test_get_webhook_answers(problem: answers.Problem, status: int, code: str) -> None:
    assert (problem.status, problem.error) == (status, code)
    assert code in answers.OUTCOMES
    assert "o-9" in problem.message
    assert ("Retry-After" in problem.headers()) == (status >= 500)


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    problem = answers.problem_for(PublishTimeout("slow", retry_after=0.2))
    assert problem.headers()["Retry-After"] == "1"
    assert answers.problem_for(Backpressure("x", retry_after=2.5)).headers()["Retry-After"] == "3"


def test_composition_root_builds_the_verifiers_from_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.ingress.__main__ import apicbase_signature, tradecloud_auth

    monkeypatch.setenv("ORDERBRIDGE_TRADECLOUD_WEBHOOK_USERNAME", "tc")
    monkeypatch.setenv("ORDERBRIDGE_TRADECLOUD_WEBHOOK_PASSWORD", "pw")
    monkeypatch.setenv("ORDERBRIDGE_APICBASE_WEBHOOK_SECRET", "new,old")
    settings = IngressSettings()
    auth = tradecloud_auth(settings)
    assert (auth.username, auth.password, auth.token) == (b"tc", b"pw", None)
    assert not auth.allow_anonymous
    assert apicbase_signature(settings).secrets == (b"new", b"old")
    insecure = tradecloud_auth(IngressSettings(ingress_insecure_no_auth=True))
    assert insecure.allow_anonymous
