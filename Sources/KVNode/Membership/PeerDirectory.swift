package import KVCluster
package import KVCore
package import KVRPC
package import KVTLS
import KVWire
import Synchronization

/// One connection to each peer in the current cluster map, replaced when the map moves a peer to
/// another address (the old connection is closed) and added when a peer appears.
///
/// Hint replay and anti-entropy each keep their own directory, so one's traffic never queues behind
/// the other's.
package final class PeerDirectory: Sendable {
    private struct Peer {
        var address: String
        var client: RPCClient
    }

    private let nodeID: String
    private let tls: TLSContext
    /// Where the connections' socket bytes are counted.
    private let traffic: PeerTraffic?
    private let peers: Mutex<[String: Peer]>
    /// Where connections a new map dropped are closed.
    private let background: BackgroundWork

    /// The protocol versions this node speaks and those its peers spoke in their handshakes.
    package let protocols: MemberProtocols

    /// - Parameter protocols: the versions to announce, and where peers' versions are recorded; shared
    ///   by a node's directories. Nil: every version of this build, recorded here only.
    package init(
        nodeID: String, tls: TLSContext, map: ClusterMap, background: BackgroundWork = BackgroundWork(),
        traffic: PeerTraffic? = nil, protocols: MemberProtocols? = nil
    ) {
        self.protocols = protocols ?? MemberProtocols(nodeID: nodeID, versions: WireProtocol.versions)
        self.nodeID = nodeID
        self.traffic = traffic
        self.tls = tls
        self.background = background
        self.peers = Mutex([:])
        _ = update(map)
    }

    /// The connection to `id`, nil when it is not a peer in the current map.
    package func client(_ id: String) -> RPCClient? {
        peers.withLock { $0[id]?.client }
    }

    /// Every peer's id and connection.
    package func all() -> [(id: String, client: RPCClient)] {
        peers.withLock { $0.map { (id: $0.key, client: $0.value.client) } }
    }

    /// Follows `map`: new peers get a connection, moved ones a new one, removed ones lose theirs.
    ///
    /// - Returns: the connections no longer used; the caller closes them.
    @discardableResult
    package func update(_ map: ClusterMap) -> [RPCClient] {
        let hello = Hello(
            protocolVersion: WireProtocol.version, clusterId: map.clusterID, senderId: nodeID, role: .node,
            epoch: map.epoch)
        return peers.withLock { peers in
            var dropped: [RPCClient] = []
            var next: [String: Peer] = [:]
            for node in map.nodes where node.id != nodeID && node.state != .removed {
                if let peer = peers[node.id], peer.address == node.address {
                    next[node.id] = peer
                } else if let address = HostPort(parsing: node.address) {
                    next[node.id] = Peer(
                        address: node.address,
                        client: RPCClient(
                            host: address.host, port: address.port, tls: tls, hello: hello, nodeID: node.id,
                            traffic: traffic, versions: protocols.versions, peerVersions: protocols.peers))
                }
            }
            for (id, peer) in peers where next[id]?.client !== peer.client {
                dropped.append(peer.client)
            }
            peers = next
            return dropped
        }
    }

    /// Follows `map` and closes the connections it no longer uses, in the background (not once the
    /// node is shutting down: the process is about to close them all).
    package func follow(_ map: ClusterMap) {
        let dropped = update(map)
        guard !dropped.isEmpty else { return }
        background.spawn {
            for client in dropped { await client.close() }
        }
    }

    /// Closes every connection.
    package func closeAll() async {
        for peer in peers.withLock({ Array($0.values) }) {
            await peer.client.close()
        }
    }
}
