public import KVCore

/// Constants of the wire protocol (proto-spec/FRAMES.md).
public enum WireProtocol {
    /// The highest protocol version this build speaks, sent as `Hello.protocolVersion`.
    ///
    /// Version 4 negotiates (`Hello.lowestVersion`, `HelloAck.highestVersion`), reports members'
    /// versions in `ClusterMapResponse.memberVersions`, and adds `Heartbeat`. Version 3 added zones,
    /// placement, keyspaces and time to live; version 2 appended `PutRequest.origin`; version 1 was
    /// never released, so no peer speaks it.
    public static let version: UInt16 = 4

    /// The lowest protocol version this build speaks: the promise is N and N − 1, so that a cluster
    /// upgrades one node at a time.
    public static let lowestVersion: UInt16 = 3

    /// Every version this build speaks; a node started with `--protocol-max` speaks less
    /// (`ProtocolRange.capped(at:)`).
    public static let versions = ProtocolRange(lowest: lowestVersion, highest: version)!

    /// The versions a process speaks when told to speak at most `highestMax` (`kvd --protocol-max`,
    /// `kvctl --protocol-max`): this build's, capped; nil when this build does not speak `highestMax`.
    public static func versions(highestMax: Int) -> ProtocolRange? {
        guard let highest = UInt16(exactly: highestMax), versions.speaks(highest) else { return nil }
        return versions.capped(at: highest)
    }

    /// Bytes of a frame header after the length prefix: type (1), request id (8), flags (1).
    public static let frameHeaderBytes = 10

    /// Bytes of the length prefix.
    public static let lengthPrefixBytes = 4

    /// The request id of frames that belong to the connection rather than a request (an `Error` sent
    /// before closing).
    public static let connectionRequestID: UInt64 = 0

    /// The request id of the `Hello` that opens a connection.
    public static let helloRequestID: UInt64 = 1
}
