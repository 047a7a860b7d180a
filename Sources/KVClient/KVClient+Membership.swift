public import KVCore
import KVTLS
import KVWire

extension KVClient {
    /// Makes `change` to the cluster map: the next epoch is decided by a majority of the current
    /// members (`MapProposer`: one Paxos instance per epoch), then committed to every node (the others
    /// learn it by gossip). Needs an admin certificate.
    ///
    /// - Returns: the new map, also in use by this client from now on.
    /// - Throws: `ClusterChangeError` when the change does not fit the map, when the map changed
    ///   meanwhile, when another change was being decided at the same time, or when too few members
    ///   answered (nothing was changed in each case); `KVClientError` when no node could be reached.
    public func changeCluster(_ change: ClusterChange) async throws -> ClusterMap {
        guard identity.role == .admin else {
            throw KVClientError.invalidArgument("changing the cluster map needs an admin certificate")
        }
        let base = try await latestClusterMap()
        let proposed = try base.applying(change)
        let topology = try await currentTopology()
        // Unique per attempt, so that two attempts of one operator never share a ballot.
        let ballot = Ballot(
            round: configuration.wallClockMillis(), proposer: "\(identity.name)#\(UInt32.random(in: 0...UInt32.max))")
        var proposer = MapProposer(base: base, proposed: proposed, ballot: ballot)
        let prepare = Message.mapPrepareRequest(MapPrepareRequest(epoch: proposed.epoch, ballot: ballot))
        var step = await poll(proposer.voters, with: prepare, in: topology) { voter, answer in
            switch answer {
            case .success(.mapPrepareResponse(let response)):
                guard let vote = response.mapVote else { return proposer.failed(voter, "answered a malformed vote") }
                return proposer.promise(from: voter, vote)
            case .success(let other):
                return proposer.failed(voter, "answered MapPrepare with \(other.type)")
            case .failure(let error):
                return proposer.failed(voter, "\(error)")
            }
        }
        if case .accept(let proposal) = step {
            let accept = Message.mapAcceptRequest(MapAcceptRequest(ballot: proposal.ballot, map: MapBody(proposal.map)))
            step = await poll(proposer.voters, with: accept, in: topology) { voter, answer in
                switch answer {
                case .success(.mapAcceptResponse(let response)):
                    guard let vote = response.mapVote else {
                        return proposer.failed(voter, "answered a malformed vote")
                    }
                    return proposer.accepted(from: voter, vote)
                case .success(let other):
                    return proposer.failed(voter, "answered MapAccept with \(other.type)")
                case .failure(let error):
                    return proposer.failed(voter, "\(error)")
                }
            }
        }
        switch step {
        case .chosen(let map):
            // Every member hears of it now; one that misses the commit learns it by gossip.
            let everyone = Set(base.voters).union(map.voters).sorted()
            let chosen = try install(map)
            _ = await poll(everyone, with: .mapCommitRequest(MapCommitRequest(map: MapBody(map))), in: chosen) {
                _, _ in .wait
            }
            guard map == proposed else { throw ClusterChangeError.superseded(epoch: map.epoch) }
            return map
        case .failed(let error):
            if case .concurrentChange = error {
                // The rival may have completed this very map (it must propose what a voter accepted).
                try await Task.sleep(for: .milliseconds(500))
                if try await latestClusterMap() == proposed { return proposed }
            }
            throw error
        case .wait, .accept:
            throw ClusterChangeError.noMajority(
                epoch: proposed.epoch, granted: 0, needed: proposer.majority, failures: ["no answer"])
        }
    }

    /// Asks every node in use for its cluster map and installs the latest one.
    ///
    /// - Returns: that map.
    public func latestClusterMap() async throws -> ClusterMap {
        let topology = try await currentTopology()
        let request = Message.clusterMapRequest(ClusterMapRequest(knownEpoch: topology.map.epoch))
        var latest = topology.map
        _ = await poll(topology.map.voters, with: request, in: topology) { _, answer in
            if case .success(.clusterMapResponse(let response)) = answer, response.clusterId == latest.clusterID,
                response.epoch > latest.epoch
            {
                latest = response.map
            }
            return MapProposer.Step.wait
        }
        return try install(latest).map
    }

    /// The cluster map `node` holds now.
    public func clusterMap(node: String) async throws -> ClusterMap {
        let topology = try await currentTopology()
        let answer = try await call(.clusterMapRequest(ClusterMapRequest(knownEpoch: 0)), node: node, in: topology)
        guard case .clusterMapResponse(let response) = answer else {
            throw KVClientError.protocolViolation("\(node) answered ClusterMap with \(answer.type)")
        }
        return response.map
    }

    /// Each node's cluster-map epoch, nil for a node that did not answer.
    public func clusterEpochs() async throws -> [String: UInt64?] {
        let topology = try await currentTopology()
        let request = Message.clusterMapRequest(ClusterMapRequest(knownEpoch: topology.map.epoch))
        var epochs: [String: UInt64?] = [:]
        for node in topology.map.voters { epochs[node] = .some(nil) }
        _ = await poll(topology.map.voters, with: request, in: topology) { node, answer in
            if case .success(.clusterMapResponse(let response)) = answer { epochs[node] = response.epoch }
            return MapProposer.Step.wait
        }
        return epochs
    }

    /// Sends `request` to every node in `nodes` at once and feeds each answer to `handle` as it
    /// arrives, until `handle` returns a step other than `.wait` or every node answered (each call is
    /// bounded by the request timeout).
    ///
    /// - Returns: the last step `handle` returned.
    private func poll(
        _ nodes: [String], with request: Message, in topology: Topology,
        handle: (String, Result<Message, any Error>) -> MapProposer.Step
    ) async -> MapProposer.Step {
        await withTaskGroup(of: (String, Result<Message, any Error>).self) { group in
            for node in nodes {
                group.addTask {
                    do {
                        return (node, .success(try await self.call(request, node: node, in: topology)))
                    } catch {
                        return (node, .failure(error))
                    }
                }
            }
            var step = MapProposer.Step.wait
            for await (node, answer) in group {
                step = handle(node, answer)
                if step != .wait { break }
            }
            return step
        }
    }
}
