"""Embedded servers used when no URL is configured: a real nats-server and a real PostgreSQL."""
