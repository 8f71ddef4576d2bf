"""Pareto plots as inline SVG: quality against a cost (memory, time, energy), front marked.

Drawn here rather than by a charting library so that the page stays one self-contained file that
works from file:// with nothing fetched. Every piece of text that comes from a record (variant
ids) is escaped; the numbers are formatted by us.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 420, 300
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 58, 16, 14, 44
MAX_LABELS = 14  # beyond this, only points on the front are labelled
LABEL_CHARS = 24  # longer labels are cut (the full text is in the point's tooltip)


# One colour per base model: CSS classes base-0 … base-6, Okabe-Ito colours (told apart with
# any colour vision), lighter in the dark theme (leaderboard/static/style.css).
COLORS = 7
# One marker shape per technique chain: uncompressed first, then in order of appearance.
SHAPES = ("circle", "square", "triangle", "diamond", "triangle-down", "pentagon", "cross")


@dataclass(frozen=True)
class Point:
    label: str  # the variant id: untrusted text
    href: str  # relative link to the variant page (ours)
    x: float
    y: float
    y_lo: float | None = None  # 95 % CI of y, drawn as a whisker
    y_hi: float | None = None
    color: int = 0  # the base model's colour: CSS class base-<color % COLORS>
    shape: str = "circle"  # the technique chain
    parent: str | None = None  # label of the base variant's point: an arrow goes from it
    base: str = ""  # for the page's filters (untrusted text, escaped)
    techniques: str = "[]"  # JSON list, for the page's filters


def marker_path(shape: str, cx: float, cy: float, r: float = 5.0) -> str:
    """An SVG path for a marker shape of about the area of a circle of radius r."""
    if shape == "circle":
        return f"M{cx - r:.1f},{cy:.1f}a{r},{r} 0 1,0 {2 * r},0a{r},{r} 0 1,0 {-2 * r},0Z"
    if shape == "square":
        h = r * 0.89
        return f"M{cx - h:.1f},{cy - h:.1f}h{2 * h:.1f}v{2 * h:.1f}h{-2 * h:.1f}Z"
    if shape == "diamond":
        h = r * 1.25
        return (
            f"M{cx:.1f},{cy - h:.1f}L{cx + h:.1f},{cy:.1f}"
            f"L{cx:.1f},{cy + h:.1f}L{cx - h:.1f},{cy:.1f}Z"
        )
    if shape in ("triangle", "triangle-down"):
        h = r * 1.35
        d = 1 if shape == "triangle" else -1
        return (
            f"M{cx:.1f},{cy - d * h:.1f}L{cx + h * 0.87:.1f},{cy + d * h * 0.5:.1f}"
            f"L{cx - h * 0.87:.1f},{cy + d * h * 0.5:.1f}Z"
        )
    if shape == "pentagon":
        pts = [
            (
                cx + r * 1.15 * math.sin(2 * math.pi * k / 5),
                cy - r * 1.15 * math.cos(2 * math.pi * k / 5),
            )
            for k in range(5)
        ]
        return "M" + "L".join(f"{x:.1f},{y:.1f}" for x, y in pts) + "Z"
    w = r * 0.45  # cross
    return (
        f"M{cx - w:.1f},{cy - r:.1f}h{2 * w:.1f}v{r - w:.1f}h{r - w:.1f}v{2 * w:.1f}h{w - r:.1f}"
        f"v{r - w:.1f}h{-2 * w:.1f}v{w - r:.1f}h{w - r:.1f}v{-2 * w:.1f}h{r - w:.1f}Z"
    )


def dominates(a: Point, b: Point, higher_is_better: bool) -> bool:
    """`a` is as good as `b` on both axes (cost, quality) and better on at least one."""
    ya, yb = (a.y, b.y) if higher_is_better else (-a.y, -b.y)
    return a.x <= b.x and ya >= yb and (a.x < b.x or ya > yb)


def pareto_front(points: Sequence[Point], higher_is_better: bool) -> list[int]:
    """Indices of the points no other point dominates, ordered by cost."""
    front = [
        i
        for i, p in enumerate(points)
        if not any(dominates(q, p, higher_is_better) for j, q in enumerate(points) if j != i)
    ]
    return sorted(front, key=lambda i: (points[i].x, points[i].y))


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 × 10^k steps) covering [lo, hi]."""
    span = hi - lo
    if span <= 0 or not math.isfinite(span):
        return [lo]
    raw = span / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value += step
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """1, 2, 5 × 10^k within [lo, hi] when the range spans few decades, else powers of ten."""
    k_lo, k_hi = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    mantissas = (1, 2, 5) if k_hi - k_lo <= 3 else (1,)
    return [
        m * 10.0**k
        for k in range(k_lo, k_hi + 1)
        for m in mantissas
        if lo <= m * 10.0**k <= hi * (1 + 1e-9)
    ]


def fmt_tick(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 10_000 or abs(value) < 1e-3:
        return f"{value:.0e}".replace("e+0", "e").replace("e-0", "e-")
    return f"{value:.4g}"


@dataclass(frozen=True)
class Axis:
    lo: float
    hi: float
    log: bool
    pixel_lo: float
    pixel_hi: float

    def __call__(self, value: float) -> float:
        if self.log:
            a, b, v = math.log10(self.lo), math.log10(self.hi), math.log10(value)
        else:
            a, b, v = self.lo, self.hi, value
        return self.pixel_lo + (v - a) / (b - a) * (self.pixel_hi - self.pixel_lo)

    @property
    def ticks(self) -> list[float]:
        return log_ticks(self.lo, self.hi) if self.log else nice_ticks(self.lo, self.hi)

    def labels(self) -> list[tuple[float, str]]:
        """Ticks with text at one precision per axis: 0.0005, 0.0010 rather than 5e-4, 0.001."""
        ticks = self.ticks
        if self.log or len(ticks) < 2:
            return [(t, fmt_tick(t)) for t in ticks]
        step = ticks[1] - ticks[0]
        decimals = max(0, -math.floor(math.log10(step) + 1e-9))
        return [(t, f"{t:,.{decimals}f}") for t in ticks]


def _axis(values: Sequence[float], pixel_lo: float, pixel_hi: float, allow_log: bool) -> Axis:
    lo, hi = min(values), max(values)
    # A log axis when costs spread over more than a decade: compressed models differ by factors.
    if allow_log and lo > 0 and hi / lo > 10:
        pad = (hi / lo) ** 0.06
        return Axis(lo / pad, hi * pad, True, pixel_lo, pixel_hi)
    span = hi - lo
    pad = span * 0.08 if span > 0 else (abs(hi) * 0.1 or 1.0)
    lo_padded = lo - pad
    if lo >= 0 > lo_padded:
        lo_padded = 0.0  # costs and scores are not negative: do not invent a negative range
    return Axis(lo_padded, hi + pad, False, pixel_lo, pixel_hi)


def _f(value: float) -> str:
    return f"{value:.1f}"


Box = tuple[float, float, float, float]  # x0, y0, x1, y1
CHAR_PX, LABEL_PX = 6.2, 11.0  # rough size of a label character at the label font size


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _place_label(
    text: str, cx: float, cy: float, placed: list[Box]
) -> tuple[float, float, str] | None:
    """Where a point's label goes: right or left of it, above or below, whichever is free;
    None when every place would overlap a label or point already placed."""
    width = CHAR_PX * len(text)
    options = []
    for dy in (-7.0, 15.0, -19.0, 27.0, 4.0):
        options += [(cx + 8, cy + dy, "start"), (cx - 8, cy + dy, "end")]
    for lx, ly, anchor in options:
        x0 = lx if anchor == "start" else lx - width
        box = (x0 - 2, ly - LABEL_PX - 1, x0 + width + 2, ly + 4)  # with a little air
        inside = box[0] >= MARGIN_LEFT and box[2] <= WIDTH
        inside = inside and box[1] >= MARGIN_TOP and box[3] <= HEIGHT - MARGIN_BOTTOM
        if inside and not any(_overlaps(box, b) for b in placed):
            placed.append(box)
            return lx, ly, anchor
    return None  # no free place: the label is left out (the point's tooltip names it)


def pareto_svg(
    points: Sequence[Point],
    *,
    x_label: str,
    y_label: str,
    higher_is_better: bool,
    title: str,
    x_format: str = "{:.4g}",
    y_format: str = "{:.4f}",
) -> Markup:
    """One scatter plot with the Pareto front drawn as a step line; empty points: a note."""
    title_text = escape(title)
    if not points:
        return Markup('<p class="plot-empty">{}: not measured in these records.</p>').format(title)
    x = _axis([p.x for p in points], MARGIN_LEFT, WIDTH - MARGIN_RIGHT, allow_log=True)
    y_values = [p.y for p in points]
    y_values += [v for p in points for v in (p.y_lo, p.y_hi) if v is not None]
    y = _axis(y_values, HEIGHT - MARGIN_BOTTOM, MARGIN_TOP, allow_log=False)
    front = pareto_front(points, higher_is_better)
    on_front = set(front)

    parts: list[str] = [
        f'<svg class="pareto" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{title_text}" preserveAspectRatio="xMidYMid meet">',
        f"<title>{title_text}</title>",
    ]
    # Grid and ticks.
    for tick, text in x.labels():
        px = _f(x(tick))
        parts.append(
            f'<line class="grid" x1="{px}" y1="{MARGIN_TOP}" x2="{px}" '
            f'y2="{HEIGHT - MARGIN_BOTTOM}"/>'
            f'<text class="tick" x="{px}" y="{HEIGHT - MARGIN_BOTTOM + 14}" '
            f'text-anchor="middle">{escape(text)}</text>'
        )
    for tick, text in y.labels():
        py = _f(y(tick))
        parts.append(
            f'<line class="grid" x1="{MARGIN_LEFT}" y1="{py}" x2="{WIDTH - MARGIN_RIGHT}" '
            f'y2="{py}"/>'
            f'<text class="tick" x="{MARGIN_LEFT - 5}" y="{py}" text-anchor="end" '
            f'dominant-baseline="middle">{escape(text)}</text>'
        )
    parts.append(
        f'<line class="axis" x1="{MARGIN_LEFT}" y1="{HEIGHT - MARGIN_BOTTOM}" '
        f'x2="{WIDTH - MARGIN_RIGHT}" y2="{HEIGHT - MARGIN_BOTTOM}"/>'
        f'<line class="axis" x1="{MARGIN_LEFT}" y1="{MARGIN_TOP}" x2="{MARGIN_LEFT}" '
        f'y2="{HEIGHT - MARGIN_BOTTOM}"/>'
    )
    log_note = " (log scale)" if x.log else ""
    parts.append(
        f'<text class="axis-label" x="{(MARGIN_LEFT + WIDTH - MARGIN_RIGHT) / 2:.1f}" '
        f'y="{HEIGHT - 8}" text-anchor="middle">{escape(x_label)}{log_note} → lower is better'
        "</text>"
    )
    direction = "↑ higher is better" if higher_is_better else "↓ lower is better"
    middle = (MARGIN_TOP + HEIGHT - MARGIN_BOTTOM) / 2
    parts.append(
        f'<text class="axis-label" transform="translate(14 {middle:.1f}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)} {direction}</text>'
    )
    # The front as a staircase: each step keeps the best quality reached at that cost.
    if len(front) > 1:
        path = []
        for n, i in enumerate(front):
            px, py = _f(x(points[i].x)), _f(y(points[i].y))
            path.append(f"M{px},{py}" if n == 0 else f"H{px}V{py}")
        parts.append(f'<path class="front" d="{"".join(path)}"/>')
    # Labels: front points claim a place first; each takes the first free spot around its point.
    label_all = len(points) <= MAX_LABELS
    centres = [(x(p.x), y(p.y)) for p in points]
    placed: list[Box] = [(cx - 5, cy - 5, cx + 5, cy + 5) for cx, cy in centres]
    labels: dict[int, tuple[float, float, str]] = {}
    for i in sorted(range(len(points)), key=lambda i: (i not in on_front, points[i].x)):
        if label_all or i in on_front:
            spot = _place_label(_short(points[i].label), *centres[i], placed)
            if spot is not None:
                labels[i] = spot
    # Arrows from each base to its compressed variants, under the points.
    by_label = {p.label: n for n, p in enumerate(points)}
    for i, p in enumerate(points):
        j = by_label.get(p.parent) if p.parent is not None else None
        if j is None or j == i:
            continue
        (x0, y0), (x1, y1) = centres[j], centres[i]
        length = math.hypot(x1 - x0, y1 - y0)
        if length < 16:
            continue  # too close to draw an arrow between them
        ux, uy = (x1 - x0) / length, (y1 - y0) / length
        ax, ay, bx, by = x0 + 7 * ux, y0 + 7 * uy, x1 - 8 * ux, y1 - 8 * uy
        head = (
            f"M{bx:.1f},{by:.1f}L{bx - 6 * ux - 3.5 * uy:.1f},{by - 6 * uy + 3.5 * ux:.1f}"
            f"L{bx - 6 * ux + 3.5 * uy:.1f},{by - 6 * uy - 3.5 * ux:.1f}Z"
        )
        parts.append(
            f'<g class="arrow base-{p.color % COLORS}" data-from="{escape(points[j].label)}" '
            f'data-to="{escape(p.label)}">'
            f'<line x1="{ax:.1f}" y1="{ay:.1f}" x2="{bx:.1f}" y2="{by:.1f}"/>'
            f'<path d="{head}"/></g>'
        )
    # Points: dominated first so that the front is drawn on top.
    for i in sorted(range(len(points)), key=lambda i: i in on_front):
        p = points[i]
        px, py = centres[i]
        kind = "on-front" if i in on_front else "dominated"
        tip = f"{p.label}: {y_label} {y_format.format(p.y)}, {x_label} {x_format.format(p.x)}" + (
            " (on the Pareto front)" if i in on_front else ""
        )
        parts.append(
            f'<a href="{escape(p.href)}" class="point {kind} base-{p.color % COLORS}" '
            f'data-variant="{escape(p.label)}" data-base="{escape(p.base)}" '
            f'data-techniques="{escape(p.techniques)}">'
        )
        parts.append(f"<title>{escape(tip)}</title>")
        if p.y_lo is not None and p.y_hi is not None:
            parts.append(
                f'<line class="whisker" x1="{_f(px)}" y1="{_f(y(p.y_lo))}" x2="{_f(px)}" '
                f'y2="{_f(y(p.y_hi))}"/>'
            )
        parts.append(f'<path class="marker {p.shape}" d="{marker_path(p.shape, px, py)}"/>')
        if i in labels:
            lx, ly, anchor = labels[i]
            parts.append(
                f'<text class="point-label" x="{_f(lx)}" y="{_f(ly)}" '
                f'text-anchor="{anchor}">{escape(_short(p.label))}</text>'
            )
        parts.append("</a>")
    parts.append("</svg>")
    return Markup("".join(parts))


def legend(bases: Sequence[str], chains: Sequence[str]) -> Markup:
    """The key to the plots' colours (base models) and shapes (technique chains), as HTML."""

    def swatch(shape: str, cls: str) -> str:
        return (
            f'<svg class="swatch {cls}" viewBox="0 0 14 14" width="14" height="14" '
            f'aria-hidden="true"><path d="{marker_path(shape, 7, 7, 5)}"/></svg>'
        )

    items = [
        f"<li>{swatch('circle', f'base-{i % COLORS}')} {escape(base)}</li>"
        for i, base in enumerate(bases)
    ]
    items += [
        f"<li>{swatch(SHAPES[i % len(SHAPES)], '')} {escape(chain)}</li>"
        for i, chain in enumerate(chains)
    ]
    return Markup(f'<ul class="legend" aria-label="plot key">{"".join(items)}</ul>')


def chain_label(techniques: Sequence[str]) -> str:
    return " → ".join(techniques) if techniques else "uncompressed"
