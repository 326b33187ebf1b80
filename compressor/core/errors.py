"""User-facing errors: the CLI prints them as one line and exits non-zero, no traceback."""


class UserError(Exception):
    """Bad input from the user (recipe, path, option). The message is shown as is."""


class CheckFailed(UserError):
    """An output failed a deployment or target check."""
