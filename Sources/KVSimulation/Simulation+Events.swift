import KVCore
import KVNode
import KVStorage

extension Simulation {
    func handle(_ event: SimulationEvent) {
        switch event {
        case .deliver(let envelope):
            deliver(envelope)
        case .startOperation(let client):
            startOperation(client)
        case .writeTimer(let client, let operation, let event):
            feedWrite(client, operation: operation, event)
        case .readTimer(let client, let operation, let event):
            feedRead(client, operation: operation, event)
        case .hintTimeout(let client, let operation, let attempt, let fallback, let target):
            feedWrite(
                client, operation: operation,
                .hintFailed(nodes[fallback].id, for: target, attempt: attempt, reason: "no answer"))
        case .replayTick(let node):
            replayTick(node)
        case .antiEntropyTick(let node):
            antiEntropyTick(node)
        case .replayTimeout(let node, let target, let round, let id):
            feedReplay(node, target: target, round: round, .failed(id, reason: "no answer"))
        case .crash(let node):
            crash(node)
        case .restart(let node):
            let skewMax = faults.clockSkewMax.wholeMillisecondsClamped
            let jump = skewMax == 0 ? 0 : Int64(random.next() % skewMax)
            log("\(nodes[node].id) restarts, its clock set back \(jump) ms")
            nodes[node].restart(jumpMillis: jump)
            serveKeyspaces(node)
            if configuration.membershipProfile != nil { membership.forgetVolatileState(of: node) }
            checkDurability(afterCrashOf: node)
        case .partition:
            partition()
        case .membership(let event):
            handleMembership(event)
        case .mapWaitEnd(let node, let id):
            endMapWait(at: node, id: id)
        case .heal(let id):
            if let links = partitionsActive.removeValue(forKey: id) {
                blocked.subtract(links)
                log("partition \(id) heals")
            }
        }
    }

    // MARK: - Clients

    func startOperation(_ index: Int) {
        guard clients[index].remaining > 0, clients[index].current == nil else { return }
        clients[index].remaining -= 1
        let keyspace: UInt32
        let planned: PlannedOperation
        if clients[index].script.isEmpty {
            // With keyspaces, each operation picks one (drawn only then, so runs without draw as before);
            // the part of a split keyspace is the key's, by the client's map.
            let names = operationKeyspaceNames
            let name = names.count > 1 ? names[Int(random.next() % UInt64(names.count))] : Keyspace.defaultName
            planned = drawOperation(index, keyspace: name)
            keyspace = clients[index].keyspace
        } else {
            let scripted = clients[index].script.removeFirst()
            keyspace = scripted.keyspace
            clients[index].keyspace = keyspace
            planned = scripted.operation
        }
        let kind: HistoryOperation.Kind =
            switch planned {
            case .read: .read
            case .write(_, let tombstone, let value, _): tombstone ? .delete : .write(value: value)
            }
        clients[index].operation = history.invoke(
            client: clients[index].name, key: historyKey(planned.key, keyspace: keyspace), kind: kind, at: now)
        // Until acknowledged (`finishWrite`), nobody knows its version: it may expire at any time.
        if case .write(_, _, _, _?) = planned { history.expires(clients[index].operation, from: now) }
        if keyspace != Keyspace.defaultID { keyspaceOfOperation[clients[index].operation] = keyspace }
        clients[index].planned = planned
        clients[index].startedAt = now
        let epoch = configuration.membershipProfile == nil ? 0 : membership.clients[index].epoch
        clients[index].newerMapRetry = NewerMapRetry(epoch: epoch)
        clients[index].newerMapRetry.neverRetries = configuration.mutation == .skipNewerMapRetry
        startTry(index)
    }

    /// A random operation on one of the keys: a read, or a write (16 % of writes are deletes).
    /// Sets the client's keyspace to the part of keyspace `name` holding the key drawn.
    func drawOperation(_ index: Int, keyspace name: String) -> PlannedOperation {
        let skewMax = faults.clockSkewMax.wholeMillisecondsClamped
        if skewMax > 0 && random.chance(faults.backwardsJumpProbability) {
            let jump = Int64(random.next() % skewMax)
            clients[index].skewMillis -= jump
            log("\(clients[index].name) clock jumps back \(jump) ms")
        }
        let key = Array("k\(random.next() % UInt64(configuration.keys))".utf8)
        clients[index].keyspace =
            name == Keyspace.defaultName ? Keyspace.defaultID : part(of: name, key: key, client: index)
        let roll = random.next() % 100
        guard roll < 50 else {
            return .read(key: key, repair: random.chance(0.3) ? .blocking : .background)
        }
        let tombstone = configuration.deletes && roll < 8
        let sequence = configuration.operationsPerClient - clients[index].remaining
        // With keyspaces, a value names its keyspace (`checkValueKeyspace`).
        let prefix = valuesNameKeyspaces ? valuePrefix(ofKeyspace: clients[index].keyspace) : []
        var timeToLive: Duration?
        if !tombstone && configuration.expiringShare > 0 && random.chance(configuration.expiringShare) {
            let range = configuration.timeToLive.wholeMillisecondsClamped
            let span = range.upperBound - range.lowerBound
            timeToLive = .milliseconds(range.lowerBound + (span == .max ? random.next() : random.next() % (span + 1)))
        }
        return .write(
            key: key, tombstone: tombstone,
            value: tombstone ? [] : prefix + Array("\(clients[index].name)-\(sequence)".utf8), timeToLive: timeToLive)
    }

    /// Runs the current operation once, planned on the client's map (with membership; the fixed ring
    /// otherwise): a new `WriteOperation` or `ReadOperation`, whose messages and timers carry the try.
    func startTry(_ index: Int) {
        guard let planned = clients[index].planned else { return }
        let keyspace = clients[index].keyspace
        checkPlacement(ofKey: planned.key, client: index, keyspace: keyspace)
        let operationTry = clients[index].currentTry
        let client = clients[index].name
        let epoch = clients[index].newerMapRetry.epoch
        let map = configuration.membershipProfile == nil ? "" : " (epoch \(epoch))"
        switch planned {
        case .write(let key, let tombstone, let value, let timeToLive):
            let writeConfiguration: WriteOperation.Configuration
            do {
                writeConfiguration = try plannedWrite(client: index, key: key, keyspace: keyspace)
            } catch {
                operationFailed(index, failure: "\(error)")
                return
            }
            var operation = WriteOperation(configuration: writeConfiguration)
            let actions = operation.start(clock: &clients[index].clock, wallMillis: wallMillis(ofClient: index))
            let write = WriteTry(
                operation: operation, key: key, tombstone: tombstone, value: value, timeToLive: timeToLive,
                epoch: epoch, keyspace: keyspace)
            clients[index].current = .write(write)
            log(
                "\(client) \(operationTry) \(tombstone ? "delete" : "put") \(describe(key, keyspace: keyspace)) = \(String(decoding: value, as: UTF8.self))\(timeToLive.map { " ttl \($0)" } ?? "") on \(writeConfiguration.replicas)\(map)"
            )
            performWrite(index, operation: operationTry, write, actions)
        case .read(let key, let repair):
            // The client's ring: the fixed one, or its map's current ring as the keyspace sees it (reads
            // use it alone).
            let clientRing =
                configuration.membershipProfile == nil
                ? ring(ofKeyspace: keyspace) : membership.ring(of: viewed(membership.clients[index], as: keyspace))
            let replicas = clientRing.preferenceList(forKey: key)
            let plan = ReadPlan(
                level: readLevel(ofKeyspace: keyspace, replicas: replicas.count),
                deadline: configuration.requestDeadline, repair: repair)
            var readConfiguration: ReadOperation.Configuration
            do {
                readConfiguration = try plan.operation(replicas: replicas, on: clientRing)
            } catch {
                operationFailed(index, failure: "\(error)")
                return
            }
            readConfiguration.coordinator.speculationDelay = .milliseconds(60)
            var operation = ReadOperation(configuration: readConfiguration)
            let actions = operation.start(clock: &clients[index].clock)
            clients[index].current = .read(operation, key: key)
            log("\(client) \(operationTry) get \(describe(key, keyspace: keyspace)) from \(replicas)\(map)")
            performRead(index, actions)
        }
    }

    /// The client's write of `key`, planned by the production `WritePlan` on the client's map as the
    /// keyspace sees it (with membership: during a change, on both of its rings, as the SDK's
    /// `KeyspaceRoute` has them) or on the fixed ring.
    func plannedWrite(client index: Int, key: [UInt8], keyspace: UInt32 = Keyspace.defaultID) throws(QuorumError)
        -> WriteOperation.Configuration
    {
        var plan = WritePlan(
            level: writeLevel(ofKeyspace: keyspace), deadline: configuration.requestDeadline,
            supersededRetriesMax: configuration.supersededRetriesMax, hintedHandoff: configuration.hintedHandoff,
            sloppyQuorum: configuration.sloppyQuorum)
        plan.writesToCurrentRingOnly = configuration.mutation == .singleRingWrites
        plan.acknowledgesEarly = configuration.mutation == .acknowledgeWritesEarly
        let token = Token(key: key)
        guard configuration.membershipProfile != nil else {
            return try plan.operation(for: token, current: ring(ofKeyspace: keyspace))
        }
        let map = membership.clients[index]
        let view = viewed(map, as: keyspace)
        return try plan.operation(
            for: token, current: membership.ring(of: view), next: map.isChanging ? membership.nextRing(of: view) : nil)
    }

    /// The earliest simulated time at which any clock of the run may read `wallMillis` or later: a
    /// client's or a node's clock is skewed by at most `clockSkewMax`, drifts by at most
    /// `clockDriftMaxPPM`, and only ever jumps back. A value with that expiry may read as expired
    /// (by a client) or be purged (by a node) from then on, not before.
    func earliestTime(atWhichAClockReads wallMillis: UInt64) -> UInt64 {
        let start = worldClock.start
        let skewMax = faults.clockSkewMax.wholeMillisecondsClamped
        let driftMax = Double(max(0, faults.clockDriftMaxPPM)) / 1_000_000
        // Beyond any run's length (`simulatedTimeMax` is far below): never within the run.
        guard wallMillis < start &+ (1 << 50) else { return .max }
        guard wallMillis > start &+ skewMax else { return start }
        // Rounded down, so never later than the first moment such a clock reads it.
        return start + UInt64((Double(wallMillis - start - skewMax) / (1 + driftMax)).rounded(.down))
    }

    func wallMillis(ofClient index: Int) -> UInt64 {
        localMillis(
            now, start: worldClock.start, skewMillis: clients[index].skewMillis, driftPPM: clients[index].driftPPM)
    }

    /// Feeds a write's event to its try: the client's current one, or a completed one still handing
    /// hints off. Events of any other try are dropped.
    func feedWrite(_ index: Int, operation: OperationTry, _ event: WriteOperation.Event) {
        var write: WriteTry
        let isCurrent: Bool
        if clients[index].currentTry == operation, case .write(let current) = clients[index].current {
            write = current
            isCurrent = true
        } else if let handingOff = clients[index].handingOff[operation] {
            write = handingOff
            isCurrent = false
        } else {
            return
        }
        let actions = write.operation.handle(
            event, clock: &clients[index].clock, wallMillis: wallMillis(ofClient: index))
        if isCurrent {
            clients[index].current = .write(write)
        } else {
            clients[index].handingOff[operation] = write.operation.isSettled ? nil : write
        }
        performWrite(index, operation: operation, write, actions)
    }

    func feedRead(_ index: Int, operation: OperationTry, _ event: ReadOperation.Event) {
        guard clients[index].currentTry == operation, case .read(var read, let key) = clients[index].current else {
            return
        }
        let actions = read.handle(event, clock: &clients[index].clock)
        clients[index].current = .read(read, key: key)
        performRead(index, actions)
    }

    func performWrite(_ index: Int, operation: OperationTry, _ write: WriteTry, _ actions: [WriteOperation.Action]) {
        let key = write.key
        let id = operation.operation
        for action in actions {
            switch action.step {
            case .send(.put(let node, let version, let attempt)):
                let record = write.record(at: version)
                send(
                    Envelope(
                        client: index, node: nodeIndex(node), operation: id, attempt: attempt, retry: operation.retry,
                        payload: .put(key: key, record: record), epoch: write.epoch, keyspace: write.keyspace))
            case .send(.hint(let fallback, let target, let version, let attempt)):
                let record = write.record(at: version)
                log("\(clients[index].name) \(operation) hands \(target)'s \(version) to \(fallback)")
                send(
                    Envelope(
                        client: index, node: nodeIndex(fallback), operation: id, attempt: attempt,
                        retry: operation.retry,
                        payload: .hint(target: target, key: key, record: record), keyspace: write.keyspace))
                queue.push(
                    .hintTimeout(
                        client: index, operation: operation, attempt: attempt, fallback: nodeIndex(fallback),
                        target: target),
                    at: now + requestDeadlineMillis)
            case .timer(let after, let event):
                queue.push(
                    .writeTimer(client: index, operation: operation, event: event),
                    at: now + after.wholeMillisecondsClamped)
            case .complete(let result):
                // Hints of a completed write are handed off after the client moved on (or to a retry).
                if case .write(let current) = clients[index].current, !current.operation.isSettled {
                    clients[index].handingOff[operation] = current
                }
                finishWrite(index, key: key, keyspace: write.keyspace, result: result)
            }
        }
    }

    func performRead(_ index: Int, _ actions: [ReadOperation.Action]) {
        guard case .read(_, let key) = clients[index].current else { return }
        let operation = clients[index].currentTry
        let id = operation.operation
        let keyspace = clients[index].keyspace
        for action in actions {
            switch action.step {
            case .send(.get(let node)):
                send(
                    Envelope(
                        client: index, node: nodeIndex(node), operation: id, attempt: 0, retry: operation.retry,
                        payload: .get(key: key), keyspace: keyspace))
            case .timer(let after, let event):
                queue.push(
                    .readTimer(client: index, operation: operation, event: event),
                    at: now + after.wholeMillisecondsClamped)
            case .send(.repair(let node, let record)):
                statistics.repairs += 1
                log("\(clients[index].name) \(operation) repairs \(node) with \(record.version)")
                send(
                    Envelope(
                        client: index, node: nodeIndex(node), operation: id, attempt: Envelope.repairAttempt,
                        retry: operation.retry, payload: .put(key: key, record: record), keyspace: keyspace))
            case .complete(let outcome):
                finishRead(index, key: key, keyspace: keyspace, outcome: outcome)
            }
        }
    }

    func finishWrite(_ index: Int, key: [UInt8], keyspace: UInt32, result: WriteOperation.WriteResult) {
        let id = clients[index].operation
        let operation = clients[index].currentTry
        switch result {
        case .acknowledged(let version, let by):
            history.complete(id, outcome: .wrote(version), at: now)
            if case .write(_, _, _, let timeToLive?) = clients[index].planned {
                statistics.expiringWritesAcknowledged += 1
                let expiry = StoredRecord.expiry(of: version, timeToLive: timeToLive)
                history.expires(id, from: earliestTime(atWhichAClockReads: expiry))
            }
            acknowledgedWrites.append((key, version, id, keyspace))
            statistics.completed += 1
            if clients[index].late != nil { statistics.lateOperationsSucceeded += 1 }
            log("\(clients[index].name) \(operation) acknowledged \(version) by \(by)")
            checkAcknowledgedWrite(key: key, keyspace: keyspace, version: version, operation: id)
            finishOperation(index)
        case .failed(let error):
            tryFailed(index, failure: "failed: \(error)")
        case .conflict(let attempts):
            operationFailed(index, failure: "gave up after \(attempts) superseded attempts")
        case .beyondClockBound(let current):
            operationFailed(index, failure: "a replica holds \(current), beyond the client's clock bound")
        }
    }

    func finishRead(_ index: Int, key: [UInt8], keyspace: UInt32, outcome: ReadCoordinator.ReadOutcome) {
        let id = clients[index].operation
        switch outcome {
        case .answered(let result):
            let newest = result.newest
            // The SDK's rule (`ReadResult.live(atMillis:)`): a tombstone, or a value expired by this
            // client's clock, reads as deleted.
            let value = result.live(atMillis: wallMillis(ofClient: index))?.value
            if let newest, !newest.tombstone, value == nil { statistics.expiredReads += 1 }
            if let newest, !newest.tombstone {
                checkValueKeyspace(newest.value, read: key, in: keyspace, operation: id)
            }
            history.complete(id, outcome: .read(newest?.version, value: value), at: now)
            statistics.completed += 1
            if clients[index].late != nil { statistics.lateOperationsSucceeded += 1 }
            log(
                "\(clients[index].name) \(clients[index].currentTry) read \(newest.map { "\($0.version)" } ?? "nothing")"
            )
            finishOperation(index)
        case .failed(let error):
            tryFailed(index, failure: "read failed: \(error)")
        }
    }

    /// The operation failed for good: recorded as failed in the history (a violation for a late
    /// client, whose every operation must succeed).
    func operationFailed(_ index: Int, failure: String) {
        history.complete(clients[index].operation, outcome: .failed, at: now)
        statistics.failed += 1
        log("\(clients[index].name) \(clients[index].currentTry) \(failure)")
        if let late = clients[index].late, let planned = clients[index].planned {
            let what = if case .read = planned { "read" } else { "write" }
            violate(
                "client \(clients[index].name) started from epoch \(late.startEpoch) could not \(what) \(describe(planned.key, keyspace: clients[index].keyspace)) after the changes (\(clients[index].currentTry) on epoch \(clients[index].newerMapRetry.epoch)): \(failure)"
            )
        }
        finishOperation(index)
    }

    /// The longest an operation may take (a hang check): every try runs up to `supersededRetriesMax + 1`
    /// write attempts of a request deadline each, and before each newer-map retry the client waits up
    /// to a request deadline for the map it is fetching.
    var operationMillisMax: UInt64 {
        let deadline = requestDeadlineMillis
        let tryMillis = deadline * UInt64(configuration.supersededRetriesMax + 1)
        let retries = UInt64(configuration.membershipProfile == nil ? 0 : NewerMapRetry.retriesMax)
        return tryMillis * (retries + 1) + deadline * retries + 1
    }

    func finishOperation(_ index: Int) {
        let elapsed = now - clients[index].startedAt
        let bound = operationMillisMax
        if elapsed > bound {
            violate(
                "\(clients[index].name) op\(clients[index].operation) took \(elapsed) ms, past its bound of \(bound) ms"
            )
        }
        clients[index].current = nil
        clients[index].planned = nil
        clients[index].operation = -1
        if clients[index].remaining > 0 {
            queue.push(.startOperation(client: index), at: now + random.next() % 15)
        }
    }
}

func show(_ key: [UInt8]) -> String {
    String(decoding: key, as: UTF8.self)
}
