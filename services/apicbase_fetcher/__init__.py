"""Apicbase fetcher: ORDERED purchase orders not yet fetched, into RabbitMQ, then marked."""
