"""Hetzner Cloud API twin: an aiohttp server that answers like https://api.hetzner.cloud/v1."""
