#!/usr/bin/env python3
"""Draws Prometheus range queries as one SVG: a picture of a real scrape for the docs.

    scripts/prometheus-graph.py URL SECONDS OUT.svg 'TITLE=PROMQL' ['TITLE=PROMQL' ...]

Asks URL/api/v1/query_range for the last SECONDS seconds (1 s steps) of each query and draws one
panel per query, a line per series (labelled by its labels). Standard library only.
"""
import json
import sys
import time
import urllib.parse
import urllib.request

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def query(url, promql, start, end):
    params = urllib.parse.urlencode({"query": promql, "start": start, "end": end, "step": "1"})
    with urllib.request.urlopen(f"{url}/api/v1/query_range?{params}", timeout=30) as answer:
        body = json.load(answer)
    if body.get("status") != "success":
        raise SystemExit(f"prometheus-graph: {promql}: {body}")
    return body["data"]["result"]


def nice(value):
    if value <= 0:
        return 1.0
    power = 10 ** (len(str(int(value))) - 1) if value >= 1 else 1.0
    for factor in (1, 2, 5, 10):
        if factor * power >= value:
            return float(factor * power)
    return float(10 * power)


def escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    url, seconds, out = sys.argv[1].rstrip("/"), int(sys.argv[2]), sys.argv[3]
    panels = [arg.split("=", 1) for arg in sys.argv[4:]]
    end = time.time()
    start = end - seconds
    width, panel_height, left, top, gap = 900, 170, 70, 40, 60
    plot_width = width - left - 200
    height = top + len(panels) * (panel_height + gap)
    out_lines = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{left}" y="22" font-size="14">Prometheus, last {seconds} s '
        f'(query_range at {time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(end))})</text>',
    ]
    for index, (title, promql) in enumerate(panels):
        y0 = top + index * (panel_height + gap) + 20
        series = query(url, promql, start, end)
        values = [float(v) for s in series for _, v in s["values"] if v not in ("NaN", "+Inf", "-Inf")]
        maximum = nice(max(values) if values else 1)
        out_lines.append(f'<text x="{left}" y="{y0 - 6}" font-weight="bold">{escape(title)}</text>')

        out_lines.append(f'<line x1="{left}" y1="{y0 + panel_height}" x2="{left + plot_width}" '
                         f'y2="{y0 + panel_height}" stroke="black"/>')
        out_lines.append(f'<line x1="{left}" y1="{y0}" x2="{left}" y2="{y0 + panel_height}" stroke="black"/>')
        for step in range(5):
            value = maximum * step / 4
            y = y0 + panel_height - panel_height * step / 4
            label = f"{value:.0f}" if maximum >= 10 else f"{value:.2f}"
            out_lines.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{label}</text>')
            out_lines.append(f'<line x1="{left}" y1="{y}" x2="{left + plot_width}" y2="{y}" stroke="#eee"/>')
        for number, s in enumerate(series):
            color = COLORS[number % len(COLORS)]
            # One line per run of samples: a series that stopped (a node down) leaves a gap.
            runs, points, previous = [], [], None
            for stamp, value in s["values"]:
                if value in ("NaN", "+Inf", "-Inf"):
                    continue
                if previous is not None and float(stamp) - previous > 2.5 and points:
                    runs.append(points)
                    points = []
                previous = float(stamp)
                x = left + plot_width * (float(stamp) - start) / seconds
                y = y0 + panel_height - panel_height * min(1.0, float(value) / maximum)
                points.append(f"{x:.1f},{y:.1f}")
            runs.append(points)
            for run in runs:
                out_lines.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" '
                                 f'points="{" ".join(run)}"/>')
            label = ",".join(f"{k}={v}" for k, v in sorted(s["metric"].items()) if k not in ("__name__", "job",
                                                                                             "instance"))
            out_lines.append(f'<text x="{left + plot_width + 8}" y="{y0 + 12 + 14 * number}" fill="{color}">'
                             f'{escape(label or "value")}</text>')
        for tick in range(0, seconds + 1, 10):
            x = left + plot_width * tick / seconds
            out_lines.append(f'<text x="{x:.1f}" y="{y0 + panel_height + 14}" text-anchor="middle">{tick}</text>')
        out_lines.append(f'<text x="{left}" y="{y0 + panel_height + 30}" fill="#555" font-size="11">'
                         f'{escape(promql)}  (seconds)</text>')
    out_lines.append("</svg>")
    with open(out, "w") as handle:
        handle.write("\n".join(out_lines) + "\n")


if __name__ == "__main__":
    main()
