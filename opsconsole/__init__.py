"""The entry point (``cli.py``): the one package that may import the core, the actions, the screens and the
lab (docs/architecture.md)."""
