import Foundation
import KVCore
import KVRPC
import KVStorage
import KVTLS
import KVWire
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Anti-entropy: Merkle exchanges and fetches over this node's ranges, and batches of repairs.
extension ReplicaService {
    /// The keyspace's Merkle store and the asked range, if this node replicates the whole range in the
    /// keyspace's ring; else the refusal.
    func merkleRange(_ wire: TokenRange, in context: KeyspaceContext) throws -> (any MerkleStore, TokenRangeSpan) {
        guard let merkle = context.merkle else {
            throw RPCError.remote(.invalidRequest, message: "this node takes no part in anti-entropy")
        }
        let range = TokenRangeSpan(start: wire.start, end: wire.end)
        guard ranges(in: context).contains(where: { $0.contains(range) }) else {
            throw RPCError.remote(.invalidRequest, message: "\(nodeID) does not replicate the whole range \(range)")
        }
        return (merkle, range)
    }

    /// Answers one question of a co-replica's Merkle comparison (`proto-spec/MERKLE.md`).
    ///
    /// Refused with `invalidRequest`: a range this node does not replicate (whole), more than
    /// `Limits.merkleNodesPerQueryMax` nodes, a node the range's tree does not have, the children of a
    /// leaf; and a listing whose answer would not fit one frame (over `Limits.listCountMax` entries or
    /// `Limits.frameBytesMax` bytes): the answer is never truncated, since a partial listing would read
    /// as missing keys. A leaf is one segment (about keys / 2^20 records), so only a store of billions
    /// of keys, or of thousands of maximum-size keys in one segment, meets that limit.
    func answer(_ request: MerkleExchangeRequest, in context: KeyspaceContext) async throws -> Message {
        let (merkle, range) = try merkleRange(request.range, in: context)
        guard let nodes = MerkleNodeList.decode(request.nodes.readableBytesView) else {
            throw RPCError.remote(
                .invalidRequest,
                message: "the node list is malformed or names more than \(Limits.merkleNodesPerQueryMax) nodes")
        }
        let kind: KVCore.MerkleQuery.Kind
        switch request.query {
        case .root: kind = .root
        case .children: kind = .children
        case .listing, .entryHashes: kind = .listing
        }
        let query = KVCore.MerkleQuery(kind: kind, level: Int(request.level), nodes: nodes)
        let tree = MerkleTree(range: range)
        guard tree.isValid(query) else {
            throw RPCError.remote(
                .invalidRequest, message: "the tree of \(range) (depth \(tree.depth)) cannot answer \(query)")
        }
        let answer = try await runOnPool { () throws(ReplicaError) -> MerkleAnswer in
            do throws(StorageError) {
                // isValid was checked: the store answers every valid query.
                return try merkle.merkleAnswer(to: query, in: tree) ?? MerkleAnswer()
            } catch {
                throw ReplicaError.storage(error)
            }
        }
        if request.query == .entryHashes {
            guard answer.entries.count <= Limits.listCountMax else {
                throw RPCError.remote(
                    .invalidRequest,
                    message:
                        "the leaves of \(query) hold \(answer.entries.count) entries, more than one frame carries; "
                        + "ask fewer nodes")
            }
            return .merkleExchangeResponse(MerkleExchangeResponse(hashes: answer.entries.map(\.hash), entries: []))
        }
        let entryBytes = answer.entries.reduce(0) { $0 + 4 + $1.key.count + 17 }
        let frameBytes = 4 + 10 + 4 + 8 * answer.hashes.count + 4 + entryBytes
        guard answer.entries.count <= Limits.listCountMax, frameBytes <= Limits.frameBytesMax else {
            throw RPCError.remote(
                .invalidRequest,
                message: "the listing of \(query) holds \(answer.entries.count) entries (\(frameBytes) bytes), "
                    + "more than one frame carries; ask fewer nodes")
        }
        return .merkleExchangeResponse(
            MerkleExchangeResponse(
                hashes: answer.hashes,
                entries: answer.entries.map {
                    KeyVersion(key: ByteBuffer(bytes: $0.key), version: $0.version, tombstone: $0.tombstone)
                }))
    }

    /// The second half of a listing by entry hashes (`proto-spec/MERKLE.md`): the records of the named
    /// leaves whose entry hashes were asked for: as version only (`older`) when their hlc is not above
    /// their leaf's guard (a guard of 0 asks for every record whole), else whole when their value fits
    /// `Limits.merkleRecordBytesPerFrameMax` (the first always does), else as key and version. Refused like a `MerkleExchange`: a range not replicated whole, more than
    /// `Limits.merkleLeavesPerListingMax` leaves, a leaf the tree does not have.
    func answer(_ request: MerkleFetchRequest, in context: KeyspaceContext) async throws -> Message {
        let (merkle, range) = try merkleRange(request.range, in: context)
        let tree = MerkleTree(range: range)
        guard
            let leaves = MerkleNodeList.decode(
                request.leaves.readableBytesView, countMax: Limits.merkleLeavesPerListingMax),
            leaves.count == request.valueAboveHlc.count,
            leaves.allSatisfy({ tree.contains(level: tree.depth, index: $0) })
        else {
            throw RPCError.remote(
                .invalidRequest,
                message: "a fetch's leaf list is malformed, names more than \(Limits.merkleLeavesPerListingMax) "
                    + "leaves or one the tree of \(range) (depth \(tree.depth)) does not have, or does not match "
                    + "its \(request.valueAboveHlc.count) guards")
        }
        var positions: [UInt64: Int] = [:]
        for (index, hash) in request.hashes.enumerated() where index <= Int(UInt16.max) {
            positions[hash] = positions[hash] ?? index
        }
        let wanted = positions
        let store = context.replica.store
        let found = try await runOnPool {
            () throws(ReplicaError) -> (records: [Record], entries: [KeyVersion], older: [OlderEntry]) in
            var records: [Record] = []
            var entries: [KeyVersion] = []
            var older: [OlderEntry] = []
            var valueBytes = 0
            do throws(StorageError) {
                for (leaf, valueAboveHlc) in zip(leaves, request.valueAboveHlc) {
                    let span = tree.span(level: tree.depth, index: leaf)
                    for entry in try merkle.merkleListing(of: span) {
                        guard let index = wanted[entry.hash] else { continue }
                        // Read after listing: skipped if it changed meanwhile, as if listed a moment later.
                        guard let record = try store.get(key: entry.key),
                            MerkleEntry(key: entry.key, record: record).hash == entry.hash
                        else { continue }
                        guard valueAboveHlc == 0 || entry.version.hlc > valueAboveHlc else {
                            older.append(
                                OlderEntry(index: UInt16(index), version: record.version, tombstone: record.tombstone))
                            continue
                        }
                        let size = entry.key.count + record.value.count
                        let key = ByteBuffer(bytes: entry.key)
                        if valueBytes == 0 || valueBytes + size <= Limits.merkleRecordBytesPerFrameMax {
                            valueBytes += size
                            records.append(Record(key: entry.key, record))
                        } else {
                            entries.append(KeyVersion(key: key, version: record.version, tombstone: record.tombstone))
                        }
                    }
                }
            } catch {
                throw ReplicaError.storage(error)
            }
            return (records, entries, older)
        }
        return .merkleFetchResponse(
            MerkleFetchResponse(records: found.records, entries: found.entries, older: found.older))
    }

    /// Applies an anti-entropy session's records, each through the apply rule as a `Put` with origin
    /// `antiEntropy` would be; answers how many it applied.
    func applyBatch(_ request: MerkleApplyRequest, in context: KeyspaceContext) async throws -> Message {
        var records: [StreamedRecord] = []
        records.reserveCapacity(request.records.count)
        for record in request.records {
            let checked = try Self.checked(record)
            // An anti-entropy batch writes only where this node keeps every key.
            try checkAdmitted(checked.key, write: true, in: context)
            records.append(checked)
        }
        statistics.antiEntropyWritesReceived.add(records.count, keyspace: context.keyspace.name)
        let replica = context.replica
        let batch = records
        let (applied, clock) = try await runOnPool { () throws(ReplicaError) -> (Int, UInt64) in
            let (outcomes, clock) = try replica.put(batch)
            return (outcomes.count { $0 == .applied }, clock)
        }
        return .merkleApplyResponse(MerkleApplyResponse(applied: UInt32(applied), clock: clock))
    }
}
