import KVCore
import Synchronization

/// The loop a batch's keys run in (`get(keys:)`, `put(_:)`): every key's operation started, the
/// requests they make at one moment sent together (`BatchLoop.dispatch`), the answers that arrived
/// together handled together, until every key has its outcome.
extension KVClient {
    /// Runs every operation of `loop` to its answer, then (in the background, as a single operation's
    /// hand-off) until each is settled: the outcomes, in order (nil: the caller's task was cancelled).
    func drive<Action: OperationAction>(
        _ loop: BatchLoop<Action>
    ) async -> [Action.Outcome?] {
        guard !closed.load(ordering: .relaxed) else { return Array(repeating: nil, count: loop.count) }
        var loop = loop
        for index in 0..<loop.count {
            perform(index, loop.start(index), in: &loop)
        }
        let events = loop.events
        await withTaskCancellationHandler {
            await untilAnswered(&loop)
        } onCancel: {
            events.finish()
        }
        let outcomes = loop.outcomes
        if (0..<loop.count).allSatisfy(loop.settled) {
            await end(loop)
        } else {
            let answered = loop
            inBackground {
                var loop = answered
                let events = loop.events
                let deadline = self.operationTimers.schedule(in: self.configuration.requestTimeout) { events.finish() }
                while !(0..<loop.count).allSatisfy(loop.settled), await self.nextWave(&loop) {}
                self.operationTimers.cancel(deadline)
                await self.end(loop)
            } ifClosing: {
                await self.end(answered)
            }
        }
        return outcomes
    }

    /// Sends what waits, then handles the next answers (all those that came together): until every
    /// operation answered, or the events end.
    private func untilAnswered<Action: OperationAction>(
        _ loop: inout BatchLoop<Action>
    ) async {
        while loop.answered < loop.count, await nextWave(&loop) {}
        // What the last answers led to (repairs, hints) leaves now.
        flush(&loop)
    }

    /// Sends the requests made so far, waits for an event and handles it with every other one already
    /// in; false when the events ended.
    private func nextWave<Action: OperationAction>(
        _ loop: inout BatchLoop<Action>
    ) async -> Bool {
        flush(&loop)
        guard let (index, event) = await loop.events.next() else { return false }
        handle(index, event, in: &loop)
        while let (index, event) = loop.events.nextIfReady() {
            handle(index, event, in: &loop)
        }
        return true
    }

    private func handle<Action: OperationAction>(
        _ index: Int, _ event: Action.Event, in loop: inout BatchLoop<Action>
    ) {
        // An operation that answered and has nothing left to do only keeps the clocks of late answers.
        if loop.outcomes[index] != nil, loop.settled(index) {
            loop.late(event)
            return
        }
        perform(index, loop.handle(index, event), in: &loop)
    }

    private func perform<Action: OperationAction>(
        _ index: Int, _ actions: [Action], in loop: inout BatchLoop<Action>
    ) {
        let events = loop.events
        for action in actions {
            switch action.step {
            case .complete(let outcome):
                if loop.outcomes[index] == nil { loop.answered += 1 }
                loop.outcomes[index] = outcome
            case .send(let send):
                loop.sends.append((index, send))
            case .timer(let after, let event):
                loop.timers.append(operationTimers.schedule(in: after) { _ = events.yield((index, event)) })
            }
        }
    }

    private func flush<Action: OperationAction>(
        _ loop: inout BatchLoop<Action>
    ) {
        guard !loop.sends.isEmpty else { return }
        let (events, late) = (loop.events, loop.late)
        loop.dispatch(loop.sends, loop.owner) { answered in
            if !events.yield(contentsOf: answered) {
                for (_, event) in answered { late(event) }
            }
        }
        loop.sends.removeAll()
    }

    /// Ends a batch's loop as `end(_:)` ends an operation's; its requests still waiting for room in a
    /// node's window are given up.
    private func end<Action: OperationAction>(_ loop: BatchLoop<Action>) async {
        batchWindows.drop(owner: loop.owner, KVClientError.unavailable("the batch ended before the request was sent"))
        for timer in loop.timers { operationTimers.cancel(timer) }
        loop.events.finish()
        while let (_, event) = await loop.events.next() {
            loop.late(event)
        }
    }
}

/// What a batch's loop keeps: every key's operation (through its closures), their events tagged with
/// the key's index, the requests made and not sent yet, and the outcomes so far.
struct BatchLoop<Action: OperationAction>: Sendable {
    typealias Send = Action.Send
    typealias Event = Action.Event
    typealias Outcome = Action.Outcome

    let count: Int
    let events = OperationEvents<(Int, Event)>()
    let start: @Sendable (Int) -> [Action]
    let handle: @Sendable (Int, Event) -> [Action]
    /// Sends a wave's requests as `owner`'s (the batch's requests in nodes' windows, `BatchWindows`);
    /// the keys' events of each answer are delivered together (`deliver`), so that the loop handles
    /// them as one wave instead of racing the delivery.
    let dispatch:
        @Sendable (
            [(index: Int, send: Send)], _ owner: ObjectIdentifier,
            _ deliver: @escaping @Sendable ([(Int, Event)]) -> Void
        ) -> Void
    let late: @Sendable (Event) -> Void
    let settled: @Sendable (Int) -> Bool
    var outcomes: [Outcome?]
    var answered = 0
    var sends: [(index: Int, send: Send)] = []
    var timers: [OperationTimers.Handle] = []
    /// Who the batch's requests waiting in nodes' windows belong to: its events, which live as long
    /// as the loop.
    var owner: ObjectIdentifier { ObjectIdentifier(events) }

    init(
        count: Int,
        start: @escaping @Sendable (Int) -> [Action],
        handle: @escaping @Sendable (Int, Event) -> [Action],
        dispatch:
            @escaping @Sendable (
                [(index: Int, send: Send)], _ owner: ObjectIdentifier,
                _ deliver: @escaping @Sendable ([(Int, Event)]) -> Void
            ) -> Void,
        late: @escaping @Sendable (Event) -> Void,
        settled: @escaping @Sendable (Int) -> Bool
    ) {
        self.count = count
        self.start = start
        self.handle = handle
        self.dispatch = dispatch
        self.late = late
        self.settled = settled
        self.outcomes = Array(repeating: nil, count: count)
    }
}
