import KVCore

// `SeededGenerator` (SplitMix64) lives in CoordinationSupport.swift.

func nodeIDs(_ count: Int) -> [String] {
    (1...count).map { "n\($0)" }
}

/// The preference list by the specification, read literally: sort every vnode, scan for the smallest
/// token >= the key's token (else the smallest token), then walk clockwise collecting distinct nodes.
func referencePreferenceList(_ ring: Ring, _ token: Token) -> [String] {
    let vnodes = ring.nodes.flatMap { node in node.tokens.map { (token: $0, id: node.id) } }
        .sorted { $0.token < $1.token }
    var start = 0
    for (index, vnode) in vnodes.enumerated() where vnode.token >= token.value {
        start = index
        break
    }
    var result: [String] = []
    var index = start
    while result.count < ring.replicationFactor {
        if !result.contains(vnodes[index].id) {
            result.append(vnodes[index].id)
        }
        index = (index + 1) % vnodes.count
    }
    return result
}

/// Largest replica share over the mean one.
func imbalance(_ ring: Ring) -> Double {
    let shares = ring.replicaShare().values
    let mean = Double(ring.replicationFactor) / Double(ring.nodes.count)
    return shares.max()! / mean
}
