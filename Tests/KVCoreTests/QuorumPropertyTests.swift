import KVCore
import Testing

/// Property tests over many seeded random histories. Every failure names its seed; rerun one seed by
/// putting it in `seeds`.
struct QuorumPropertyTests {
    static let seeds: Range<UInt64> = 0..<3000

    // MARK: Writes

    /// Feeds a random permutation of replies (with duplicates, strangers and a deadline) to a write and
    /// checks it completes exactly once, at the first event after which a rule says it must, with the
    /// outcome that rule gives.
    @Test func writeCompletesOnceWhateverTheOrder() {
        for seed in Self.seeds {
            var rng = SeededGenerator(seed: seed)
            let shape = QuorumShape.all.randomElement(using: &rng)!
            var events: [WriteCoordinator.Event] = [.deadlinePassed]
            for node in shape.replicas {
                switch Int.random(in: 0..<10, using: &rng) {
                case 0..<5: events.append(.applied(node))
                case 5..<8: events.append(.failed(node, reason: "refused"))
                case 8: events.append(.superseded(node, current: version(UInt64.random(in: 1...99, using: &rng))))
                default: break  // silent
                }
            }
            for _ in 0..<Int.random(in: 0...3, using: &rng) {
                events.append(events.randomElement(using: &rng)!)  // network duplicates
            }
            if Bool.random(using: &rng) {
                events.append(.applied("stranger"))
            }
            events.shuffle(using: &rng)

            var write = WriteCoordinator(
                configuration: .init(replicas: shape.replicas, required: shape.required, deadline: .seconds(1))
            )
            _ = write.start()
            var firstReply: [String: WriteCoordinator.Event] = [:]
            var expected: (index: Int, outcome: WriteCoordinator.WriteOutcome)?
            var completions: [(index: Int, outcome: WriteCoordinator.WriteOutcome)] = []
            for (index, event) in events.enumerated() {
                let actions = write.handle(event)
                for action in actions {
                    guard let outcome = action.completion else {
                        Issue.record("seed \(seed): a write sent \(action) after start")
                        continue
                    }
                    completions.append((index, outcome))
                }
                // The oracle: which rule, if any, first fires after this event.
                var isFirstReply = false
                switch event {
                case .applied(let node), .failed(let node, _), .superseded(let node, _):
                    if shape.replicas.contains(node), firstReply[node] == nil {
                        firstReply[node] = event
                        isFirstReply = true
                    }
                case .deadlinePassed:
                    break
                }
                guard expected == nil else { continue }
                let applied = shape.replicas.filter { if case .applied = firstReply[$0] { true } else { false } }
                let failed = shape.replicas.compactMap { node -> ReplicaFailure? in
                    if case .failed(_, let reason) = firstReply[node] {
                        ReplicaFailure(node: node, reason: reason)
                    } else {
                        nil
                    }
                }
                switch event {
                case .superseded(_, let current) where isFirstReply:
                    expected = (index, .superseded(current: current))
                case .applied where isFirstReply && applied.count == shape.required:
                    expected = (index, .acknowledged(by: applied))
                case .failed where isFirstReply && failed.count > shape.n - shape.required:
                    let error = QuorumError.quorumUnreachable(
                        .write,
                        required: shape.required,
                        replicas: shape.n,
                        succeeded: applied,
                        failed: failed
                    )
                    expected = (index, .failed(error))
                case .deadlinePassed:
                    let failedOrSilent = shape.replicas.compactMap { node -> ReplicaFailure? in
                        switch firstReply[node] {
                        case nil: ReplicaFailure(node: node, reason: "no answer within 1s")
                        case .failed(_, let reason): ReplicaFailure(node: node, reason: reason)
                        default: nil
                        }
                    }
                    let error = QuorumError.deadlineExceeded(
                        .write,
                        required: shape.required,
                        replicas: shape.n,
                        succeeded: applied,
                        failed: failedOrSilent
                    )
                    expected = (index, .failed(error))
                default:
                    break
                }
            }
            #expect(completions.count == 1, "seed \(seed): \(shape) completed \(completions.count) times")
            #expect(completions.first?.index == expected?.index, "seed \(seed): \(shape) completed at the wrong event")
            #expect(completions.first?.outcome == expected?.outcome, "seed \(seed): \(shape) wrong outcome")
            if case .acknowledged(let by) = write.outcome {
                #expect(by.count == shape.required, "seed \(seed)")
            }
            let unacknowledged = shape.replicas.filter {
                switch firstReply[$0] {
                case .applied, .superseded: false
                default: true
                }
            }
            #expect(write.unacknowledged == unacknowledged, "seed \(seed): \(shape)")
        }
    }

    // MARK: Reads

    /// Drives a read over a random network: asked replicas answer, fail or stay silent, replies are
    /// delivered in random order with duplicates, and the deadline and speculation fire at random
    /// moments. Checks the read asks in ring order, never twice, and completes once, at the right time.
    @Test func readCompletesOnceWhateverTheOrder() {
        for seed in Self.seeds {
            var rng = SeededGenerator(seed: seed)
            let shape = QuorumShape.all.randomElement(using: &rng)!
            var holds: [String: StoredRecord?] = [:]
            var fails: Set<String> = []
            var silent: Set<String> = []
            for node in shape.replicas {
                switch Int.random(in: 0..<10, using: &rng) {
                case 0..<6:
                    holds[node] = Bool.random(using: &rng) ? record(UInt64.random(in: 1...20, using: &rng)) : nil
                case 6..<8: fails.insert(node)
                default: silent.insert(node)
                }
            }
            let speculation: Duration? = Bool.random(using: &rng) ? .milliseconds(10) : nil
            var read = ReadCoordinator(
                configuration: .init(
                    replicas: shape.replicas,
                    required: shape.required,
                    askAll: Int.random(in: 0..<4, using: &rng) == 0,
                    deadline: .seconds(1),
                    speculationDelay: speculation
                )
            )
            var pool: [ReadCoordinator.Event] = []
            var asked: [String] = []
            var answered: [String] = []
            var completions: [ReadCoordinator.ReadOutcome] = []
            var done = false
            func perform(_ actions: [ReadCoordinator.Action]) {
                for action in actions {
                    switch action {
                    case .send(let node):
                        #expect(!done, "seed \(seed): sent after completion")
                        asked.append(node)
                        if fails.contains(node) {
                            pool.append(.failed(node, reason: "refused"))
                        } else if let held = holds[node] {
                            pool.append(.answered(node, held))
                        }
                    case .scheduleDeadline:
                        pool.append(.deadlinePassed)
                    case .scheduleSpeculation:
                        pool.append(.speculationDue)
                    case .complete(let outcome):
                        completions.append(outcome)
                        done = true
                    }
                }
            }
            perform(read.start())
            while !pool.isEmpty {
                let event = pool.remove(at: Int.random(in: pool.indices, using: &rng))
                if Int.random(in: 0..<8, using: &rng) == 0 {
                    pool.append(event)  // delivered twice
                }
                let wasDone = done
                let answeredBefore = answered
                if case .answered(let node, _) = event, !answered.contains(node) {
                    answered.append(node)
                }
                let actions = read.handle(event)
                if wasDone {
                    #expect(actions.isEmpty, "seed \(seed): acted after completion")
                    continue
                }
                perform(actions)
                if case .answered = event, answered.count == shape.required, answeredBefore.count < shape.required {
                    let result = completions.last?.result
                    #expect(result != nil, "seed \(seed): \(shape) not complete at answer \(shape.required)")
                    let newest = answered.compactMap { holds[$0]! }.max { $0.version < $1.version }
                    #expect(result?.newest?.version == newest?.version, "seed \(seed): \(shape) newest")
                    #expect(Set(result?.answers.keys.map { $0 } ?? []) == Set(answered), "seed \(seed)")
                }
            }
            #expect(completions.count == 1, "seed \(seed): \(shape) completed \(completions.count) times")
            #expect(asked == Array(shape.replicas.prefix(asked.count)), "seed \(seed): asked out of ring order")
            #expect(Set(asked).count == asked.count, "seed \(seed): asked a replica twice")
            if let error = completions.first?.error, error.isQuorumUnreachable {
                #expect(
                    shape.n - error.failed.count < shape.required,
                    "seed \(seed): \(shape) failed fast although the quorum was reachable"
                )
            }
            if completions.first?.result != nil {
                #expect(Set(asked).intersection(fails).count <= shape.n - shape.required, "seed \(seed)")
            }
        }
    }

    // MARK: R + W > N

    /// When W replicas acknowledged a write and R replicas answer a later read, with R + W > N, the
    /// two sets overlap, so the read's newest version is at least the written one — whatever replicas
    /// fail, stay silent or hold older versions, and whatever order replies arrive in.
    @Test func overlappingQuorumsReadTheAcknowledgedWrite() {
        var checked = 0
        for seed in Self.seeds {
            var rng = SeededGenerator(seed: seed)
            let n = Int.random(in: 1...5, using: &rng)
            let w = Int.random(in: 1...n, using: &rng)
            let r = Int.random(in: (n - w + 1)...n, using: &rng)
            let replicas = (1...n).map { "n\($0)" }
            // Replicas start with older versions of the key, or nothing.
            var store: [String: StoredRecord] = [:]
            for node in replicas where Bool.random(using: &rng) {
                store[node] = record(UInt64.random(in: 1...50, using: &rng))
            }
            let written = record(100)

            var write = WriteCoordinator(configuration: .init(replicas: replicas, required: w, deadline: .seconds(1)))
            var writeEvents: [WriteCoordinator.Event] = []
            for case .send(let node) in write.start() {
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: writeEvents.append(.failed(node, reason: "down"))
                case 1: break  // lost
                default: writeEvents.append(.applied(node))
                }
            }
            writeEvents.shuffle(using: &rng)
            writeEvents.append(.deadlinePassed)
            for event in writeEvents {
                if case .applied(let node) = event {
                    store[node] = written  // the replica stored it whether or not anyone waits
                }
                _ = write.handle(event)
            }
            guard case .acknowledged = write.outcome else { continue }

            var read = ReadCoordinator(
                configuration: .init(
                    replicas: replicas,
                    required: r,
                    askAll: Bool.random(using: &rng),
                    deadline: .seconds(1),
                    speculationDelay: Bool.random(using: &rng) ? .milliseconds(5) : nil
                )
            )
            var pool: [ReadCoordinator.Event] = []
            let readFails = Set(replicas.filter { _ in Int.random(in: 0..<4, using: &rng) == 0 })
            func perform(_ actions: [ReadCoordinator.Action]) {
                for action in actions {
                    switch action {
                    case .send(let node):
                        pool.append(
                            readFails.contains(node) ? .failed(node, reason: "down") : .answered(node, store[node]))
                    case .scheduleSpeculation: pool.append(.speculationDue)
                    case .scheduleDeadline, .complete: break
                    }
                }
            }
            perform(read.start())
            while !pool.isEmpty, !read.isComplete {
                perform(read.handle(pool.remove(at: Int.random(in: pool.indices, using: &rng))))
            }
            perform(read.handle(.deadlinePassed))  // whoever stayed silent
            guard case .answered(let result) = read.outcome else { continue }
            checked += 1
            #expect(
                (result.newest?.version ?? .zero) >= written.version,
                "seed \(seed): N=\(n) W=\(w) R=\(r) read \(String(describing: result.newest)) after writing \(written)"
            )
        }
        #expect(checked > Self.seeds.count / 5, "too few histories reached both quorums to mean anything")
    }
}
