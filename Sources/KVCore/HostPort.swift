/// A network address as users write it: `host:port`, `[v6]:port`, or a host alone (the default port).
///
/// One parser for node addresses in flags, cluster files and client endpoints, so that they all accept
/// and refuse the same text.
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    /// The port a node listens on when an address names none.
    public static let defaultPort = 7411

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `text`; nil when it has no host or an invalid port (outside 0...65535).
    public init?(parsing text: String, defaultPort: Int = HostPort.defaultPort) {
        var host = Substring(text)
        var portText: Substring?
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            if rest.hasPrefix(":") { portText = rest.dropFirst() }
        } else if let colon = text.lastIndex(of: ":"), text.firstIndex(of: ":") == colon {
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty else { return nil }
        var port = defaultPort
        if let portText {
            guard let parsed = Int(portText), (0...65535).contains(parsed) else { return nil }
            port = parsed
        }
        self.init(host: String(host), port: port)
    }

    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}
