"""Hypothesis strategies for hostile recipes: documents drawn from the recipe's own pydantic JSON schema, then
some fields replaced by hostile values (inf, nan, huge or negative numbers, long or odd strings, deep nesting,
wrong types, unknown keys), rendered to YAML and sometimes corrupted at the byte level (tests only)."""

from hypothesis import strategies as st

HOSTILE_TEXT = st.one_of(st.text(max_size=40), st.text(min_size=4000, max_size=6000),
                         st.sampled_from(["", " ", "\x00", "../../etc/passwd", "/dev/zero", "{{ x }}", "!!python",
                                          "\u202e", "로", "-1", ".inf", "1e30"]))
HOSTILE_NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**40, 10**40),
                           st.sampled_from([0, -1, 2**31, 2**63, 1e30, -0.0, 1e-300]))
HOSTILE = st.recursive(st.one_of(HOSTILE_NUMBER, HOSTILE_TEXT, st.none(), st.booleans()),
                       lambda inner: st.one_of(st.lists(inner, max_size=3),
                                               st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                       max_leaves=8)
RAW_INSERTS = [b"\xff\xfe", b"\xc3\x28", b"\x00", b"\ta: [", b"[" * 3000, b"x: " + b"9" * 5000 + b"\n",
               b"stage: cast\nstage: cast\n", b"!!python/object/apply:os.system ['true']\n", b"&a [*a]\n"]


def _bounds(schema: dict, integer: bool) -> dict:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    if integer:
        low = None if low is None else int(low) + (1 if "exclusiveMinimum" in schema else 0)
        high = None if high is None else int(high) - (1 if "exclusiveMaximum" in schema else 0)
        return {"min_value": low if low is not None else -5, "max_value": high if high is not None else 4096}
    return {"min_value": low, "max_value": high, "exclude_min": "exclusiveMinimum" in schema,
            "exclude_max": "exclusiveMaximum" in schema, "allow_nan": False, "allow_infinity": False}


def from_schema(schema: dict, defs: dict) -> st.SearchStrategy:
    """A strategy for documents valid (mostly) under a pydantic JSON schema: the subset pydantic writes."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return st.deferred(lambda: from_schema(defs[name], defs))
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([from_schema(option, defs) for option in schema[key]])
    kind = schema.get("type")
    if kind == "integer":
        return st.integers(**_bounds(schema, True))
    if kind == "number":
        return st.floats(**_bounds(schema, False))
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: len(s) < 60)
        return st.text(max_size=12)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = from_schema(schema.get("items", {}), defs) if schema.get("items") else st.integers(0, 8)
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=min(schema.get("maxItems", 3), 3))
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        if not properties:
            extra = schema.get("additionalProperties")
            values = from_schema(extra, defs) if isinstance(extra, dict) else st.integers(0, 4)
            return st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=2)
        return st.fixed_dictionaries({k: from_schema(v, defs) for k, v in properties.items() if k in required},
                                     optional={k: from_schema(v, defs) for k, v in properties.items()
                                               if k not in required})
    return st.one_of(st.integers(0, 4), st.text(max_size=4), st.none())


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


def _replace(document, path, new):
    if not path:
        return new
    node = document
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = new
    return document


@st.composite
def hostile_documents(draw, schema: dict):
    """A schema document with 0-3 fields replaced by hostile values and maybe an unknown key."""
    document = draw(from_schema(schema, schema.get("$defs", {})))
    for _ in range(draw(st.integers(0, 3))):
        paths = list(_paths(document))
        document = _replace(document, draw(st.sampled_from(paths)), draw(HOSTILE))
    if isinstance(document, dict) and draw(st.booleans()):
        document[draw(st.text(min_size=1, max_size=10))] = draw(HOSTILE)
    return document


@st.composite
def hostile_yaml(draw, schema: dict) -> bytes:
    """YAML bytes of a hostile document, sometimes corrupted with raw bytes at a random place."""
    import yaml

    document = draw(hostile_documents(schema))
    try:
        text = yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
    except (ValueError, yaml.YAMLError):  # e.g. an integer too long for str(): write its digits raw
        text = "name: x\n"
    raw = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 4)) == 0:
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from(RAW_INSERTS)) + raw[at:]
    return raw
