import Foundation
import Testing

@testable import KVSimulation

/// The mutation check: every bug in `Mutation` is planted in a production value, and the simulator
/// catches each one within the seeds of its `check`. A mutation added without a check does not
/// compile; one whose target the simulator does not run goes uncaught and fails here.
@Suite(.timeLimit(.minutes(5)))
struct MutationCheckTests {
    @Test(arguments: Mutation.allCases)
    func theSimulatorCatchesTheMutation(_ mutation: Mutation) async {
        let check = mutation.check
        let caught = await offThePool { check.caughtCount(mutation) }
        #expect(
            caught > 0,
            "\(mutation) (\(mutation.target)) went unnoticed in seeds \(check.seeds) of the \(check.profile) profile")
    }

    /// Receivers that switch ownership before streaming are caught with keyspaces on too, where each
    /// keyspace's transfer reports at once: seed 143 loses acknowledged writes of `default` and of
    /// `accounts` (3 of seeds 141...165 catch it, as 5 do without keyspaces).
    @Test func switchingBeforeStreamingIsCaughtWithKeyspaces() async {
        let check = MutationCheck(seeds: 143...143, profile: .keyspaceMembership)
        let caught = await offThePool { check.caughtCount(.switchBeforeStream) }
        #expect(caught > 0, "switchBeforeStream went unnoticed in seed 143 with keyspaces and membership")
    }

    /// The simulator's only use of a mutation is to turn on its target's switch, one line each:
    /// `value.switch = configuration.mutation == .case`, where `switch` is the `package var` named by
    /// the case's `target` in the production sources. A driver that tested the mutation itself would
    /// be a copy of the rule it breaks.
    @Test func eachMutationOnlyTurnsOnAProductionSwitch() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources").standardizedFileURL
        let simulation = try swiftFiles(in: sources.appendingPathComponent("KVSimulation"))
            .filter { !["Mutation.swift", "SimulationConfiguration.swift"].contains($0.lastPathComponent) }
        let assignment = try Regex(#"^\s*[\w\[\]\.]+\.(\w+) = configuration\.mutation == \.(\w+)$"#)
        var turnedOn: [String: [String]] = [:]
        for file in simulation {
            for line in try String(contentsOf: file, encoding: .utf8).split(separator: "\n")
            where line.contains(".mutation") && !line.trimmingCharacters(in: .whitespaces).hasPrefix("//") {
                let match = try #require(
                    try assignment.wholeMatch(in: String(line)),
                    "\(file.lastPathComponent) uses a mutation other than to turn on a switch: \(line)")
                let property = String(try #require(match.output[1].substring))
                let name = String(try #require(match.output[2].substring))
                turnedOn[name, default: []].append(property)
            }
        }
        let production = try ["KVCore", "KVNode"].flatMap { try swiftFiles(in: sources.appendingPathComponent($0)) }
            .map { try String(contentsOf: $0, encoding: .utf8) }.joined(separator: "\n")
        for mutation in Mutation.allCases {
            let property = String(mutation.target.split(separator: ".").last ?? "")
            #expect(
                turnedOn[mutation.rawValue] == [property],
                "\(mutation) must turn on \(mutation.target) once; the simulator sets \(turnedOn[mutation.rawValue] ?? [])"
            )
            #expect(
                production.contains("package var \(property) = false"),
                "\(mutation.target) is not a switch in KVCore or KVNode")
        }
    }

    private func swiftFiles(in directory: URL) throws -> [URL] {
        let enumerator = try #require(FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil))
        return enumerator.compactMap { $0 as? URL }.filter { $0.pathExtension == "swift" }
    }
}
