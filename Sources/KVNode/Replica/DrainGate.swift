import KVRPC
import KVWire
import Synchronization

/// What a node does while it drains before a restart (`Admin` drain, and SIGTERM): every new request
/// but Admin ones is refused with `shuttingDown`, which clients take as "this replica is away" (they
/// answer from the others and hand its writes off as hints), and the drain waits until the requests
/// already running have been answered.
///
/// Admin requests and cluster-map reads are neither counted nor refused, so that the drain itself,
/// `kvctl status` and a resume still reach a draining node, and a client can learn the map from it.
final class DrainGate: Sendable {
    private struct State {
        var draining = false
        var inFlight = 0
    }

    private let state = Mutex(State())

    /// How often a drain looks whether the requests in flight are done.
    static let pollInterval: Duration = .milliseconds(5)

    /// Counts a request in; refuses it with `shuttingDown` while draining. Call `leave()` after it.
    func enter() throws(RPCError) {
        let admitted = state.withLock { state in
            guard !state.draining else { return false }
            state.inFlight += 1
            return true
        }
        guard admitted else { throw RPCError.remote(.shuttingDown, message: "the node is draining") }
    }

    /// A request counted in by `enter()` was answered.
    func leave() {
        state.withLock { $0.inFlight -= 1 }
    }

    var isDraining: Bool { state.withLock(\.draining) }

    /// Refuses new requests from now on and waits until none is in flight, or `timeout` passed, or the
    /// task was cancelled. Returns the requests still in flight when it stopped waiting.
    func drain(timeout: Duration) async -> Int {
        state.withLock { $0.draining = true }
        let deadline = ContinuousClock.now + timeout
        while true {
            let left = state.withLock(\.inFlight)
            guard left > 0, ContinuousClock.now < deadline else { return left }
            do {
                try await Task.sleep(for: Self.pollInterval)
            } catch {
                return left
            }
        }
    }

    /// Takes requests again (`Admin` drain with resume=1).
    func resume() {
        state.withLock { $0.draining = false }
    }
}
