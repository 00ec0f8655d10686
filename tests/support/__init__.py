"""Test helpers: fixture loading, a controllable TCP proxy, RabbitMQ vhosts."""
