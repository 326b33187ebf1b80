"""Target widths given as a count or as a fraction of the original, checked against the model's config."""


def resolve_size(count: int | None, fraction: float | None, original: int, step: int, what: str,
                 round_to: int = 1) -> int:
    """The target width: `count`, or `fraction` of `original` rounded to a multiple of `step`·`round_to`.

    Raises ValueError (one line, naming `what`) when the result is not in 1..original or not a multiple of `step`.
    """
    if count is None:
        unit = step * round_to
        count = max(unit, round(original * fraction / unit) * unit)
        count = min(count, original - original % step)
    if not 0 < count <= original:
        raise ValueError(f"{what} {count} is outside 1..{original} (the model has {original})")
    if count % step:
        raise ValueError(f"{what} {count} is not a multiple of {step}")
    return count


def uniform_only(value):
    """Pydantic before-validator: one size for every layer (vLLM serves only uniform layers)."""
    if isinstance(value, (list, tuple, dict)):
        raise ValueError("give one number for every layer: vLLM serves only uniform layers (no per-layer sizes)")
    return value


def count_or_fraction(count_field: str, fraction_field: str):
    """Validators for a stage sized by `count_field` (one number for every layer) xor `fraction_field`.

    Use in a params model: `_uniform, _one_size = count_or_fraction("keep", "keep_fraction")`.
    """
    from pydantic import field_validator, model_validator

    def exactly_one(model):
        if (getattr(model, count_field) is None) == (getattr(model, fraction_field) is None):
            raise ValueError(f"give exactly one of `{count_field}` or `{fraction_field}`")
        return model

    def uniform(cls, value):
        return uniform_only(value)

    return (field_validator(count_field, mode="before")(classmethod(uniform)),
            model_validator(mode="after")(exactly_one))
