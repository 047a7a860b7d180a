/// Proof that a cluster map was chosen, which a node checks before it adopts a map a peer sent.
///
/// Mutual TLS says who is connected, not that what they send is true: a holder of one node
/// certificate could otherwise commit any map (a later epoch, other tokens, other addresses) and
/// every node would take it. So a voter that accepts a proposal signs it with its node key, the
/// proposer collects the signatures of the majority that chose the map, and a node adopts a map only
/// when it is the next epoch after its own and the signatures of a majority of its own map's voters
/// come with it. A compromised node can sign only as itself.

/// One voter's signed statement that it accepted `MapProposal` (a ballot and a map) for the next epoch.
public struct MapVoteSignature: Sendable, Hashable {
    /// The voter's node id.
    public var voter: String
    /// The voter's certificate (DER): issued by the cluster's CA, with the voter's id as its name.
    public var certificate: [UInt8]
    /// The voter's signature of the proposal's canonical bytes.
    public var signature: [UInt8]

    public init(voter: String, certificate: [UInt8], signature: [UInt8]) {
        self.voter = voter
        self.certificate = certificate
        self.signature = signature
    }
}

/// The signatures that show a map was chosen under `ballot`.
public struct MapProof: Sendable, Hashable {
    public var ballot: Ballot
    public var signatures: [MapVoteSignature]

    public init(ballot: Ballot, signatures: [MapVoteSignature]) {
        self.ballot = ballot
        self.signatures = signatures
    }

    /// Why this proof does not show that `map` was chosen as the map after `base`, or nil when it
    /// does: signatures of distinct voters of `base`, each valid for `map` under `ballot`, at least a
    /// majority of them.
    public func refusal(of map: ClusterMap, after base: ClusterMap, verifier: some MapVoteVerifier) -> String? {
        let voters = Set(base.voters)
        let majority = voters.count / 2 + 1
        guard signatures.count <= voters.count else {
            return "the proof has \(signatures.count) signatures for \(voters.count) voters"
        }
        let proposal = MapProposal(ballot: ballot, map: map)
        var signers = Set<String>()
        for signature in signatures {
            guard voters.contains(signature.voter) else {
                return "\(signature.voter) signed, but is not a voter of epoch \(base.epoch)"
            }
            guard signers.insert(signature.voter).inserted else { return "\(signature.voter) signed twice" }
            guard verifier.verify(signature, of: proposal) else {
                return "the signature of \(signature.voter) does not verify"
            }
        }
        guard signers.count >= majority else {
            return
                "signed by \(signers.count) of the \(voters.count) voters of epoch \(base.epoch); \(majority) are needed"
        }
        return nil
    }
}

/// Signs this node's acceptance of a proposal (production: with the node's TLS key).
public protocol MapVoteSigner: Sendable {
    /// The signature, or nil when the node cannot sign (its vote then does not count).
    func sign(_ proposal: MapProposal) -> MapVoteSignature?
}

/// Checks one voter's signature of a proposal (production: the certificate chains to the cluster's
/// CA and names the voter as a node, and its key made the signature of the proposal's bytes).
public protocol MapVoteVerifier: Sendable {
    func verify(_ signature: MapVoteSignature, of proposal: MapProposal) -> Bool
}

/// How a node took a map a peer sent (`MapAcceptor.learn(_:proof:verifier:)`).
public enum MapLearning: Sendable, Hashable {
    /// The map is now this node's.
    case adopted
    /// Not later than this node's map: nothing to do.
    case notNewer
    /// Later than the next epoch: the maps in between must be learned first, one at a time.
    case gap(next: UInt64)
    /// Not taken, for this reason (another cluster, not a valid ring, no valid proof).
    case refused(String)

    public var isAdopted: Bool { self == .adopted }
}

extension UInt64 {
    /// Whether this epoch is the one right after `epoch`, without arithmetic that could trap.
    public func isNext(after epoch: UInt64) -> Bool {
        self > epoch && self - 1 == epoch
    }
}
