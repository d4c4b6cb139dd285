"""User-facing errors.

Anything the user can fix (bad data, bad config key, corrupt checkpoint) raises
:class:`StraightflowError` with a one-line message; the CLI prints it as
``straightflow: error: <message>`` and exits with status 2, without a traceback.
"""


class StraightflowError(Exception):
    """An error caused by user input, reported as one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by SIGINT or SIGTERM after the step it was in, with a checkpoint of that step.

    A ``KeyboardInterrupt`` (``except Exception`` does not swallow it) whose message
    says where the run stopped and how to continue; the CLI prints it and exits
    with :attr:`exit_status`, 128 + the signal number (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, message: str, signum: int, step: int | None = None, checkpoint=None):
        super().__init__(" ".join(str(message).split()))
        self.signum, self.step, self.checkpoint = int(signum), step, checkpoint

    @property
    def exit_status(self) -> int:
        return 128 + self.signum
