/// A schema file that cannot be read, parsed or checked; the description starts with `file:line:`.
public struct SchemaError: Error, Hashable, CustomStringConvertible {
    public var location: SourceLocation?
    public var message: String

    public init(_ message: String, at location: SourceLocation?) {
        self.message = message
        self.location = location
    }

    public var description: String {
        if let location { "\(location): error: \(message)" } else { "error: \(message)" }
    }
}
