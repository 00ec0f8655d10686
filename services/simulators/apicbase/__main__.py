"""Composition root of the Apicbase simulator server."""

from __future__ import annotations

import argparse

from services.simulators.apicbase.app import ApicbaseSimulator, create_app, history
from services.simulators.serving import run_server, serve_until_signalled
from shared.logging import get_logger

log = get_logger(__name__)


def build(args: argparse.Namespace) -> ApicbaseSimulator:
    simulator = ApicbaseSimulator(
        book=history(args.seed, args.orders, documented=args.documented),
        clients={args.client_id: args.client_secret},
        access_ttl=args.access_ttl,
        rotate_refresh_tokens=args.rotate_refresh_tokens,
        rate_limit=args.rate_limit,
        rate_window=args.rate_window,
    )
    if args.refresh_token:
        simulator.add_refresh_token(args.refresh_token)
    if args.webhook_url:
        simulator.configure_webhook(
            args.webhook_url, key=args.webhook_key, pretty=args.webhook_pretty
        )
    return simulator


async def _serve(args: argparse.Namespace) -> None:
    simulator = build(args)

    def announce(base: str) -> None:
        log.info(
            "apicbase simulator listening",
            url=base,
            orders=len(simulator.book.orders),
            seed=args.seed,
            documented=simulator.documented,
            client_id=args.client_id,
            webhook=simulator.webhook.url if simulator.webhook else None,
        )

    await serve_until_signalled(
        create_app(simulator),
        args.host,
        args.port,
        announce=announce,
        drive=(
            lambda stop: simulator.drive(
                args.drive_interval, webhook_share=args.webhook_share, stop=stop
            )
        )
        if args.drive_interval > 0
        else None,
    )


def serve(args: argparse.Namespace) -> int:
    return run_server(lambda: _serve(args), service="simulate-apicbase")
