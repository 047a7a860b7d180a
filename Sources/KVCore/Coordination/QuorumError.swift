/// Why a read or write did not reach its quorum, or why a consistency level cannot be used.
///
/// The error names how many replicas were needed, which ones answered, and which ones failed and
/// why, so that one log line is enough to tell a dead replica from a slow one:
///
///     write needs 2 of 3 replicas; 1 acknowledged (n2); failed: n1 (connection refused), n3 (no answer within 2s)
///
/// Replicas are listed in preference-list order, whatever order they answered in.
public struct QuorumError: Error, Hashable, CustomStringConvertible {
    /// The kind of request that needed the quorum; it only changes the wording of ``description``.
    public enum Operation: Sendable, Hashable {
        case read
        case write
    }

    private enum Code: Hashable {
        case quorumUnreachable(Operation)
        case deadlineExceeded(Operation)
        case invalidConsistency(ConsistencyLevel)
        /// A level that counts per zone cannot be met on this key's replicas (`reason` says why).
        case zonesUnfit(ConsistencyLevel, reason: String)
    }

    private let code: Code
    /// How many replicas had to answer (for ``invalidConsistency(_:replicationFactor:)``: how many
    /// the level asked for).
    public let required: Int
    /// How many replicas the request was for: the length of the preference list, N.
    public let replicas: Int
    /// The replicas that acknowledged the write or answered the read, in preference-list order.
    public let succeeded: [String]
    /// The replicas that failed or did not answer in time, with the reason, in preference-list order.
    public let failed: [ReplicaFailure]
    /// The groups that each had to reach their count (`local_quorum`, `each_quorum`, a membership
    /// change); empty when `required` of all the replicas was the rule.
    public private(set) var groups: [ReplicaQuorum] = []

    private init(_ code: Code, required: Int, replicas: Int, succeeded: [String], failed: [ReplicaFailure]) {
        self.code = code
        self.required = required
        self.replicas = replicas
        self.succeeded = succeeded
        self.failed = failed
    }

    /// So many replicas failed that `required` answers can no longer arrive; the request failed
    /// without waiting for its deadline.
    public static func quorumUnreachable(
        _ operation: Operation,
        required: Int,
        replicas: Int,
        succeeded: [String],
        failed: [ReplicaFailure]
    ) -> QuorumError {
        .ending(
            operation, deadlinePassed: false, required: required, replicas: replicas, succeeded: succeeded,
            failed: failed)
    }

    /// How a coordinator's request ended without its quorum: `deadlineExceeded` when the deadline
    /// passed, `quorumUnreachable` when failures made the quorum impossible first.
    package static func ending(
        _ operation: Operation,
        deadlinePassed: Bool,
        required: Int,
        replicas: Int,
        succeeded: [String],
        failed: [ReplicaFailure]
    ) -> QuorumError {
        QuorumError(
            deadlinePassed ? .deadlineExceeded(operation) : .quorumUnreachable(operation),
            required: required,
            replicas: replicas,
            succeeded: succeeded,
            failed: failed
        )
    }

    /// Where one replica stood when a coordinator's request ended, for ``ending(_:deadlinePassed:required:deadline:standings:)``.
    package enum ReplicaStanding {
        /// It did what the request needed (answered, applied).
        case succeeded
        case failed(reason: String)
        /// Asked, no answer yet: failed if the deadline passed.
        case silent
        /// Neither: not asked, or answered in a way that counts for nothing here.
        case neither
    }

    /// ``ending(_:deadlinePassed:required:replicas:succeeded:failed:)`` from each replica's standing,
    /// in preference-list order: silent replicas fail as `no answer within <deadline>` when the
    /// deadline passed.
    package static func ending(
        _ operation: Operation,
        deadlinePassed: Bool,
        required: Int,
        deadline: Duration,
        standings: [(node: String, standing: ReplicaStanding)],
        groups: [ReplicaQuorum] = []
    ) -> QuorumError {
        var succeeded: [String] = []
        var failed: [ReplicaFailure] = []
        for (node, standing) in standings {
            switch standing {
            case .succeeded:
                succeeded.append(node)
            case .failed(let reason):
                failed.append(ReplicaFailure(node: node, reason: reason))
            case .silent where deadlinePassed:
                failed.append(ReplicaFailure(node: node, reason: "no answer within \(deadline.shortDescription)"))
            case .silent, .neither:
                break
            }
        }
        var error = QuorumError.ending(
            operation, deadlinePassed: deadlinePassed, required: required, replicas: standings.count,
            succeeded: succeeded, failed: failed)
        error.groups = groups
        return error
    }

    /// The deadline passed before `required` replicas answered; `failed` lists the silent ones as
    /// `no answer within <deadline>`.
    public static func deadlineExceeded(
        _ operation: Operation,
        required: Int,
        replicas: Int,
        succeeded: [String],
        failed: [ReplicaFailure]
    ) -> QuorumError {
        .ending(
            operation, deadlinePassed: true, required: required, replicas: replicas, succeeded: succeeded,
            failed: failed)
    }

    /// A consistency level that cannot be met with this replication factor: an explicit count
    /// outside `1...replicationFactor`, or a replication factor below 1.
    public static func invalidConsistency(_ level: ConsistencyLevel, replicationFactor: Int) -> QuorumError {
        let asked: Int
        switch level {
        case .one: asked = 1
        case .quorum, .localQuorum, .eachQuorum: asked = replicationFactor / 2 + 1
        case .all: asked = replicationFactor
        case .count(let count): asked = count
        }
        return QuorumError(
            .invalidConsistency(level),
            required: asked,
            replicas: replicationFactor,
            succeeded: [],
            failed: []
        )
    }

    /// `level` counts per zone and this key's replicas do not allow it: no replica in the client's
    /// zone for `local_quorum`, or no zone given.
    public static func zonesUnfit(_ level: ConsistencyLevel, replicas: Int, reason: String) -> QuorumError {
        QuorumError(.zonesUnfit(level, reason: reason), required: 0, replicas: replicas, succeeded: [], failed: [])
    }

    /// Not enough replicas could still answer.
    public var isQuorumUnreachable: Bool {
        if case .quorumUnreachable = code { return true }
        return false
    }

    /// The deadline passed first.
    public var isDeadlineExceeded: Bool {
        if case .deadlineExceeded = code { return true }
        return false
    }

    /// The consistency level does not fit the replication factor, or the zones of the replicas.
    public var isInvalidConsistency: Bool {
        switch code {
        case .invalidConsistency, .zonesUnfit: true
        case .quorumUnreachable, .deadlineExceeded: false
        }
    }

    public var description: String {
        switch code {
        case .quorumUnreachable(let operation), .deadlineExceeded(let operation):
            let verb = operation == .write ? "acknowledged" : "answered"
            var text = "\(operation == .write ? "write" : "read") needs \(required) of \(replicas) replicas"
            if !groups.isEmpty {
                text +=
                    " ("
                    + groups.map { "\($0.required) of \($0.replicas.joined(separator: ", "))" }
                    .joined(separator: " and ") + ")"
            }
            text += "; "
            text += "\(succeeded.count) \(verb)"
            if !succeeded.isEmpty {
                text += " (\(succeeded.joined(separator: ", ")))"
            }
            if !failed.isEmpty {
                text += "; failed: " + failed.map(\.description).joined(separator: ", ")
            }
            return text
        case .invalidConsistency(let level):
            guard replicas >= 1 else {
                return "replication factor \(replicas) is invalid: it must be at least 1"
            }
            return "consistency level \(level) needs \(required) replicas but the replication factor is "
                + "\(replicas); use one, quorum, all or a count in 1...\(replicas)"
        case .zonesUnfit(let level, let reason):
            return "consistency level \(level) cannot be used: \(reason)"
        }
    }
}
