import KVCore
import Synchronization

/// The highest protocol version each peer node spoke in its last handshake with this process: what
/// a node reports in `ClusterMapResponse.memberVersions`, and what the SDK and the nodes feed the
/// rule of `ProtocolAdoption`.
///
/// Learned from both directions of a connection: a `Hello` accepted from a node (its
/// `protocolVersion` is its highest) and a `HelloAck` received (its `highestVersion`, or its
/// `protocolVersion` from a version-3 node). A restart ends every connection, so an upgraded
/// node is learned again at its next handshake. Only node peers are kept (clients and admins are not
/// members), at most `Limits.nodesMax` of them.
public final class PeerVersions: Sendable {
    private let versions = Mutex<[String: UInt16]>([:])

    public init() {}

    /// Records that `node` speaks up to `highest`.
    public func record(_ node: String, highest: UInt16) {
        versions.withLock { versions in
            guard versions[node] != nil || versions.count < Limits.nodesMax else { return }
            versions[node] = highest
        }
    }

    /// Each peer's highest version, as last learned.
    public func snapshot() -> [String: UInt16] {
        versions.withLock { $0 }
    }
}
