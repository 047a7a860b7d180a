import KVCluster
import KVCore
import Synchronization

/// What answered operations still do — hand-offs: a write's hints for the replicas that did not
/// acknowledge it, which it learns only after it answered — and how ``KVClient/close()`` waits for
/// them.
///
/// With N=3 and W=2 nearly every write answers before its third replica does, so this runs for
/// nearly every write. A single operation's rest therefore runs as callbacks on the threads its
/// events come from (its replicas' connections' event loops, the timers' loop), with no task of its
/// own: a task per write cost the SDK about a fifth of its CPU per put in a cluster (`perf`, issue
/// 21). A batch's rest, one per batch, stays a background task.
extension KVClient {
    /// The hand-offs still running, which ``close()`` waits for.
    struct HandingOff {
        var running = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
        /// Set once ``close()`` has waited for every hand-off: one that would begin after ends at once.
        var over = false

        /// Counts a hand-off in; false when the client is past waiting for them.
        mutating func begin() -> Bool {
            guard !over else { return false }
            running += 1
            return true
        }

        /// Counts a hand-off out; the waiters to resume when it was the last.
        mutating func end() -> [CheckedContinuation<Void, Never>] {
            running -= 1
            guard running == 0 else { return [] }
            defer { waiters = [] }
            return waiters
        }
    }

    /// Goes on with an answered operation until it is settled, for at most one more request timeout:
    /// each event is handled on the thread that delivers it (`OperationEvents.handOver(to:)`), and
    /// what it leads to (a hint) is sent from there. ``close()`` waits for it.
    func goOnUntilSettled<Run: OperationRun>(_ loop: OperationLoop<Run>) {
        guard handingOff.withLock({ $0.begin() }) else {
            // The client has closed: the hand-off ends here.
            end(loop)
            return
        }
        let rest = AnsweredOperation(loop)
        rest.setDeadline(operationTimers.schedule(in: configuration.requestTimeout) { self.end(rest) })
        let run = loop.run
        loop.events.handOver { event in
            let handled = rest.withLoop { loop in
                // The operation answered already: a second answer would be a bug of the operation.
                _ = self.perform(run.handle(event), in: &loop)
            }
            guard handled else {
                run.late(event)
                return
            }
            if run.isSettled { self.end(rest) }
        }
    }

    /// Ends an answered operation's rest (settled, or its deadline passed), once.
    private func end<Run: OperationRun>(_ rest: AnsweredOperation<Run>) {
        guard let (loop, deadline) = rest.take() else { return }
        if let deadline { operationTimers.cancel(deadline) }
        end(loop)
        endHandOff()
    }

    /// Runs `work` (a batch's rest) in a background task that ``close()`` waits for; when the client
    /// is closing, `ifClosing` instead.
    func inBackground(
        _ work: @escaping @Sendable () async -> Void, ifClosing: @escaping @Sendable () async -> Void
    ) {
        guard handingOff.withLock({ $0.begin() }) else {
            Task { await ifClosing() }
            return
        }
        let spawned = background.spawn {
            await work()
            self.endHandOff()
        }
        if spawned == nil {
            endHandOff()
            Task { await ifClosing() }
        }
    }

    private func endHandOff() {
        for waiter in handingOff.withLock({ $0.end() }) { waiter.resume() }
    }

    /// Returns once no hand-off runs, and makes those that would begin later end at once.
    func handOffsEnded() async {
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            let ended = handingOff.withLock { state in
                guard state.running == 0 else {
                    state.waiters.append(waiter)
                    return false
                }
                state.over = true
                return true
            }
            if ended { waiter.resume() }
        }
        // Resumed by the last hand-off's end: those begun meanwhile are waited for too.
        if !handingOff.withLock({ $0.over }) { await handOffsEnded() }
    }
}

/// An operation that answered and still has work (``KVClient/goOnUntilSettled(_:)``): its
/// loop, used by one event at a time, and its deadline; both taken once, when it ends.
final class AnsweredOperation<Run: OperationRun>: Sendable {
    private struct State: Sendable {
        var loop: OperationLoop<Run>?
        var deadline: OperationTimers.Handle?
    }

    private let state: Mutex<State>

    init(_ loop: OperationLoop<Run>) {
        state = Mutex(State(loop: loop))
    }

    /// Runs `body` on the loop; false, without running it, once the operation ended.
    func withLoop(_ body: (inout OperationLoop<Run>) -> Void) -> Bool {
        state.withLock { state in
            guard state.loop != nil else { return false }
            body(&state.loop!)
            return true
        }
    }

    /// Records the deadline's timer, which `take` hands out.
    func setDeadline(_ deadline: OperationTimers.Handle) {
        state.withLock { $0.deadline = deadline }
    }

    /// The loop and the deadline, the first time; nil after.
    func take() -> (OperationLoop<Run>, OperationTimers.Handle?)? {
        state.withLock { state in
            guard let loop = state.loop else { return nil }
            state.loop = nil
            return (loop, state.deadline)
        }
    }
}
