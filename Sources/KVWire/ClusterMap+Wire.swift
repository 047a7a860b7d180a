public import KVCore

extension MapBody {
    /// The wire form of `map`.
    public init(_ map: ClusterMap) {
        self.init(
            clusterId: map.clusterID, epoch: map.epoch, replicationFactor: UInt8(clamping: map.replicationFactor),
            nodes: map.nodes.map { NodeEntry(id: $0.id, address: $0.address, tokens: $0.tokens, state: $0.state) },
            pendingReplicationFactor: UInt8(clamping: map.pendingReplicationFactor ?? 0), streaming: map.streaming,
            changeEpoch: map.changeEpoch ?? 0)
    }
}

extension ClusterMapResponse {
    /// The answer that carries `map`.
    public init(_ map: ClusterMap) {
        let body = MapBody(map)
        self.init(
            clusterId: body.clusterId, epoch: body.epoch, replicationFactor: body.replicationFactor, nodes: body.nodes,
            pendingReplicationFactor: body.pendingReplicationFactor, streaming: body.streaming,
            changeEpoch: body.changeEpoch)
    }

    /// The map this answer carries.
    public var map: ClusterMap {
        MapBody(
            clusterId: clusterId, epoch: epoch, replicationFactor: replicationFactor, nodes: nodes,
            pendingReplicationFactor: pendingReplicationFactor, streaming: streaming, changeEpoch: changeEpoch
        ).map
    }
}

extension MapBody {
    /// The cluster map this body describes (not checked: `ClusterMap.ring()` validates it).
    public var map: ClusterMap {
        ClusterMap(
            clusterID: clusterId, epoch: epoch, replicationFactor: Int(replicationFactor),
            nodes: nodes.map { ClusterMap.Node(id: $0.id, address: $0.address, tokens: $0.tokens, state: $0.state) },
            pendingReplicationFactor: pendingReplicationFactor == 0 ? nil : Int(pendingReplicationFactor),
            streaming: streaming, changeEpoch: changeEpoch == 0 ? nil : changeEpoch)
    }
}

extension MapPrepareResponse {
    /// The wire form of a voter's answer to a prepare, at its committed `epoch`.
    public init(_ vote: MapVote, epoch: UInt64) {
        switch vote {
        case .granted(let accepted):
            self.init(
                vote: .granted, epoch: epoch, promised: nil, acceptedBallot: accepted?.ballot,
                accepted: accepted.map { MapBody($0.map) })
        case .stale(let current):
            self.init(vote: .stale, epoch: current, promised: nil, acceptedBallot: nil, accepted: nil)
        case .rejected(let promised):
            self.init(vote: .rejected, epoch: epoch, promised: promised, acceptedBallot: nil, accepted: nil)
        }
    }

    /// The vote this answer carries; nil when its fields contradict each other.
    public var mapVote: MapVote? {
        switch self.vote {
        case .granted:
            switch (acceptedBallot, accepted) {
            case (nil, nil): return .granted(accepted: nil)
            case (let ballot?, let body?): return .granted(accepted: MapProposal(ballot: ballot, map: body.map))
            default: return nil
            }
        case .stale: return .stale(epoch: epoch)
        case .rejected: return promised.map { .rejected(promised: $0) }
        }
    }
}

extension MapAcceptResponse {
    /// The wire form of a voter's answer to an accept, at its committed `epoch`.
    public init(_ vote: MapVote, epoch: UInt64) {
        switch vote {
        case .granted: self.init(vote: .granted, epoch: epoch, promised: nil)
        case .stale(let current): self.init(vote: .stale, epoch: current, promised: nil)
        case .rejected(let promised): self.init(vote: .rejected, epoch: epoch, promised: promised)
        }
    }

    /// The vote this answer carries; nil when a rejection names no ballot.
    public var mapVote: MapVote? {
        switch self.vote {
        case .granted: return .granted(accepted: nil)
        case .stale: return .stale(epoch: epoch)
        case .rejected: return promised.map { .rejected(promised: $0) }
        }
    }
}
