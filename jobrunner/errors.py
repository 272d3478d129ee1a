"""The one exception type the core raises for anything a user can fix.

The CLI renders a :class:`JobRunnerError` as one red line and exits non-zero;
any other exception is a bug and keeps its traceback.
"""


class JobRunnerError(Exception):
    """A mistake in the input or the environment, with what to do about it."""
