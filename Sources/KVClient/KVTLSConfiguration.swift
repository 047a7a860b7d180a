package import KVTLS

/// The client's side of the cluster's mutual TLS: the cluster's CA, and the client's certificate and
/// private key (which must carry the `client` or `admin` role; `kvctl certs issue` makes them).
///
/// Files are read when the client is made, so rotated files take effect for new clients.
public struct KVTLSConfiguration: Sendable {
    /// The configuration the TLS layer reads.
    package var settings: TLSConfiguration

    /// Reads the cluster CA (one or more CA certificates), the client's certificate and its private
    /// key from PEM files, and certificate revocation lists from `crlFile` when given.
    public init(caFile: String, certificateFile: String, keyFile: String, crlFile: String? = nil) {
        settings = TLSConfiguration(
            caFile: caFile, certificateFile: certificateFile, keyFile: keyFile, crlFile: crlFile)
    }

    /// Takes the cluster CA, the client's certificate and its private key, and optionally revocation
    /// lists, as PEM text (for secrets that do not live in files).
    public init(caPEM: String, certificatePEM: String, keyPEM: String, crlPEM: String? = nil) {
        settings = TLSConfiguration(caPEM: caPEM, certificatePEM: certificatePEM, keyPEM: keyPEM, crlPEM: crlPEM)
    }

    /// Wraps the TLS layer's configuration.
    package init(_ settings: TLSConfiguration) {
        self.settings = settings
    }
}
