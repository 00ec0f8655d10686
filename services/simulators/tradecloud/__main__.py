"""Composition root of the Tradecloud simulator server (``orderbridge simulate tradecloud``)."""

from __future__ import annotations

import argparse
import time

from services.simulators.serving import run_server, serve_until_signalled
from services.simulators.tradecloud.app import TradecloudSimulator, create_app
from services.simulators.tradecloud.webhooks import Kind, WebhookSender, WebhookTarget
from services.simulators.tradecloud.world import World
from shared.logging import get_logger

log = get_logger(__name__)


def build(args: argparse.Namespace) -> TradecloudSimulator:
    world = World(seed=args.seed, documented=args.documented)
    world.generate(args.orders)
    if args.wall_clock:  # the generated history stays seeded; what follows is stamped now
        world.use_clock(lambda: int(time.time() * 1000))
    simulator = TradecloudSimulator(
        world=world,
        users={args.username: args.password},
        access_ttl=args.access_ttl,
        rate_limit=args.rate_limit,
        # Tradecloud retries answers above 500 forever (api-facts §1.3).
        sender=WebhookSender(max_attempts=None, max_backoff=args.webhook_max_backoff),
        documented=args.documented,
    )
    if args.omit_total_share is not None:
        simulator.omit_total_share = args.omit_total_share
    urls: dict[Kind, str | None] = {
        "order": args.webhook_orders_url,
        "order_documents": args.webhook_documents_url,
        "shipment": args.webhook_shipments_url,
    }
    for kind, url in urls.items():
        if url:
            simulator.sender.configure(
                WebhookTarget(
                    kind=kind,
                    url=url,
                    username=args.webhook_username,
                    password=args.webhook_password,
                    token=args.webhook_token,
                    single_delivery=args.single_delivery and kind == "order",
                    meta=args.webhook_meta,
                    method=args.webhook_method,
                )
            )
    return simulator


async def _serve(args: argparse.Namespace) -> None:
    simulator = build(args)

    def announce(base: str) -> None:
        log.info(
            "tradecloud simulator listening",
            url=base + "/v2",
            orders=len(simulator.world.orders),
            shipments=len(simulator.world.shipments),
            seed=args.seed,
            documented=simulator.documented,
            webhooks=sorted(simulator.sender.targets),
        )

    await serve_until_signalled(
        create_app(simulator),
        args.host,
        args.port,
        announce=announce,
        drive=(lambda stop: simulator.drive(args.drive_rate, stop=stop))
        if args.drive_rate > 0
        else None,
    )


def serve(args: argparse.Namespace) -> int:
    return run_server(lambda: _serve(args), service="simulate-tradecloud")
