"""Line charts of loss curves: as a character grid for the terminal, and as a self-contained SVG.

Pure functions over ``runs.Curve`` lists; the CLI colours the grid. Axes are linear, from the
data's range (y padded by 3 %), with a handful of round tick values.
"""

from __future__ import annotations

import html
import math

from lstmgen.runs import Curve

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]
MARKS = {"train": "·", "val": "●"}


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + k * step for k in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def bounds(curves: list[Curve]) -> tuple[float, float, float, float]:
    xs = [x for c in curves for x in c.x]
    ys = [y for c in curves for y in c.y]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.03 or 0.05
    return x0, (x1 if x1 > x0 else x0 + 1), y0 - pad, y1 + pad


def log_label(v: float) -> str:
    """A tick of a log10 axis, as the value it stands for: 1e-03, 0.01, 1, 1e+03."""
    return f"{10 ** v:.2g}"


def grid(curves: list[Curve], width: int = 72, height: int = 18,
         y_label=_fmt) -> tuple[list[list[tuple[str, int]]], list[str], str]:
    """The plot area as rows of (character, run group or −1), its y labels (one per row, "" for
    most; ``y_label`` formats a tick) and the x-axis line beneath. Lines join consecutive points;
    validation points are ●."""
    x0, x1, y0, y1 = bounds(curves)
    cells = [[(" ", -1) for _ in range(width)] for _ in range(height)]

    def col(x):
        return min(width - 1, max(0, round((x - x0) / (x1 - x0) * (width - 1))))

    def row(y):
        return min(height - 1, max(0, round((y1 - y) / (y1 - y0) * (height - 1))))

    for c in curves:
        pts = [(col(x), row(y)) for x, y in zip(c.x, c.y)]
        for (ca, ra), (cb, rb) in zip(pts, pts[1:]):  # join with dots, one per column
            for cc in range(ca + 1, cb):
                rr = round(ra + (rb - ra) * (cc - ca) / (cb - ca))
                if cells[rr][cc][1] < 0:
                    cells[rr][cc] = ("·" if c.kind == "train" else "∙", c.group)
        for cc, rr in pts:
            cells[rr][cc] = (MARKS.get(c.kind, "·"), c.group)
    labels = [""] * height
    for t in _ticks(y0, y1, 4):
        labels[row(t)] = y_label(t)
    axis = [" "] * width
    for t in _ticks(x0, x1, 5):
        s = _fmt(t)
        c0 = min(width - len(s), max(0, col(t) - len(s) // 2))
        axis[c0 : c0 + len(s)] = list(s)
    return cells, labels, "".join(axis)


def svg(curves: list[Curve], title: str, x_label: str, width: int = 900, height: int = 480,
        y_label: str = "loss (bits per character)", y_tick=_fmt) -> str:
    """A self-contained SVG line chart (no scripts, no external resources) with a legend."""
    x0, x1, y0, y1 = bounds(curves)
    left, right, top, bottom = 70, 200, 40, 50
    pw, ph = width - left - right, height - top - bottom

    def px(x):
        return left + (x - x0) / (x1 - x0) * pw

    def py(y):
        return top + (y1 - y) / (y1 - y0) * ph

    e = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="22" font-size="15" font-weight="bold">{e(title)}</text>']
    for t in _ticks(y0, y1, 6):
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{left - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{y_tick(t)}</text>')
    for t in _ticks(x0, x1, 6):
        out.append(f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top}" y2="{top + ph}" stroke="#f0f0f0"/>')
        out.append(f'<text x="{px(t):.1f}" y="{top + ph + 18}" text-anchor="middle">{_fmt(t)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 10}" text-anchor="middle">{e(x_label)}</text>')
    out.append(f'<text transform="translate(18 {top + ph / 2}) rotate(-90)" text-anchor="middle">'
               f'{e(y_label)}</text>')
    for k, c in enumerate(curves):
        color = COLORS[c.group % len(COLORS)]
        pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(c.x, c.y))
        dash = ' stroke-dasharray="5 3"' if c.kind == "train" else ""
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.6"{dash}>'
                   f"<title>{e(c.label)}</title></polyline>")
        if c.kind == "val":
            out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{color}"/>' for x, y in zip(c.x, c.y)]
        ly = top + 14 + 18 * k
        out.append(f'<line x1="{left + pw + 14}" x2="{left + pw + 40}" y1="{ly - 4}" y2="{ly - 4}" '
                   f'stroke="{color}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{left + pw + 46}" y="{ly}">{e(c.label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def html_page(svg_text: str, title: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            f"<body style='margin:24px;font-family:sans-serif'>{svg_text}</body></html>\n")
