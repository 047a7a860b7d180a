package import KVCore

/// The version a write was stored with: a hybrid-logical-clock timestamp and the writer's id.
///
/// Versions are totally ordered, and every replica keeps the newest one it has seen (last writer
/// wins), so comparing two versions of a key tells which write the cluster keeps.
public struct KVVersion: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Milliseconds since the Unix epoch (the high 48 bits) and a logical counter (the low 16 bits).
    public var hlc: UInt64
    /// The id of the client that stamped the version (``KVClient/writerID``); breaks ties between
    /// equal timestamps.
    public var writer: UInt64

    /// A version from its two parts.
    public init(hlc: UInt64, writer: UInt64) {
        self.hlc = hlc
        self.writer = writer
    }

    /// The wall-clock part of the timestamp, in milliseconds since the Unix epoch.
    public var millis: UInt64 { hlc >> 16 }

    /// Whether `lhs` is older than `rhs`: by timestamp, then by writer.
    public static func < (lhs: KVVersion, rhs: KVVersion) -> Bool {
        (lhs.hlc, lhs.writer) < (rhs.hlc, rhs.writer)
    }

    /// `millis.counter@writer`, the form logs and `kvctl` print.
    public var description: String { Version(self).description }

    /// The SDK's form of a stored version.
    package init(_ version: Version) {
        self.init(hlc: version.hlc, writer: version.writer)
    }
}

extension Version {
    /// The stored form of an SDK version.
    package init(_ version: KVVersion) {
        self.init(hlc: version.hlc, writer: version.writer)
    }
}
