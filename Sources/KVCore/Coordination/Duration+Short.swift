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
