public import KVCore
public import KVRPC
public import KVWire

/// What one process (a node, or an SDK client) knows of the protocol versions of the cluster's
/// members: its own versions, and each peer node's highest from its last handshake with it. The
/// switch for features that need every node (`ProtocolAdoption`) reads it.
///
/// Not part of the signed cluster map: a version belongs to a running binary and changes with a
/// restart, not with a vote. A node reports what it knows in `ClusterMapResponse.memberVersions`.
public final class MemberProtocols: Sendable {
    /// The node this is, nil in an SDK client (which is no member).
    public let nodeID: String?
    /// The versions this process speaks.
    public let versions: ProtocolRange
    /// Each peer node's highest version, recorded by the RPC layer at every handshake.
    public let peers = PeerVersions()

    public init(nodeID: String?, versions: ProtocolRange) {
        self.nodeID = nodeID
        self.versions = versions
    }

    /// The highest version of each member known here: the peers', and this node's own.
    public func known() -> [String: UInt16] {
        var known = peers.snapshot()
        if let nodeID { known[nodeID] = versions.highest }
        return known
    }

    /// Whether a feature of protocol `version` that needs every node may be used: this process speaks
    /// it, and so does every member of `map` as far as is known here.
    public func everyMember(of map: ClusterMap, speaks version: UInt16) -> Bool {
        versions.highest >= version && ProtocolAdoption.everyMember(of: map, speaks: version, versions: known())
    }
}

extension MemberProtocols {
    /// The protocol version of `Heartbeat`, the failure detectors' probe once every member speaks it.
    public static let heartbeatVersion: UInt16 = 4

    /// Whether the failure detectors (the SDK's pinger and the nodes') probe with `Heartbeat` (no
    /// storage work on the node) rather than `Ping`: only once every member of `map` is known to speak
    /// version 4 (`ProtocolAdoption`).
    public func usesHeartbeats(_ map: ClusterMap) -> Bool {
        everyMember(of: map, speaks: Self.heartbeatVersion)
    }

    /// The probe to send on `connection`: a `Heartbeat` when `heartbeats` (`usesHeartbeats`) and the
    /// connection negotiated it (a peer rolled back to version 3 still gets a `Ping`), else a `Ping`.
    public static func probe(epoch: UInt64, clock: UInt64, heartbeats: Bool, on connection: RPCConnection) -> Message {
        if heartbeats, connection.version >= heartbeatVersion {
            return .heartbeatRequest(HeartbeatRequest(epoch: epoch, clock: clock))
        }
        return .pingRequest(PingRequest(epoch: epoch, clock: clock))
    }
}
