/// Node indices of one tree level as a Merkle query carries them (`proto-spec/MERKLE.md`, "Node
/// lists"): increasing, the first as itself and each next as its gap from the previous one minus one,
/// each an unsigned LEB128 varint (7 bits a byte, low bits first, high bit set on all bytes but the
/// last). A comparison names the nodes that differ, which lie close together or are few, so a node
/// costs about one byte instead of a `u32`'s four.
public enum MerkleNodeList {
    /// The bytes of `nodes`, which must increase and fit a `u32`.
    public static func encode(_ nodes: [Int]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(nodes.count + nodes.count / 4)
        var previous = -1
        for node in nodes {
            precondition(node > previous && node <= Int(UInt32.max), "node lists increase and fit a u32")
            var gap = UInt32(node - previous - 1)
            previous = node
            while gap >= 0x80 {
                bytes.append(UInt8(truncatingIfNeeded: gap) | 0x80)
                gap >>= 7
            }
            bytes.append(UInt8(gap))
        }
        return bytes
    }

    /// The nodes `bytes` encodes; nil if it is malformed: a varint cut short or longer than 5 bytes, an
    /// index past `u32`, or more than `countMax` nodes.
    public static func decode(
        _ bytes: some Sequence<UInt8>,
        countMax: Int = Limits.merkleNodesPerQueryMax
    ) -> [Int]? {
        var nodes: [Int] = []
        var previous = -1
        var gap: UInt64 = 0
        var shift: UInt64 = 0
        for byte in bytes {
            guard shift < 35 else { return nil }
            gap |= UInt64(byte & 0x7f) << shift
            shift += 7
            guard byte & 0x80 == 0 else { continue }
            let node = previous + 1 + Int(gap)
            guard node <= Int(UInt32.max), nodes.count < countMax else { return nil }
            nodes.append(node)
            previous = node
            (gap, shift) = (0, 0)
        }
        return shift == 0 ? nodes : nil
    }
}
