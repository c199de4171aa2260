"""The leaderboard as one static HTML page: sortable tables, the figures, the Friedman result.

    >>> html = render_page(Page(title="clbench leaderboard: cpu-v1", command="clbench leaderboard ...",
    ...                         tables=tables, test=test, figures=[Image("cd-diagram.png", "...")],
    ...                         links=[("cpu-v1.csv", "CSV")]))

The page needs no network: no CDN, fonts or scripts from elsewhere. Figures are referenced by
relative paths, so the folder can be moved or served as it is. A dozen lines of vanilla
JavaScript make every table sortable: clicking a header sorts the rows by that column
(ascending, then descending on a second click; the header's ``aria-sort`` says which). Cells
that start with a number (``"97.3 ± 0.4"``, ``"2 (+1 failed)"``) sort by that number, others
as text; cells without a number (``"-"``, an undefined metric) stay last. The output holds no
timestamp: the same tables give the same bytes.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from clbench.board.rank import (CI_RANK_NOTE, RUNS_NOTE, Tables, overall_rows, reference_note,
                                stream_note, stream_rows)
from clbench.board.stats import RankTest, significant_pairs, summary_line
from clbench.metrics.registry import METRICS

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 75em; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
td:nth-child(2), th:nth-child(2), #overall td:first-child, #overall th:first-child { text-align: left; }
th { background: #f0f0f0; cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""

#: click a header to sort its table's rows by that column (see the module docstring)
SCRIPT = """
const NUM = /^[-+]?(\\d+\\.?\\d*|\\.\\d+)(e[-+]?\\d+)?(\\s|$)/i;
function cellKey(row, col) {
  const s = row.cells[col].textContent.trim();
  return NUM.test(s) ? parseFloat(s) : s;
}
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      const asc = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      const body = table.tBodies[0];
      const rows = Array.from(body.rows);
      rows.sort(function (a, b) {
        const x = cellKey(a, col), y = cellKey(b, col);
        const xn = typeof x === "number", yn = typeof y === "number";
        if (xn !== yn) { return xn ? -1 : 1; }
        if (xn) { return asc ? x - y : y - x; }
        return asc ? x.localeCompare(y) : y.localeCompare(x);
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


@dataclass(frozen=True)
class Image:
    """An image beside the page: its relative path and a caption."""

    src: str
    caption: str


@dataclass
class Page:
    """Everything the page shows."""

    title: str
    command: str
    tables: Tables
    test: RankTest
    figures: list[Image] = field(default_factory=list)
    #: (relative href, text) shown under the title
    links: list[tuple[str, str]] = field(default_factory=list)
    #: one line on the conditions the runs' times were measured under (under the figures)
    runs_note: str = ""
    #: the protocol's tables (heading, headers, rows), read from the result files
    protocol: list[tuple[str, list[str], list[list[Any]]]] = field(default_factory=list)


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def table_html(headers: list[str], rows: list[list[Any]], table_id: str) -> str:
    """A sortable ``<table>`` with a header row and one ``<tr>`` per row."""
    head = "".join(f'<th scope="col">{_e(h)}</th>' for h in headers)
    body = "\n".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in r) + "</tr>" for r in rows)
    return (f'<table class="sortable" id="{_e(table_id)}">\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{body}\n</tbody>\n</table>")


def _figure(f: Image) -> str:
    return (f'<figure><img src="{_e(f.src)}" alt="{_e(f.caption)}">'
            f"<figcaption>{_e(f.caption)}</figcaption></figure>")


def render_page(page: Page) -> str:
    """The complete HTML document."""
    t, test = page.tables, page.test
    arrow = METRICS.get(t.metric).obj.arrow
    links = " · ".join(f'<a href="{_e(h)}">{_e(x)}</a>' for h, x in page.links)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        f'<head>\n<meta charset="utf-8">\n<title>{_e(page.title)}</title>\n'
        f"<style>{STYLE}</style>\n</head>",
        "<body>",
        f"<h1>{_e(page.title)}</h1>",
        f"<p>Generated by <code>{_e(page.command)}</code>. {links}</p>",
        f"<p>Ranked on <code>{_e(t.metric)}</code> ({arrow}); mean ± 95% t-interval over seeds. "
        f"{_e(RUNS_NOTE)} {_e(CI_RANK_NOTE)} "
        + (f"{_e(reference_note(t))} " if t.reference else "")
        + "Click a column header to sort.</p>",
        "<h2>Across streams</h2>",
        f'<p id="friedman">{_e(summary_line(test))}</p>',
    ]
    if test.cd is not None:
        pairs = "; ".join(f"{a} > {b}" for a, b in significant_pairs(test)) or "none"
        parts.append(f"<p>Pairs that differ (mean ranks further apart than CD): {_e(pairs)}.</p>")
    if test.dropped:
        parts.append(f"<p>Left out of the test (not run on every stream): "
                     f"{_e(', '.join(test.dropped))}.</p>")
    headers, rows = overall_rows(t.overall)
    parts.append(table_html(headers, rows, "overall"))
    parts += [_figure(f) for f in page.figures]
    if page.runs_note:
        parts.append(f'<p id="timing">{_e(page.runs_note)}</p>')
    parts.append("<h2>Per stream</h2>")
    for stream in t.per_stream:
        headers, rows = stream_rows(t, stream)
        parts.append(f'<h3 id="{_e(stream)}">{_e(stream)}</h3>')
        parts.append(table_html(headers, rows, f"stream-{stream}"))
        if note := stream_note(t, stream):
            parts.append(f"<p>{_e(note)}</p>")
    if page.protocol:
        parts.append('<h2 id="protocol">Protocol (read from the result files)</h2>')
        for i, (heading, headers, rows) in enumerate(page.protocol):
            parts += [f"<h3>{_e(heading)}</h3>", table_html(headers, rows, f"protocol-{i}")]
    parts += [f"<script>{SCRIPT}</script>", "</body>", "</html>", ""]
    return "\n".join(parts)
