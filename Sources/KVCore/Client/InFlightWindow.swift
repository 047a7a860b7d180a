/// The keys one client has in flight to one node, and the requests waiting for room: a request goes
/// while its keys fit under `keysMax`, else it waits, first come first served, until answers to
/// earlier requests free the room. Sans-I/O: the SDK's batch sends (`KVClient`'s `BatchWindows`) keep
/// one per node and do the sending and waking.
///
/// Rules:
/// - A request is admitted when no request waits before it and its keys fit; one that does not fit
///   even alone (more than `keysMax` keys) is admitted when nothing else is in flight, so it is not
///   stuck forever.
/// - Waiting requests are admitted in the order they asked, never one overtaking another.
/// - A permit is released once: a held one's keys leave the window; a waiting one leaves the queue
///   having freed nothing; one released already (or never given) changes nothing. Counting permits,
///   not keys, is what makes a second release of the same request unable to free room twice.
///
/// The queue itself is not bounded here: each waiting request belongs to a batch call in progress,
/// which holds its keys already; the caller's own concurrency bounds it.
public struct InFlightWindow: Sendable {
    /// One request's claim on the window, held or waiting; `release(_:)` ends it.
    public struct Permit: Hashable, Sendable {
        fileprivate let id: UInt64
    }

    /// What `take(_:)` decided: the request goes now, or waits to be handed back by a later `release`.
    public enum Admission: Hashable, Sendable {
        case admitted(Permit)
        case waiting(Permit)
    }

    /// The most keys in flight at once (a single larger request excepted).
    public let keysMax: Int
    /// The keys of the requests admitted and not released.
    public private(set) var keysInFlight = 0
    /// The keys of the requests waiting.
    public private(set) var keysWaiting = 0
    private var held: [Permit: Int] = [:]
    /// Waiting requests in the order they asked.
    private var waiting: [(permit: Permit, keys: Int)] = []
    private var nextID: UInt64 = 0

    /// - Parameter keysMax: at least 1.
    public init(keysMax: Int) {
        precondition(keysMax >= 1, "a window admits at least one key")
        self.keysMax = keysMax
    }

    /// True when nothing is in flight and nothing waits.
    public var isIdle: Bool { held.isEmpty && waiting.isEmpty }

    /// Asks room for a request of `keys` keys (at least one).
    public mutating func take(_ keys: Int) -> Admission {
        precondition(keys >= 1, "a request has at least one key")
        nextID += 1
        let permit = Permit(id: nextID)
        guard waiting.isEmpty, fits(keys) else {
            waiting.append((permit, keys))
            keysWaiting += keys
            return .waiting(permit)
        }
        held[permit] = keys
        keysInFlight += keys
        return .admitted(permit)
    }

    /// Ends `permit`'s claim (an answer, a failure, a timeout, a request given up while waiting);
    /// returns the waiting requests admitted now, in the order they asked.
    public mutating func release(_ permit: Permit) -> [Permit] {
        release([permit])
    }

    /// Ends every claim of `permits` before admitting anything: a request given up with the others
    /// is never admitted by the room one of them frees. Returns the waiting requests admitted now,
    /// in the order they asked.
    public mutating func release(_ permits: [Permit]) -> [Permit] {
        var changed = false
        for permit in permits {
            if let keys = held.removeValue(forKey: permit) {
                keysInFlight -= keys
                changed = true
            } else if let position = waiting.firstIndex(where: { $0.permit == permit }) {
                keysWaiting -= waiting.remove(at: position).keys
                changed = true
            }
        }
        guard changed else { return [] }
        var admitted: [Permit] = []
        while let first = waiting.first, fits(first.keys) {
            waiting.removeFirst()
            keysWaiting -= first.keys
            held[first.permit] = first.keys
            keysInFlight += first.keys
            admitted.append(first.permit)
        }
        assert(keysInFlight >= 0 && keysWaiting >= 0, "a window counted keys it never took")
        assert(held.isEmpty == (keysInFlight == 0), "a window's count is not its permits' keys")
        return admitted
    }

    /// Whether a request of `keys` keys may go now, queue aside.
    private func fits(_ keys: Int) -> Bool {
        keysInFlight == 0 || keysInFlight + keys <= keysMax
    }
}
