import KVCluster
import KVCore
import KVRPC
import KVWire
import NIOCore
import Synchronization

/// Batch operations: many keys read or written at once, each with its own quorum, version and
/// outcome, for the round trips of a few.
///
/// Every key runs the operation its own `get` or `put` runs (`readOperation`, `writeOperation`: the
/// same sans-I/O values, the same event conversions), but all of them in one loop (`BatchLoop`):
/// the requests the keys' operations make at one moment are grouped by replica and keyspace part
/// and go as one `GetBatch`, `PutBatch` or `HintBatch` per replica (at most `Limits.batchKeysMax`
/// keys and `Limits.batchAnswerBytesMax` bytes each), and the answers that arrive together are
/// handled together before what they lead to is sent. A batch of keys therefore costs a round trip
/// per replica for each wave (the first requests; the next replica after a failure; hints; repairs),
/// not one per key. A connection that negotiated protocol version 3 (a node not upgraded yet) gets
/// each key's own request instead, pipelined on the connection.
extension KVClient {
    /// `get(keys:)` in keyspace `keyspace`: each key's value, in order (nil: absent).
    ///
    /// - Throws: `invalidArgument` for a bad key or level (nothing sent); `unavailable` naming the
    ///   keys whose quorum failed, after every key was tried.
    func get(
        keys: [[UInt8]], consistency: ConsistencyLevel?, repair: ReadOperation.Repair?, in keyspace: String
    ) async throws -> [KVValue?] {
        try await metrics.measure(
            .batchGet, consistency: consistency ?? defaultLevels(of: keyspace).read,
            keyspace: { self.keyspaceLabel(keyspace) }
        ) {
            try await readBatch(keys, consistency: consistency, repair: repair, in: keyspace)
        }
    }

    private func readBatch(
        _ keys: [[UInt8]], consistency: ConsistencyLevel?, repair: ReadOperation.Repair?, in keyspace: String
    ) async throws -> [KVValue?] {
        for key in keys { try validate(key: key) }
        guard !keys.isEmpty else { return [] }
        let (topology, routes) = try await topologyAndRoutes(keyspace, keys: keys)
        let operations = Guarded(
            try keys.indices.map {
                try readOperation(
                    keys[$0], consistency: consistency, repair: repair, in: topology, route: routes[$0],
                    speculates: false)
            })
        let outcomes = await drive(
            BatchLoop(
                count: keys.count,
                start: { index in
                    operations.withLock { operations in
                        self.clock.withLock { operations[index].start(clock: &$0) }
                    }
                },
                handle: { index, event in
                    operations.withLock { operations in
                        self.clock.withLock { operations[index].handle(event, clock: &$0) }
                    }
                },
                dispatch: { sends, owner, deliver in
                    self.dispatchReads(
                        sends, keys: keys, routes: routes, in: topology, owner: owner, deliver: deliver)
                },
                late: { event in self.clock.withLock { event.observeClocks(&$0) } },
                settled: { _ in true }))
        return try await finish(keys, outcomes, made: topology, what: "read") { index, outcome in
            try self.readValue(outcome, of: keys[index], route: routes[index])
        } alone: { index in
            try await self.get(keys[index], consistency: consistency, repair: repair, in: keyspace)
        }
    }

    /// `put(_:)` of many keys in keyspace `keyspace`: each write's version, in order.
    ///
    /// - Throws: as `get(keys:)`; a key's write that was acknowledged stays written when another
    ///   key's fails.
    func put(
        _ entries: [(key: [UInt8], value: ByteBuffer)], consistency: ConsistencyLevel?, timeToLive: Duration?,
        in keyspace: String
    ) async throws -> [Version] {
        try await metrics.measure(
            .batchPut, consistency: consistency ?? defaultLevels(of: keyspace).write,
            keyspace: { self.keyspaceLabel(keyspace) }
        ) {
            try await writeBatch(entries, consistency: consistency, timeToLive: timeToLive, in: keyspace)
        }
    }

    private func writeBatch(
        _ entries: [(key: [UInt8], value: ByteBuffer)], consistency: ConsistencyLevel?, timeToLive: Duration?,
        in keyspace: String
    ) async throws -> [Version] {
        for (key, value) in entries {
            try validate(key: key)
            try validate(value: value, timeToLive: timeToLive)
        }
        guard !entries.isEmpty else { return [] }
        let keys = entries.map(\.key)
        let (topology, routes) = try await topologyAndRoutes(keyspace, keys: keys)
        let operations = Guarded(
            try keys.indices.map { try writeOperation(keys[$0], consistency: consistency, route: routes[$0]) })
        let records = entries.indices.map { index in
            RecordMaker(
                key: keys[index], value: entries[index].value, tombstone: false,
                timeToLive: timeToLive ?? routes[index].timeToLive)
        }
        let wallClockMillis = configuration.wallClockMillis
        let outcomes = await drive(
            BatchLoop(
                count: entries.count,
                start: { index in
                    let millis = wallClockMillis()
                    return operations.withLock { operations in
                        self.clock.withLock { operations[index].start(clock: &$0, wallMillis: millis) }
                    }
                },
                handle: { index, event in
                    let millis = wallClockMillis()
                    return operations.withLock { operations in
                        self.clock.withLock {
                            operations[index].handle(event, clock: &$0, wallMillis: millis)
                        }
                    }
                },
                dispatch: { sends, owner, deliver in
                    self.dispatchWrites(
                        sends, records: records, routes: routes, in: topology, owner: owner, deliver: deliver)
                },
                late: { event in self.clock.withLock { event.observeClocks(&$0) } },
                settled: { index in operations.withLock { $0[index].isSettled } }))
        return try await finish(keys, outcomes, made: topology, what: "write") { index, outcome in
            try self.writeVersion(outcome, of: keys[index], route: routes[index])
        } alone: { index in
            try await self.write(
                key: keys[index], value: entries[index].value, tombstone: false, consistency: consistency,
                timeToLive: timeToLive, in: keyspace)
        }
    }

    /// The map in use and each key's route in it (a split keyspace's keys may lie in several parts).
    private func topologyAndRoutes(_ keyspace: String, keys: [[UInt8]]) async throws -> (Topology, [KeyspaceRoute]) {
        var (topology, _) = try await topologyAndRoute(keyspace, key: keys[0])
        var routes: [KeyspaceRoute] = []
        routes.reserveCapacity(keys.count)
        for key in keys {
            guard let route = try topology.route(keyspace, forKey: key) else {
                // The map in use has no such part: the latest one may (as a single key's operation finds).
                let (latest, route) = try await topologyAndRoute(keyspace, key: key)
                if latest !== topology { return try await topologyAndRoutes(keyspace, keys: keys) }
                topology = latest
                routes.append(route)
                continue
            }
            routes.append(route)
        }
        return (topology, routes)
    }

    /// Each key's result from its operation's outcome. When keys failed as unavailable while a newer
    /// map was installed meanwhile (a replica refused with `notReplica`: the rule `onNewerMaps` and
    /// KVCore's `NewerMapRetry` apply to a single key), each of them runs once more alone, as its own
    /// `get` or `put`, which follows the newer maps. Throws, once every key was tried, the failure of
    /// the keys that still failed.
    private func finish<Outcome: Sendable, Result: Sendable>(
        _ keys: [[UInt8]], _ outcomes: [Outcome?], made topology: Topology, what: String,
        _ result: (Int, Outcome) throws -> Result, alone: @Sendable (Int) async throws -> Result
    ) async throws -> [Result] {
        var results: [Result?] = []
        var failures: [(index: Int, error: any Error)] = []
        results.reserveCapacity(keys.count)
        for (index, outcome) in outcomes.enumerated() {
            do {
                guard let outcome else { throw KVClientError.unavailable("the request was cancelled") }
                results.append(try result(index, outcome))
            } catch let error as KVClientError where error.isUnavailable {
                results.append(nil)
                failures.append((index, error))
            }
        }
        var stillFailed: [(index: Int, error: any Error)] = []
        if !failures.isEmpty {
            await follower.inProgress?.wait()
        }
        var retry = NewerMapRetry(epoch: topology.map.epoch)
        let mapMoved = failures.isEmpty ? false : retry.retry(onEpoch: try await currentTopology().map.epoch)
        for (index, error) in failures {
            guard mapMoved else {
                stillFailed.append((index, error))
                continue
            }
            do {
                results[index] = try await alone(index)
            } catch {
                stillFailed.append((index, error))
            }
        }
        guard let first = stillFailed.first else { return results.map { $0! } }
        throw KVClientError.unavailable(
            "the \(what) of \(stillFailed.count) of \(keys.count) keys failed (\(Self.describe(keys[first.index])): \(first.error))"
        )
    }

    // MARK: - Sending a wave

    /// Sends the requests the reads made at one moment: `Get`s grouped by replica and keyspace part
    /// into `GetBatch`es, repairs as each key's own `Put`.
    private func dispatchReads(
        _ sends: [(index: Int, send: ReadOperation.Send)], keys: [[UInt8]], routes: [KeyspaceRoute],
        in topology: Topology, owner: ObjectIdentifier,
        deliver: @escaping @Sendable ([(Int, ReadOperation.Event)]) -> Void
    ) {
        var gets: [BatchTarget: [Int]] = [:]
        for (index, send) in sends {
            switch send {
            case .get(let node):
                gets[BatchTarget(node: node, keyspace: routes[index].id), default: []].append(index)
            case .repair(let node, let record):
                sendRepair(keys[index], record, to: node, in: topology, route: routes[index]) {
                    deliver([(index, $0)])
                }
            }
        }
        for (target, indices) in gets {
            for chunk in BatchSplit.chunks(indices, bytes: { _ in 0 }) {
                send(
                    chunk, to: target.node, in: topology, owner: owner,
                    batch: .getBatchRequest(
                        GetBatchRequest(keyspace: target.keyspace, keys: chunk.map { ByteBuffer(bytes: keys[$0]) })),
                    alone: { routes[$0].getRequest(keys[$0]) }, split: BatchSplit.gets
                ) { answers in
                    deliver(answers.map { index, answer in (index, self.readEvent(target.node, answer, started: nil)) })
                }
            }
        }
    }

    /// One key's `Put` in a wave, to one replica.
    private struct BatchedPut: Sendable {
        let index: Int
        let record: Record
        let attempt: Int
    }

    /// One key's hint in a wave, to one fallback. A key may hand two replicas' writes to the same
    /// fallback in one wave: each is an item of its own.
    private struct BatchedHint: Sendable {
        let index: Int
        let target: String
        let record: Record
        let attempt: Int
    }

    /// Sends the requests the writes made at one moment: `Put`s grouped by replica and keyspace part
    /// into `PutBatch`es, hints grouped by fallback into `HintBatch`es.
    private func dispatchWrites(
        _ sends: [(index: Int, send: WriteOperation.Send)], records: [RecordMaker],
        routes: [KeyspaceRoute], in topology: Topology, owner: ObjectIdentifier,
        deliver: @escaping @Sendable ([(Int, WriteOperation.Event)]) -> Void
    ) {
        var puts: [BatchTarget: [BatchedPut]] = [:]
        var hints: [BatchTarget: [BatchedHint]] = [:]
        for (index, send) in sends {
            let keyspace = routes[index].id
            switch send {
            case .put(let node, let version, let attempt):
                puts[BatchTarget(node: node, keyspace: keyspace), default: []].append(
                    BatchedPut(index: index, record: records[index](version), attempt: attempt))
            case .hint(let fallback, let target, let version, let attempt):
                hints[BatchTarget(node: fallback, keyspace: keyspace), default: []].append(
                    BatchedHint(index: index, target: target, record: records[index](version), attempt: attempt))
            }
        }
        let epoch = topology.map.epoch
        for (target, writes) in puts {
            for chunk in BatchSplit.chunks(writes, bytes: { $0.record.bytes }) {
                send(
                    chunk, to: target.node, in: topology, owner: owner,
                    batch: .putBatchRequest(
                        PutBatchRequest(
                            keyspace: target.keyspace, epoch: epoch,
                            puts: chunk.map {
                                BatchPut(
                                    key: $0.record.key, value: $0.record.value, version: $0.record.version,
                                    tombstone: $0.record.tombstone, expiresAtMillis: $0.record.expiresAtMillis)
                            })),
                    alone: { routes[$0.index].putRequest($0.record, epoch: epoch) }, split: BatchSplit.puts
                ) { answers in
                    deliver(
                        answers.map { put, answer in
                            (put.index, self.writeEvent(target.node, attempt: put.attempt, answer, started: nil))
                        })
                }
            }
        }
        for (fallback, handed) in hints {
            for chunk in BatchSplit.chunks(handed, bytes: { $0.record.bytes }) {
                send(
                    chunk, to: fallback.node, in: topology, owner: owner,
                    batch: .hintBatchRequest(
                        HintBatchRequest(
                            keyspace: fallback.keyspace,
                            hints: chunk.map { BatchHint(target: $0.target, record: $0.record) })),
                    alone: { routes[$0.index].hintRequest(for: $0.target, $0.record) }, split: BatchSplit.hints
                ) { answers in
                    deliver(
                        answers.map { hint, answer in
                            (hint.index, self.hintEvent(fallback.node, for: hint.target, attempt: hint.attempt, answer))
                        })
                }
            }
        }
    }

    /// Sends `items` to `node` for the batch `owner` once they fit in the node's window of batch keys
    /// in flight (`BatchWindows`): `batch` where the connection negotiated a version with batches,
    /// each item's `alone` request where it did not; hands each item's answer, in the shape of its own
    /// request's (`split` turns a batch answer into them, in order), to `answered`.
    ///
    /// A send that waited for room has that much less time to be answered, as its keys' operations
    /// started before it waited (none waited a whole request timeout: it fails at once); a send given
    /// up while waiting (its batch ended, the client closed) answers each item with that failure.
    private func send<Item: Sendable>(
        _ items: [Item], to node: String, in topology: Topology, owner: ObjectIdentifier, batch: Message,
        alone: @escaping @Sendable (Item) -> Message,
        split: @escaping @Sendable (Message, Int) -> [Result<Message, any Error>]?,
        answered: @escaping @Sendable ([(Item, Result<Message, any Error>)]) -> Void
    ) {
        let fail: @Sendable (any Error) -> Void = { error in answered(items.map { ($0, .failure(error)) }) }
        let requestTimeout = configuration.requestTimeout
        batchWindows.enter(items.count, to: node, owner: owner) { claim, waited in
            guard waited < requestTimeout else {
                self.batchWindows.leave(claim)
                fail(RPCError.deadlineExceeded(requestTimeout))
                return
            }
            self.send(
                items, to: node, in: topology, timeout: requestTimeout - waited, batch: batch, alone: alone,
                split: split
            ) { answers in
                self.batchWindows.leave(claim)
                answered(answers)
            }
        } drop: {
            fail($0)
        }
    }

    /// Sends `items` to `node` now, each request with `timeout` to answer, as `send(_:to:in:owner:...)`
    /// describes; `answered` is called once, whatever happens to the requests.
    private func send<Item: Sendable>(
        _ items: [Item], to node: String, in topology: Topology, timeout: Duration, batch: Message,
        alone: @escaping @Sendable (Item) -> Message,
        split: @escaping @Sendable (Message, Int) -> [Result<Message, any Error>]?,
        answered: @escaping @Sendable ([(Item, Result<Message, any Error>)]) -> Void
    ) {
        let batched = Mutex(false)
        send(count: items.count, to: node, in: topology, timeout: timeout) { connection in
            guard connection.version >= batch.type.protocolVersionMin else { return items.map(alone) }
            batched.withLock { $0 = true }
            return [batch]
        }.whenComplete { completed in
            // `send(count:)` hands every failure back as an answer; should its future fail all the
            // same, each item is answered with that failure (and the window's room is given back).
            var results: [Result<Message, any Error>]
            do {
                results = try completed.get()
            } catch {
                results = Array(repeating: .failure(error), count: items.count)
            }
            if batched.withLock({ $0 }), let answer = results.first {
                switch answer {
                case .success(let message):
                    let split =
                        split(message, items.count)
                        ?? Array(
                            repeating: .failure(
                                RPCError.protocolViolation("answered \(batch.type) with \(message.type)")),
                            count: items.count)
                    // A key refused as no longer kept there says a newer map exists, as its own request
                    // would (`send(count:)` saw only the batch's answer).
                    results = split.map { self.observe($0, from: node, in: topology) }
                case .failure:
                    results = Array(repeating: answer, count: items.count)
                }
            }
            answered(Array(zip(items, results)))
        }
    }
}

/// Where a batch goes: a replica, and the keyspace part its keys belong to.
struct BatchTarget: Hashable {
    let node: String
    let keyspace: UInt32
}

extension Record {
    /// The key's and value's bytes: what a batch's chunks are cut by.
    fileprivate var bytes: Int { key.readableBytes + value.readableBytes }
}
