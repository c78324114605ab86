"""The exceptions the core raises for the user's mistakes and wishes; every face (CLI, filters)
shows them as one line, without a traceback. Anything else is a bug and keeps its traceback."""


class GlobscopeError(Exception):
    """Bad input or state, with a message that names the file and the problem."""


class Aborted(GlobscopeError):
    """The caller's ``should_abort()`` returned True; work already finished is kept (stored chunks,
    written files) and reused by the next run."""


__all__ = ["GlobscopeError", "Aborted"]
