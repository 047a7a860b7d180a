import Synchronization

/// The work an SDK client or a node goes on with after answering a caller — a write's hand-offs, a
/// map fetch, the pinger, connections retired a timeout later — as children of one task group, so
/// that nothing outlives its owner: `shutdown()` cancels every child still running and waits for
/// all of them.
///
/// The group runs in the one task `init` starts; `spawn` hands it a child through a stream. A child
/// can be awaited (`Handle.wait()`), and cancels itself when the owner shuts down.
public final class BackgroundWork: Sendable {
    public typealias Work = @Sendable () async -> Void

    private struct Item: Sendable {
        var work: Work
        var handle: Handle
    }

    private let items: AsyncStream<Item>.Continuation
    private let root: Task<Void, Never>
    private let accepting = Mutex(true)

    public init() {
        let (stream, continuation) = AsyncStream<Item>.makeStream()
        items = continuation
        root = Task {
            await withDiscardingTaskGroup { group in
                for await item in stream {
                    group.addTask {
                        await item.work()
                        item.handle.finish()
                    }
                }
            }
        }
    }

    /// An owner dropped without `shutdown()`: the group takes no more work and ends once its children
    /// have returned (its task would otherwise wait on the stream for ever).
    deinit {
        items.finish()
    }

    /// Starts `work` as a child of the group; nil once `shutdown()` began (the work does not run).
    @discardableResult
    public func spawn(_ work: @escaping Work) -> Handle? {
        accepting.withLock { accepting -> Handle? in
            guard accepting else { return nil }
            let handle = Handle()
            items.yield(Item(work: work, handle: handle))
            return handle
        }
    }

    /// Takes no more work, cancels the children still running (their `Task.isCancelled` turns true and
    /// their sleeps end) and waits until every one has returned.
    public func shutdown() async {
        accepting.withLock { $0 = false }
        items.finish()
        root.cancel()
        await root.value
    }

    /// One child: awaitable by any number of tasks.
    public final class Handle: Sendable {
        private struct State {
            var done = false
            var waiters: [CheckedContinuation<Void, Never>] = []
        }

        private let state = Mutex(State())

        init() {}

        /// Whether the child has returned.
        public var isDone: Bool { state.withLock(\.done) }

        /// Returns once the child has returned.
        public func wait() async {
            await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
                let done = state.withLock { state in
                    if !state.done { state.waiters.append(waiter) }
                    return state.done
                }
                if done { waiter.resume() }
            }
        }

        func finish() {
            let waiters = state.withLock { state in
                state.done = true
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter.resume() }
        }
    }
}
