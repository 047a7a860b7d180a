import NIOCore

/// A flush queued behind the tasks already waiting for an event loop, at most one at a time: what is
/// written until it runs (requests of many callers, answers coming back from the pool) leaves in one
/// socket write and one TLS record instead of one each. Owned by one handler, used on its event loop.
final class TickFlush {
    private var queued = false

    /// Whether a flush is queued: a caller that checks it first does not build the closure `queue`
    /// would drop (an allocation each time).
    var isQueued: Bool { queued }

    /// Queues `flush` on `eventLoop` unless a flush is queued already (which will take what is written
    /// meanwhile).
    func queue(on eventLoop: any EventLoop, _ flush: @escaping () -> Void) {
        guard !queued else { return }
        queued = true
        let bound = NIOLoopBound((tick: self, flush: flush), eventLoop: eventLoop)
        eventLoop.execute {
            bound.value.tick.queued = false
            bound.value.flush()
        }
    }
}

@available(*, unavailable)
extension TickFlush: Sendable {}
