"""User-facing errors.

Anything the user can fix (bad data, bad config key, corrupt checkpoint) raises
:class:`StraightflowError` with a one-line message; the CLI prints it as
``straightflow: error: <message>`` and exits with status 2, without a traceback.
"""


class StraightflowError(Exception):
    """An error caused by user input, reported as one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
