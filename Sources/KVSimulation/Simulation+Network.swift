import KVCore
import KVNode
import KVStorage

/// The simulated network and its faults: messages delayed, dropped and duplicated, nodes that crash,
/// and links that partition.
extension Simulation {
    func send(_ envelope: Envelope) {
        statistics.messages += 1
        let link = Link(client: envelope.client, node: envelope.node)
        if envelope.client != Envelope.nodeToNode && blocked.contains(link) {
            log("drop (partition) \(describe(envelope))")
            return
        }
        if random.chance(faults.dropProbability) {
            log("drop \(describe(envelope))")
            return
        }
        let delay = faults.delay.wholeMillisecondsClamped
        let span = delay.upperBound - delay.lowerBound + 1
        queue.push(.deliver(envelope), at: now + delay.lowerBound + random.next() % span)
        if random.chance(faults.duplicateProbability) {
            queue.push(.deliver(envelope), at: now + delay.lowerBound + random.next() % span)
        }
    }

    func deliver(_ envelope: Envelope) {
        if envelope.isNotReplicaRefusal {
            // The node does not keep this key in its map: like the SDK, fetch that node's map.
            noticeEpoch(.max, ofClient: envelope.client, from: envelope.node)
        }
        switch envelope.payload {
        case .put(let key, let record):
            var reply = envelope
            if nodes[envelope.node].isUp, parksForMap(envelope) {
                return
            } else if !nodes[envelope.node].isUp {
                reply.payload = .putReply(.failure(ReplyFailure(reason: "connection refused")))
            } else if let refusal = refusal(
                at: envelope.node, key: key, keyspace: envelope.keyspace, write: true, writeEpoch: envelope.epoch)
            {
                reply.payload = .putReply(.failure(refusal))
            } else {
                do {
                    let answer = try served(envelope.node, envelope.keyspace).replica.put(key: key, record: record)
                    observe(node: envelope.node, key: key, keyspace: envelope.keyspace)
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
            } else if let refusal = refusal(at: envelope.node, key: key, keyspace: envelope.keyspace, write: false) {
                reply.payload = .getReply(.failure(refusal))
            } else {
                do {
                    let answer = try served(envelope.node, envelope.keyspace).replica.get(key: key)
                    observe(node: envelope.node, key: key, keyspace: envelope.keyspace)
                    reply.payload = .getReply(.success(answer))
                } catch {
                    reply.payload = .getReply(.failure(ReplyFailure(reason: "\(error)")))
                }
            }
            send(reply)
        case .hint(let target, let key, let record):
            var reply = envelope
            reply.payload = .hintReply(
                target: target,
                storeHint(at: envelope.node, target: target, key: key, record: record, keyspace: envelope.keyspace))
            send(reply)
        case .hintReply(let target, let result):
            let fallback = nodes[envelope.node].id
            switch result {
            case .success(let answer) where answer.stored:
                feedWrite(
                    envelope.client, operation: envelope.operationTry,
                    .hintStored(fallback, for: target, attempt: envelope.attempt, clock: answer.clock))
            case .success:
                feedWrite(
                    envelope.client, operation: envelope.operationTry,
                    .hintFailed(fallback, for: target, attempt: envelope.attempt, reason: "queue full"))
            case .failure(let failure):
                feedWrite(
                    envelope.client, operation: envelope.operationTry,
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
                    _ = try served(envelope.node, envelope.keyspace).replica.put(key: key, record: record)
                    observe(node: envelope.node, key: key, keyspace: envelope.keyspace)
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
                feedRead(envelope.client, operation: envelope.operationTry, .repaired(node))
            case .failure(let failure):
                feedRead(envelope.client, operation: envelope.operationTry, .repairFailed(node, reason: failure.reason))
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
            feedWrite(envelope.client, operation: envelope.operationTry, event)
        case .getReply(let result):
            let node = nodes[envelope.node].id
            switch result {
            case .success(let answer):
                feedRead(
                    envelope.client, operation: envelope.operationTry,
                    .answered(node, answer.record, clock: answer.clock))
            case .failure(let failure):
                feedRead(envelope.client, operation: envelope.operationTry, .failed(node, reason: failure.reason))
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
        case .putReply: return "\(node)→\(client) put reply \(envelope.operationTry)"
        case .getReply: return "\(node)→\(client) get reply \(envelope.operationTry)"
        case .hintReply: return "\(node)→\(client) hint reply \(envelope.operationTry)"
        case .replayReply: return "\(client)→\(node) replay reply"
        case .membership(let message, let from, let to): return "\(name(from))→\(name(to)) \(message)"
        }
    }

    // MARK: - Faults

    func scheduleNextCrash() {
        let every = faults.crashEvery.wholeMillisecondsClamped
        guard every > 0, clientsActive else { return }
        queue.push(.crash(node: Int(random.next() % UInt64(nodes.count))), at: now + 1 + random.next() % (2 * every))
    }

    func crash(_ index: Int) {
        defer { scheduleNextCrash() }
        guard nodes[index].isUp else { return }
        nodes[index].isUp = false
        statistics.crashes += 1
        // The writes waiting for a later map had their connections cut: their clients time out.
        mapWaiters[index] = nil
        let down = faults.down.wholeMillisecondsClamped
        let duration = down.lowerBound + random.next() % (down.upperBound - down.lowerBound + 1)
        log("\(nodes[index].id) crashes for \(duration) ms")
        queue.push(.restart(node: index), at: now + duration)
    }

    func scheduleNextPartition() {
        let every = faults.partitionEvery.wholeMillisecondsClamped
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
        let span = faults.partition.wholeMillisecondsClamped
        let duration = span.lowerBound + random.next() % (span.upperBound - span.lowerBound + 1)
        log("partition \(nextPartitionID) cuts \(links.count) links for \(duration) ms")
        queue.push(.heal(partition: nextPartitionID), at: now + duration)
    }
}
