public import NIOCore

/// A task executor that runs its jobs on one NIO event loop.
///
/// A client whose connections run on that loop (``KVClientConfiguration/eventLoopGroup``) and a task
/// that prefers this executor (`withTaskExecutorPreference`, `addTask(executorPreference:)`) keep a
/// request, its answer and the task that waits for it on one thread: no thread is woken to write
/// the request, and none to resume the task. kvbench measured 21 → 13–14 µs of its CPU per get with one
/// node (docs/sdk.md, "Event loops"). The loop then runs the task's own work between its I/O, so
/// give it work that does not block (as everything on an event loop). Batches (`get(keys:)`,
/// `put(_:)`) gain as well (four nodes, 100-key gets: 54,000–72,000 keys/s against 44,000 on the
/// global executor).
public final class KVEventLoopExecutor: TaskExecutor {
    /// The loop the jobs run on.
    public let eventLoop: any EventLoop

    /// An executor that runs its jobs on `eventLoop`.
    public init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Runs `job` on the loop, after what the loop is doing now.
    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }

    /// This executor, as the runtime refers to it.
    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }
}
