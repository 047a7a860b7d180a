public import Foundation
import KVCore

/// The times a backup writes down, as text.
public enum BackupTime {
    /// `2026-12-03T12:06:40.123Z` for the physical part (milliseconds) of an HLC timestamp.
    public static func iso8601(hlc: UInt64) -> String {
        iso8601(millis: hlc >> 16)
    }

    /// `2026-12-03T12:06:40.123Z`.
    public static func iso8601(millis: UInt64) -> String {
        let date = Date(timeIntervalSince1970: Double(millis) / 1000)
        return date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    /// A new backup id: the UTC time, then six random hex digits (`20261203T120640Z-3f9a1c`), so that
    /// two backups started in the same second differ. Backups are ordered by their cut, not their id
    /// (`BackupDestination.manifests()`).
    public static func newBackupID(now: Date = Date()) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: now)
        func two(_ value: Int?) -> String {
            let value = value ?? 0
            return value < 10 ? "0\(value)" : "\(value)"
        }
        let stamp =
            "\(parts.year ?? 0)\(two(parts.month))\(two(parts.day))T\(two(parts.hour))\(two(parts.minute))\(two(parts.second))Z"
        let suffix = String(UInt32.random(in: 0...0xFF_FFFF), radix: 16)
        return "\(stamp)-\(String(repeating: "0", count: 6 - suffix.count))\(suffix)"
    }
}
