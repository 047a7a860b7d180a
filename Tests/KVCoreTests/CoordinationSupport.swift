import KVCore

/// One row of the N × R/W table: N replicas named `n1...nN`, of which `required` must answer.
struct QuorumShape: Sendable, CustomStringConvertible {
    var n: Int
    var required: Int

    var replicas: [String] { (1...n).map { "n\($0)" } }

    var description: String { "N=\(n) required=\(required)" }

    /// Every N in 1...5 with every required count in 1...N.
    static let all: [QuorumShape] = (1...5).flatMap { n in (1...n).map { QuorumShape(n: n, required: $0) } }
}

/// The seeded generator of the property tests.
typealias SeededGenerator = SplitMix64

func version(_ hlc: UInt64, writer: UInt64 = 1) -> Version {
    Version(hlc: hlc, writer: writer)
}

func record(_ hlc: UInt64, tombstone: Bool = false) -> StoredRecord {
    StoredRecord(version: version(hlc), tombstone: tombstone, value: tombstone ? [] : [UInt8(truncatingIfNeeded: hlc)])
}

extension WriteCoordinator.Action {
    var completion: WriteCoordinator.WriteOutcome? {
        if case .complete(let outcome) = self { return outcome }
        return nil
    }
}

extension ReadCoordinator.Action {
    var completion: ReadCoordinator.ReadOutcome? {
        if case .complete(let outcome) = self { return outcome }
        return nil
    }

    var sentTo: String? {
        if case .send(let node) = self { return node }
        return nil
    }
}

extension WriteCoordinator.WriteOutcome {
    var error: QuorumError? {
        if case .failed(let error) = self { return error }
        return nil
    }
}

extension ReadCoordinator.ReadOutcome {
    var error: QuorumError? {
        if case .failed(let error) = self { return error }
        return nil
    }

    var result: ReadCoordinator.ReadResult? {
        if case .answered(let result) = self { return result }
        return nil
    }
}
