"""Webhook ingress: Tradecloud and Apicbase webhooks into RabbitMQ.

A platform calls us; we authenticate, decode, normalize, publish with a
publisher confirm, and only then answer 202 (api-facts §1.3, §5.2). Modules:
``settings`` (environment), ``verify`` (pure authentication), ``answers`` (the
one JSON error shape and the status of each failure), ``app`` (the aiohttp
factory and handlers), ``singleflight`` (coalescing duplicate deliveries),
``fetch`` (the port for the legacy GET webhook), ``openapi`` (the contract),
``__main__`` (the composition root) and ``cli``.
"""
