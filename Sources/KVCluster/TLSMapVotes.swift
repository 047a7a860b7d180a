public import KVCore
public import KVTLS
import KVWire

/// Map votes signed and checked with TLS material: a voter signs the proposal's canonical bytes
/// (`MapProposal.signedBytes`) with its node key and sends its certificate along; a signature counts
/// when that certificate was issued by the cluster CA to a node of the voter's name.
///
/// A context takes its current material at each use, so a node whose certificates are reloaded
/// signs and checks with the new material.
public struct TLSMapVotes: MapVoteSigner, MapVoteVerifier {
    private let context: TLSContext

    public init(context: TLSContext) {
        self.context = context
    }

    public func sign(_ proposal: MapProposal) -> MapVoteSignature? {
        let name = context.localIdentity.name
        guard context.localIdentity.role == .node, !name.isEmpty, let certificate = context.certificateDER,
            let signature = context.sign(proposal.signedBytes)
        else { return nil }
        return MapVoteSignature(voter: name, certificate: certificate, signature: signature)
    }

    public func verify(_ signature: MapVoteSignature, of proposal: MapProposal) -> Bool {
        context.verify(
            signature.signature, of: proposal.signedBytes, certificateDER: signature.certificate,
            name: signature.voter, role: .node)
    }
}
