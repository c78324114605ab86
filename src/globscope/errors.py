"""The one exception type the core raises for bad input; the CLI prints it without a traceback."""


class GlobscopeError(Exception):
    """Bad input or state, with a message that names the file and the problem."""
