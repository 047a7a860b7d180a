/// What a peer is, as its certificate says. The role decides which messages it may send.
///
/// Clients read and write; nodes also exchange hints, Merkle trees and streams; admins may also run
/// administrative commands and address one replica directly.
public enum Role: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case node = 1
    case client = 2
    case admin = 3

    /// The role's name as it appears in a certificate's URI SAN, `urn:quorumkv:role:<name>`.
    public var name: String {
        switch self {
        case .node: "node"
        case .client: "client"
        case .admin: "admin"
        }
    }

    public init?(name: String) {
        switch name {
        case "node": self = .node
        case "client": self = .client
        case "admin": self = .admin
        default: return nil
        }
    }

    public var description: String { name }

    /// The URI SAN prefix that carries the role in a certificate.
    public static let uriPrefix = "urn:quorumkv:role:"

    /// The URI SAN naming this role.
    public var uri: String { Role.uriPrefix + name }
}
