"""Thin async adapters over the real client libraries and tools (asyncssh, the borg CLI)."""
