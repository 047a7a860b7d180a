/// How histories show bytes, versions and operations to people.
enum HistoryText {
    /// Bytes shown longer than this are cut, with their length said.
    static let shownBytesMax = 48

    /// `"user:1"` when the bytes are printable UTF-8, else `0x75ff…`; long ones are cut.
    static func bytes(_ bytes: [UInt8]) -> String {
        let shown = bytes.prefix(shownBytesMax)
        let cut = bytes.count > shownBytesMax ? "… (\(bytes.count) bytes)" : ""
        if let text = String(validating: shown, as: UTF8.self), text.unicodeScalars.allSatisfy(isPrintable) {
            return "\"\(text)\"\(cut)"
        }
        return "0x\(hex(shown))\(cut)"
    }

    static func isPrintable(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0..<0x20, 0x7F..<0xA0: false
        default: scalar != "\"" && scalar != "\\"
        }
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes hex digits (either case); `nil` for an odd length or a non-hex character.
    static func unhex(_ text: Substring) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = nibble(utf8[index]), let low = nibble(utf8[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }

    static func nibble(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// `write #7 (client c1, invoked at 100, acknowledged at 120)`.
    static func operation(_ op: HistoryOperation) -> String {
        let name: String
        switch op.kind {
        case .write: name = "write"
        case .delete: name = "delete"
        case .read: name = "read"
        }
        let end: String
        switch (op.outcome, op.completedAt) {
        case (.pending, _), (_, nil): end = "never completed"
        case (.failed, let at?): end = "failed at \(at)"
        case (.wrote, let at?): end = "acknowledged at \(at)"
        case (.read, let at?): end = "completed at \(at)"
        }
        return "\(name) #\(op.id) (client \(op.client), invoked at \(op.invokedAt), \(end))"
    }

    /// What a read returned: `absent`, `version 0.6@1 (tombstone)` or `version 0.6@1 with value "v"`.
    static func readResult(_ version: Version?, _ value: [UInt8]?) -> String {
        guard let version else { return "absent (no version)" }
        guard let value else { return "version \(version) (tombstone)" }
        return "version \(version) with value \(bytes(value))"
    }
}
