package import KVCore
import KVRPC
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
    /// The replica's answer to the `.listing` `query`, knowing the other side's (`local`), and the
    /// whole records it sent on the way, by key, so that copying them needs no read.
    func listing(_ query: KVCore.MerkleQuery, in tree: MerkleTree, local: [MerkleEntry]) async throws -> (
        answer: MerkleAnswer, records: [[UInt8]: StoredRecord], bytes: Int
    )
    /// Writes `records` through the replica's apply rule; `applied` counts those it did not hold newer.
    func write(batch records: [(key: [UInt8], record: StoredRecord)]) async throws -> (applied: Int, bytes: Int)
}

extension AntiEntropyReplica {
    /// The plain listing, no records.
    package func listing(_ query: KVCore.MerkleQuery, in tree: MerkleTree, local: [MerkleEntry]) async throws -> (
        answer: MerkleAnswer, records: [[UInt8]: StoredRecord], bytes: Int
    ) {
        let (answer, bytes) = try await self.answer(query, in: tree)
        return (answer, [:], bytes)
    }

    /// One `write` after the other.
    package func write(batch records: [(key: [UInt8], record: StoredRecord)]) async throws -> (
        applied: Int, bytes: Int
    ) {
        var (applied, bytes) = (0, 0)
        for (key, record) in records {
            let written = try await write(key, record)
            applied += written.applied ? 1 : 0
            bytes += written.bytes
        }
        return (applied, bytes)
    }
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

    package func write(batch records: [(key: [UInt8], record: StoredRecord)]) async throws -> (
        applied: Int, bytes: Int
    ) {
        let replica = self.replica
        let applied = try await pool.runIfActive {
            try records.reduce(0) { $0 + (try replica.put(key: $1.key, record: $1.record).outcome == .applied ? 1 : 0) }
        }
        return (applied, 0)
    }
}

/// A co-replica over RPC: `MerkleExchange`, `MerkleFetch`, `MerkleApply`, `Get` and `Put` (origin
/// `antiEntropy`), each with a timeout,
/// so a dead or hung peer ends the session with an error instead of a hang.
package struct RemoteAntiEntropyReplica: AntiEntropyReplica {
    package let nodeID: String
    let call: @Sendable (Message, Duration) async throws -> Message
    let timeout: Duration
    /// The keyspace every request names (0: the default).
    let keyspace: UInt32

    /// A peer reached through its connection in `directory`, looked up on every call (the map may
    /// have moved it), for the ranges of `keyspace`.
    package init(nodeID: String, directory: PeerDirectory, timeout: Duration, keyspace: UInt32 = 0) {
        self.nodeID = nodeID
        self.keyspace = keyspace
        self.call = { request, timeout in
            guard let client = directory.client(nodeID) else {
                throw RPCError.remote(.unknownNode, message: "\(nodeID) is no longer in the cluster map")
            }
            return try await client.call(request, timeout: timeout)
        }
        self.timeout = timeout
    }

    /// A peer reached through `call` (tests use one that calls a `ReplicaService` in process).
    package init(
        nodeID: String, timeout: Duration, keyspace: UInt32 = 0,
        call: @escaping @Sendable (Message, Duration) async throws -> Message
    ) {
        self.nodeID = nodeID
        self.keyspace = keyspace
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
                level: UInt8(query.level),
                nodes: ByteBuffer(bytes: MerkleNodeList.encode(query.nodes)), keyspace: keyspace))
        let (response, bytes) = try await exchange(request)
        guard case .merkleExchangeResponse(let exchange) = response else {
            throw AntiEntropyReplicaError(description: "\(nodeID) answered MerkleExchange with \(response.type)")
        }
        let entries = exchange.entries.map {
            MerkleEntry(key: Array($0.key.readableBytesView), version: $0.version, tombstone: $0.tombstone)
        }
        return (MerkleAnswer(hashes: exchange.hashes, entries: entries), bytes)
    }

    /// A listing by entry hashes (`MerkleHashListing`): the leaves' entry hashes, then a
    /// `MerkleFetch` of the records `local` lacks, which come whole unless `local` likely holds them newer
    /// (then as version only), and a second `MerkleFetch` for the few of those whose key it cannot find.
    package func listing(_ query: KVCore.MerkleQuery, in tree: MerkleTree, local: [MerkleEntry]) async throws -> (
        answer: MerkleAnswer, records: [[UInt8]: StoredRecord], bytes: Int
    ) {
        precondition(query.kind == .listing, "a listing")
        let range = TokenRange(start: tree.range.start, end: tree.range.end)
        let request = Message.merkleExchangeRequest(
            MerkleExchangeRequest(
                range: range, query: .entryHashes, level: UInt8(query.level),
                nodes: ByteBuffer(bytes: MerkleNodeList.encode(query.nodes)), keyspace: keyspace))
        var (response, bytes) = try await exchange(request)
        guard case .merkleExchangeResponse(let hashes) = response else {
            throw AntiEntropyReplicaError(description: "\(nodeID) answered MerkleExchange with \(response.type)")
        }
        guard hashes.entries.isEmpty else {
            throw MerkleComparisonError.malformedAnswer(
                "remote entry-hash listing carries \(hashes.entries.count) entries")
        }
        var byHash = MerkleHashListing(tree: tree, query: query, local: local)
        var next = try byHash.fetch(remoteHashes: hashes.hashes)
        while let fetch = next {
            let request = Message.merkleFetchRequest(
                MerkleFetchRequest(
                    range: range, leaves: ByteBuffer(bytes: MerkleNodeList.encode(fetch.leaves.map(\.node))),
                    valueAboveHlc: fetch.leaves.map(\.valueAboveHlc), hashes: fetch.hashes, keyspace: keyspace))
            let (response, fetchBytes) = try await exchange(request)
            bytes += fetchBytes
            guard case .merkleFetchResponse(let answer) = response else {
                throw AntiEntropyReplicaError(description: "\(nodeID) answered MerkleFetch with \(response.type)")
            }
            var fetched: [MerkleHashListing.Fetched] = []
            for record in answer.records {
                let checked: StreamedRecord
                do {
                    checked = try Replica.checked(record)
                } catch {
                    throw AntiEntropyReplicaError(
                        description: "\(nodeID) answered MerkleFetch with an invalid record: \(error)")
                }
                fetched.append(
                    MerkleHashListing.Fetched(
                        entry: MerkleEntry(key: checked.key, record: checked.record), record: checked.record))
            }
            for entry in answer.entries {
                fetched.append(
                    MerkleHashListing.Fetched(
                        entry: MerkleEntry(
                            key: Array(entry.key.readableBytesView), version: entry.version, tombstone: entry.tombstone),
                        record: nil))
            }
            next = try byHash.take(
                fetched,
                older: answer.older.map {
                    MerkleHashListing.Older(index: Int($0.index), version: $0.version, tombstone: $0.tombstone)
                })
        }
        let (answer, records) = byHash.remoteListing()
        return (answer, records, bytes)
    }

    package func write(batch records: [(key: [UInt8], record: StoredRecord)]) async throws -> (
        applied: Int, bytes: Int
    ) {
        let request = Message.merkleApplyRequest(
            MerkleApplyRequest(
                records: records.map { Record(key: $0.key, $0.record) }, keyspace: keyspace))
        let (response, bytes) = try await exchange(request)
        guard case .merkleApplyResponse(let apply) = response else {
            throw AntiEntropyReplicaError(description: "\(nodeID) answered MerkleApply with \(response.type)")
        }
        guard apply.applied <= records.count else {
            throw AntiEntropyReplicaError(
                description: "\(nodeID) applied \(apply.applied) of \(records.count) records")
        }
        return (Int(apply.applied), bytes)
    }

    package func read(_ key: [UInt8]) async throws -> (record: StoredRecord?, bytes: Int) {
        let (response, bytes) = try await exchange(
            .getRequest(GetRequest(key: ByteBuffer(bytes: key), keyspace: keyspace)))
        guard case .getResponse(let get) = response else {
            throw AntiEntropyReplicaError(description: "\(nodeID) answered Get with \(response.type)")
        }
        guard let record = get.record else { return (nil, bytes) }
        guard record.key.readableBytesView.elementsEqual(key) else {
            throw AntiEntropyReplicaError(description: "\(nodeID) answered Get with another key's record")
        }
        do {
            return (try Replica.checked(record).record, bytes)
        } catch {
            throw AntiEntropyReplicaError(description: "\(nodeID) answered Get with an invalid record: \(error)")
        }
    }

    package func write(_ key: [UInt8], _ record: StoredRecord) async throws -> (applied: Bool, bytes: Int) {
        let request = Message.putRequest(PutRequest(key: key, record, origin: .antiEntropy))
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
