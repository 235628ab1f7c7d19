"""The report's markdown (the subset ``markdown_report`` writes: headings, paragraphs, pipe tables,
image lines) as one self-contained HTML page: PNGs embedded as base64 data URIs, inline CSS, no
scripts and nothing fetched, so the file can be mailed or attached to an issue as is."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)]+)\)$")
CODE = re.compile(r"`([^`]+)`")
STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #1d2733; }
h1 { border-bottom: 2px solid #4878a8; padding-bottom: .2em; }
h2 { margin-top: 2em; color: #2c4f73; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #c9d3dd; padding: 4px 8px; }
th { background: #eef3f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: .5em 1em .5em 0; }
figure img { max-width: 560px; border: 1px solid #dde3ea; }
figcaption { font-size: 12px; color: #5a6b7c; }
code { background: #f2f4f7; padding: 0 3px; border-radius: 3px; }
"""


def _inline(text: str) -> str:
    return CODE.sub(r"<code>\1</code>", html.escape(text))


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table(rows: list[str]) -> str:
    head, align, body = _cells(rows[0]), _cells(rows[1]), [_cells(r) for r in rows[2:]]
    numeric = [a.endswith(":") for a in align]
    out = ["<table>", "<thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr></thead>", "<tbody>"]
    for row in body:
        cells = "".join(
            f'<td class="num">{_inline(c)}</td>' if i < len(numeric) and numeric[i] else f"<td>{_inline(c)}</td>"
            for i, c in enumerate(row)
        )
        out.append(f"<tr>{cells}</tr>")
    return "\n".join([*out, "</tbody>", "</table>"])


def _figure(alt: str, src: str, image_dir: Path) -> str:
    data = base64.b64encode((image_dir / src).read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(alt)}</figcaption></figure>"
    )


def render_html(lines: list[str], image_dir: Path, title: str) -> str:
    """The page for these markdown lines; images are read from ``image_dir`` and embedded."""
    body: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            body.append(_table(block))
            continue
        match = IMAGE.match(line.strip())
        if match:
            body.append(_figure(match["alt"], match["src"], image_dir))
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 6)
            body.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line.strip():
            body.append(f"<p>{_inline(line)}</p>")
        i += 1
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
