package import KVCore

/// What one node's anti-entropy pass did (`Admin` repair), as `KVClient.repair(node:range:)` returns it.
package struct RepairSummary: Sendable, Hashable {
    /// The node that ran the pass.
    package var nodeID: String
    /// Vnode ranges compared without error with every co-replica.
    package var rangesCompared: Int
    /// Ranges not compared again because the node's previous pass, cut short by a crash, had done them.
    package var rangesResumed: Int
    /// Sessions run: one range between two replicas.
    package var sessions: Int
    /// Merkle queries asked.
    package var queries: Int
    /// Records co-replicas applied from the node.
    package var keysSent: Int
    /// Records the node applied from its co-replicas.
    package var keysReceived: Int
    /// Bytes over the network: request and response frames of every anti-entropy RPC.
    package var bytes: Int
    /// Tombstones the node purged: in ranges compared with every co-replica, older than its grace.
    package var tombstonesPurged: Int
    /// Sessions that failed (a co-replica down, an error answer); the pass went on with the others.
    package var errors: Int
    /// The first failure, when `errors > 0`.
    package var firstError: String?
    /// How long the pass took on the node.
    package var duration: Duration

    package init(
        nodeID: String, rangesCompared: Int = 0, rangesResumed: Int = 0, sessions: Int = 0, queries: Int = 0,
        keysSent: Int = 0,
        keysReceived: Int = 0, bytes: Int = 0, tombstonesPurged: Int = 0, errors: Int = 0, firstError: String? = nil,
        duration: Duration = .zero
    ) {
        self.nodeID = nodeID
        self.rangesCompared = rangesCompared
        self.rangesResumed = rangesResumed
        self.sessions = sessions
        self.queries = queries
        self.keysSent = keysSent
        self.keysReceived = keysReceived
        self.bytes = bytes
        self.tombstonesPurged = tombstonesPurged
        self.errors = errors
        self.firstError = firstError
        self.duration = duration
    }

    /// Reads `Admin` repair's results (names as the node answers them); nil if a count is missing.
    init?(nodeID: String, results: [String: String]) {
        func count(_ name: String) -> Int? { results[name].flatMap { Int($0) } }
        guard let rangesCompared = count("ranges_compared"), let sessions = count("sessions"),
            let queries = count("queries"), let keysSent = count("keys_sent"),
            let keysReceived = count("keys_received"), let bytes = count("bytes"), let errors = count("errors")
        else { return nil }
        self.init(
            nodeID: nodeID, rangesCompared: rangesCompared, rangesResumed: count("ranges_resumed") ?? 0,
            sessions: sessions, queries: queries, keysSent: keysSent,
            keysReceived: keysReceived, bytes: bytes, tombstonesPurged: count("tombstones_purged") ?? 0,
            errors: errors, firstError: results["first_error"],
            duration: .milliseconds(count("duration_ms") ?? 0))
    }
}

extension TokenRangeSpan {
    /// `START:END`, the form `Admin` repair's `range` argument takes.
    package var repairArgument: String { "\(start):\(end)" }
}
