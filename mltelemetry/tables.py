"""Tables for people: rich boxes on a terminal, plain aligned text when piped or redirected.

Rich wraps a table that is wider than its console into rows of blank cells; on a pipe there is
no width to respect, so the plain form never wraps (one row per line, columns padded).
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def plain_table(title: str | None, columns: list[str], cells: list[list[str]], left: set[str],
                caption: str | None = None) -> str:
    """A table as fixed-width text: the ``left`` columns left-aligned, the others (numbers) right-aligned."""
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) if c in left else v.rjust(w) for c, v, w in zip(columns, values, widths)).rstrip()

    rule = "  ".join("─" * w for w in widths)
    out = ([title] if title else []) + [rule, line(columns), rule, *(line(row) for row in cells), rule]
    return "\n".join(out + ([caption] if caption else []))


RICH_ROWS = 60  # rich measures every cell: past this many rows plain columns keep the output fast


def print_table(console: Console, title: str | None, columns: list[str], cells: list[list[str]], left: set[str],
                caption: str | None = None) -> None:
    """``cells`` (rows of text) under ``columns`` on ``console``: boxed on a terminal, plain text otherwise."""
    if console.is_terminal and len(cells) <= RICH_ROWS:
        # cells are text, not rich markup: a label such as "cnn [batch_size=32]" must print as it is
        table = Table(title=escape(title or ""), caption=escape(caption) if caption else None, title_justify="left")
        for c in columns:
            table.add_column(escape(c), justify="left" if c in left else "right")
        for row in cells:
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)
    else:
        console.print(plain_table(title, columns, cells, left, caption), markup=False, highlight=False,
                      soft_wrap=True)
