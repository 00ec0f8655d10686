"""RabbitMQ: topology as data (pure), connection/declare and the confirmed publisher (I/O)."""
