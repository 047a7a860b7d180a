/// When one worker's requests are meant to start, in an open-loop run at a fixed rate over all
/// workers.
///
/// The run's requests are slots every 1/`rate` seconds; worker `w` of `W` takes slots `w`, `w + W`,
/// `w + 2W`, … so that together the workers start one request each 1/`rate`, and each worker one per
/// `W`/`rate`. A worker sends a request at its intended start, or at once if it is already late
/// (the previous answer came after it): it never skips a slot and never sends two at once. Latency is
/// measured from the intended start (`RequestTiming.latency`), so the time a request waited behind
/// a slow one counts: the coordinated-omission correction of YCSB's `measurement.interval=intended`
/// and of wrk2. Offsets are whole nanoseconds from the run's start, computed from the slot number
/// (never summed), so they do not drift; no clock is inside.
package struct OpenLoopSchedule: Sendable {
    /// Requests per second over all workers.
    package let rate: Int
    /// The workers sharing the rate.
    package let workers: Int
    /// This worker, in `0..<workers`.
    package let worker: Int
    /// Requests of this worker scheduled so far (by `next()`).
    package private(set) var requestsScheduled = 0

    /// Worker `worker` of `workers`, sharing `rate` requests per second.
    package init(rate: Int, workers: Int, worker: Int) {
        precondition(rate > 0, "a rate of \(rate) requests per second")
        precondition(workers > 0 && (0..<workers).contains(worker), "worker \(worker) of \(workers)")
        self.rate = rate
        self.workers = workers
        self.worker = worker
    }

    /// The time between two intended starts of this worker (`workers`/`rate` seconds, to the nanosecond).
    package var interval: Duration {
        Self.offset(ofSlot: workers, rate: rate)
    }

    /// The intended start of this worker's request `index` (from 0), after the run's start.
    package func intendedStart(ofRequest index: Int) -> Duration {
        precondition(index >= 0, "request \(index)")
        return Self.offset(ofSlot: index * workers + worker, rate: rate)
    }

    /// The intended start of the next request, and the schedule moves past it.
    package mutating func next() -> Duration {
        defer { requestsScheduled += 1 }
        return intendedStart(ofRequest: requestsScheduled)
    }

    /// When a request intended for `intendedStart` is sent by a worker free (its previous answer in)
    /// from `ready`: at its intended time, or at once when the worker is behind.
    package static func sendTime(intendedStart: Duration, ready: Duration) -> Duration {
        max(intendedStart, ready)
    }

    /// Slot `slot`'s offset: `slot`/`rate` seconds, rounded down to the nanosecond.
    private static func offset(ofSlot slot: Int, rate: Int) -> Duration {
        .seconds(slot / rate) + .nanoseconds((slot % rate) * 1_000_000_000 / rate)
    }
}

/// The times of one request, as offsets from the run's start, and its latencies.
package struct RequestTiming: Sendable, Equatable {
    /// When the schedule meant it to start; nil in a closed loop (no schedule: it starts when sent).
    package var intendedStart: Duration?
    /// When it was sent.
    package var sent: Duration
    /// When its answer came (for a read-modify-write, the put's).
    package var completed: Duration

    /// A request's times.
    package init(intendedStart: Duration? = nil, sent: Duration, completed: Duration) {
        precondition(completed >= sent && intendedStart.map { $0 <= sent } ?? true, "times out of order")
        self.intendedStart = intendedStart
        self.sent = sent
        self.completed = completed
    }

    /// The latency a user of the system sees: from the intended start (the send in a closed loop) to
    /// the answer, including any wait behind earlier slow requests.
    package var latency: Duration { completed - (intendedStart ?? sent) }

    /// The service time: from the send to the answer (what an uncorrected benchmark reports).
    package var serviceTime: Duration { completed - sent }
}
