public import KVCore

/// Who is at the other end of a TLS connection, as its verified certificate says.
public struct PeerIdentity: Sendable, Hashable {
    /// The certificate's subject common name (a node id, or a client's or admin's name).
    public var name: String
    /// The role from the URI SAN `urn:quorumkv:role:<role>`; decides what the peer may send.
    public var role: Role
    /// DNS subject alternative names.
    public var dnsNames: [String]
    /// IP address subject alternative names, in text form ("127.0.0.11", "::1").
    public var ipAddresses: [String]

    public init(name: String, role: Role, dnsNames: [String] = [], ipAddresses: [String] = []) {
        self.name = name
        self.role = role
        self.dnsNames = dnsNames
        self.ipAddresses = ipAddresses
    }
}
