import KVCore
import KVRPC
import Synchronization

/// This client's batch requests in flight to each node, bounded per node by KVCore's
/// ``InFlightWindow`` (`KVClientConfiguration.batchKeysInFlightPerNode` keys): a send past the bound
/// waits here, first come first served per node, and goes once answers to earlier ones make room.
///
/// A node admits `Limits.storageQueueMax` storage jobs and answers `overloaded` past them; a client
/// running many batches at once would otherwise send all of them together and have some of its keys
/// refused. Only batch sends (`GetBatch`, `PutBatch`, `HintBatch`) come through here: single
/// requests do not pay for it.
///
/// Every send that enters either goes, and its sender calls `leave(_:)` once its answers (or its
/// failure, timeout or closed connection) are in, or is dropped: when its batch ends first
/// (`drop(owner:_:)`) or the client closes (`close()`). A dropped send's `drop` runs instead of its
/// `go`, so its keys get an answer and nobody waits for it.
final class BatchWindows: Sendable {
    /// A send admitted to `node`'s window; `leave(_:)` gives its room back.
    struct Claim: Sendable {
        let node: String
        let permit: InFlightWindow.Permit
    }

    /// A send waiting for room.
    private struct Waiting: Sendable {
        /// The batch it belongs to (`drop(owner:_:)`).
        let owner: ObjectIdentifier
        let keys: Int
        let since: ContinuousClock.Instant
        let go: @Sendable (Claim, _ waited: Duration) -> Void
        let drop: @Sendable (any Error) -> Void
    }

    private struct State: Sendable {
        var windows: [String: InFlightWindow] = [:]
        /// The sends waiting in each node's window, by permit.
        var waiting: [String: [InFlightWindow.Permit: Waiting]] = [:]
        var keysWaiting = 0
        var closed = false
    }

    private let keysMax: Int
    private let state = Mutex(State())
    private let recordWaiting: @Sendable (Int) -> Void

    /// - Parameters:
    ///   - keysMax: keys in flight to one node at once (a single larger send excepted).
    ///   - recordWaiting: told the keys waiting over all nodes whenever sends start or stop waiting.
    init(
        keysMax: Int = Limits.batchKeysInFlightPerNodeMax, recordWaiting: @escaping @Sendable (Int) -> Void = { _ in }
    ) {
        self.keysMax = keysMax
        self.recordWaiting = recordWaiting
    }

    /// Keys of the sends waiting for room, over all nodes.
    var keysWaiting: Int { state.withLock { $0.keysWaiting } }

    /// Keys of the sends in flight to `node`.
    func keysInFlight(to node: String) -> Int { state.withLock { $0.windows[node]?.keysInFlight ?? 0 } }

    /// A send of `keys` keys to `node` for the batch `owner`: `go` runs at once when they fit in the
    /// node's window, else once `leave(_:)` of earlier sends made room, told how long it waited;
    /// `drop` runs instead when the send is given up first, and at once when the client is closed.
    func enter(
        _ keys: Int, to node: String, owner: ObjectIdentifier,
        go: @escaping @Sendable (Claim, _ waited: Duration) -> Void, drop: @escaping @Sendable (any Error) -> Void
    ) {
        let now = ContinuousClock.now
        enum Entered {
            case admitted(InFlightWindow.Permit)
            case waiting
            case closed
        }
        let entered = state.withLock { state -> Entered in
            guard !state.closed else { return .closed }
            switch state.windows[node, default: InFlightWindow(keysMax: keysMax)].take(keys) {
            case .admitted(let permit):
                return .admitted(permit)
            case .waiting(let permit):
                state.waiting[node, default: [:]][permit] = Waiting(
                    owner: owner, keys: keys, since: now, go: go, drop: drop)
                state.keysWaiting += keys
                recordWaiting(state.keysWaiting)
                return .waiting
            }
        }
        switch entered {
        case .admitted(let permit): go(Claim(node: node, permit: permit), .zero)
        case .waiting: break
        case .closed: drop(RPCError.shutDown)
        }
    }

    /// Gives `claim`'s room back (its send was answered, failed or timed out; a second call changes
    /// nothing), and starts the sends waiting for `claim.node` that fit now, in order.
    func leave(_ claim: Claim) {
        let now = ContinuousClock.now
        let started = state.withLock { release([claim.permit], of: claim.node, now: now, in: &$0) }
        for go in started { go() }
    }

    /// Gives up the sends of the batch `owner` still waiting (the batch ended: nobody waits for their
    /// answers): each one's `drop` runs with `error`, and no room is freed for them, as they took none.
    func drop(owner: ObjectIdentifier, _ error: any Error) {
        let now = ContinuousClock.now
        let (dropped, started) = state.withLock { state -> ([Waiting], [@Sendable () -> Void]) in
            var dropped: [Waiting] = []
            var started: [@Sendable () -> Void] = []
            for node in Array(state.waiting.keys) {
                let given = state.waiting[node, default: [:]].filter { $0.value.owner == owner }
                guard !given.isEmpty else { continue }
                for permit in given.keys {
                    state.waiting[node]?[permit] = nil
                }
                state.keysWaiting -= given.values.reduce(0) { $0 + $1.keys }
                dropped += given.values
                started += release(Array(given.keys), of: node, now: now, in: &state)
            }
            if !dropped.isEmpty { recordWaiting(state.keysWaiting) }
            return (dropped, started)
        }
        for waiting in dropped { waiting.drop(error) }
        for go in started { go() }
    }

    /// Gives up every waiting send (each one's `drop` runs with `RPCError.shutDown`) and every later
    /// one: the client closes. Sends in flight still call `leave(_:)`, which then does nothing.
    func close() {
        let dropped = state.withLock { state -> [Waiting] in
            state.closed = true
            let dropped = state.waiting.values.flatMap(\.values)
            state.windows = [:]
            state.waiting = [:]
            state.keysWaiting = 0
            recordWaiting(0)
            return dropped
        }
        for waiting in dropped { waiting.drop(RPCError.shutDown) }
    }

    /// Ends the claims of `permits` in `node`'s window, and returns what starts the sends admitted
    /// by the room they freed (to run once the lock is let go).
    private func release(
        _ permits: [InFlightWindow.Permit], of node: String, now: ContinuousClock.Instant, in state: inout State
    ) -> [@Sendable () -> Void] {
        guard var window = state.windows[node] else { return [] }
        let admitted = window.release(permits)
        state.windows[node] = window.isIdle ? nil : window
        guard !admitted.isEmpty else { return [] }
        var started: [@Sendable () -> Void] = []
        for permit in admitted {
            guard let waiting = state.waiting[node]?.removeValue(forKey: permit) else {
                preconditionFailure("a window admitted a send nobody waits for")
            }
            state.keysWaiting -= waiting.keys
            let (claim, waited) = (Claim(node: node, permit: permit), now - waiting.since)
            started.append { waiting.go(claim, waited) }
        }
        if state.waiting[node]?.isEmpty == true { state.waiting[node] = nil }
        recordWaiting(state.keysWaiting)
        return started
    }
}
