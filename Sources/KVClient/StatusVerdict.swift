package import KVCore

/// The one-line verdict `kvctl status` prints first: "healthy", or what is wrong in words, each
/// problem with what it costs the application ("n2 down (connection refused); 312 hints queued for
/// it; writes at ALL fail for 75 % of keys").
///
/// Made from the nodes' statuses (``KVClient/status()``; the counters need an admin certificate and
/// say more) and the cluster map, with no I/O.
package struct StatusVerdict: Sendable, Hashable {
    /// What is wrong, most severe first; empty when the cluster is healthy.
    package var problems: [String]

    package var isHealthy: Bool { problems.isEmpty }

    /// "healthy", or the problems joined by "; ".
    package var summary: String { isHealthy ? "healthy" : problems.joined(separator: "; ") }

    /// How close a certificate's expiry must be to count as a problem.
    package static let certificateWarning: Duration = .seconds(14 * 86_400)

    /// - Parameters:
    ///   - map: the cluster map (its ring says which keys lose their quorum); nil when unknown.
    ///   - nowSeconds: the wall clock, seconds since the Unix epoch, for certificate expiry.
    package init(statuses: [NodeStatus], map: ClusterMap?, nowSeconds: UInt64) {
        var problems: [String] = []
        let down = statuses.filter { !$0.isUp }
        let up = statuses.filter(\.isUp)
        for node in down {
            var problem = "\(node.nodeID) down"
            if let error = node.error { problem += " (\(error))" }
            let queued = up.reduce(UInt64(0)) { $0 &+ ($1.hintsQueuedPerTarget?[node.nodeID] ?? 0) }
            if queued > 0 {
                problem += "; \(queued) hints queued for it"
                if let oldest = up.compactMap({ $0.oldestHintAgeSeconds?[node.nodeID] }).max(), oldest >= 1 {
                    problem += ", the oldest \(Self.age(oldest)) old"
                }
            }
            problems.append(problem)
        }
        if !down.isEmpty, let map {
            problems += Self.quorumLosses(down: Set(down.map(\.nodeID)), map: map)
        }
        // An up node most of the others suspect: its RPC port may not answer them.
        for node in up {
            let suspecting = up.filter { $0.nodeID != node.nodeID && ($0.peersSuspected ?? []).contains(node.nodeID) }
            let reporting = up.filter { $0.nodeID != node.nodeID && $0.peersSuspected != nil }
            if !suspecting.isEmpty && suspecting.count * 2 > reporting.count {
                problems.append(
                    "\(node.nodeID) answers but \(suspecting.map(\.nodeID).joined(separator: ", ")) suspect it")
            }
        }
        let epochs = Set(up.compactMap(\.clusterEpoch))
        if epochs.count > 1, let newest = epochs.max() {
            let behind = up.filter { ($0.clusterEpoch ?? newest) < newest }.map(\.nodeID)
            problems.append(
                "\(behind.joined(separator: ", ")) behind on the cluster map (epoch \(newest) is the newest)")
        }
        if let change = up.compactMap(\.clusterChange).first(where: { $0 != "none" }) {
            let receiving = up.compactMap { node in node.transfer.map { "\(node.nodeID) \(Self.transfer($0))" } }
            var problem = "membership change in progress: \(change)"
            if !receiving.isEmpty { problem += " (\(receiving.joined(separator: "; ")))" }
            problems.append(problem)
        }
        let downIDs = Set(down.map(\.nodeID))
        var queuedForUp: [String: UInt64] = [:]
        for node in up {
            for (target, count) in node.hintsQueuedPerTarget ?? [:] where !downIDs.contains(target) && count > 0 {
                queuedForUp[target, default: 0] &+= count
            }
        }
        for (target, count) in queuedForUp.sorted(by: { $0.key < $1.key }) {
            problems.append("\(count) hints queued for \(target), which is up: being replayed")
        }
        for node in up {
            if let due = node.antiEntropyRangesDue, due > 0 {
                problems.append("\(node.nodeID) has \(due) ranges due for anti-entropy")
            }
            if let notAfter = node.certificateNotAfterSeconds {
                if notAfter <= nowSeconds {
                    problems.append("\(node.nodeID)'s certificate has expired")
                } else if notAfter - nowSeconds < UInt64(Self.certificateWarning.components.seconds) {
                    problems.append(
                        "\(node.nodeID)'s certificate expires in \((notAfter - nowSeconds) / 86_400) days")
                }
            }
            if let failure = node.storageFailure {
                problems.append("\(node.nodeID) refuses writes: \(failure)")
            } else if let free = node.diskFreeBytes, let reserve = node.diskReserveBytes, free < reserve {
                problems.append(
                    "\(node.nodeID) refuses writes: \(Self.mebibytes(free)) free on its disk, below its reserve of "
                        + "\(Self.mebibytes(reserve)) (--disk-reserve-bytes)")
            } else if let usage = Self.diskUsage(node), usage > Self.diskUsageWarning {
                problems.append("\(node.nodeID)'s disk is \(Int((usage * 100).rounded())) % full")
            }
            if let error = node.countersError {
                problems.append("\(node.nodeID) answers but not with its counters (\(error))")
            }
        }
        self.problems = problems
    }

    /// What the nodes down cost each keyspace, on its own ring with its own N: the most severe of
    /// "every replica is down for X % of keys", "reads and writes at QUORUM fail for X % of keys" and
    /// "writes at ALL fail for X % of keys" (X: of the tokens, so of the keys). Keyspaces that lose the
    /// same share share a line, naming them ("keyspaces default, sessions: …"; each part of a split
    /// keyspace on its own, "keyspace users (keys from n): …", X of that part's keys); the default
    /// keyspace alone is not named.
    package static func quorumLosses(down: Set<String>, map: ClusterMap) -> [String] {
        let named = map.partsByName.filter { $0.key != Keyspace.defaultName }.sorted { $0.key < $1.key }
        var losses: [(loss: String, keyspaces: [String])] = []
        for keyspace in [map.defaultKeyspace] + named.flatMap(\.value) {
            guard let ring = try? map.ring(of: keyspace), let loss = quorumLoss(ring: ring, down: down) else {
                continue
            }
            let range = map.keyRange(of: keyspace)
            var keys: [String] = []
            if !range.low.isEmpty { keys.append("from \(Keyspace.describe(key: range.low))") }
            if let high = range.high { keys.append("below \(Keyspace.describe(key: high))") }
            let name = keyspace.name + (keys.isEmpty ? "" : " (keys \(keys.joined(separator: " ")))")
            if let index = losses.firstIndex(where: { $0.loss == loss }) {
                losses[index].keyspaces.append(name)
            } else {
                losses.append((loss, [name]))
            }
        }
        return losses.map { loss, keyspaces in
            if keyspaces == [Keyspace.defaultName] { return loss }
            return "keyspace\(keyspaces.count > 1 ? "s" : "") \(keyspaces.joined(separator: ", ")): \(loss)"
        }
    }

    /// The most severe loss the `down` nodes cause on `ring` (at its N), nil when none.
    package static func quorumLoss(ring: Ring, down: Set<String>) -> String? {
        let n = ring.replicationFactor
        let quorum = n / 2 + 1
        let atAll = ring.share { list in list.contains { down.contains($0) } }
        let atQuorum = ring.share { list in list.count { down.contains($0) } > n - quorum }
        let atOne = ring.share { list in list.allSatisfy { down.contains($0) } }
        if atOne > 0 {
            return "every replica is down for \(Self.percent(atOne)) of keys: they cannot be read or written"
        } else if atQuorum > 0 {
            return "reads and writes at QUORUM fail for \(Self.percent(atQuorum)) of keys"
        } else if atAll > 0 {
            return "writes at ALL fail for \(Self.percent(atAll)) of keys"
        }
        return nil
    }

    /// "12 MiB" (rounded down; a node's number, any size).
    package static func mebibytes(_ bytes: UInt64) -> String {
        "\(bytes >> 20) MiB"
    }

    /// The share of its file system a node's data folder takes, above which it is a problem.
    package static let diskUsageWarning = 0.8

    /// Used / (used + free) of a node's data folder, as the alert `QuorumKVDiskUsage` computes it;
    /// nil when the node did not say.
    package static func diskUsage(_ status: NodeStatus) -> Double? {
        guard let used = status.diskUsedBytes, let free = status.diskFreeBytes else { return nil }
        let total = Double(used) + Double(free)
        return total > 0 ? Double(used) / total : nil
    }

    /// A node's transfer in words: "received 40 of 40 ranges", "receiving: 12 of 40 ranges, 42 %,
    /// about 3 min left", or what holds it up instead of the time left ("…, stalled: retrying 1:2
    /// from n3: timed out"); "starting" before there is a rate to go by.
    package static func transfer(_ progress: TransferProgress) -> String {
        let ranges = "\(progress.rangesDone) of \(progress.rangesTotal) ranges"
        if progress.isReceived { return "received \(ranges)" }
        var text = "receiving: \(ranges), \(Int((progress.share * 100).rounded(.down))) %"
        if let stalled = progress.stalled {
            text += ", stalled: \(stalled)"
        } else if let remaining = progress.remaining {
            let seconds = Double(remaining.components.seconds)
            text += ", about \(Self.age(seconds)) left"
        } else {
            text += ", starting"
        }
        return text
    }

    /// 45 s, 12 min, 3 h (a node's number, bounded before it becomes an `Int`).
    package static func age(_ seconds: Double) -> String {
        let seconds = seconds.isFinite ? min(max(0, seconds), 1e12) : 0
        switch seconds {
        case ..<120: return "\(Int(seconds)) s"
        case ..<7200: return "\(Int(seconds / 60)) min"
        default: return "\(Int(seconds / 3600)) h"
        }
    }

    private static func percent(_ share: Double) -> String {
        let value = share * 100
        return value < 1 ? "less than 1 %" : "\(Int(value.rounded())) %"
    }
}
