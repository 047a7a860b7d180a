package import KVCore
package import KVRPC
package import KVStorage
package import KVWire
import NIOCore
package import NIOPosix

/// One side of an anti-entropy session: a replica of the range, either this node's own store or a
/// co-replica over RPC. A session asks both sides the same Merkle queries, then reads the differing
/// records from one side and writes them to the other.
///
/// `bytes` in every answer is what crossed the network for the call (request and response frames,
/// headers included); zero for the local store.
package protocol AntiEntropyReplica: Sendable {
    /// The node's id, for reports and logs.
    var nodeID: String { get }
    /// The replica's answer to `query` about `tree`'s range.
    func answer(_ query: KVCore.MerkleQuery, in tree: MerkleTree) async throws -> (answer: MerkleAnswer, bytes: Int)
    /// The record the replica holds for `key` (checked like a write: non-empty key, version not 0, a
    /// tombstone without a value); nil if it holds none.
    func read(_ key: [UInt8]) async throws -> (record: StoredRecord?, bytes: Int)
    /// Writes `record` through the replica's apply rule; `applied` is false when it held a newer version.
    func write(_ key: [UInt8], _ record: StoredRecord) async throws -> (applied: Bool, bytes: Int)
}

/// Why one side of a session failed, in words for the report.
package struct AntiEntropyReplicaError: Error, CustomStringConvertible {
    package var description: String

    package init(description: String) {
        self.description = description
    }
}

/// This node's own replica: the Merkle answers come from its store, writes go through the production
/// `Replica.put` (the apply rule: versions only move forward), all on the thread pool.
package struct LocalAntiEntropyReplica: AntiEntropyReplica {
    let replica: Replica
    let merkle: any MerkleStore & TombstonePurging
    let pool: NIOThreadPool

    package init(replica: Replica, merkle: any MerkleStore & TombstonePurging, pool: NIOThreadPool) {
        self.replica = replica
        self.merkle = merkle
        self.pool = pool
    }

    /// Removes the tombstones of `range` older than `cutoff`, with their Merkle entries.
    package func purgeTombstones(in range: TokenRangeSpan, before cutoff: Version) async throws -> Int {
        let store = self.merkle
        return try await pool.runIfActive { try store.purgeTombstones(in: range, before: cutoff) }
    }

    package var nodeID: String { replica.nodeID }

    package func answer(_ query: KVCore.MerkleQuery, in tree: MerkleTree) async throws -> (
        answer: MerkleAnswer, bytes: Int
    ) {
        let merkle = self.merkle
        let answer = try await pool.runIfActive { try merkle.merkleAnswer(to: query, in: tree) }
        guard let answer else {
            throw AntiEntropyReplicaError(description: "the local tree cannot answer \(query)")
        }
        return (answer, 0)
    }

    package func read(_ key: [UInt8]) async throws -> (record: StoredRecord?, bytes: Int) {
        let replica = self.replica
        return (try await pool.runIfActive { try replica.get(key: key).record }, 0)
    }

    package func write(_ key: [UInt8], _ record: StoredRecord) async throws -> (applied: Bool, bytes: Int) {
        let replica = self.replica
        let outcome = try await pool.runIfActive { try replica.put(key: key, record: record).outcome }
        return (outcome == .applied, 0)
    }
}

/// A co-replica over RPC: `MerkleExchange`, `Get` and `Put` (origin `antiEntropy`), each with a timeout,
/// so a dead or hung peer ends the session with an error instead of a hang.
package struct RemoteAntiEntropyReplica: AntiEntropyReplica {
    package let nodeID: String
    let call: @Sendable (Message, Duration) async throws -> Message
    let timeout: Duration

    package init(nodeID: String, client: RPCClient, timeout: Duration) {
        self.nodeID = nodeID
        self.call = { request, timeout in try await client.call(request, timeout: timeout) }
        self.timeout = timeout
    }

    /// A peer reached through `call` (tests use one that calls a `ReplicaService` in process).
    package init(
        nodeID: String, timeout: Duration, call: @escaping @Sendable (Message, Duration) async throws -> Message
    ) {
        self.nodeID = nodeID
        self.call = call
        self.timeout = timeout
    }

    package func answer(_ query: KVCore.MerkleQuery, in tree: MerkleTree) async throws -> (
        answer: MerkleAnswer, bytes: Int
    ) {
        let kind: KVWire.MerkleQuery
        switch query.kind {
        case .root: kind = .root
        case .children: kind = .children
        case .listing: kind = .listing
        }
        let request = Message.merkleExchangeRequest(
            MerkleExchangeRequest(
                range: TokenRange(start: tree.range.start, end: tree.range.end), query: kind,
                level: UInt8(query.level), nodes: query.nodes.map { UInt32($0) }))
        let (response, bytes) = try await exchange(request)
        guard case .merkleExchangeResponse(let exchange) = response else {
            throw AntiEntropyReplicaError(description: "\(nodeID) answered MerkleExchange with \(response.type)")
        }
        let entries = exchange.entries.map {
            MerkleEntry(key: Array($0.key.readableBytesView), version: $0.version, tombstone: $0.tombstone)
        }
        return (MerkleAnswer(hashes: exchange.hashes, entries: entries), bytes)
    }

    package func read(_ key: [UInt8]) async throws -> (record: StoredRecord?, bytes: Int) {
        let (response, bytes) = try await exchange(.getRequest(GetRequest(key: ByteBuffer(bytes: key))))
        guard case .getResponse(let get) = response else {
            throw AntiEntropyReplicaError(description: "\(nodeID) answered Get with \(response.type)")
        }
        guard let record = get.record else { return (nil, bytes) }
        guard record.key.readableBytesView.elementsEqual(key) else {
            throw AntiEntropyReplicaError(description: "\(nodeID) answered Get with another key's record")
        }
        do {
            let stored = try Replica.record(
                key: key, version: record.version, tombstone: record.tombstone,
                value: Array(record.value.readableBytesView))
            return (stored, bytes)
        } catch {
            throw AntiEntropyReplicaError(description: "\(nodeID) answered Get with an invalid record: \(error)")
        }
    }

    package func write(_ key: [UInt8], _ record: StoredRecord) async throws -> (applied: Bool, bytes: Int) {
        let request = Message.putRequest(
            PutRequest(
                key: ByteBuffer(bytes: key), value: ByteBuffer(bytes: record.value), version: record.version,
                tombstone: record.tombstone, origin: .antiEntropy))
        let (response, bytes) = try await exchange(request)
        guard case .putResponse(let put) = response else {
            throw AntiEntropyReplicaError(description: "\(nodeID) answered Put with \(response.type)")
        }
        return (put.outcome == .applied, bytes)
    }

    /// One call, and the bytes of both frames.
    private func exchange(_ request: Message) async throws -> (Message, Int) {
        let response = try await call(request, timeout)
        return (response, Self.frameBytes(request) + Self.frameBytes(response))
    }

    /// The bytes `message` takes on the wire as one frame, length prefix included.
    static func frameBytes(_ message: Message) -> Int {
        message.frame(requestID: 0, allocator: ByteBufferAllocator()).encodedBytes
    }
}
