import Synchronization

/// The events of one operation — its replicas' answers and its timers — fed from event-loop threads
/// and read, one at a time, by the operation's loop (`KVClient.drive`); or, once the operation has
/// answered, handed to a handler on the threads that feed them (`handOver(to:)`), with no task
/// waiting for them.
///
/// It does what an `AsyncStream` with an unbounded buffer did, for less: the standard library's
/// stream storage is not specialized for the element type and looked up generic metadata at every
/// element. As with the stream, events yielded before `finish()` are still read after it, and an
/// event yielded after it is refused (the caller hands it to `late`).
///
/// Its waiter is an unsafe continuation (a checked one allocates a canary per wait, on every
/// operation's path): `State` hands the waiter out exactly once, under its lock, to `yield`, `finish`
/// or `next` itself, so it is resumed exactly once.
package final class OperationEvents<Event: Sendable>: Sendable {
    private struct State: Sendable {
        var buffer: [Event] = []
        /// The first event of `buffer` not read yet.
        var head = 0
        var waiter: UnsafeContinuation<Event?, Never>?
        var finished = false
        /// Set by `handOver(to:)`: every event goes to it, one at a time.
        var handler: (@Sendable (Event) -> Void)?
        /// Whether a thread is handing events to `handler` now (the others leave theirs in `buffer`).
        var handing = false

        /// With a handler and no thread handing events to it: the caller is to hand them
        /// (`handBuffered`).
        mutating func claimHanding() -> Bool {
            guard handler != nil, !handing else { return false }
            handing = true
            return true
        }

        mutating func pop() -> Event? {
            guard head < buffer.count else { return nil }
            let event = buffer[head]
            head += 1
            if head == buffer.count {
                buffer.removeAll(keepingCapacity: true)
                head = 0
            }
            return event
        }
    }

    private let state = Mutex(State())

    package init() {}

    /// Hands `event` to the loop (or to the handler: see `handOver(to:)`); false when `finish()` was
    /// called before (the event is not taken).
    package func yield(_ event: Event) -> Bool {
        let (taken, waiter, hands) = state.withLock { state -> (Bool, UnsafeContinuation<Event?, Never>?, Bool) in
            guard !state.finished else { return (false, nil, false) }
            if let waiter = state.waiter {
                state.waiter = nil
                return (true, waiter, false)
            }
            state.buffer.append(event)
            return (true, nil, state.claimHanding())
        }
        waiter?.resume(returning: event)
        if hands { handBuffered() }
        return taken
    }

    /// From now on every event, those waiting first, goes to `handler` instead of a reader: on the
    /// thread that yields it (this caller's for those waiting), one at a time and in order. An event
    /// yielded while the handler runs — by the handler itself (a send answered at once) or by another
    /// thread — waits, and is handed by the thread running the handler once it returns; so the
    /// handler never runs twice at once, and never blocks a thread that yields. Events are still
    /// refused after `finish()`; those taken before it are still handed. Called again, it replaces
    /// the handler for the events not handed yet. No reader may wait in `next()` when it is called,
    /// nor call it after.
    package func handOver(to handler: @escaping @Sendable (Event) -> Void) {
        let hands = state.withLock { state -> Bool in
            precondition(state.waiter == nil, "events handed over while a reader waits")
            state.handler = handler
            return state.claimHanding()
        }
        if hands { handBuffered() }
    }

    /// Hands the waiting events to the handler until none waits; only by the thread that claimed it.
    private func handBuffered() {
        while true {
            let next = state.withLock { state -> (Event, @Sendable (Event) -> Void)? in
                guard let handler = state.handler, let event = state.pop() else {
                    state.handing = false
                    return nil
                }
                return (event, handler)
            }
            guard let (event, handler) = next else { return }
            handler(event)
        }
    }

    /// Hands `events` to the loop at once (the reader sees all of them or none); false when `finish()`
    /// was called before (none is taken).
    package func yield(contentsOf events: [Event]) -> Bool {
        guard let first = events.first else { return true }
        let (taken, waiter, hands) = state.withLock { state -> (Bool, UnsafeContinuation<Event?, Never>?, Bool) in
            guard !state.finished else { return (false, nil, false) }
            let waiter = state.waiter
            state.waiter = nil
            state.buffer.append(contentsOf: waiter == nil ? events[...] : events.dropFirst())
            return (true, waiter, state.claimHanding())
        }
        waiter?.resume(returning: first)
        if hands { handBuffered() }
        return taken
    }

    /// Whether the reader waits for an event now (for tests).
    package var isWaiting: Bool { state.withLock { $0.waiter != nil } }

    /// No event is taken from now on; the loop reads those already given, then nil.
    package func finish() {
        let waiter = state.withLock { state -> UnsafeContinuation<Event?, Never>? in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
    }

    /// The next event if one is waiting, without waiting: a batch's loop takes the answers that came
    /// together before it sends what they lead to.
    package func nextIfReady() -> Event? {
        state.withLock { $0.pop() }
    }

    /// The next event, waiting for one; nil once finished and every event given was read. One reader.
    package func next() async -> Event? {
        if let event = state.withLock({ $0.pop() }) { return event }
        return await withUnsafeContinuation { continuation in
            let ready = state.withLock { state -> Event?? in
                if let event = state.pop() { return .some(event) }
                if state.finished { return .some(nil) }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}
