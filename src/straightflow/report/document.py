"""The report as data (headings, text, tables, figures, code) and its two renderings.

Sections render to a list of blocks; :func:`to_markdown` writes the Markdown twin
(figures linked as ``figures/NAME.png``) and :func:`to_html` one self-contained HTML
page from the same blocks (figures embedded as base64 data URIs, tables as HTML
tables, a little CSS). Text blocks know three inline marks: ```code```, ``**bold**``
and ``[text](url)``; a text block whose lines all start with ``- `` is a list.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Heading:
    text: str
    level: int = 3


@dataclass
class Text:
    text: str


@dataclass
class Code:
    text: str
    lang: str = ""


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    """A PNG under the report folder (``figures/NAME.png``) and what made it."""

    path: str
    caption: str


Block = Heading | Text | Code | Table | Figure


@dataclass
class Section:
    """One rendered section: its number and title, blocks, and the wall time of its jobs."""

    name: str
    title: str
    blocks: list[Block] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return slug(self.title)


@dataclass
class Document:
    title: str
    intro: list[Block]
    sections: list[Section]


def slug(text: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


# ------------------------------------------------------------------ Markdown
def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_block(block: Block) -> str:
    if isinstance(block, Heading):
        return "#" * block.level + " " + block.text
    if isinstance(block, Text):
        return block.text
    if isinstance(block, Code):
        return f"```{block.lang}\n{block.text.rstrip()}\n```"
    if isinstance(block, Table):
        lines = ["| " + " | ".join(_md_cell(h) for h in block.header) + " |", "|" + "---|" * len(block.header)]
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
        return "\n".join(lines)
    if isinstance(block, Figure):
        return f"![{Path(block.path).stem}]({block.path})\n\n*{block.caption}*"
    raise TypeError(f"not a report block: {block!r}")


def to_markdown(doc: Document) -> str:
    parts = [f"# {doc.title}"] + [_md_block(b) for b in doc.intro]
    for s in doc.sections:
        parts.append(f"## {s.title}")
        parts += [_md_block(b) for b in s.blocks]
    return "\n\n".join(parts).rstrip() + "\n"


# ------------------------------------------------------------------ HTML
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:70rem;margin:2rem auto;\
padding:0 1rem;line-height:1.45;color:#222}
h1,h2,h3{line-height:1.2} h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.5rem}
code{background:#f3f3f3;padding:0 .2em;border-radius:3px;font-size:.92em}
pre{background:#f6f6f6;padding:.7rem;overflow-x:auto;border-radius:4px} pre code{background:none;padding:0}
table{border-collapse:collapse;margin:.7rem 0;font-size:.9em;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.2rem .5rem;text-align:right} th{background:#f0f0f0} \
td:first-child,th:first-child{text-align:left}
figure{margin:1rem 0} figure img{max-width:100%;height:auto;border:1px solid #eee} \
figcaption{font-size:.88em;color:#555}
"""


def _inline(text: str) -> str:
    out = []
    for i, part in enumerate(re.split(r"(`[^`]+`)", text)):
        if i % 2:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        part = html.escape(part, quote=False)
        part = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", part)
        part = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", lambda m: f'<a href="{html.escape(m.group(2))}">{m.group(1)}</a>',
                      part)
        out.append(part)
    return "".join(out)


def _text_html(text: str) -> str:
    html_parts = []
    for para in re.split(r"\n\s*\n", text.strip()):
        lines = para.splitlines()
        if lines and all(ln.startswith("- ") or ln.startswith("  ") for ln in lines) and lines[0].startswith("- "):
            items, current = [], []
            for ln in lines:
                if ln.startswith("- ") and current:
                    items.append(" ".join(current))
                    current = []
                current.append(ln[2:].strip() if ln.startswith("- ") else ln.strip())
            items.append(" ".join(current))
            html_parts.append("<ul>" + "".join(f"<li>{_inline(it)}</li>" for it in items) + "</ul>")
        else:
            html_parts.append(f"<p>{_inline(' '.join(ln.strip() for ln in lines))}</p>")
    return "\n".join(html_parts)


def _html_block(block: Block, root: Path) -> str:
    if isinstance(block, Heading):
        return f'<h{block.level} id="{slug(block.text)}">{_inline(block.text)}</h{block.level}>'
    if isinstance(block, Text):
        return _text_html(block.text)
    if isinstance(block, Code):
        return f"<pre><code>{html.escape(block.text.rstrip())}</code></pre>"
    if isinstance(block, Table):
        head = "".join(f"<th>{_inline(str(h))}</th>" for h in block.header)
        body = "".join("<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in row) + "</tr>" for row in block.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(block, Figure):
        path = root / block.path
        if not path.is_file():
            return f"<p><em>figure {html.escape(block.path)} is missing</em></p>"
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.caption)}">'
                f"<figcaption>{_inline(block.caption)}</figcaption></figure>")
    raise TypeError(f"not a report block: {block!r}")


def to_html(doc: Document, root: str | Path) -> str:
    """One self-contained page; figures are read from ``root`` (the report folder) and embedded."""
    root = Path(root)
    body = [f"<h1>{_inline(doc.title)}</h1>"] + [_html_block(b, root) for b in doc.intro]
    for s in doc.sections:
        body.append(f'<section id="section-{s.name}"><h2 id="{s.anchor}">{_inline(s.title)}</h2>')
        body += [_html_block(b, root) for b in s.blocks]
        body.append("</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, "
            f"initial-scale=1\"><title>{html.escape(doc.title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
