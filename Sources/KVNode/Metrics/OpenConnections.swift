import Synchronization

/// The connections a listener has open now, for a cap on them (`MetricsServer.connectionsMax`).
final class OpenConnections: Sendable {
    private let count = Atomic<Int>(0)

    /// Counts one more connection unless `max` are open: false, counting nothing, when they are.
    func admit(max: Int) -> Bool {
        guard count.wrappingAdd(1, ordering: .relaxed).newValue <= max else {
            count.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    /// How many are open.
    var current: Int { count.load(ordering: .relaxed) }

    /// One admitted connection closed.
    func leave() {
        count.wrappingSubtract(1, ordering: .relaxed)
    }
}
