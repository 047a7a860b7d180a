import Foundation
import Testing

/// `kvctl`'s shell completion (swift-argument-parser's) and `scripts/install-completion.sh`.
@Suite struct CompletionTests {
    static let shells = ["bash", "zsh", "fish"]

    /// The generated script of every shell names each of kvctl's subcommands.
    @Test(arguments: shells) func scriptNamesEverySubcommand(_ shell: String) throws {
        // The help's closing "See 'kvctl help <subcommand>'" line is indented as the names are.
        let subcommands = KvctlCommandTreeTests.subcommands(try run("kvctl", ["--help"]).stdout)
            .filter { $0.first?.isLowercase == true }
        #expect(subcommands.count >= 10 && subcommands.contains("put") && subcommands.contains("keyspace"))
        let generated = try run("kvctl", ["--generate-completion-script", shell])
        #expect(generated.status == 0, "\(generated.stderr)")
        #expect(!generated.stdout.isEmpty)
        for subcommand in subcommands {
            #expect(generated.stdout.contains(subcommand), "\(shell) completion lacks \(subcommand)")
        }
    }

    /// The script installs each shell's completion under the user's home by default, where the shell
    /// looks for it, and refuses a shell it does not know.
    @Test func installsUnderTheUsersHome() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let script = root.appendingPathComponent("scripts/install-completion.sh").path
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("completion-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: home) }
        let kvctl = binDirectory.appendingPathComponent("kvctl").path
        func install(_ shell: String) throws -> CommandResult {
            try run(
                "/usr/bin/env",
                ["HOME=\(home.path)", "XDG_DATA_HOME=", "XDG_CONFIG_HOME=", script, "--shell", shell, "--kvctl", kvctl])
        }
        let installed = [
            "bash": ".local/share/bash-completion/completions/kvctl",
            "zsh": ".local/share/zsh/site-functions/_kvctl",
            "fish": ".config/fish/completions/kvctl.fish",
        ]
        for (shell, path) in installed {
            let result = try install(shell)
            #expect(result.status == 0, "\(shell): \(result.stderr)")
            let text = try String(contentsOf: home.appendingPathComponent(path), encoding: .utf8)
            let generated = try run("kvctl", ["--generate-completion-script", shell]).stdout
            #expect(
                text.trimmingCharacters(in: .newlines) == generated.trimmingCharacters(in: .newlines), "\(shell)")
        }
        let unknown = try install("tcsh")
        #expect(unknown.status == 64 && unknown.stderr.contains("no completion for shell 'tcsh'"), "\(unknown.stderr)")
    }
}
