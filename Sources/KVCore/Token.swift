/// A position on the 64-bit consistent-hashing ring.
///
/// A key's token is `XXH64(key, seed: 0)`; `proto-spec/RING.md` specifies it with test vectors so
/// that a client in any language places keys on the same replicas.
public struct Token: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var value: UInt64

    public init(_ value: UInt64) {
        self.value = value
    }

    /// The token of a key.
    public init(key: some Collection<UInt8>) {
        self.value = XXH64.hash(key, seed: 0)
    }

    public static func < (lhs: Token, rhs: Token) -> Bool { lhs.value < rhs.value }

    public var description: String {
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
