"""The report's HTML: one self-contained page. Pictures are embedded as data: URIs, the charts are
inline SVG, and the page's few lines of script (the grid slider, its play button, sortable tables)
are written here. Its Content-Security-Policy forbids the browser any request at all (no image, font,
script or style from anywhere but the page itself), so the page opens the same offline, after
`scp`, or as a CI artifact."""

from __future__ import annotations

import base64
from html import escape
from typing import Any, Iterable, Optional

# Nothing may be fetched: images only from data: URIs, style and script only inline.
POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

STYLE = """
:root { --ink: #1d2230; --muted: #5b6275; --line: #d9dce3; --soft: #f4f5f8; --accent: #2f5fd0; --warn: #a35200; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       margin: 0 auto; padding: 0 1.2rem 3rem; max-width: 1400px; }
header { border-bottom: 1px solid var(--line); padding: 1rem 0 .6rem; }
h1 { font-size: 1.45rem; margin: 0 0 .2rem; word-break: break-all; }
h2 { font-size: 1.15rem; margin: 2rem 0 .6rem; border-bottom: 1px solid var(--line); padding-bottom: .2rem; }
h3 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
nav a { margin-right: .9rem; color: var(--accent); text-decoration: none; }
.muted { color: var(--muted); }
.lacks { background: #fff4e0; border-left: 4px solid var(--warn); padding: .4rem .7rem; margin: .6rem 0; }
table { border-collapse: collapse; margin: .4rem 0; font-size: .9rem; }
th, td { border: 1px solid var(--line); padding: .25rem .55rem; text-align: left; vertical-align: top; }
th { background: var(--soft); }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; }
table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; }
code, pre { font: .85rem/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { background: var(--soft); padding: .6rem .8rem; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
img { max-width: 100%; height: auto; }
img.pixels { image-rendering: pixelated; border: 1px solid var(--line); }
img.large { width: min(100%, 720px); }
.strip { display: flex; gap: .4rem; overflow-x: auto; padding: .3rem 0; }
.strip button { flex: 0 0 auto; border: 2px solid transparent; padding: 0; background: none; cursor: pointer; text-align: center; }
.strip button[aria-pressed="true"] { border-color: var(--accent); }
.strip img { width: 96px; display: block; }
.strip span { font-size: .75rem; color: var(--muted); }
.controls { display: flex; align-items: center; gap: .8rem; margin: .4rem 0; flex-wrap: wrap; }
.controls input[type=range] { flex: 1; min-width: 200px; max-width: 600px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 1rem; }
.chart { margin: 0; border: 1px solid var(--line); padding: .4rem .5rem; }
.chart figcaption { font-weight: 600; font-size: .9rem; }
.chart svg { width: 100%; height: auto; display: block; }
.chart svg text { font-size: 10px; fill: var(--muted); }
.chart .plot { fill: none; stroke: var(--line); }
.chart .grid { stroke: #eceef2; }
.chart .line { fill: none; stroke-width: 1.6; vector-effect: non-scaling-stroke; }
.legend { font-size: .78rem; display: flex; flex-wrap: wrap; gap: .2rem .8rem; }
.legend i { display: inline-block; width: 12px; height: 3px; margin-right: 4px; vertical-align: middle; }
.pair { display: grid; grid-template-columns: minmax(200px, 1fr) 2fr; gap: 1rem; align-items: start; }
.pair > * { min-width: 0; }
.warnings li { color: var(--warn); margin: .2rem 0; }
details summary { cursor: pointer; color: var(--accent); }
@media (max-width: 700px) { .pair { grid-template-columns: 1fr; } }
"""

# The page's own script: the training grids' slider (and its play button, the progress animation),
# thumbnails that pick a grid, and tables sorted by a click on a column's header.
SCRIPT = """
(function () {
  document.querySelectorAll("[data-frames]").forEach(function (box) {
    var frames = Array.prototype.slice.call(box.querySelectorAll(".strip button"));
    var view = box.querySelector("img.view"), caption = box.querySelector(".caption");
    var slider = box.querySelector("input[type=range]"), play = box.querySelector("button.play");
    var timer = null;
    function show(i) {
      frames.forEach(function (f, j) { f.setAttribute("aria-pressed", j === i ? "true" : "false"); });
      view.src = frames[i].querySelector("img").src;
      caption.textContent = frames[i].dataset.caption;
      slider.value = i;
    }
    frames.forEach(function (f, i) { f.addEventListener("click", function () { show(i); }); });
    box.querySelector(".strip").scrollLeft = box.querySelector(".strip").scrollWidth;  // the last grid's thumbnail in view
    slider.addEventListener("input", function () { show(Number(slider.value)); });
    play.addEventListener("click", function () {
      if (timer) { clearInterval(timer); timer = null; play.textContent = "Play"; return; }
      play.textContent = "Pause";
      timer = setInterval(function () { show((Number(slider.value) + 1) % frames.length); }, 400);
    });
  });
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
    headers.forEach(function (th, column) {
      th.addEventListener("click", function () {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        function key(row) {
          var cell = row.cells[column], text = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
          var value = parseFloat(text);
          return text !== "" && isFinite(text) ? value : text;
        }
        rows.sort(function (a, b) {
          var x = key(a), y = key(b);
          if (x === "" || y === "") { return x === y ? 0 : (x === "" ? 1 : -1); }  // blanks last either way
          var order = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
})();
"""


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image(data: bytes, mime: str, alt: str, classes: str = "pixels", width: Optional[int] = None) -> str:
    """An embedded picture; `width`: the CSS pixels to show it at (a small picture enlarged, pixels kept sharp)."""
    size = f' style="width: min(100%, {width}px)"' if width else ""
    return f'<img class="{classes}" src="{data_uri(data, mime)}" alt="{escape(alt)}"{size}>'


def cell(value: Any) -> str:
    """A table cell: numbers right-aligned and short (their full value kept for sorting), text escaped."""
    if isinstance(value, bool) or value is None:
        return f"<td>{'' if value is None else value}</td>"
    if isinstance(value, (int, float)):
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        return f'<td class="number" data-sort="{value!r}">{shown}</td>'
    return f"<td>{value}</td>" if isinstance(value, Markup) else f"<td>{escape(str(value))}</td>"


class Markup(str):
    """HTML that a table cell puts in as it is (a link), where any other text is escaped."""


def table(headers: Iterable[str], rows: Iterable[Iterable[Any]], classes: str = "", table_id: Optional[str] = None) -> str:
    head = "".join(f"<th>{escape(name)}</th>" for name in headers)
    body = "".join("<tr>" + "".join(cell(value) for value in row) + "</tr>" for row in rows)
    attributes = (f' class="{classes}"' if classes else "") + (f' id="{table_id}"' if table_id else "")
    return f"<table{attributes}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def facts(pairs: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of name and value (values already HTML when they are Markup)."""
    rows = "".join(f"<tr><th>{escape(name)}</th>{cell(value)}</tr>" for name, value in pairs if value not in (None, ""))
    return f'<table class="facts"><tbody>{rows}</tbody></table>'


def section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{section_id}"><h2>{escape(title)}</h2>{body}</section>'


def grids_slider(frames: list[tuple[str, bytes]], alt: str) -> str:
    """The training grids one at a time: a slider and a play button over a strip of thumbnails, each a
    button that shows its grid (the script copies a thumbnail's picture into the view, so only the last
    grid, the view's first picture, is embedded twice)."""
    buttons = "".join(
        f'<button type="button" data-caption="{escape(caption)}" aria-pressed="{"true" if i == len(frames) - 1 else "false"}">'
        f'{image(data, "image/png", f"{alt}, {caption}")}<span>{escape(caption)}</span></button>'
        for i, (caption, data) in enumerate(frames))
    last = len(frames) - 1
    return (f'<div class="frames" data-frames>'
            f'<div class="controls"><button type="button" class="play">Play</button>'
            f'<input type="range" min="0" max="{last}" value="{last}" aria-label="training grid">'
            f'<span class="caption">{escape(frames[-1][0])}</span></div>'
            f'<img class="pixels large view" src="{data_uri(frames[-1][1], "image/png")}" alt="{escape(alt)}">'
            f'<div class="strip">{buttons}</div></div>')


def document(title: str, heading: str, subtitle: str, notes: list[str], nav: list[tuple[str, str]], body: str) -> str:
    links = "".join(f'<a href="#{anchor}">{escape(name)}</a>' for anchor, name in nav)
    lacks = "".join(f'<p class="lacks">{escape(note)}</p>' for note in notes)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
            f"<header><h1>{escape(heading)}</h1><div class=\"muted\">{escape(subtitle)}</div>{lacks}"
            f"<nav>{links}</nav></header>{body}<script>{SCRIPT}</script></body></html>\n")
