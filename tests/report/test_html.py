"""report.html: one self-contained file beside report.md. It parses with balanced tags, every
image is embedded as a PNG data URI that decodes, nothing refers to the network, and every
section of report.md is there. Where a headless Chromium is installed, a screenshot of it is not
blank."""

from __future__ import annotations

import base64
import binascii
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tricksearch.report import write_report
from tricksearch.report._html import HTML_NAME, markdown_to_html

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class StrictParser(HTMLParser):
    """Records every start tag with its attributes and the text of headings; fails on a closing
    tag that does not close the innermost open element, or on elements left open."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.headings: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.doctype = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = self.doctype or decl.lower() == "doctype html"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in VOID:
            return
        self.stack.append(tag)
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append((tag, ""))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            self.errors.append(f"</{tag}> closes a void element")
        elif not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if any(re.fullmatch(r"h[1-6]", t) for t in self.stack):
            tag, text = self.headings[-1]
            self.headings[-1] = (tag, text + data)


def parse(text: str) -> StrictParser:
    parser = StrictParser()
    parser.feed(text)
    parser.close()
    assert not parser.errors, parser.errors[:5]
    assert parser.stack == [], f"left open: {parser.stack}"
    return parser


def _md_headings(md: str) -> list[tuple[str, str]]:
    """(``h1``/``h2``, text) of every ``#``/``##`` heading of report.md outside code blocks."""
    found, fenced = [], False
    for line in md.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"^(#{1,2}) (.+)$", line)):
            found.append((f"h{len(m.group(1))}", re.sub(r"[`*]", "", m.group(2)).strip()))
    return found


def _decode_png(src: str) -> tuple[int, int]:
    from PIL import Image

    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), src[:60]
    try:
        data = base64.b64decode(src[len(prefix) :], validate=True)
    except binascii.Error as exc:  # pragma: no cover - the assertion message
        raise AssertionError(f"not base64: {exc}") from None
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG"
        img.verify()  # the whole stream, checksums included
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.size


def test_report_html_is_self_contained_and_complete(curves_run: Path) -> None:
    md_path = write_report(curves_run)
    html_path = curves_run / HTML_NAME
    assert html_path.is_file()
    text = html_path.read_text(encoding="utf-8")
    md = md_path.read_text()
    parser = parse(text)
    assert parser.doctype
    # Every figure of report.md is embedded as a PNG that decodes; nothing else is loaded.
    images = [attrs for tag, attrs in parser.tags if tag == "img"]
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert set(figures) == {
        "recipe_vs_baseline.png",
        "learning_curves.png",
        "history.png",
        "importance.png",
        "parallel_coordinate.png",
        "slice.png",
    }
    assert len(images) == len(figures)
    for attrs in images:
        width, height = _decode_png(attrs["src"] or "")
        assert width > 300 and height > 150
        assert attrs.get("alt")
    assert 'src="http' not in text and "url(" not in text and "@import" not in text
    assert not [t for t, a in parser.tags if t in ("script", "link", "iframe", "object")]
    assert not [
        a
        for t, a in parser.tags
        if t != "a"
        and ("href" in a or "src" in a)
        and not ((a.get("src") or "").startswith("data:"))
    ]
    # Every # / ## section of report.md is a heading of the HTML, in the same order.
    wanted = _md_headings(md)
    assert ("h2", "Learning curves") in wanted and ("h2", "Summary") in wanted
    got = [(tag, " ".join(t.split())) for tag, t in parser.headings if tag in ("h1", "h2")]
    assert got == wanted


def test_report_html_without_figures_files_names_them(search_run: Path) -> None:
    write_report(search_run)
    (search_run / "history.png").unlink()
    from tricksearch.report._html import write_html

    text = write_html(search_run / "report.md").read_text()
    parse(text)
    assert "[figure not found: history.png]" in text


def test_markdown_constructs() -> None:
    md = "\n".join(
        [
            "# Title with `code`",
            "",
            "A paragraph with **bold**, *italic*, _also italic_, snake_case_name, <b>raw</b>,",
            "a [link](https://example.org/?a=1&b=2) and `x < y`.",
            "",
            "- one",
            "- two with **bold**",
            "  continued",
            "",
            "1. first",
            "2. second",
            "",
            "| left | right | centre |",
            "|:---|---:|:---:|",
            "| a \\| b | 1.0 | `c|d` |",
            "",
            "> a quote",
            "",
            "```",
            "<tag> & **not bold**",
            "```",
            "",
            "---",
            "![remote](https://example.org/x.png) ![gone](nope.png)",
        ]
    )
    text = markdown_to_html(md, base=Path("/nonexistent"))
    parse(text)
    assert '<h1 id="title-with-code">Title with <code>code</code></h1>' in text
    assert "<strong>bold</strong>, <em>italic</em>, <em>also italic</em>, snake_case_name" in text
    assert "&lt;b&gt;raw&lt;/b&gt;" in text  # text is escaped, never markup
    assert '<a href="https://example.org/?a=1&amp;b=2">link</a>' in text
    assert "<code>x &lt; y</code>" in text
    assert "<li>two with <strong>bold</strong> continued</li>" in text
    assert "<ol>\n<li>first</li>" in text
    assert '<th style="text-align: left">left</th><th style="text-align: right">right</th>' in text
    assert '<th style="text-align: center">centre</th>' in text
    assert '<td style="text-align: left">a | b</td>' in text
    assert "<blockquote>\n<p>a quote</p>\n</blockquote>" in text
    assert "<pre><code>&lt;tag&gt; &amp; **not bold**</code></pre>" in text
    assert "<hr>" in text
    assert '<a href="https://example.org/x.png">remote</a>' in text  # linked, not fetched
    assert "<img" not in text and "[figure not found: nope.png]" in text


@pytest.mark.parametrize("bad", ["<p><em>x</p></em>", "<main><p>x</main>", "<p>x", "<br></br>"])
def test_strict_parser_refuses_unbalanced_tags(bad: str) -> None:
    with pytest.raises(AssertionError):
        parse(bad)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


@pytest.mark.slow
@pytest.mark.skipif(
    _chromium() is None,
    reason="no headless Chromium (chromium, chromium-browser or google-chrome) on PATH",
)
def test_report_html_renders_in_headless_chromium(curves_run: Path, tmp_path: Path) -> None:
    from PIL import Image, ImageStat

    write_report(curves_run)
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            _chromium() or "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1200,2400",
            f"--screenshot={shot}",
            (curves_run / HTML_NAME).resolve().as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    with Image.open(shot) as img:
        stat = ImageStat.Stat(img.convert("L"))
    assert stat.stddev[0] > 10, f"blank screenshot (pixel std {stat.stddev[0]:.1f})"
