"""The stats chart of a service page: an SVG drawn on the server (no script, no library).

One line per event type that happened in the period (``sent`` always), over the zero-filled
buckets of ``queries.stats``; types are taken from the data, so new event types show up."""
from __future__ import annotations

from html import escape

from markupsafe import Markup

WIDTH, HEIGHT, LEFT, BOTTOM, TOP, RIGHT = 760, 190, 44, 24, 12, 24
COLORS = {"sent": "#4b6584", "delivered": "#20a35a", "bounced": "#d64545", "complained": "#9b59b6",
          "dropped": "#8a8a8a", "deferred": "#e6a23c", "failed": "#b03030", "opened": "#2d8cf0",
          "clicked": "#16a0a0"}
OTHER = "#555555"


def series(stats: dict) -> list[str]:
    """Event types to draw: ``sent`` and every type with a non-zero total."""
    return [t for t, n in stats["totals"].items() if n or t == "sent"]


def _nice_max(n: int) -> int:
    """The y axis' top: the smallest 2, 4, 10, 20, 40, 100, … that is at least ``n`` — twice a
    1-2-5 step, so the half-way grid line is a whole count too."""
    for scale in (1, 10, 100, 1000, 10_000, 100_000, 1_000_000, 10_000_000):
        for step in (1, 2, 5):
            if 2 * step * scale >= n:
                return 2 * step * scale
    return n + n % 2


def svg(stats: dict) -> Markup:
    buckets = stats["buckets"]
    types = series(stats)
    top = _nice_max(max((b.get(t, 0) for b in buckets for t in types), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(buckets) - 1, 1)

    def xy(i: int, n: int) -> str:
        return f"{LEFT + i * step:.1f},{TOP + plot_h - n / top * plot_h:.1f}"

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-title" '
             f'xmlns="http://www.w3.org/2000/svg"><title id="chart-title">Events per '
             f'{escape(stats["bucket"])}, last {escape(stats["period"])}</title>']
    for frac in (0, 0.5, 1):  # grid and y labels
        y = TOP + plot_h - frac * plot_h
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e6ea"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#667">'
                     f'{int(top * frac)}</text>')
    label_every = max(len(buckets) // 6, 1)
    for i, b in enumerate(buckets):  # x labels: a few dates or hours
        if i % label_every == 0:
            start = b["start"]
            label = start[11:16] if stats["bucket"] == "hour" else start[5:10]
            parts.append(f'<text x="{LEFT + i * step:.1f}" y="{HEIGHT - 6}" text-anchor="middle" font-size="11" '
                         f'fill="#667">{escape(label)}</text>')
    for t in reversed(types):  # sent last, dashed on top: it often equals delivered
        points = " ".join(xy(i, b.get(t, 0)) for i, b in enumerate(buckets))
        dash = ' stroke-dasharray="6 4"' if t == "sent" else ""
        parts.append(f'<polyline fill="none" stroke="{COLORS.get(t, OTHER)}" stroke-width="2"{dash} points="{points}">'
                     f'<title>{escape(t)}</title></polyline>')
    parts.append("</svg>")
    return Markup("".join(parts))


def color(event_type: str) -> str:
    return COLORS.get(event_type, OTHER)
