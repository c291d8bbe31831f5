"""The one Markdown table writer: the sweep's summary, the search's and make bench's reports."""


def cell(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else "–" if v is None else str(v)


def markdown(rows: list[dict], header: list[str] | None = None) -> str:
    """A table of `rows` (dicts): the columns are `header`, else every key in the order it first
    appears (rows may differ: a b1 row and a b64 row); a float reads with 3 decimals, a value a row
    lacks or None as a dash."""
    keys = header or list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines)
