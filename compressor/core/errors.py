"""User-facing errors: the CLI prints them as one line and exits non-zero, no traceback."""


def shown(value) -> str:
    """A user-given name or path as an error message quotes it: as is when printable, else its repr (a newline
    or control character inside a key or a file name must not break the message's single line)."""
    text = str(value)
    return text if text.isprintable() else repr(text)


class UserError(Exception):
    """Bad input from the user (recipe, path, option). The message is shown as is."""


class CheckFailed(UserError):
    """An output failed a deployment or target check."""


class EvaluationIncomplete(UserError):
    """The output is written but its evaluation failed or was interrupted (the message says how to finish it)."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code
