"""The ``straightflow`` command (the top layer; nothing in the library imports it).
Entry point: :func:`straightflow.cli.main.main`."""
