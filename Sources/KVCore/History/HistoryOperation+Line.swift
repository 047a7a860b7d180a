/// The plain-text history format: one operation per line, so that real-process tests and `kvsim`
/// can save a history and check or replay it later.
///
/// A line has nine fields separated by single spaces, and a tenth for a write with a time to live:
///
///     id client key kind value invoked completed outcome version [expires]
///     7 c1 0x6b31 write 0x7631 100 120 wrote 0.6@1
///     12 c2 0x6b31 read 0x7631 130 140 read 0.6@1
///     13 c2 0x6b31 read - 150 160 read 0.9@2
///     14 c3 0x6b31 delete - 170 - pending -
///     15 c1 0x6b31 write 0x7632 180 190 wrote 0.19@1 2170
///
/// - `id`: decimal.
/// - `client`: the name with `%` and every byte outside printable ASCII (space included) written
///   `%XX`; an empty name is `-`, and a name that is exactly `-` is written `%2D`.
/// - `key`: `0x` then lowercase hex (`0x` alone is the empty key).
/// - `kind`: `write`, `delete` or `read`.
/// - `value`: for a write, the value written; for a read, the value read; `0x` + hex, or `-` for
///   none (a delete, a read that was not answered, or read an absent key or a tombstone).
/// - `invoked`, `completed`: decimal times; `completed` is `-` for a pending operation.
/// - `outcome`: `pending`, `failed`, `wrote` or `read`.
/// - `version`: for `wrote`, the acknowledged version; for `read`, the version read or `-` for
///   absent; otherwise `-`. Written as ``Version/description`` (`millis.counter@writer-hex`).
/// - `expires`: only for a write with a time to live, ``HistoryOperation/expiresAt`` in decimal.
///
/// Lines that are empty or start with `#` are not operations; ``HistoryOperation/lines(_:)`` skips them.
extension HistoryOperation {
    /// This operation as one line of the history format (no newline).
    public var line: String {
        var value: [UInt8]?
        switch (kind, outcome) {
        case (.write(let written), _): value = written
        case (.read, .read(_, let read)): value = read
        default: value = nil
        }
        let outcomeField: String
        var version: Version?
        switch outcome {
        case .pending: outcomeField = "pending"
        case .failed: outcomeField = "failed"
        case .wrote(let wrote):
            outcomeField = "wrote"
            version = wrote
        case .read(let read, _):
            outcomeField = "read"
            version = read
        }
        let kindField: String
        switch kind {
        case .write: kindField = "write"
        case .delete: kindField = "delete"
        case .read: kindField = "read"
        }
        let fields = [
            String(id), Self.escape(client), "0x" + HistoryText.hex(key), kindField,
            value.map { "0x" + HistoryText.hex($0) } ?? "-", String(invokedAt), completedAt.map { String($0) } ?? "-",
            outcomeField, version.map(\.description) ?? "-",
        ]
        return (fields + (expiresAt.map { [String($0)] } ?? [])).joined(separator: " ")
    }

    /// Reads one line of the history format written by ``line``.
    public init(line: String) throws(HistoryFormatError) {
        let fields = line.split(separator: " ", omittingEmptySubsequences: false)
        guard fields.count == 9 || fields.count == 10 else {
            throw HistoryFormatError("expected 9 or 10 fields, found \(fields.count)", line: line)
        }
        func fail(_ index: Int, _ name: String, _ why: String) -> HistoryFormatError {
            HistoryFormatError("field \(index + 1) (\(name)) \(why): \"\(fields[index])\"", line: line)
        }
        func bytes(_ index: Int, _ name: String) throws(HistoryFormatError) -> [UInt8]? {
            if fields[index] == "-" { return nil }
            guard fields[index].hasPrefix("0x"), let bytes = HistoryText.unhex(fields[index].dropFirst(2)) else {
                throw fail(index, name, "is neither - nor 0x followed by hex")
            }
            return bytes
        }
        func number(_ index: Int, _ name: String) throws(HistoryFormatError) -> UInt64 {
            guard let number = UInt64(fields[index]) else { throw fail(index, name, "is not a decimal number") }
            return number
        }

        guard let id = Int(fields[0]) else { throw fail(0, "id", "is not a decimal number") }
        guard let client = Self.unescape(fields[1]) else { throw fail(1, "client", "is not a %-escaped UTF-8 name") }
        guard let key = try bytes(2, "key") else { throw fail(2, "key", "is missing") }
        let value = try bytes(4, "value")
        let kind: Kind
        switch fields[3] {
        case "write":
            guard let value else { throw fail(4, "value", "is missing for a write") }
            kind = .write(value: value)
        case "delete": kind = .delete
        case "read": kind = .read
        default: throw fail(3, "kind", "is not write, delete or read")
        }
        let invokedAt = try number(5, "invoked")
        let completedAt = fields[6] == "-" ? nil : try number(6, "completed")
        let version: Version?
        if fields[8] == "-" {
            version = nil
        } else {
            guard let parsed = Self.version(fields[8]) else { throw fail(8, "version", "is not millis.counter@writer") }
            version = parsed
        }
        let outcome: Outcome
        switch fields[7] {
        case "pending": outcome = .pending
        case "failed": outcome = .failed
        case "wrote":
            guard let version else { throw fail(8, "version", "is missing for wrote") }
            outcome = .wrote(version)
        case "read":
            if version == nil, value != nil { throw fail(4, "value", "is given for an absent key") }
            outcome = .read(version, value: value)
        default: throw fail(7, "outcome", "is not pending, failed, wrote or read")
        }
        if kind == .read, value != nil, fields[7] != "read" {
            throw fail(4, "value", "is given for a read that was not answered")
        }
        switch outcome {
        case .pending, .failed:
            if version != nil { throw fail(8, "version", "is given for an operation without an answer") }
        default: break
        }
        if (outcome == .pending) != (completedAt == nil) {
            throw fail(6, "completed", "must be - exactly when the outcome is pending")
        }
        if let completedAt, completedAt < invokedAt { throw fail(6, "completed", "is before invoked") }
        var expiresAt: UInt64?
        if fields.count == 10 {
            guard case .write = kind else { throw fail(9, "expires", "is given for a \(fields[3])") }
            expiresAt = try number(9, "expires")
        }
        self.init(
            id: id, client: client, key: key, kind: kind, invokedAt: invokedAt, completedAt: completedAt,
            outcome: outcome, expiresAt: expiresAt)
        guard outcomeFitsKind else { throw fail(7, "outcome", "does not fit kind \(fields[3])") }
    }

    /// Reads a whole history: one operation per line, skipping empty lines and `#` comments.
    public static func lines(_ text: String) throws(HistoryFormatError) -> [HistoryOperation] {
        var operations: [HistoryOperation] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.hasSuffix("\r") ? line.dropLast() : line
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            operations.append(try HistoryOperation(line: String(trimmed)))
        }
        return operations
    }

    static func escape(_ client: String) -> String {
        if client.isEmpty { return "-" }
        if client == "-" { return "%2D" }
        var out: [UInt8] = []
        for byte in client.utf8 {
            if byte > 0x20, byte < 0x7F, byte != UInt8(ascii: "%") {
                out.append(byte)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(contentsOf: HistoryText.hex([byte]).uppercased().utf8)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func unescape(_ field: Substring) -> String? {
        if field == "-" { return "" }
        let utf8 = Array(field.utf8)
        var out: [UInt8] = []
        var index = 0
        while index < utf8.count {
            if utf8[index] == UInt8(ascii: "%") {
                guard index + 2 < utf8.count, let high = HistoryText.nibble(utf8[index + 1]),
                    let low = HistoryText.nibble(utf8[index + 2])
                else { return nil }
                out.append(high << 4 | low)
                index += 3
            } else {
                out.append(utf8[index])
                index += 1
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    /// Parses ``Version/description``: `millis.counter@writer-hex`.
    static func version(_ text: Substring) -> Version? {
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, let writer = UInt64(parts[1], radix: 16) else { return nil }
        let clock = parts[0].split(separator: ".", omittingEmptySubsequences: false)
        guard clock.count == 2, let millis = UInt64(clock[0]), millis < 1 << 48, let counter = UInt16(clock[1]) else {
            return nil
        }
        return Version(hlc: millis << 16 | UInt64(counter), writer: writer)
    }
}
