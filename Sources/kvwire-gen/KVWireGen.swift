import ArgumentParser
import Foundation
import KVWireGenerator

/// `kvwire-gen`: turns the message schema in `proto-spec/messages` into KVWire's Swift source.
@main
struct KVWireGen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvwire-gen",
        abstract: "Generate KVWire's message types and codec from the proto-spec schema.",
        discussion: "Run from the repository root. With --check, nothing is written: exit 1 if the output file differs."
    )

    @Option(help: "Directory of the .qkv schema files.")
    var spec = "proto-spec/messages"

    @Option(help: "The Swift file to write.")
    var output = "Sources/KVWire/Generated/Messages.swift"

    @Flag(help: "Do not write; exit 1 and name the file if it differs from a fresh generation.")
    var check = false

    func run() throws {
        let source: String
        do {
            source = generate(schema: try Schema.load(directory: self.spec))
        } catch {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            throw ExitCode.failure
        }
        let existing = try? String(contentsOfFile: self.output, encoding: .utf8)
        if self.check {
            guard existing == source else {
                let reason = existing == nil ? "is missing" : "differs from a fresh generation"
                FileHandle.standardError.write(
                    Data("\(self.output) \(reason) from \(self.spec); run: \(regenerateCommand)\n".utf8)
                )
                throw ExitCode.failure
            }
            print("\(self.output) is up to date")
            return
        }
        if existing == source {
            print("\(self.output) is up to date")
            return
        }
        do {
            let directory = (self.output as NSString).deletingLastPathComponent
            if !directory.isEmpty {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            }
            try source.write(toFile: self.output, atomically: true, encoding: .utf8)
        } catch {
            FileHandle.standardError.write(Data("cannot write \(self.output): \(error)\n".utf8))
            throw ExitCode.failure
        }
        print("wrote \(self.output)")
    }
}
