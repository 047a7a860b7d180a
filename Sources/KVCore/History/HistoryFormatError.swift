/// A history line that ``HistoryOperation/init(line:)`` cannot read, with the reason and the line.
public struct HistoryFormatError: Error, Hashable, CustomStringConvertible {
    /// What is wrong, e.g. `field 6 (invoked) is not a decimal number: "1x0"`.
    public let reason: String
    /// The line as given.
    public let line: String

    init(_ reason: String, line: some StringProtocol) {
        self.reason = reason
        self.line = String(line)
    }

    public var description: String { "bad history line: \(reason): \(line)" }
}
