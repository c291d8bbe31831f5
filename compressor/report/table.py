"""The one Markdown table writer: the sweep's summary, the search's and make bench's reports."""


def cell(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else "–" if v is None else str(v)


def markdown(rows: list[dict], header: list[str] | None = None) -> str:
    """A table of `rows` (dicts, their keys the columns unless `header` names them); a float reads
    with 3 decimals unless already a string, None as a dash."""
    keys = header or list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(v) for v in (r.values() if header else (r[k] for k in keys))) + " |" for r in rows]
    return "\n".join(lines)
