"""Render a report (a list of blocks) as Markdown and as one self-contained HTML file.

The HTML embeds every figure as a base64 PNG data URI and has no external resource (no CDN
script, style sheet or font), so it opens offline and survives being mailed around. The Markdown
links the PNG files saved beside it in ``figures/``; every figure is also saved as SVG.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

from benchmark.report.figures import NamedFigure


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    html_id: str = ""  # an id for the HTML table (the scorecard's: tests and readers find it by it)
    row_classes: tuple[str, ...] = ()  # one CSS class per row (the scorecard colours rows by verdict)


@dataclass(frozen=True)
class Figure:
    """A saved figure: its PNG bytes (embedded in the HTML) and where the files are."""

    name: str
    caption: str
    png: bytes


Block = Heading | Paragraph | Table | Figure


def save_figure(named: NamedFigure, folder: Path) -> Figure:
    """Write ``folder/<name>.png`` and ``.svg``; return the block that shows it."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    named.figure.savefig(buffer, format="png", dpi=110)
    png = buffer.getvalue()
    (folder / f"{named.name}.png").write_bytes(png)
    named.figure.savefig(folder / f"{named.name}.svg", format="svg")
    return Figure(named.name, named.caption, png)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(title: str, blocks: list[Block]) -> str:
    """Markdown beside a ``figures/`` folder (where ``save_figure`` wrote the images)."""
    lines = [f"# {title}", ""]
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Table):
            lines.append("| " + " | ".join(_md_cell(cell) for cell in block.header) + " |")
            lines.append("|" + "|".join("---" for _ in block.header) + "|")
            lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in block.rows]
            lines.append("")
        elif isinstance(block, Figure):
            lines += [f"![{block.name}](figures/{block.name}.png)", "",
                      f"*{block.caption}* ([SVG](figures/{block.name}.svg))", ""]
    return "\n".join(lines)


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; }
figcaption { font-size: 0.9em; color: #444; }
tr.supported td { background: #e6f4e6; }
tr.contradicted td { background: #fbe3e3; }
tr.not-decided td { background: #f4f4f4; }
"""


def to_html(title: str, blocks: list[Block]) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{html.escape(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
             f"<h1>{html.escape(title)}</h1>"]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{html.escape(cell)}</th>" for cell in block.header)
            classes = block.row_classes or ("",) * len(block.rows)
            body = "".join((f'<tr class="{html.escape(css)}">' if css else "<tr>")
                           + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                           for row, css in zip(block.rows, classes))
            table_id = f' id="{html.escape(block.html_id)}"' if block.html_id else ""
            parts.append(f"<table{table_id}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, Figure):
            data = base64.b64encode(block.png).decode("ascii")
            parts.append(f'<figure id="{html.escape(block.name)}"><img alt="{html.escape(block.name)}" '
                         f'src="data:image/png;base64,{data}"><figcaption>{html.escape(block.caption)}'
                         "</figcaption></figure>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
