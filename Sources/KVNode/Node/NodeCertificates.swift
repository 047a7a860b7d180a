import KVCore
public import KVTLS
import KVWire
public import Logging
import NIOPosix

/// What a certificate reload did: the new material in use, or why the files were refused (the node
/// then goes on with the material it had).
public enum CertificateReloadOutcome: Sendable, Hashable {
    case reloaded(TLSMaterialSummary)
    case refused(reason: String)
}

/// A node's TLS material, both ends: the server side for the connections it accepts (RPC and
/// metrics) and the client side for its own connections to peers (hint replay, anti-entropy,
/// streaming, pings, map votes). Both come from the same files and are reloaded together, all or
/// nothing, by SIGHUP (`kvd`) or `Admin` reloadCertificates (`kvctl certs reload`).
///
/// A reload changes the connections made afterwards, inbound and outbound; established connections
/// keep the material they started with.
public final class NodeCertificates: Sendable {
    /// The context of inbound connections.
    public let server: TLSContext
    /// The context of outbound connections to peers.
    public let client: TLSContext
    private let logger: Logger

    public init(server: TLSContext, client: TLSContext, logger: Logger) {
        precondition(server.side == .server && client.side == .client, "a server and a client context")
        self.server = server
        self.client = client
        self.logger = logger
    }

    /// When the node's certificate in use expires, in seconds since the Unix epoch.
    public var certificateNotAfterSeconds: UInt64? { server.certificateNotAfterSeconds }

    /// Reads the certificate, key, CA file and CRL file again, off the caller's thread (file reads
    /// block), and logs the outcome with `trigger` (`SIGHUP`, `admin`).
    public func reload(trigger: String) async -> CertificateReloadOutcome {
        let contexts = [server, client]
        let outcome: CertificateReloadOutcome
        do {
            let summaries = try await NIOThreadPool.singleton.runIfActive {
                try TLSContext.reload(contexts)
            }
            outcome = .reloaded(summaries[0])
        } catch let error as TLSError {
            outcome = .refused(reason: error.detail.isEmpty ? "\(error)" : error.detail)
        } catch {
            outcome = .refused(reason: "\(error)")
        }
        switch outcome {
        case .reloaded(let summary):
            logger.info(
                "certificates reloaded",
                metadata: Self.metadata(summary).merging(["tls.reload.trigger": "\(trigger)"]) { $1 })
        case .refused(let reason):
            logger.info(
                "certificate reload refused: the certificates in use stay",
                metadata: ["tls.reload.trigger": "\(trigger)", "tls.reload.reason": "\(reason)"])
        }
        return outcome
    }

    private static func metadata(_ summary: TLSMaterialSummary) -> Logger.Metadata {
        var metadata: Logger.Metadata = [
            "tls.ca_certificates": "\(summary.authorities.map(\.name).joined(separator: "; "))"
        ]
        if let certificate = summary.certificate {
            metadata["tls.certificate.name"] = "\(certificate.name)"
            metadata["tls.certificate.serial"] = "\(certificate.serial)"
            metadata["tls.certificate.issuer"] = "\(certificate.issuer)"
            if let notAfter = certificate.notAfterSeconds {
                metadata["tls.certificate.not_after"] = "\(CertificateSummary.format(seconds: notAfter))"
            }
        }
        if let lists = summary.revocationLists {
            metadata["tls.crl.revoked"] = "\(lists.map(\.revokedSerials.count).reduce(0, +))"
        }
        return metadata
    }
}

extension CertificateReloadOutcome {
    /// The results of `Admin` reloadCertificates (proto-spec/messages/07-admin.qkv).
    var adminResults: [Pair] {
        switch self {
        case .refused(let reason):
            return [Pair(name: "outcome", value: "refused"), Pair(name: "reason", value: reason)]
        case .reloaded(let summary):
            var pairs = [Pair(name: "outcome", value: "reloaded")]
            if let certificate = summary.certificate {
                pairs += [
                    Pair(name: "certificate_name", value: certificate.name),
                    Pair(name: "certificate_serial", value: certificate.serial),
                    Pair(name: "certificate_issuer", value: certificate.issuer),
                ]
                if let notAfter = certificate.notAfterSeconds {
                    pairs.append(Pair(name: "certificate_not_after", value: "\(notAfter)"))
                }
            }
            for (index, authority) in summary.authorities.enumerated() {
                pairs.append(Pair(name: "ca_certificate.\(index + 1)", value: authority.name))
            }
            if let lists = summary.revocationLists {
                pairs.append(
                    Pair(name: "crl_revoked", value: "\(lists.map(\.revokedSerials.count).reduce(0, +))"))
            }
            return pairs
        }
    }
}
