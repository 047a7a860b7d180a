package import KVCore
import KVRPC
import KVWire
import NIOCore

extension KVClient {
    // MARK: - Restores (admin)

    /// Writes `records` to `node` alone, each with its own version, through the node's apply rule
    /// (versions only move forward), as one `MerkleApply` (an anti-entropy batch): a restore writes
    /// a backup's records to every replica of their keys this way. Needs an admin certificate;
    /// `RPCAuthorization` lets admins send `MerkleApply` as nodes do.
    ///
    /// The caller keeps a batch within `Limits.merkleRecordBytesPerFrameMax` bytes of keys and values
    /// (a larger record goes alone), and sends only keys `node` replicates in the latest map, in
    /// keyspace `keyspace` (a part's id for a split keyspace: the part holding every key of the
    /// batch): the node refuses the whole batch otherwise (`notReplica`).
    ///
    /// - Returns: how many records the node applied (the others it held at that version or newer).
    @discardableResult
    package func applyRecords(
        _ records: [(key: [UInt8], record: StoredRecord)], keyspace: UInt32 = Keyspace.defaultID, node: String,
        timeout: Duration? = nil
    ) async throws -> Int {
        try requireAdmin("a restore")
        for (key, _) in records { try validate(key: key) }
        let request = Message.merkleApplyRequest(
            MerkleApplyRequest(records: records.map { Record(key: $0.key, $0.record) }, keyspace: keyspace))
        let answer = try await call(request, node: node, in: try await currentTopology(), timeout: timeout)
        guard case .merkleApplyResponse(let response) = answer else {
            throw KVClientError.protocolViolation("\(node) answered MerkleApply with \(answer.type)")
        }
        guard response.applied <= records.count else {
            throw KVClientError.protocolViolation("\(node) applied \(response.applied) of \(records.count) records")
        }
        observe(response.clock)
        return Int(response.applied)
    }

    /// Pings `node` alone, a check that it answers: the epoch of its cluster map and its key count.
    package func ping(node: String, timeout: Duration? = nil) async throws -> (epoch: UInt64, keys: UInt64) {
        let answer = try await call(
            .pingRequest(PingRequest(epoch: 0, clock: clockNow())), node: node, in: try await currentTopology(),
            timeout: timeout)
        guard case .pingResponse(let ping) = answer else {
            throw KVClientError.protocolViolation("\(node) answered Ping with \(answer.type)")
        }
        observe(ping.clock)
        return (ping.epoch, ping.keys)
    }
}
