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

    private struct Entry: Sendable {
        let deadline: NIODeadline
        let id: UInt64
    }

    private struct State: Sendable {
        /// A binary min-heap by deadline; a cancelled timer's entry stays until it reaches the top.
        var heap: [Entry] = []
        /// The actions of the timers scheduled and neither fired nor cancelled (a cancelled one's
        /// action, and what it holds, is let go at once).
        var live: [UInt64: @Sendable () -> Void] = [:]
        var nextID: UInt64 = 0
        /// When the loop's task that counts fires, and its generation: a task armed earlier and
        /// superseded by an earlier deadline finds another generation here and does nothing.
        var armed: (deadline: NIODeadline, generation: UInt64)?
        var generation: UInt64 = 0

        /// Records a task for `deadline` as the one that counts, before it is scheduled (so that it
        /// cannot fire before it is recorded), and returns its generation.
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
            state.live[id] = action
            Self.push(Entry(deadline: deadline, id: id), into: &state.heap)
            if let armed = state.armed, armed.deadline <= deadline + Self.slack { return (Handle(id: id), nil) }
            return (Handle(id: id), state.arm(at: deadline))
        }
        if let generation { schedule(at: deadline, generation: generation) }
        return handle
    }

    /// Stops a timer from firing (nothing when it fired already).
    package func cancel(_ handle: Handle) {
        _ = state.withLock { $0.live.removeValue(forKey: handle.id) }
    }

    /// Timers scheduled and neither fired nor cancelled (for tests).
    package var pending: Int { state.withLock { $0.live.count } }

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
            while let first = state.heap.first, first.deadline <= now + Self.slack {
                let entry = Self.popFirst(from: &state.heap)
                if let action = state.live.removeValue(forKey: entry.id) { due.append(action) }
            }
            // Cancelled entries at the top need no task of their own.
            while let first = state.heap.first, state.live[first.id] == nil {
                _ = Self.popFirst(from: &state.heap)
            }
            guard let first = state.heap.first else { return (due, nil) }
            return (due, (first.deadline, state.arm(at: first.deadline)))
        }
        if let (deadline, generation) = next { schedule(at: deadline, generation: generation) }
        for action in due { action() }
    }

    private static func push(_ entry: Entry, into heap: inout [Entry]) {
        heap.append(entry)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].deadline < heap[parent].deadline else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private static func popFirst(from heap: inout [Entry]) -> Entry {
        heap.swapAt(0, heap.count - 1)
        let first = heap.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < heap.count, heap[left].deadline < heap[smallest].deadline { smallest = left }
            if right < heap.count, heap[right].deadline < heap[smallest].deadline { smallest = right }
            guard smallest != parent else { return first }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
