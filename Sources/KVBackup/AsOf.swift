import Foundation

/// The time `kvctl restore --as-of` names, as the HLC bound T: a restore keeps exactly the writes
/// with a version at or below it.
///
/// Accepts RFC 3339 / ISO 8601 UTC or with an offset, with or without a fraction of a second
/// (`2026-12-03T12:00:00Z`, `2026-12-03T12:00:00.123Z`, `2026-12-03T13:00:00+01:00`): T is then the
/// largest HLC of that millisecond (`millis << 16 | 0xFFFF`), so every write made during it is kept;
/// digits past the millisecond are dropped. Or a raw HLC value, `hlc:NUMBER`, taken as it is.
public struct AsOf: Sendable, Hashable, CustomStringConvertible {
    /// T, an HLC value: `(milliseconds since the Unix epoch << 16) | logical counter`.
    public var hlc: UInt64

    public init(hlc: UInt64) {
        self.hlc = hlc
    }

    /// Parses `text`; throws a `BackupError` saying what is accepted.
    public init(parsing text: String) throws {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.lowercased().hasPrefix("hlc:") {
            guard let hlc = UInt64(trimmed.dropFirst(4)), hlc > 0 else {
                throw BackupError("--as-of '\(text)': 'hlc:' must be followed by a positive HLC value")
            }
            self.hlc = hlc
            return
        }
        guard let millis = Self.millis(iso8601: trimmed) else {
            throw BackupError(
                "--as-of '\(text)' is neither an RFC 3339 time (2026-12-03T12:00:00Z, 2026-12-03T12:00:00.123Z) nor hlc:NUMBER"
            )
        }
        guard millis > 0, millis < (1 << 48) else {
            throw BackupError("--as-of '\(text)' lies outside the clock's range")
        }
        self.hlc = millis << 16 | 0xFFFF
    }

    /// The millisecond an RFC 3339 time names, the fraction cut to milliseconds (not rounded: a
    /// time inside a millisecond is in it).
    static func millis(iso8601 text: String) -> UInt64? {
        // Take the fraction apart (Foundation's parser would round it through a Double).
        var whole = text
        var fractionMillis: UInt64 = 0
        if let timeStart = text.firstIndex(where: { $0 == "T" || $0 == "t" }),
            let dot = text[timeStart...].firstIndex(of: ".")
        {
            let digits = text[text.index(after: dot)...].prefix { $0.isASCII && $0.isNumber }
            guard !digits.isEmpty else { return nil }
            let padded = String((digits + "000").prefix(3))
            fractionMillis = UInt64(padded) ?? 0
            whole = String(text[..<dot]) + String(text[digits.endIndex...])
        }
        guard let date = try? Date(whole.uppercased(), strategy: Date.ISO8601FormatStyle()) else { return nil }
        let seconds = date.timeIntervalSince1970
        guard seconds >= 0, seconds < Double(1 << 40) else { return nil }
        return UInt64(seconds) * 1000 + fractionMillis
    }

    /// `hlc:T (2026-12-03T12:00:00.123Z)`.
    public var description: String { "hlc:\(hlc) (\(BackupTime.iso8601(hlc: hlc)))" }
}
