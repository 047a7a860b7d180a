extension Duration {
    /// A short human form for error messages: `2s`, `1.5s`, `150ms`, `250µs`, `40ns`.
    ///
    /// Exact for whole units; fractions of a second keep up to three decimals (milliseconds).
    var shortDescription: String {
        let (seconds, attoseconds) = components
        guard seconds >= 0, attoseconds >= 0 else {
            return description
        }
        let attoPerNano: Int64 = 1_000_000_000
        let attoPerMicro = attoPerNano * 1000
        let attoPerMilli = attoPerMicro * 1000
        if seconds > 0 || attoseconds == 0 {
            let millis = attoseconds / attoPerMilli
            guard millis > 0 else {
                return "\(seconds)s"
            }
            var fraction = String(millis)
            fraction = String(repeating: "0", count: 3 - fraction.count) + fraction
            while fraction.hasSuffix("0") {
                fraction.removeLast()
            }
            return "\(seconds).\(fraction)s"
        }
        if attoseconds % attoPerMilli == 0 {
            return "\(attoseconds / attoPerMilli)ms"
        }
        if attoseconds % attoPerMicro == 0 {
            return "\(attoseconds / attoPerMicro)µs"
        }
        return "\(attoseconds / attoPerNano)ns"
    }
}

extension Duration {
    /// Parses a whole number with a unit — `250ms`, `30s`, `30m`, `12h`, `7d` — as `kvctl put --ttl`
    /// takes it; nil for anything else, or for a number that would overflow.
    public init?(parsingShort text: String) {
        let units: [(suffix: String, seconds: Int64, millis: Int64)] = [
            ("ms", 0, 1), ("s", 1, 0), ("m", 60, 0), ("h", 3_600, 0), ("d", 86_400, 0),
        ]
        for unit in units where text.hasSuffix(unit.suffix) {
            let digits = text.dropLast(unit.suffix.count)
            guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let count = Int64(digits) else {
                return nil
            }
            let scale = unit.seconds > 0 ? unit.seconds : unit.millis
            let (product, overflow) = count.multipliedReportingOverflow(by: scale)
            guard !overflow else { return nil }
            self = unit.seconds > 0 ? .seconds(product) : .milliseconds(product)
            return
        }
        return nil
    }
}
