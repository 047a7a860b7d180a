/// Why a node could not start or serve.
public struct NodeError: Error, Hashable, CustomStringConvertible {
    private enum Code: Hashable {
        case configuration
        case identity
        case storage
    }

    private let code: Code
    public let message: String

    private init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// A setting is missing, malformed or contradicts another.
    public static func configuration(_ message: String) -> NodeError { NodeError(.configuration, message) }
    /// The certificate or data folder belongs to another node, or the certificate lacks the node role.
    public static func identity(_ message: String) -> NodeError { NodeError(.identity, message) }
    /// The data folder cannot be opened.
    public static func storage(_ message: String) -> NodeError { NodeError(.storage, message) }

    public var description: String { message }
}
