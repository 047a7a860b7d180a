import KVClient
import KVCore
import KVWorkload
import NIOCore
import Synchronization

/// The request loops of one phase of a run (the warm-up or the measured part): `concurrency`
/// workers, each with one request in flight, in a closed loop (the next request when the last one
/// answered) or, with a target rate, on an open-loop schedule (`OpenLoopSchedule`).
///
/// Each worker draws its requests from a copy of one `RequestGenerator` with a random number
/// generator seeded from the run's seed, the phase and its number, so a seed replays every worker's
/// sequence of operations and keys (not their interleaving, which the servers' timing decides).
struct LoadDriver: Sendable {
    /// The keys, key names and insert sequence a run's phases share.
    final class Keys: Sendable {
        /// `PREFIX0` … for the loaded keys, made once (inserted keys are named when inserted).
        let loadedNames: [[UInt8]]
        let prefix: String
        private let inserts: Mutex<InsertSequence>

        init(count: Int, prefix: String) {
            loadedNames = (0..<count).map { Array("\(prefix)\($0)".utf8) }
            self.prefix = prefix
            inserts = Mutex(InsertSequence(loadedKeyCount: count))
        }

        /// The bytes of key `index`.
        func name(_ index: Int) -> [UInt8] {
            index < loadedNames.count ? loadedNames[index] : Array("\(prefix)\(index)".utf8)
        }

        /// How many keys exist: the loaded ones and every acknowledged insert before the first in flight.
        var existing: Int { inserts.withLock { $0.acknowledgedCount } }
        /// Keys inserted by the run so far (acknowledged or in flight).
        var inserted: Int { inserts.withLock { $0.issuedCount } - loadedNames.count }
        /// A key for a new insert.
        func issue() -> Int { inserts.withLock { $0.issue() } }
        /// The insert of `key` finished.
        func acknowledge(_ key: Int) { inserts.withLock { $0.acknowledge(key) } }
    }

    /// The clients and the executors the workers run on.
    let clients: BenchClients
    let level: KVConsistency?
    /// The value every write sends: one buffer, which each request's frame is written from without a copy.
    let value: ByteBuffer
    let keys: Keys
    let generator: RequestGenerator
    let concurrency: Int
    /// Requests per second over all workers (open loop); nil for a closed loop.
    let targetRate: Int?
    /// Requests (batches, with `batch` > 1) a worker makes at most.
    let perWorkerMax: Int
    /// Requests a worker draws and sends together (`perform(batch:)`); 1: each on its own.
    let batch: Int
    let seed: UInt64

    /// Runs phase `phase` for `duration` into `recorder`; returns the seconds it took.
    func run(phase: UInt64, duration: Duration, recorder: Recorder) async -> Double {
        var seeds = SplitMix64(seed: seed ^ (phase &* 0xD1B5_4A32_D192_ED03))
        let workerSeeds = (0..<concurrency).map { _ in seeds.next() }
        let started = ContinuousClock.now
        let deadline = started + duration
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<concurrency {
                group.addTask(executorPreference: clients.executor(forWorker: worker)) {
                    await loop(
                        worker: worker, seed: workerSeeds[worker], started: started, deadline: deadline,
                        recorder: recorder)
                }
            }
        }
        return (ContinuousClock.now - started) / .seconds(1)
    }

    private func loop(
        worker: Int, seed: UInt64, started: ContinuousClock.Instant, deadline: ContinuousClock.Instant,
        recorder: Recorder
    ) async {
        var random = SplitMix64(seed: seed)
        var requests = generator
        let client = clients.client(forWorker: worker)
        var schedule = targetRate.map { OpenLoopSchedule(rate: $0, workers: concurrency, worker: worker) }
        // Without inserts the keys never grow: no lock per request to ask how many there are.
        let inserts = generator.mix.share(of: .insert) > 0
        let loaded = keys.loadedNames.count
        for _ in 0..<perWorkerMax {
            var intendedStart: Duration?
            if var current = schedule {
                let intended = current.next()
                schedule = current
                guard started + intended < deadline else { return }
                // On time: wait for the slot. Late (the last answer came after it): send at once.
                try? await Task.sleep(until: started + intended)
                intendedStart = intended
            } else if ContinuousClock.now >= deadline {
                return
            }
            let drawn = (0..<batch).map { _ in
                requests.next(keyCount: inserts ? keys.existing : loaded, using: &random)
            }
            let sent = max(ContinuousClock.now - started, intendedStart ?? .zero)
            do {
                if batch == 1 {
                    try await perform(drawn[0], on: client)
                } else {
                    try await perform(batch: drawn, on: client)
                }
                let timing = RequestTiming(
                    intendedStart: intendedStart, sent: sent, completed: ContinuousClock.now - started)
                for request in drawn { recorder.record(request.operation, timing) }
            } catch {
                for request in drawn { recorder.recordError(request.operation, start: intendedStart ?? sent, error) }
            }
            if Task.isCancelled { return }
        }
    }

    /// Sends `requests` together: the reads as one `get(keys:)`, the updates as one `put(_:)` (both at
    /// once), the others one by one; a request's latency is the whole batch's.
    private func perform(batch requests: [Request], on client: KVKeyspace) async throws {
        var reads: [[UInt8]] = []
        var updates: [(key: [UInt8], value: ByteBuffer)] = []
        var others: [Request] = []
        for request in requests {
            switch request {
            case .read(let key): reads.append(keys.name(key))
            case .update(let key): updates.append((keys.name(key), value))
            case .insert, .readModifyWrite: others.append(request)
            }
        }
        async let read: [KVValue?] = reads.isEmpty ? [] : client.get(keys: reads, consistency: level)
        async let written: [KVVersion] = updates.isEmpty ? [] : client.put(updates, consistency: level)
        _ = try await (read, written)
        for request in others { try await perform(request, on: client) }
    }

    /// Sends `request`: a read-modify-write is a get and then a put of the same key.
    private func perform(_ request: Request, on client: KVKeyspace) async throws {
        switch request {
        case .read(let key):
            _ = try await client.get(keys.name(key), consistency: level)
        case .update(let key):
            try await client.put(keys.name(key), value: value, consistency: level)
        case .insert:
            let key = keys.issue()
            defer { keys.acknowledge(key) }
            try await client.put(keys.name(key), value: value, consistency: level)
        case .readModifyWrite(let key):
            let name = keys.name(key)
            _ = try await client.get(name, consistency: level)
            try await client.put(name, value: value, consistency: level)
        }
    }
}
