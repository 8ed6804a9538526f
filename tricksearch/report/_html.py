"""``report.html``: report.md as one self-contained HTML file, its figures embedded as
``data:`` URIs, readable offline in any browser.

The converter knows the Markdown report.md is written in, no more: ATX headings, paragraphs,
``-``/``*`` and numbered lists (one level; indented lines continue an item), pipe tables with an
alignment row, fenced code blocks, ``>`` quotes, ``---`` rules, and inline code, bold, italic,
links and images. An image is read from the report's folder and embedded; one that is missing is
named instead; one with a remote address is turned into a link (nothing is fetched, ever).
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

__all__ = ["HTML_NAME", "markdown_to_html", "write_html"]

#: The file written beside report.md.
HTML_NAME = "report.html"

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_ITEM = re.compile(r"^([-*+]|\d+[.)])\s+(.*)$")
_TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_HR = re.compile(r"^(\*\s*){3,}$|^(-\s*){3,}$|^(_\s*){3,}$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_IMAGE = re.compile(r"!\[([^\]]*)\]\(\s*([^)\s]+)(?:\s+\"([^\"]*)\")?\s*\)")
_LINK = re.compile(r"\[([^\]]+)\]\(\s*([^)\s]+)\s*\)")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])|(?<!\w)_(?=\S)(.+?)(?<=\S)_(?!\w)")

_CSS = """
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: #1f2328; background: #fff; margin: 0; }
main { max-width: 980px; margin: 0 auto; padding: 24px 32px 64px; }
h1 { border-bottom: 2px solid #264653; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2em; margin-top: 2em; }
code { font: 13px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
       background: #f3f4f6; padding: .1em .3em; border-radius: 4px; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: 12px;
      overflow-x: auto; }
pre code { background: none; padding: 0; white-space: pre; }
table { border-collapse: collapse; margin: 1em 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; }
th { background: #f6f8fa; }
tr:nth-child(even) td { background: #fafbfc; }
img { max-width: 100%; height: auto; display: block; margin: .5em 0; }
blockquote { border-left: 4px solid #e9c46a; margin: 1em 0; padding: .2em 1em;
             background: #fffbea; }
.missing { color: #b42318; font-style: italic; }
"""


class _Inline:
    """Inline Markdown to HTML: code spans, images and links are set aside first (their text is
    not touched by emphasis), then the rest is escaped and emphasis applied."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.kept: list[str] = []

    def _keep(self, fragment: str) -> str:
        self.kept.append(fragment)
        return f"\x00{len(self.kept) - 1}\x00"

    def _image(self, m: re.Match[str]) -> str:
        alt, src, title = m.group(1), m.group(2), m.group(3)
        if re.match(r"^[a-z][a-z0-9+.-]*:", src, re.I):  # remote (or data:): never fetched
            return self._keep(f'<a href="{_attr(src)}">{html.escape(alt or src)}</a>')
        path = self.base / src
        mime = _MIME.get(path.suffix.lower())
        if mime is None or not path.is_file():
            return self._keep(
                f'<span class="missing">[figure not found: {html.escape(src)}]</span>'
            )
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        extra = f' title="{_attr(title)}"' if title else ""
        return self._keep(f'<img src="data:{mime};base64,{data}" alt="{_attr(alt)}"{extra}>')

    def _link(self, m: re.Match[str]) -> str:
        text = _emphasis(html.escape(m.group(1), quote=False))
        return self._keep(f'<a href="{_attr(m.group(2))}">{text}</a>')

    def __call__(self, text: str) -> str:
        text = _CODE_SPAN.sub(
            lambda m: self._keep(f"<code>{html.escape(m.group(2).strip())}</code>"), text
        )
        text = _IMAGE.sub(self._image, text)
        text = _LINK.sub(self._link, text)
        text = _emphasis(html.escape(text, quote=False))
        return re.sub("\x00(\\d+)\x00", lambda m: self.kept[int(m.group(1))], text)


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


def _emphasis(text: str) -> str:
    text = _BOLD.sub(r"<strong>\1</strong>", text)
    return _ITALIC.sub(lambda m: f"<em>{m.group(1) or m.group(2)}</em>", text)


def _cells(line: str) -> list[str]:
    """The cells of a table row; ``\\|`` is a literal bar."""
    line = line.strip()
    line = line[1:] if line.startswith("|") else line
    line = line[:-1] if line.endswith("|") and not line.endswith("\\|") else line
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)]


def _table(lines: list[str], inline: _Inline) -> str:
    aligns = []
    for rule in _cells(lines[1]):
        left, right = rule.startswith(":"), rule.endswith(":")
        aligns.append("center" if left and right else "right" if right else "left" if left else "")

    def row(cells: list[str], tag: str) -> str:
        out = []
        for i, cell in enumerate(cells):
            align = aligns[i] if i < len(aligns) else ""
            style = f' style="text-align: {align}"' if align else ""
            out.append(f"<{tag}{style}>{inline(cell)}</{tag}>")
        return "<tr>" + "".join(out) + "</tr>"

    head = row(_cells(lines[0]), "th")
    body = "\n".join(row(_cells(line), "td") for line in lines[2:])
    return f"<table>\n<thead>{head}</thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _is_table(lines: list[str], i: int) -> bool:
    """A table starts here: a row, then the alignment row."""
    return (
        lines[i].lstrip().startswith("|")
        and i + 1 < len(lines)
        and bool(_TABLE_RULE.match(lines[i + 1].strip()))
    )


def _starts_block(lines: list[str], i: int) -> bool:
    line = lines[i]
    return bool(
        line.startswith("```")
        or _HEADING.match(line)
        or _ITEM.match(line)
        or line.startswith(">")
        or _HR.match(line.strip())
        or _is_table(lines, i)
    )


def _list(lines: list[str], i: int, inline: _Inline) -> tuple[str, int]:
    ordered = _ITEM.match(lines[i]).group(1)[0].isdigit()  # type: ignore[union-attr]
    items: list[str] = []
    while i < len(lines):
        m = _ITEM.match(lines[i])
        if m:
            items.append(m.group(2))
        elif lines[i].startswith((" ", "\t")) and lines[i].strip() and items:
            items[-1] += " " + lines[i].strip()  # an indented line continues the item
        else:
            break
        i += 1
    tag = "ol" if ordered else "ul"
    body = "\n".join(f"<li>{inline(item)}</li>" for item in items)
    return f"<{tag}>\n{body}\n</{tag}>", i


def _blocks(lines: list[str], inline: _Inline) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            i += 1
        elif line.startswith("```"):
            lang = line[3:].strip()
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
            end = len(lines) if end is None else end
            code = html.escape("\n".join(lines[i + 1 : end]))
            cls = f' class="language-{_attr(lang)}"' if lang else ""
            out.append(f"<pre><code{cls}>{code}</code></pre>")
            i = end + 1
        elif m := _HEADING.match(line):
            level, text = len(m.group(1)), m.group(2)
            slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
            out.append(f'<h{level} id="{_attr(slug)}">{inline(text)}</h{level}>')
            i += 1
        elif _HR.match(stripped):
            out.append("<hr>")
            i += 1
        elif _is_table(lines, i):
            end = i + 2
            while end < len(lines) and lines[end].lstrip().startswith("|"):
                end += 1
            out.append(_table(lines[i:end], inline))
            i = end
        elif line.startswith(">"):
            end = i
            while end < len(lines) and lines[end].startswith(">"):
                end += 1
            inner = [re.sub(r"^> ?", "", q) for q in lines[i:end]]
            out.append("<blockquote>\n" + "\n".join(_blocks(inner, inline)) + "\n</blockquote>")
            i = end
        elif _ITEM.match(line):
            block, i = _list(lines, i, inline)
            out.append(block)
        else:
            end = i + 1
            while end < len(lines) and lines[end].strip() and not _starts_block(lines, end):
                end += 1
            text = " ".join(q.strip() for q in lines[i:end])
            out.append(f"<p>{inline(text)}</p>")
            i = end
    return out


def markdown_to_html(text: str, *, base: Path, title: str = "tricksearch report") -> str:
    """A whole HTML document of the Markdown ``text``; images are read from the folder ``base``."""
    body = "\n".join(_blocks(text.splitlines(), _Inline(base)))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def write_html(md_path: Path) -> Path:
    """``report.html`` beside the Markdown file ``md_path``, its figures embedded; its path."""
    md_path = Path(md_path)
    text = md_path.read_text(encoding="utf-8")
    first = next((line for line in text.splitlines() if line.startswith("# ")), "")
    title = first[2:].strip() or "tricksearch report"
    out = md_path.with_name(HTML_NAME)
    out.write_text(markdown_to_html(text, base=md_path.parent, title=title), encoding="utf-8")
    return out
