import KVCluster
package import KVCore
import KVRPC
import KVTLS
import KVWire

extension KVClient {
    /// Checks that node `node` answers at `address` (a `Ping`, its certificate naming `node`) before
    /// it is added: a join of a node that is not running was decided anyway, and its change, never
    /// ending (nothing to stream to), refused every other change until the node came.
    ///
    /// - Throws: ``KVClientError/unavailable(_:)`` naming the address and why.
    package func probe(node: String, at address: String) async throws {
        let (host, port) = try Self.parse(address)
        let client = connection(to: node, host: host, port: port)
        do {
            _ = try await client.call(
                .pingRequest(PingRequest(epoch: 0, clock: clockNow())), timeout: configuration.requestTimeout)
            await client.close()
        } catch {
            await client.close()
            throw KVClientError.unavailable(
                "\(node) does not answer at \(address) (\(error)): start it first (kvd --id \(node) with the "
                    + "cluster's file and an empty data folder), then join it")
        }
    }

    /// Makes `change` to the cluster map: the next epoch is decided by a majority of the current
    /// members (`MapProposer`: one Paxos instance per epoch, `ClusterChangeDriver`), then committed to
    /// every node (the others learn it by gossip). Needs an admin certificate.
    ///
    /// - Returns: the new map, also in use by this client from now on.
    /// - Throws: `ClusterChangeError` when the change does not fit the map, when the map changed
    ///   meanwhile, when another change was being decided at the same time, or when too few members
    ///   answered (nothing was changed in each case); `KVClientError` when no node could be reached.
    package func changeCluster(_ change: ClusterChange) async throws -> ClusterMap {
        guard identity.role == .admin else {
            throw KVClientError.invalidArgument("changing the cluster map needs an admin certificate")
        }
        let base = try await latestClusterMap()
        let proposed = try base.applying(change)
        let topology = try await currentTopology()
        // Unique per attempt, so that two attempts of one operator never share a ballot.
        let ballot = Ballot(
            round: configuration.wallClockMillis(), proposer: "\(identity.name)#\(UInt32.random(in: 0...UInt32.max))")
        do {
            let tls = self.tls
            let chosen = try await ClusterChangeDriver.decide(
                base: base, proposed: proposed, ballot: ballot, verifier: TLSMapVotes(context: tls)
            ) { node, request in try await self.call(request, node: node, in: topology) }
            try install(chosen)
            return chosen
        } catch ClusterChangeError.concurrentChange(let epoch, let proposer) {
            // The rival may have completed this very map (it must propose what a voter accepted).
            try await Task.sleep(for: .milliseconds(500))
            if try await latestClusterMap() == proposed { return proposed }
            throw ClusterChangeError.concurrentChange(epoch: epoch, proposer: proposer)
        } catch let error as ClusterChangeError {
            _ = try? await latestClusterMap()
            throw error
        }
    }

    /// Asks every node in use for its cluster map and installs the latest one.
    ///
    /// - Returns: that map.
    package func latestClusterMap() async throws -> ClusterMap {
        let topology = try await currentTopology()
        let request = Message.clusterMapRequest(ClusterMapRequest(knownEpoch: topology.map.epoch, epoch: 0))
        var latest = topology.map
        _ = await ClusterChangeDriver.poll(topology.map.voters, with: request, call: call(in: topology)) { _, answer in
            if case .success(.clusterMapResponse(let response)) = answer, response.clusterId == latest.clusterID,
                response.epoch > latest.epoch
            {
                latest = response.map
            }
            return .wait
        }
        return try install(latest).map
    }

    /// The cluster map `node` holds now.
    package func clusterMap(node: String) async throws -> ClusterMap {
        let topology = try await currentTopology()
        let answer = try await call(
            .clusterMapRequest(ClusterMapRequest(knownEpoch: 0, epoch: 0)), node: node, in: topology)
        guard case .clusterMapResponse(let response) = answer else {
            throw KVClientError.protocolViolation("\(node) answered ClusterMap with \(answer.type)")
        }
        return response.map
    }

    /// The highest protocol version of each member as `node` knows it (`ClusterMapResponse.memberVersions`:
    /// its own, and each peer's from its last handshake with it); empty from a node of version 3, or
    /// when this client speaks only 3.
    public func memberProtocolVersions(node: String) async throws -> [String: UInt16] {
        let topology = try await currentTopology()
        let answer = try await call(
            .clusterMapRequest(ClusterMapRequest(knownEpoch: 0, epoch: 0)), node: node, in: topology)
        guard case .clusterMapResponse(let response) = answer else {
            throw KVClientError.protocolViolation("\(node) answered ClusterMap with \(answer.type)")
        }
        return Dictionary(
            (response.memberVersions ?? []).map { ($0.nodeId, $0.protocolVersion) }, uniquingKeysWith: max)
    }

    /// Each node's cluster-map epoch, nil for a node that did not answer.
    package func clusterEpochs() async throws -> [String: UInt64?] {
        let topology = try await currentTopology()
        let request = Message.clusterMapRequest(ClusterMapRequest(knownEpoch: topology.map.epoch, epoch: 0))
        var epochs: [String: UInt64?] = [:]
        for node in topology.map.voters { epochs[node] = .some(nil) }
        _ = await ClusterChangeDriver.poll(topology.map.voters, with: request, call: call(in: topology)) {
            node, answer in
            if case .success(.clusterMapResponse(let response)) = answer { epochs[node] = response.epoch }
            return .wait
        }
        return epochs
    }

    /// One call to a node of `topology`, as `ClusterChangeDriver` makes them.
    private func call(in topology: Topology) -> ClusterChangeDriver.Call {
        { node, request in try await self.call(request, node: node, in: topology) }
    }
}
