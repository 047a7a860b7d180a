import ArgumentParser

/// `kvctl`: the QuorumKV command line, over mutual TLS.
@main
struct KVCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvctl",
        abstract: "Read, write and operate a QuorumKV cluster over mutual TLS.",
        discussion: """
            Exit codes: 0 success, 1 failure (a one-line cause on stderr), 2 key not found, 64 bad usage.
            """,
        subcommands: [
            Put.self, Get.self, Delete.self, Status.self, Repair.self, RingCommand.self, ClusterCommand.self,
            KeyspaceCommand.self,
            JoinCommand.self, LeaveCommand.self, ReplaceCommand.self, DrainCommand.self, WaitReadyCommand.self,
            Certs.self, BackupCommand.self,
            RestoreCommand.self,
        ]
    )

    /// Declared here too so that the global options may come before the command name
    /// (`kvctl --endpoints A put K V`); each command reads its own copy, which ArgumentParser fills from
    /// either position.
    @OptionGroup(visibility: .hidden) var global: GlobalOptions
}
