import KVCore
import Testing

/// `RangeTransfer`: a node's part in a membership change, driven by `kvd` and the simulator alike.
@Suite struct RangeTransferTests {
    let base = RangeMovementTests.cluster(4)
    var joining: ClusterMap { try! base.applying(.join(node: "n5", address: "127.0.0.5:7411", tokensPerNode: 16)) }

    @Test func theRangesArePulledThenVerifiedThenReported() throws {
        var transfer = RangeTransfer(node: "n5", map: joining, resuming: nil)
        #expect(transfer.isNew)
        let count = transfer.checkpoint.ranges.count
        #expect(count == joining.transfers(to: "n5").count && count > 0)
        for index in 0..<count {
            guard case .pull(let pulled, let sources) = transfer.step else {
                Issue.record("expected a pull, got \(transfer.step)")
                return
            }
            #expect(pulled == index)
            #expect(sources == transfer.sources(of: transfer.checkpoint.ranges[index].range) && !sources.isEmpty)
            transfer.failed(index: index, source: sources[0], reason: "timed out")
            #expect(transfer.step == .pull(index: index, sources: sources), "a failed pull is retried")
            transfer.applied(index: index, count: 3, lastKey: [1], done: false, from: sources[0])
            transfer.applied(index: index, count: 2, lastKey: [2], done: true, from: sources[0])
            let progress = transfer.checkpoint.ranges[index]
            #expect(progress.keys == 5 && progress.after == [2] && progress.retries == 1 && progress.lastError == nil)
        }
        #expect(transfer.step == .verify)
        // Each range must compare with enough of its old replicas to meet every quorum write.
        let ranges = transfer.checkpoint.ranges.map(\.range)
        var compared = Dictionary(
            uniqueKeysWithValues: ranges.map {
                ($0, RangeTransfer.comparisonsNeeded(replicas: transfer.sources(of: $0).count))
            })
        compared[ranges[0]]! -= 1
        #expect(transfer.verified(compared: compared) == ranges[0])
        #expect(transfer.step == .verify)
        compared[ranges[0]]! += 1
        #expect(transfer.verified(compared: compared) == nil)
        #expect(transfer.step == .report)
    }

    /// A quorum of N old replicas (N/2 + 1) and the replicas compared always share one, with the fewest
    /// comparisons: with N = 2 one (a majority, 2, never came with one of the two dead).
    @Test func theComparisonsNeededMeetEveryQuorum() {
        #expect((1...7).map { RangeTransfer.comparisonsNeeded(replicas: $0) } == [1, 1, 2, 2, 3, 3, 4])
        for replicas in 1...9 {
            let needed = RangeTransfer.comparisonsNeeded(replicas: replicas)
            #expect(needed + (replicas / 2 + 1) > replicas, "N=\(replicas): they intersect")
            #expect((needed - 1) + (replicas / 2 + 1) <= replicas, "N=\(replicas): one fewer would not")
        }
    }

    @Test func aCheckpointOfTheSameChangeIsResumedAndAnotherIsReplaced() throws {
        var first = RangeTransfer(node: "n5", map: joining, resuming: nil)
        first.applied(index: 0, count: 1, lastKey: [9], done: true, from: "n1")
        let resumed = RangeTransfer(node: "n5", map: joining, resuming: first.checkpoint)
        #expect(!resumed.isNew && resumed.checkpoint == first.checkpoint)
        // Another change (other tokens for the joining node) starts over.
        let other = try base.applying(.join(node: "n5", address: "127.0.0.5:7411", tokensPerNode: 8))
        #expect(RangeTransfer.changeID(other) != RangeTransfer.changeID(joining))
        let restarted = RangeTransfer(node: "n5", map: other, resuming: first.checkpoint)
        #expect(restarted.isNew && restarted.checkpoint.ranges.allSatisfy { !$0.done })
    }

    /// The simulator's planted bug (`--mutate-switch-before-stream`) lives in the production value.
    @Test func theMutationReportsAtOnce() {
        var transfer = RangeTransfer(node: "n5", map: joining, resuming: nil)
        transfer.switchesBeforeStreaming = true
        #expect(transfer.step == .report)
    }

    @Test func afterTheSwitchTheOldOwnersDropWhatTheyNoLongerKeep() throws {
        let done = try RangeMovementTests.finish(joining)
        let ring = try done.ring()
        var dropping = 0
        for node in ["n1", "n2", "n3", "n4"] {
            let held = try #require(RangeTransfer.kept(by: node, in: base))
            let kept = try #require(RangeTransfer.kept(by: node, in: done))
            let drops = RangeTransfer.drops(held: held, kept: kept, node: node, ring: ring)
            dropping += drops.count
            for drop in drops {
                #expect(!drop.owners.contains(node))
                #expect(drop.owners == ring.preferenceList(for: Token(drop.piece.end)).filter { $0 != node })
                #expect(!kept.contains { $0.start == drop.piece.start && $0.end == drop.piece.end })
            }
            #expect(RangeTransfer.drops(held: kept, kept: kept, node: node, ring: ring).isEmpty)
        }
        #expect(dropping > 0, "a join moves ranges away from the old owners")
    }
}
