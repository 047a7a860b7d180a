import Foundation

/// A self-contained SVG of a run: throughput per second above, p50 and p99 latency per second below,
/// and a vertical mark at each `--mark` (a node killed, restarted, joined).
enum Plot {
    struct Mark {
        var second: Double
        var label: String
    }

    static func svg(title: String, timeline: [Recorder.Second], marks: [Mark]) -> String {
        let width = 900.0
        let panel = 220.0
        let left = 70.0
        let right = 20.0
        let top = 40.0
        let gap = 50.0
        let plotWidth = width - left - right
        let span = Double(max(1, timeline.count))
        func x(_ second: Double) -> Double { left + plotWidth * second / span }
        var out = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(top + 2 * panel + gap + 40))" \
            font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(left)" y="22" font-size="14">\(escape(title))</text>

            """
        func axes(_ y0: Double, maximum: Double, unit: String) {
            out +=
                "<line x1=\"\(left)\" y1=\"\(y0 + panel)\" x2=\"\(left + plotWidth)\" y2=\"\(y0 + panel)\" stroke=\"black\"/>\n"
            out += "<line x1=\"\(left)\" y1=\"\(y0)\" x2=\"\(left)\" y2=\"\(y0 + panel)\" stroke=\"black\"/>\n"
            for step in 0...4 {
                let value = maximum * Double(step) / 4
                let y = y0 + panel - panel * Double(step) / 4
                out += "<text x=\"\(left - 6)\" y=\"\(y + 4)\" text-anchor=\"end\">\(format(value))</text>\n"
                out += "<line x1=\"\(left)\" y1=\"\(y)\" x2=\"\(left + plotWidth)\" y2=\"\(y)\" stroke=\"#eee\"/>\n"
            }
            out +=
                "<text x=\"12\" y=\"\(y0 + panel / 2)\" transform=\"rotate(-90 12 \(y0 + panel / 2))\">\(unit)</text>\n"
        }
        func line(_ values: [Double], _ y0: Double, maximum: Double, color: String, label: String, row: Int) {
            let points = values.enumerated().map { index, value in
                "\(x(Double(index) + 0.5)),\(y0 + panel - panel * min(1, value / maximum))"
            }
            out +=
                "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.5\" points=\"\(points.joined(separator: " "))\"/>\n"
            out +=
                "<text x=\"\(left + plotWidth - 90)\" y=\"\(y0 + 14 + 14 * Double(row))\" fill=\"\(color)\">\(label)</text>\n"
        }
        let throughput = timeline.map { Double($0.operations) }
        let throughputMax = niceMaximum(throughput.max() ?? 1)
        axes(top, maximum: throughputMax, unit: "ops/s")
        line(throughput, top, maximum: throughputMax, color: "#1f77b4", label: "throughput", row: 0)
        let errors = timeline.map { Double($0.errors) }
        if errors.contains(where: { $0 > 0 }) {
            line(errors, top, maximum: throughputMax, color: "#d62728", label: "errors", row: 1)
        }
        let latencyTop = top + panel + gap
        let p99 = timeline.map(\.p99Millis)
        let latencyMax = niceMaximum(p99.max() ?? 1)
        axes(latencyTop, maximum: latencyMax, unit: "ms")
        line(timeline.map(\.p50Millis), latencyTop, maximum: latencyMax, color: "#2ca02c", label: "p50", row: 0)
        line(p99, latencyTop, maximum: latencyMax, color: "#ff7f0e", label: "p99", row: 1)
        let bottom = latencyTop + panel
        out += "<text x=\"\(left + plotWidth / 2)\" y=\"\(bottom + 32)\" text-anchor=\"middle\">seconds</text>\n"
        for second in stride(from: 0, through: timeline.count, by: max(1, timeline.count / 10)) {
            out += "<text x=\"\(x(Double(second)))\" y=\"\(bottom + 16)\" text-anchor=\"middle\">\(second)</text>\n"
        }
        for mark in marks {
            let markX = x(mark.second)
            out +=
                "<line x1=\"\(markX)\" y1=\"\(top)\" x2=\"\(markX)\" y2=\"\(bottom)\" stroke=\"#d62728\" stroke-dasharray=\"4 3\"/>\n"
            out += "<text x=\"\(markX + 4)\" y=\"\(top + 12)\" fill=\"#d62728\">\(escape(mark.label))</text>\n"
        }
        out += "</svg>\n"
        return out
    }

    /// 1, 2 or 5 times a power of ten, at least `value`.
    static func niceMaximum(_ value: Double) -> Double {
        guard value > 0, value.isFinite else { return 1 }
        let power = pow(10, floor(log10(value)))
        for factor in [1.0, 2.0, 5.0, 10.0] where factor * power >= value {
            return factor * power
        }
        return 10 * power
    }

    private static func format(_ value: Double) -> String {
        value >= 100 ? String(Int(value.rounded())) : String(format: "%.1f", value)
    }

    private static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
