import KVCore
package import NIOCore
import Synchronization

/// The timers of a client's operations (deadlines, hint hand-off, speculative reads): several per
/// operation, nearly all cancelled before they fire. Scheduled on an event loop one by one from a
/// task's thread, each cost two of the loop's tasks (schedule, cancel) and a wake-up; here they wait
/// in one heap, and the loop holds a single task, armed for the earliest of them.
///
/// A timer fires at most `slack` late: the armed task is not moved earlier for a timer due less
/// than `slack` before it, so that a steady stream of timers re-arms the loop rarely.
package final class OperationTimers: Sendable {
    /// How late a timer may fire, at most.
    static let slack = TimeAmount.milliseconds(1)

    /// One scheduled action; `cancel(_:)` takes its id.
    package struct Handle: Sendable, Hashable {
        fileprivate let id: UInt64
    }

    private struct State: Sendable {
        /// Timer ids by deadline (`NIODeadline.uptimeNanoseconds`); a cancelled timer's id stays
        /// until it reaches the front, or until cancelled ones outnumber the live ones (`compact`).
        var queue = TimeOrderedQueue<UInt64>()
        /// The deadlines and actions of the timers scheduled and neither fired nor cancelled (a
        /// cancelled one's action, and what it holds, is let go at once).
        var live: [UInt64: (time: UInt64, action: @Sendable () -> Void)] = [:]
        var nextID: UInt64 = 0
        /// When the loop's task that counts fires, and its generation: a task armed earlier and
        /// superseded by an earlier deadline finds another generation here and does nothing.
        var armed: (deadline: NIODeadline, generation: UInt64)?
        var generation: UInt64 = 0

        /// Records a task for `deadline` as the one that counts, before it is scheduled (so that it
        /// cannot fire before it is recorded), and returns its generation.
        /// Rebuilds the queue from the live timers once cancelled ids make up most of it. Nearly every
        /// operation cancels its deadline, so without this the queue would hold every operation of the
        /// last request timeout (hundreds of thousands under load), each push and pop a walk through
        /// it; rebuilt, it holds about the operations in flight, at an amortized constant cost.
        mutating func compact() {
            guard queue.count >= 64, queue.count > 4 * live.count else { return }
            queue = TimeOrderedQueue()
            for (id, timer) in live { queue.push(id, at: timer.time) }
        }

        mutating func arm(at deadline: NIODeadline) -> UInt64 {
            generation &+= 1
            armed = (deadline, generation)
            return generation
        }
    }

    private let eventLoop: any EventLoop
    private let state = Mutex(State())

    package init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Runs `action` on the event loop once `delay` has passed, unless cancelled first.
    package func schedule(in delay: Duration, _ action: @escaping @Sendable () -> Void) -> Handle {
        let deadline = NIODeadline.now() + TimeAmount(delay)
        let (handle, generation) = state.withLock { state -> (Handle, UInt64?) in
            state.nextID &+= 1
            let id = state.nextID
            state.live[id] = (deadline.uptimeNanoseconds, action)
            state.queue.push(id, at: deadline.uptimeNanoseconds)
            if let armed = state.armed, armed.deadline <= deadline + Self.slack { return (Handle(id: id), nil) }
            return (Handle(id: id), state.arm(at: deadline))
        }
        if let generation { schedule(at: deadline, generation: generation) }
        return handle
    }

    /// Stops a timer from firing (nothing when it fired already).
    package func cancel(_ handle: Handle) {
        state.withLock { state in
            guard state.live.removeValue(forKey: handle.id) != nil else { return }
            state.compact()
        }
    }

    /// Timers scheduled and neither fired nor cancelled (for tests).
    package var pending: Int { state.withLock { $0.live.count } }

    /// Ids in the queue, cancelled ones not dropped yet included (for tests).
    package var queued: Int { state.withLock { $0.queue.count } }

    private func schedule(at deadline: NIODeadline, generation: UInt64) {
        eventLoop.scheduleTask(deadline: deadline) { self.fire(generation) }
    }

    /// Runs every timer due (on the event loop) and arms the task for the next one; nothing when a
    /// later arming superseded this task.
    private func fire(_ generation: UInt64) {
        let now = NIODeadline.now()
        let (due, next) = state.withLock { state -> ([@Sendable () -> Void], (NIODeadline, UInt64)?) in
            guard state.armed?.generation == generation else { return ([], nil) }
            state.armed = nil
            var due: [@Sendable () -> Void] = []
            let dueBy = (now + Self.slack).uptimeNanoseconds
            while let first = state.queue.first, first.time <= dueBy {
                _ = state.queue.pop()
                if let timer = state.live.removeValue(forKey: first.event) { due.append(timer.action) }
            }
            // Cancelled timers at the front need no task of their own.
            while let first = state.queue.first, state.live[first.event] == nil {
                _ = state.queue.pop()
            }
            guard let first = state.queue.first else { return (due, nil) }
            let deadline = NIODeadline.uptimeNanoseconds(first.time)
            return (due, (deadline, state.arm(at: deadline)))
        }
        if let (deadline, generation) = next { schedule(at: deadline, generation: generation) }
        for action in due { action() }
    }
}
