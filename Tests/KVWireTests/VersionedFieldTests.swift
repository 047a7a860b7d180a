import KVCore
import KVWire
import NIOCore
import Testing

/// Fields and messages a later protocol version added (`@since` in the schema): absent from an older
/// peer's bytes, and never sent to a peer that did not negotiate them.
@Suite("Versioned fields")
struct VersionedFieldTests {
    private let v4Hello = Hello(
        protocolVersion: 4, clusterId: "qkv-test", senderId: "client-1", role: .client, epoch: 7, lowestVersion: 3)

    @Test("a version-3 Hello decodes with lowestVersion absent")
    func olderBodyDecodesAbsent() throws {
        var v3 = v4Hello
        v3.protocolVersion = 3
        v3.lowestVersion = nil
        let frame = Message.hello(v3).frame(requestID: 1, allocator: ByteBufferAllocator())
        #expect(try Message(frame: frame) == .hello(v3))
        let range = ProtocolRange.announced(highest: 3, lowest: nil)
        #expect(range == ProtocolRange(lowest: 3, highest: 3))
    }

    @Test("restricted to version 3, a message leaves out the fields of version 4, byte for byte")
    func restrictedLeavesOutLaterFields() {
        let restricted = Message.hello(v4Hello).restricted(toProtocol: 3)
        var expected = v4Hello
        expected.lowestVersion = nil
        #expect(restricted == .hello(expected))
        let full = Message.hello(v4Hello).frame(requestID: 1, allocator: ByteBufferAllocator())
        let short = restricted.frame(requestID: 1, allocator: ByteBufferAllocator())
        #expect(full.body.readableBytes == short.body.readableBytes + 2)
        #expect(Message.hello(v4Hello).restricted(toProtocol: 4) == .hello(v4Hello))
    }

    @Test("member versions in a map answer go to version-4 connections only")
    func memberVersionsOnlyAtVersion4() {
        var response = ClusterMapResponse(
            clusterId: "c", epoch: 1, replicationFactor: 1, nodes: [], pendingReplicationFactor: 0, streaming: [],
            changeEpoch: 0, proof: nil, placement: PlacementBody(kind: .simple, replicas: 1, perZone: 0, zones: []),
            pendingPlacement: nil, keyspaces: [])
        response.memberVersions = [MemberVersionBody(nodeId: "n1", protocolVersion: 4)]
        guard case .clusterMapResponse(let old) = Message.clusterMapResponse(response).restricted(toProtocol: 3) else {
            Issue.record("not a ClusterMapResponse")
            return
        }
        #expect(old.memberVersions == nil)
        #expect(Message.clusterMapResponse(response).restricted(toProtocol: 4) == .clusterMapResponse(response))
    }

    @Test("a node's keys by keyspace: absent from an older build's stats, sent on version-4 connections only")
    func keyspaceKeysInStats() throws {
        var stats = NodeStats(node: "n1")
        stats.keys = 30
        let older = Message.nodeStats(stats).frame(requestID: 1, allocator: ByteBufferAllocator())
        guard case .nodeStats(let decoded) = try Message(frame: older) else {
            Issue.record("not a NodeStats")
            return
        }
        #expect(decoded.keyspaceKeys == nil, "a build before the field sends none")
        stats.keyspaceKeys = [KeyspaceKeys(keyspace: 0, keys: 10), KeyspaceKeys(keyspace: 5, keys: 20)]
        let newer = Message.nodeStats(stats).frame(requestID: 1, allocator: ByteBufferAllocator())
        #expect(try Message(frame: newer) == .nodeStats(stats))
        #expect(newer.body.readableBytes == older.body.readableBytes + 4 + 2 * 12)
        guard case .nodeStats(let restricted) = Message.nodeStats(stats).restricted(toProtocol: 3) else {
            Issue.record("not a NodeStats")
            return
        }
        #expect(restricted.keyspaceKeys == nil)
    }

    /// `NodeStats.diskReserveBytes` (field 47, after 46, both `@since(4)`): absent from an older
    /// build, 8 bytes after field 46 from a newer one, left out of a version-3 connection's stats.
    @Test func diskReserveInStats() throws {
        var stats = NodeStats(node: "n1")
        stats.keyspaceKeys = [KeyspaceKeys(keyspace: 0, keys: 10)]
        let older = Message.nodeStats(stats).frame(requestID: 1, allocator: ByteBufferAllocator())
        guard case .nodeStats(let decoded) = try Message(frame: older) else {
            Issue.record("not a NodeStats")
            return
        }
        #expect(decoded.diskReserveBytes == nil, "a build before the field sends none")
        stats.diskReserveBytes = 512 << 20
        let newer = Message.nodeStats(stats).frame(requestID: 1, allocator: ByteBufferAllocator())
        #expect(try Message(frame: newer) == .nodeStats(stats))
        #expect(newer.body.readableBytes == older.body.readableBytes + 8)
        guard case .nodeStats(let restricted) = Message.nodeStats(stats).restricted(toProtocol: 3) else {
            Issue.record("not a NodeStats")
            return
        }
        #expect(restricted.diskReserveBytes == nil && restricted.keyspaceKeys == nil)
    }

    /// `NodeStats.storageFailure` (field 48) comes after field 47 as 47 came after 46: absent from a
    /// build before it, read from a newer one, dropped on a version-3 connection.
    @Test func storageFailureInStats() throws {
        var stats = NodeStats(node: "n1")
        stats.keyspaceKeys = []
        stats.diskReserveBytes = 0
        let older = Message.nodeStats(stats).frame(requestID: 1, allocator: ByteBufferAllocator())
        guard case .nodeStats(let decoded) = try Message(frame: older) else {
            Issue.record("not a NodeStats")
            return
        }
        #expect(decoded.storageFailure == nil, "a build before the field sends none")
        stats.storageFailure = "storage I/O error at /data/n1: the node's storage failed"
        let newer = Message.nodeStats(stats).frame(requestID: 1, allocator: ByteBufferAllocator())
        #expect(try Message(frame: newer) == .nodeStats(stats))
        guard case .nodeStats(let restricted) = Message.nodeStats(stats).restricted(toProtocol: 3) else {
            Issue.record("not a NodeStats")
            return
        }
        #expect(restricted.storageFailure == nil && restricted.diskReserveBytes == nil)
    }

    @Test("Heartbeat is a version-4 message; the others every version has")
    func messageVersions() {
        #expect(MessageType.heartbeatRequest.protocolVersionMin == 4)
        #expect(MessageType.heartbeatResponse.protocolVersionMin == 4)
        #expect(MessageType.pingRequest.protocolVersionMin == 1)
        #expect(MessageType.allCases.allSatisfy { $0.protocolVersionMin <= WireProtocol.version })
    }
}
