public import KVCore
import NIOCore

extension MapBody {
    /// The wire form of `map`.
    public init(_ map: ClusterMap) {
        self.init(
            clusterId: map.clusterID, epoch: map.epoch, replicationFactor: UInt8(clamping: map.replicationFactor),
            nodes: map.nodes.map {
                NodeEntry(
                    id: $0.id, address: $0.address, tokens: $0.tokens, state: $0.state, zone: $0.zone, ring: $0.ring)
            },
            pendingReplicationFactor: UInt8(clamping: map.pendingReplicationFactor ?? 0), streaming: map.streaming,
            changeEpoch: map.changeEpoch ?? 0, placement: PlacementBody(map.placement),
            pendingPlacement: map.pendingPlacement.map(PlacementBody.init),
            keyspaces: map.keyspaces.map(KeyspaceBody.init))
    }
}

extension KeyspaceBody {
    /// The wire form of `keyspace` (a TTL in whole milliseconds, clamped).
    public init(_ keyspace: Keyspace) {
        self.init(
            id: keyspace.id, name: keyspace.name, placement: PlacementBody(keyspace.placement),
            pendingPlacement: keyspace.pendingPlacement.map(PlacementBody.init),
            readLevel: LevelBody(keyspace.readLevel),
            writeLevel: LevelBody(keyspace.writeLevel),
            timeToLiveMillis: keyspace.timeToLive?.wholeMillisecondsClamped ?? 0,
            dropped: keyspace.dropped, ring: keyspace.ring, pendingRing: keyspace.pendingRing,
            lowKey: ByteBuffer(bytes: keyspace.lowKey))
    }

    /// The keyspace this body describes (not checked: the map's changes and rings check it).
    public var keyspace: Keyspace {
        Keyspace(
            id: id, name: name, placement: placement.placement, pendingPlacement: pendingPlacement?.placement,
            readLevel: readLevel.level, writeLevel: writeLevel.level,
            timeToLive: timeToLiveMillis == 0 ? nil : .milliseconds(Int64(clamping: timeToLiveMillis)),
            dropped: dropped,
            ring: ring, pendingRing: pendingRing, lowKey: Array(lowKey.readableBytesView))
    }
}

extension LevelBody {
    public init(_ level: ConsistencyLevel) {
        switch level {
        case .one: self.init(kind: .one, count: 0)
        case .quorum: self.init(kind: .quorum, count: 0)
        case .all: self.init(kind: .all, count: 0)
        case .count(let count): self.init(kind: .count, count: UInt8(clamping: count))
        case .localQuorum: self.init(kind: .localQuorum, count: 0)
        case .eachQuorum: self.init(kind: .eachQuorum, count: 0)
        }
    }

    public var level: ConsistencyLevel {
        switch kind {
        case .one: .one
        case .quorum: .quorum
        case .all: .all
        case .count: .count(Int(count))
        case .localQuorum: .localQuorum
        case .eachQuorum: .eachQuorum
        }
    }
}

extension PlacementBody {
    /// The wire form of a placement rule (counts over 255 are clamped: `Ring` refuses them anyway).
    public init(_ placement: Placement) {
        switch placement {
        case .simple(let replicas):
            self.init(kind: .simple, replicas: UInt8(clamping: replicas), perZone: 0, zones: [])
        case .spread(let replicas, let perZone):
            self.init(kind: .spread, replicas: UInt8(clamping: replicas), perZone: UInt8(clamping: perZone), zones: [])
        case .zones(let counts):
            self.init(
                kind: .zones, replicas: 0, perZone: 0,
                zones: counts.map { ZoneCountBody(zone: $0.zone, count: UInt8(clamping: $0.count)) })
        }
    }

    /// The rule this body describes (not checked: `Ring` validates it against the nodes).
    public var placement: Placement {
        switch kind {
        case .simple: .simple(replicas: Int(replicas))
        case .spread: .spread(replicas: Int(replicas), perZone: Int(perZone))
        case .zones: .zones(zones.map { Placement.ZoneCount(zone: $0.zone, count: Int($0.count)) })
        }
    }
}

extension LegacyMapBody {
    /// Protocol version 2's form of `map`; nil when the map uses zones or keyspaces, which version 2
    /// cannot say.
    public init?(_ map: ClusterMap) {
        guard !map.needsProtocolVersion3 else { return nil }
        self.init(
            clusterId: map.clusterID, epoch: map.epoch, replicationFactor: UInt8(clamping: map.replicationFactor),
            nodes: map.nodes.map {
                LegacyNodeEntry(id: $0.id, address: $0.address, tokens: $0.tokens, state: $0.state)
            },
            pendingReplicationFactor: UInt8(clamping: map.pendingReplicationFactor ?? 0), streaming: map.streaming,
            changeEpoch: map.changeEpoch ?? 0)
    }

    /// The map a version-2 node stored: no zones, `simple` placement.
    public var map: ClusterMap {
        ClusterMap(
            clusterID: clusterId, epoch: epoch, replicationFactor: Int(replicationFactor),
            nodes: nodes.map { ClusterMap.Node(id: $0.id, address: $0.address, tokens: $0.tokens, state: $0.state) },
            pendingReplicationFactor: pendingReplicationFactor == 0 ? nil : Int(pendingReplicationFactor),
            streaming: streaming, changeEpoch: changeEpoch == 0 ? nil : changeEpoch)
    }
}

extension ClusterMapResponse {
    /// The answer that carries `map` and the proof it was chosen, if the sender holds one.
    public init(_ map: ClusterMap, proof: MapProof? = nil) {
        let body = MapBody(map)
        self.init(
            clusterId: body.clusterId, epoch: body.epoch, replicationFactor: body.replicationFactor, nodes: body.nodes,
            pendingReplicationFactor: body.pendingReplicationFactor, streaming: body.streaming,
            changeEpoch: body.changeEpoch, proof: proof.map(MapProofBody.init), placement: body.placement,
            pendingPlacement: body.pendingPlacement, keyspaces: body.keyspaces)
    }

    /// The map this answer carries.
    public var map: ClusterMap {
        MapBody(
            clusterId: clusterId, epoch: epoch, replicationFactor: replicationFactor, nodes: nodes,
            pendingReplicationFactor: pendingReplicationFactor, streaming: streaming, changeEpoch: changeEpoch,
            placement: placement, pendingPlacement: pendingPlacement, keyspaces: keyspaces
        ).map
    }
}

extension MapBody {
    /// The cluster map this body describes (not checked: `ClusterMap.ring()` validates it). The
    /// placements say N; `replicationFactor` and `pendingReplicationFactor` repeat it for readers of
    /// protocol version 2's fields and are not read.
    public var map: ClusterMap {
        var map = ClusterMap(
            clusterID: clusterId, epoch: epoch, placement: placement.placement,
            nodes: nodes.map {
                ClusterMap.Node(
                    id: $0.id, address: $0.address, tokens: $0.tokens, state: $0.state, zone: $0.zone, ring: $0.ring)
            },
            pendingPlacement: pendingPlacement?.placement, streaming: streaming,
            changeEpoch: changeEpoch == 0 ? nil : changeEpoch)
        map.keyspaces = keyspaces.map(\.keyspace)
        return map
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
    /// The wire form of a voter's answer to an accept, at its committed `epoch`, with its signature
    /// of the proposal when it granted it.
    public init(_ vote: MapVote, epoch: UInt64, signature: MapVoteSignature?) {
        switch vote {
        case .granted:
            self.init(vote: .granted, epoch: epoch, promised: nil, signature: signature.map(MapVoteSignatureBody.init))
        case .stale(let current): self.init(vote: .stale, epoch: current, promised: nil, signature: nil)
        case .rejected(let promised): self.init(vote: .rejected, epoch: epoch, promised: promised, signature: nil)
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

extension MapVoteSignatureBody {
    public init(_ signature: MapVoteSignature) {
        self.init(
            voter: signature.voter, certificate: ByteBuffer(bytes: signature.certificate),
            signature: ByteBuffer(bytes: signature.signature))
    }

    public var mapVoteSignature: MapVoteSignature {
        MapVoteSignature(
            voter: voter, certificate: Array(certificate.readableBytesView),
            signature: Array(signature.readableBytesView))
    }
}

extension MapProofBody {
    public init(_ proof: MapProof) {
        self.init(ballot: proof.ballot, signatures: proof.signatures.map(MapVoteSignatureBody.init))
    }

    public var mapProof: MapProof {
        MapProof(ballot: ballot, signatures: signatures.map(\.mapVoteSignature))
    }
}

extension MapProposal {
    /// The bytes a voter signs when it accepts this proposal: a domain label, then the ballot and the
    /// map in their wire form (deterministic: every field in schema order). A map without zones is
    /// signed in protocol version 2's form (label `v1`, `LegacyMapBody`), so proofs made before zones
    /// existed still verify; one with zones in the full form (label `v2`, `MapBody`).
    public var signedBytes: [UInt8] {
        var buffer = ByteBuffer()
        if let legacy = LegacyMapBody(map) {
            buffer.writeString("quorumkv map accept v1\0")
            buffer.writeBallot(ballot)
            buffer.writeLegacyMapBody(legacy)
        } else {
            buffer.writeString("quorumkv map accept v2\0")
            buffer.writeBallot(ballot)
            buffer.writeMapBody(MapBody(map))
        }
        return Array(buffer.readableBytesView)
    }
}
