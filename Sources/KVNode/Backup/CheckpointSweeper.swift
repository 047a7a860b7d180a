import KVStorage
import Logging
import NIOPosix

/// Removes the checkpoints that backups left behind: a `kvctl backup` killed before it released its
/// checkpoints (or cut off from the node) would otherwise keep their hard links, and so the disk
/// space of files compaction deleted since, for ever. A store removes every checkpoint when it
/// opens; this removes, while the node runs, those nobody made or read for `idleMax`.
struct CheckpointSweeper {
    /// How long a checkpoint may go unused (no chunk read) before it is removed: a backup reads its
    /// files back to back, so an hour without a read means its `kvctl` is gone.
    static let idleMax: Duration = .seconds(3600)
    /// How often the node looks.
    static let interval: Duration = .seconds(60)

    var registry: CheckpointRegistry
    var pool: NIOThreadPool
    var logger: Logger

    /// Sweeps every `interval` until cancelled.
    func run() async {
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: Self.interval)
            } catch {
                return
            }
            let registry = self.registry
            let removed = (try? await pool.runIfActive { registry.removeIdle(longerThan: Self.idleMax) }) ?? []
            if !removed.isEmpty {
                logger.notice(
                    "removed backup checkpoints unused for an hour",
                    metadata: ["backup.checkpoints": "\(removed.joined(separator: ","))"])
            }
        }
    }
}
