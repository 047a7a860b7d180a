import Synchronization

/// How many of a connection's requests its task answers at once (`Limits.requestTasksPerConnectionMax`):
/// the connection's task waits for a slot before it starts the next, and reads nothing meanwhile.
///
/// An answer exists before it can be counted (`ConnectionBudget.admitOutbound`): a peer that sent a
/// thousand reads of a large value in one write had the storage threads produce answers faster than
/// the connection's tasks could count or refuse them, and a node held gigabytes of them at once.
final class TaskSlots: Sendable {
    private struct State {
        var free: Int
        var waiting: [CheckedContinuation<Void, Never>] = []
    }

    private let state: Mutex<State>

    init(_ count: Int) {
        precondition(count > 0, "at least one slot")
        state = Mutex(State(free: count))
    }

    /// Takes a slot, waiting for one to be given back if none is free.
    func take() async {
        let taken = state.withLock { state in
            guard state.free > 0 else { return false }
            state.free -= 1
            return true
        }
        if taken { return }
        await withCheckedContinuation { continuation in
            let taken = state.withLock { state in
                guard state.free > 0 else {
                    state.waiting.append(continuation)
                    return false
                }
                state.free -= 1
                return true
            }
            if taken { continuation.resume() }
        }
    }

    /// Gives a slot back: to the first waiter, if any.
    func give() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard !state.waiting.isEmpty else {
                state.free += 1
                return nil
            }
            return state.waiting.removeFirst()
        }
        next?.resume()
    }
}
