"""pydantic validation errors as one line for the user: `file: field.path: message`."""

from pydantic import BaseModel, ConfigDict, ValidationError

from compressor.core.errors import shown


class Strict(BaseModel):
    """Base of every user-facing settings model: unknown keys and .inf / .nan refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def field_path(loc: tuple) -> str:
    """`stages[0].count` from pydantic's location tuple (the union tag it inserts after a stage index dropped)."""
    parts: list[str] = []
    for i, part in enumerate(loc):
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif i >= 2 and loc[0] == "stages" and isinstance(loc[i - 1], int):
            continue  # the union tag pydantic inserts after a stage index
        else:
            parts.append(("." if parts else "") + shown(part))
    return "".join(parts) or "(top level)"


# upper bounds a recipe's numbers must respect, so that no typo (1e30 tokens, a million timed runs) is taken
# at its word: far above any real use, far below what would hang or exhaust the machine
MAX_TOKENS = 2**20
MAX_COUNT = 10**6
MAX_STEPS = 10**7
SHOWN_ERRORS = 5
VALUE_LIMIT = 200  # characters of a value echoed back in a message


def _message(item: dict, known_stages) -> str:
    message = item["msg"].removeprefix("Value error, ")
    if item["type"] == "extra_forbidden":
        return "unknown key"
    if item["type"] == "union_tag_invalid":
        return f"unknown stage {item['ctx']['tag']!r} (known: {', '.join(sorted(known_stages or ()))})"
    if item["type"] == "union_tag_not_found":
        return "missing `stage:` (which stage to run)"
    return message if len(message) <= VALUE_LIMIT else message[: VALUE_LIMIT - 3] + "..."


def format_validation_error(source: str, error: ValidationError, known_stages=None) -> str:
    """One line naming `source`, each failing field (up to 5) and what was expected; `known_stages` (names) for
    the message about an unknown `stage:`."""
    items = error.errors()
    parts = [f"{field_path(tuple(item['loc']))}: {_message(item, known_stages)}" for item in items[:SHOWN_ERRORS]]
    more = f" (and {len(items) - SHOWN_ERRORS} more)" if len(items) > SHOWN_ERRORS else ""
    return f"{source}: " + "; ".join(parts) + more
