import KVCore

/// A cluster file's `seeds`: the addresses of the members when `kvctl` last changed the membership,
/// which a client asks for the current map as well as the nodes the file lists. The nodes listed seed
/// the ring of the file's epoch and are never rewritten (a node started from the file must find that
/// epoch as it was); once all of them have left, the seeds are how a client finds the cluster.
extension ClusterFile {
    /// The `seeds` of the cluster file `text` (none when it has none), the file checked whole.
    public static func seeds(in text: String, source: String = "cluster file") throws(ConfigError) -> [String] {
        try parseWithSeeds(text, source: source).seeds
    }

    /// `seeds` when each is a `HOST:PORT` within `Limits.addressBytesMax`, and at most `Limits.nodesMax`.
    static func checked(seeds: [String], source: String) throws(ConfigError) -> [String] {
        guard seeds.count <= Limits.nodesMax else {
            throw ConfigError("\(source): 'seeds' must be a list of at most \(Limits.nodesMax) HOST:PORT addresses")
        }
        for seed in seeds {
            guard HostPort(parsing: seed, defaultPort: -1).map({ $0.port >= 0 }) == true,
                seed.utf8.count <= Limits.addressBytesMax
            else { throw ConfigError("\(source): seed '\(seed)' must be HOST:PORT") }
        }
        return seeds
    }

    /// `text` with its `seeds` set to `seeds` (the line, and a block list under it, replaced; appended
    /// when there is none): the rest of the file is left exactly as it was.
    public static func replacingSeeds(in text: String, with seeds: [String]) -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        var kept: [String] = []
        var index = 0
        while index < lines.count {
            let line = lines[index]
            if line.hasPrefix("seeds:") {
                index += 1
                // A block list under it: indented lines, or `- ` items at the margin.
                while index < lines.count, lines[index].hasPrefix(" ") || lines[index].hasPrefix("-") {
                    index += 1
                }
                continue
            }
            kept.append(line)
            index += 1
        }
        if kept.last == Self.seedsComment { kept.removeLast() }
        kept.append(Self.seedsComment)
        kept.append("seeds: [\(seeds.map { "\"\($0)\"" }.joined(separator: ", "))]")
        return kept.joined(separator: "\n") + "\n"
    }

    static let seedsComment = "# The members' addresses when kvctl last changed the membership."
}
