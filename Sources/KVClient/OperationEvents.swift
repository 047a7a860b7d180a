import Synchronization

/// The events of one operation — its replicas' answers and its timers — fed from event-loop threads
/// and read, one at a time, by the operation's loop (`KVClient.run`).
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

    /// Hands `event` to the loop; false when `finish()` was called before (the event is not taken).
    package func yield(_ event: Event) -> Bool {
        let (taken, waiter) = state.withLock { state -> (Bool, UnsafeContinuation<Event?, Never>?) in
            guard !state.finished else { return (false, nil) }
            if let waiter = state.waiter {
                state.waiter = nil
                return (true, waiter)
            }
            state.buffer.append(event)
            return (true, nil)
        }
        waiter?.resume(returning: event)
        return taken
    }

    /// Hands `events` to the loop at once (the reader sees all of them or none); false when `finish()`
    /// was called before (none is taken).
    package func yield(contentsOf events: [Event]) -> Bool {
        guard let first = events.first else { return true }
        let (taken, waiter) = state.withLock { state -> (Bool, UnsafeContinuation<Event?, Never>?) in
            guard !state.finished else { return (false, nil) }
            let waiter = state.waiter
            state.waiter = nil
            state.buffer.append(contentsOf: waiter == nil ? events[...] : events.dropFirst())
            return (true, waiter)
        }
        waiter?.resume(returning: first)
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
