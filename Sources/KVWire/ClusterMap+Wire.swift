public import KVCore
import NIOCore

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
    /// The answer that carries `map` and the proof it was chosen, if the sender holds one.
    public init(_ map: ClusterMap, proof: MapProof? = nil) {
        let body = MapBody(map)
        self.init(
            clusterId: body.clusterId, epoch: body.epoch, replicationFactor: body.replicationFactor, nodes: body.nodes,
            pendingReplicationFactor: body.pendingReplicationFactor, streaming: body.streaming,
            changeEpoch: body.changeEpoch, proof: proof.map(MapProofBody.init))
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
    /// map in their wire form (deterministic: every field in schema order).
    public var signedBytes: [UInt8] {
        var buffer = ByteBuffer()
        buffer.writeString("quorumkv map accept v1\0")
        buffer.writeBallot(ballot)
        buffer.writeMapBody(MapBody(map))
        return Array(buffer.readableBytesView)
    }
}
