"""pydantic validation errors as one line for the user: `file: field.path: message`."""

from pydantic import ValidationError


def field_path(loc: tuple) -> str:
    """`stages[0].count` from pydantic's location tuple (the union tag it inserts after a stage index dropped)."""
    parts: list[str] = []
    for i, part in enumerate(loc):
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif i >= 2 and loc[0] == "stages" and isinstance(loc[i - 1], int):
            continue  # the union tag pydantic inserts after a stage index
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts) or "(top level)"


def format_validation_error(source: str, error: ValidationError, known_stages=None) -> str:
    """One line naming `source`, the first failing field and what was expected; `known_stages` (names) for the
    message about an unknown `stage:`."""
    first = error.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "union_tag_invalid":
        known = ", ".join(sorted(known_stages or ()))
        message = f"unknown stage {first['ctx']['tag']!r} (known: {known})"
    elif first["type"] == "union_tag_not_found":
        message = "missing `stage:` (which stage to run)"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{source}: {field_path(tuple(first['loc']))}: {message}{more}"
