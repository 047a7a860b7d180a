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
        case .writeDeadline(let client, let operation, let attempt):
            feedWrite(client, operation: operation, .deadlinePassed(attempt: attempt))
        case .readDeadline(let client, let operation):
            feedRead(client, operation: operation, .deadlinePassed)
        case .readSpeculation(let client, let operation):
            feedRead(client, operation: operation, .speculationDue)
        case .writeHintDue(let client, let operation, let attempt):
            feedWrite(client, operation: operation, .hintDue(attempt: attempt))
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
            let skewMax = configuration.faults.clockSkewMaxMillis
            let jump = skewMax == 0 ? 0 : Int64(random.next() % skewMax)
            log("\(nodes[node].id) restarts, its clock set back \(jump) ms")
            nodes[node].restart(jumpMillis: jump)
            if configuration.membershipProfile != nil { membership.forgetVolatileState(of: node) }
            checkDurability(afterCrashOf: node)
        case .partition:
            partition()
        case .membership(let event):
            handleMembership(event)
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
        let faults = configuration.faults
        if faults.clockSkewMaxMillis > 0 && random.chance(faults.backwardsJumpProbability) {
            let jump = Int64(random.next() % faults.clockSkewMaxMillis)
            clients[index].skewMillis -= jump
            log("\(clients[index].name) clock jumps back \(jump) ms")
        }
        let key = Array("k\(random.next() % UInt64(configuration.keys))".utf8)
        let replicas =
            configuration.membershipProfile == nil
            ? replicas(of: key) : membership.ring(of: membership.clients[index]).preferenceList(forKey: key)
        let roll = random.next() % 100
        let client = clients[index].name
        let sequence = configuration.operationsPerClient - clients[index].remaining
        if roll < 50 {
            let tombstone = roll < 8
            let value = tombstone ? [] : Array("\(client)-\(sequence)".utf8)
            let id = history.invoke(
                client: client, key: key, kind: tombstone ? .delete : .write(value: value), at: now)
            var writeConfiguration =
                configuration.membershipProfile == nil
                ? WriteOperation.Configuration(
                    replicas: replicas, required: min(configuration.writeQuorum, replicas.count),
                    deadline: configuration.requestDeadline, supersededRetriesMax: configuration.supersededRetriesMax,
                    fallbacks: configuration.hintedHandoff ? ring.fallbacks(for: Token(key: key)) : [],
                    hintsCountTowardQuorum: configuration.hintedHandoff && configuration.sloppyQuorum)
                : writeConfigurationDuringChanges(client: index, key: key)
            writeConfiguration.acknowledgesEarly = configuration.mutation == .acknowledgeWritesEarly
            var operation = WriteOperation(configuration: writeConfiguration)
            let actions = operation.start(clock: &clients[index].clock, wallMillis: wallMillis(ofClient: index))
            clients[index].current = .write(operation, key: key, tombstone: tombstone, value: value)
            clients[index].operation = id
            clients[index].startedAt = now
            log(
                "\(client) op\(id) \(tombstone ? "delete" : "put") \(show(key)) = \(String(decoding: value, as: UTF8.self)) on \(writeConfiguration.replicas)"
            )
            performWrite(
                index, id: id, HandingOff(operation: operation, key: key, tombstone: tombstone, value: value), actions)
        } else {
            let id = history.invoke(client: client, key: key, kind: .read, at: now)
            var operation = ReadOperation(
                configuration: ReadOperation.Configuration(
                    replicas: replicas, required: min(configuration.readQuorum, replicas.count),
                    deadline: configuration.requestDeadline, speculationDelay: .milliseconds(60),
                    repair: random.chance(0.3) ? .blocking : .background))
            let actions = operation.start(clock: &clients[index].clock)
            clients[index].current = .read(operation, key: key)
            clients[index].operation = id
            clients[index].startedAt = now
            log("\(client) op\(id) get \(show(key)) from \(replicas)")
            performRead(index, actions)
        }
    }

    func wallMillis(ofClient index: Int) -> UInt64 {
        localMillis(
            now, start: worldClock.start, skewMillis: clients[index].skewMillis, driftPPM: clients[index].driftPPM)
    }

    /// Feeds a write's event to its operation: the client's current one, or a completed one still
    /// handing hints off.
    func feedWrite(_ index: Int, operation id: Int, _ event: WriteOperation.Event) {
        var write: HandingOff
        if clients[index].operation == id,
            case .write(let operation, let key, let tombstone, let value) = clients[index].current
        {
            write = HandingOff(operation: operation, key: key, tombstone: tombstone, value: value)
        } else if let handingOff = clients[index].handingOff[id] {
            write = handingOff
        } else {
            return
        }
        let actions = write.operation.handle(
            event, clock: &clients[index].clock, wallMillis: wallMillis(ofClient: index))
        if clients[index].operation == id, case .write = clients[index].current {
            clients[index].current = .write(
                write.operation, key: write.key, tombstone: write.tombstone, value: write.value)
        } else {
            clients[index].handingOff[id] = write.operation.isSettled ? nil : write
        }
        performWrite(index, id: id, write, actions)
    }

    func feedRead(_ index: Int, operation id: Int, _ event: ReadOperation.Event) {
        guard clients[index].operation == id, case .read(var operation, let key) = clients[index].current else {
            return
        }
        let actions = operation.handle(event, clock: &clients[index].clock)
        clients[index].current = .read(operation, key: key)
        performRead(index, actions)
    }

    func performWrite(_ index: Int, id: Int, _ write: HandingOff, _ actions: [WriteOperation.Action]) {
        let key = write.key
        for action in actions {
            switch action {
            case .send(let node, let version, let attempt):
                let record = StoredRecord(version: version, tombstone: write.tombstone, value: write.value)
                var envelope = Envelope(
                    client: index, node: nodeIndex(node), operation: id, attempt: attempt,
                    payload: .put(key: key, record: record))
                if configuration.membershipProfile != nil { envelope.epoch = membership.clients[index].epoch }
                send(envelope)
            case .scheduleDeadline(let after, let attempt):
                queue.push(
                    .writeDeadline(client: index, operation: id, attempt: attempt),
                    at: now + UInt64(after / .milliseconds(1)))
            case .hint(let fallback, let target, let version, let attempt):
                let record = StoredRecord(version: version, tombstone: write.tombstone, value: write.value)
                log("\(clients[index].name) op\(id) hands \(target)'s \(version) to \(fallback)")
                send(
                    Envelope(
                        client: index, node: nodeIndex(fallback), operation: id, attempt: attempt,
                        payload: .hint(target: target, key: key, record: record)))
                queue.push(
                    .hintTimeout(
                        client: index, operation: id, attempt: attempt, fallback: nodeIndex(fallback), target: target),
                    at: now + UInt64(configuration.requestDeadline / .milliseconds(1)))
            case .scheduleHintDue(let after, let attempt):
                queue.push(
                    .writeHintDue(client: index, operation: id, attempt: attempt),
                    at: now + UInt64(after / .milliseconds(1)))
            case .complete(let result):
                // Hints of a completed write are handed off after the client moved on.
                if case .write(let operation, _, _, _) = clients[index].current, !operation.isSettled {
                    clients[index].handingOff[id] = HandingOff(
                        operation: operation, key: key, tombstone: write.tombstone, value: write.value)
                }
                finishWrite(index, key: key, result: result)
            }
        }
    }

    func performRead(_ index: Int, _ actions: [ReadOperation.Action]) {
        guard case .read(_, let key) = clients[index].current else { return }
        let id = clients[index].operation
        for action in actions {
            switch action {
            case .send(let node):
                send(Envelope(client: index, node: nodeIndex(node), operation: id, attempt: 0, payload: .get(key: key)))
            case .scheduleDeadline(let after):
                queue.push(.readDeadline(client: index, operation: id), at: now + UInt64(after / .milliseconds(1)))
            case .scheduleSpeculation(let after):
                queue.push(.readSpeculation(client: index, operation: id), at: now + UInt64(after / .milliseconds(1)))
            case .repair(let node, let record):
                statistics.repairs += 1
                log("\(clients[index].name) op\(id) repairs \(node) with \(record.version)")
                send(
                    Envelope(
                        client: index, node: nodeIndex(node), operation: id, attempt: Envelope.repairAttempt,
                        payload: .put(key: key, record: record)))
            case .complete(let outcome):
                finishRead(index, key: key, outcome: outcome)
            }
        }
    }

    func finishWrite(_ index: Int, key: [UInt8], result: WriteOperation.WriteResult) {
        let id = clients[index].operation
        switch result {
        case .acknowledged(let version, let by):
            history.complete(id, outcome: .wrote(version), at: now)
            acknowledgedWrites.append((key, version, id))
            statistics.completed += 1
            log("\(clients[index].name) op\(id) acknowledged \(version) by \(by)")
            checkAcknowledgedWrite(key: key, version: version, operation: id)
        case .failed(let error):
            history.complete(id, outcome: .failed, at: now)
            statistics.failed += 1
            log("\(clients[index].name) op\(id) failed: \(error)")
        case .conflict(let attempts):
            history.complete(id, outcome: .failed, at: now)
            statistics.failed += 1
            log("\(clients[index].name) op\(id) gave up after \(attempts) superseded attempts")
        }
        finishOperation(index)
    }

    func finishRead(_ index: Int, key: [UInt8], outcome: ReadCoordinator.ReadOutcome) {
        let id = clients[index].operation
        switch outcome {
        case .answered(let result):
            let newest = result.newest
            history.complete(
                id, outcome: .read(newest?.version, value: newest.flatMap { $0.tombstone ? nil : $0.value }), at: now)
            statistics.completed += 1
            log("\(clients[index].name) op\(id) read \(newest.map { "\($0.version)" } ?? "nothing")")
        case .failed(let error):
            history.complete(id, outcome: .failed, at: now)
            statistics.failed += 1
            log("\(clients[index].name) op\(id) read failed: \(error)")
        }
        finishOperation(index)
    }

    func finishOperation(_ index: Int) {
        let elapsed = now - clients[index].startedAt
        let bound =
            UInt64(configuration.requestDeadline / .milliseconds(1)) * UInt64(configuration.supersededRetriesMax + 1)
            + 1
        if elapsed > bound {
            violate(
                "\(clients[index].name) op\(clients[index].operation) took \(elapsed) ms, past its bound of \(bound) ms"
            )
        }
        clients[index].current = nil
        clients[index].operation = -1
        if clients[index].remaining > 0 {
            queue.push(.startOperation(client: index), at: now + random.next() % 15)
        }
    }

    // MARK: - Network and nodes

    func send(_ envelope: Envelope) {
        statistics.messages += 1
        let link = Link(client: envelope.client, node: envelope.node)
        let faults = configuration.faults
        if envelope.client != Envelope.nodeToNode && blocked.contains(link) {
            log("drop (partition) \(describe(envelope))")
            return
        }
        if random.chance(faults.dropProbability) {
            log("drop \(describe(envelope))")
            return
        }
        let span = faults.delayMillis.upperBound - faults.delayMillis.lowerBound + 1
        queue.push(.deliver(envelope), at: now + faults.delayMillis.lowerBound + random.next() % span)
        if random.chance(faults.duplicateProbability) {
            queue.push(.deliver(envelope), at: now + faults.delayMillis.lowerBound + random.next() % span)
        }
    }

    func deliver(_ envelope: Envelope) {
        if envelope.isNotReplicaRefusal {
            // The node does not keep this key in its map: like the SDK, fetch that node's map.
            refreshMap(ofClient: envelope.client, from: envelope.node)
        }
        switch envelope.payload {
        case .put(let key, let record):
            var reply = envelope
            if !nodes[envelope.node].isUp {
                reply.payload = .putReply(.failure(ReplyFailure(reason: "connection refused")))
            } else if let refusal = refusal(at: envelope.node, key: key, write: true, writeEpoch: envelope.epoch) {
                reply.payload = .putReply(.failure(refusal))
            } else {
                do {
                    let answer = try nodes[envelope.node].replica.put(key: key, record: record)
                    observe(node: envelope.node, key: key)
                    reply.payload = .putReply(.success(answer))
                } catch {
                    reply.payload = .putReply(.failure(ReplyFailure(reason: "\(error)")))
                }
            }
            send(reply)
        case .get(let key):
            var reply = envelope
            if !nodes[envelope.node].isUp {
                reply.payload = .getReply(.failure(ReplyFailure(reason: "connection refused")))
            } else if let refusal = refusal(at: envelope.node, key: key, write: false) {
                reply.payload = .getReply(.failure(refusal))
            } else {
                do {
                    let answer = try nodes[envelope.node].replica.get(key: key)
                    observe(node: envelope.node, key: key)
                    reply.payload = .getReply(.success(answer))
                } catch {
                    reply.payload = .getReply(.failure(ReplyFailure(reason: "\(error)")))
                }
            }
            send(reply)
        case .hint(let target, let key, let record):
            var reply = envelope
            reply.payload = .hintReply(
                target: target, storeHint(at: envelope.node, target: target, key: key, record: record))
            send(reply)
        case .hintReply(let target, let result):
            let fallback = nodes[envelope.node].id
            switch result {
            case .success(let answer) where answer.stored:
                feedWrite(
                    envelope.client, operation: envelope.operation,
                    .hintStored(fallback, for: target, attempt: envelope.attempt, clock: answer.clock))
            case .success:
                feedWrite(
                    envelope.client, operation: envelope.operation,
                    .hintFailed(fallback, for: target, attempt: envelope.attempt, reason: "queue full"))
            case .failure(let failure):
                feedWrite(
                    envelope.client, operation: envelope.operation,
                    .hintFailed(fallback, for: target, attempt: envelope.attempt, reason: failure.reason))
            }
        case .replay(let key, let record, let round, let id):
            var reply = envelope
            reply.node = envelope.holder!
            reply.holder = envelope.node
            if !nodes[envelope.node].isUp {
                reply.payload = .replayReply(round: round, id: id, .failure(ReplyFailure(reason: "connection refused")))
            } else {
                do {
                    _ = try nodes[envelope.node].replica.put(key: key, record: record)
                    observe(node: envelope.node, key: key)
                    reply.payload = .replayReply(round: round, id: id, .success(()))
                } catch {
                    reply.payload = .replayReply(round: round, id: id, .failure(ReplyFailure(reason: "\(error)")))
                }
            }
            send(reply)
        case .replayReply(let round, let id, let result):
            let target = nodes[envelope.holder!].id
            switch result {
            case .success:
                feedReplay(envelope.node, target: target, round: round, .acknowledged(id))
            case .failure(let failure):
                feedReplay(envelope.node, target: target, round: round, .failed(id, reason: failure.reason))
            }
        case .membership(let message, let from, let to):
            deliverMembership(message, from: from, to: to)
        case .putReply(let result) where envelope.attempt == Envelope.repairAttempt:
            let node = nodes[envelope.node].id
            switch result {
            case .success:
                feedRead(envelope.client, operation: envelope.operation, .repaired(node))
            case .failure(let failure):
                feedRead(envelope.client, operation: envelope.operation, .repairFailed(node, reason: failure.reason))
            }
        case .putReply(let result):
            let node = nodes[envelope.node].id
            let event: WriteOperation.Event
            switch result {
            case .success(let answer):
                switch answer.outcome {
                case .applied:
                    event = .applied(node, attempt: envelope.attempt, clock: answer.clock)
                case .superseded(let current):
                    event = .superseded(node, attempt: envelope.attempt, current: current, clock: answer.clock)
                }
            case .failure(let failure):
                event = .failed(node, attempt: envelope.attempt, reason: failure.reason)
            }
            feedWrite(envelope.client, operation: envelope.operation, event)
        case .getReply(let result):
            let node = nodes[envelope.node].id
            switch result {
            case .success(let answer):
                feedRead(
                    envelope.client, operation: envelope.operation, .answered(node, answer.record, clock: answer.clock))
            case .failure(let failure):
                feedRead(envelope.client, operation: envelope.operation, .failed(node, reason: failure.reason))
            }
        }
    }

    func describe(_ envelope: Envelope) -> String {
        if case .membership(let message, let from, let to) = envelope.payload {
            return "\(name(from))→\(name(to)) \(message)"
        }
        let node = nodes[envelope.node].id
        let client = envelope.holder.map { nodes[$0].id } ?? clients[envelope.client].name
        switch envelope.payload {
        case .put(let key, let record): return "\(client)→\(node) put \(show(key)) \(record.version)"
        case .get(let key): return "\(client)→\(node) get \(show(key))"
        case .hint(let target, let key, let record):
            return "\(client)→\(node) hint for \(target) \(show(key)) \(record.version)"
        case .replay(let key, let record, _, _): return "\(client)→\(node) replay \(show(key)) \(record.version)"
        case .putReply: return "\(node)→\(client) put reply op\(envelope.operation)"
        case .getReply: return "\(node)→\(client) get reply op\(envelope.operation)"
        case .hintReply: return "\(node)→\(client) hint reply op\(envelope.operation)"
        case .replayReply: return "\(client)→\(node) replay reply"
        case .membership(let message, let from, let to): return "\(name(from))→\(name(to)) \(message)"
        }
    }

    // MARK: - Faults

    func scheduleNextCrash() {
        let every = configuration.faults.crashEveryMillis
        guard every > 0, clientsActive else { return }
        queue.push(.crash(node: Int(random.next() % UInt64(nodes.count))), at: now + 1 + random.next() % (2 * every))
    }

    func crash(_ index: Int) {
        defer { scheduleNextCrash() }
        guard nodes[index].isUp else { return }
        nodes[index].isUp = false
        statistics.crashes += 1
        let down = configuration.faults.downMillis
        let duration = down.lowerBound + random.next() % (down.upperBound - down.lowerBound + 1)
        log("\(nodes[index].id) crashes for \(duration) ms")
        queue.push(.restart(node: index), at: now + duration)
    }

    func scheduleNextPartition() {
        let every = configuration.faults.partitionEveryMillis
        guard every > 0, clientsActive else { return }
        queue.push(.partition, at: now + 1 + random.next() % (2 * every))
    }

    func partition() {
        defer { scheduleNextPartition() }
        // Cut a random set of nodes off from a random set of clients.
        var links: Set<Link> = []
        for client in clients.indices where random.chance(0.5) {
            for node in nodes.indices where random.chance(0.4) {
                links.insert(Link(client: client, node: node))
            }
        }
        guard !links.isEmpty else { return }
        nextPartitionID += 1
        partitionsActive[nextPartitionID] = links
        blocked.formUnion(links)
        statistics.partitions += 1
        let span = configuration.faults.partitionMillis
        let duration = span.lowerBound + random.next() % (span.upperBound - span.lowerBound + 1)
        log("partition \(nextPartitionID) cuts \(links.count) links for \(duration) ms")
        queue.push(.heal(partition: nextPartitionID), at: now + duration)
    }
}

func show(_ key: [UInt8]) -> String {
    String(decoding: key, as: UTF8.self)
}
