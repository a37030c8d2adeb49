"""A list of rows that prints as a table in a terminal and as HTML in Jupyter (no pandas)."""

from __future__ import annotations

import html
from typing import Any

from gridd.bench import table as text_table


class Table(list):  # type: ignore[type-arg]
    """Rows (dicts) with a fixed column order; `to_pandas()` when pandas is installed."""

    def __init__(self, rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
        super().__init__(rows)
        self.columns = columns or (list(rows[0]) if rows else [])

    def __repr__(self) -> str:
        return text_table(self, self.columns) if self else "(empty)"

    __str__ = __repr__

    def _repr_html_(self) -> str:
        if not self:
            return "<i>(empty)</i>"

        def cell(v: Any) -> str:
            if isinstance(v, float):
                v = f"{v:.4g}"
            return html.escape("" if v is None else str(v))

        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in self.columns) + "</tr>"
            for r in self
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(list(self), columns=self.columns)
