"""Tradecloud poller: orders and shipments changed after a durable cursor, into RabbitMQ."""
