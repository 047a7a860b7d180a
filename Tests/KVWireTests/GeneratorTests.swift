import Foundation
import KVWire
import KVWireGenerator
import Testing

@Suite("kvwire-gen")
struct GeneratorTests {
    @Test("the committed Messages.swift is what the schema generates")
    func generatedFileIsFresh() throws {
        let schema = try Schema.load(directory: repositoryRoot.appendingPathComponent("proto-spec/messages").path)
        let fresh = generate(schema: schema)
        let committedURL = repositoryRoot.appendingPathComponent("Sources/KVWire/Generated/Messages.swift")
        let committed = try String(contentsOf: committedURL, encoding: .utf8)
        #expect(committed == fresh, "Sources/KVWire/Generated/Messages.swift is stale; run: \(regenerateCommand)")
    }

    @Test("generation does not depend on file order")
    func deterministic() throws {
        let files = [
            (name: "b.qkv", text: "message B = 2 {\n 1 x: u8\n}\n"),
            (name: "a.qkv", text: "enum E: u8 {\n one = 1\n}\nmessage A = 1 {\n 1 e: E\n}\n"),
        ]
        let one = generate(schema: try Schema.parse(files: files))
        let two = generate(schema: try Schema.parse(files: files.reversed()))
        #expect(one == two)
        #expect(one.hasPrefix("// GENERATED FILE, DO NOT EDIT."))
    }

    @Test("the schema's Error message becomes ErrorMessage, its case .error")
    func reservedNames() {
        #expect(Naming.swiftTypeName("Error") == "ErrorMessage")
        #expect(Naming.caseName("Error") == "error")
        #expect(Naming.caseName("HelloAck") == "helloAck")
        #expect(Naming.caseName("TTLRequest") == "ttlRequest")
    }

    static let badSchemas: [BadSchema] = [
        BadSchema(text: "message A = 1 {\n  1 x: u9\n}\n", error: "bad.qkv:2: error: unknown type 'u9'"),
        BadSchema(
            text: "message A = 1 {\n  1 x: u8\n  3 y: u8\n}\n",
            error: "bad.qkv:3: error: field 'y' is numbered 3, expected 2"),
        BadSchema(
            text: "message A = 1 {\n}\nmessage B = 1 {\n}\n",
            error: "bad.qkv:3: error: message type 1 is already used by 'A'"),
        BadSchema(text: "message A = 300 {\n}\n", error: "bad.qkv:1: error: a message type number must be 1...255"),
        BadSchema(text: "struct S {\n  1 x: Missing\n}\n", error: "bad.qkv:2: error: unknown type 'Missing'"),
        BadSchema(text: "struct S {\n  1 x: optional<S>\n}\n", error: "bad.qkv:1: error: struct 'S' contains itself"),
        BadSchema(text: "message Message = 1 {\n}\n", error: "bad.qkv:1: error: 'Message' is reserved"),
        BadSchema(text: "enum E: u32 {\n  a = 1\n}\n", error: "bad.qkv:1: error: an enum's raw type must be u8 or u16"),
        BadSchema(
            text: "enum E: u8 {\n  a = 1\n  b = 1\n}\n", error: "bad.qkv:3: error: value 1 is already used by 'a'"),
        BadSchema(text: "enum E: u8 {\n  a = 256\n}\n", error: "bad.qkv:2: error: value 256 does not fit in u8"),
        BadSchema(text: "message A = 1 {\n  1 x: bytes(0)\n}\n", error: "bad.qkv:2: error: a limit must be"),
        BadSchema(text: "message A = 1 {\n  1 x: u8;\n}\n", error: "bad.qkv:2: error: unexpected character ';'"),
        BadSchema(
            text: "message A = 1 {\n  1 x: u8\n",
            error: "bad.qkv:3: error: expected a field number or '}', found end of file"),
        BadSchema(text: "struct S @frozen {\n}\n", error: "bad.qkv:1: error: unknown attribute '@frozen'"),
        BadSchema(
            text: "message A = 1 {\n  1 x: u8 @since(4)\n  2 y: u8\n}\n",
            error: "bad.qkv:3: error: field 'y' has no @since but follows a @since field"),
        BadSchema(
            text: "message A = 1 {\n  1 x: u8 @since(5)\n  2 y: u8 @since(4)\n}\n",
            error: "bad.qkv:3: error: field 'y' is @since(4) after a field @since(5)"),
        BadSchema(
            text: "message A = 1 {\n  1 x: optional<u8> @since(4)\n}\n",
            error: "bad.qkv:2: error: a @since field is optional already"),
        BadSchema(
            text: "struct S {\n  1 x: u8 @since(4)\n}\n", error: "bad.qkv:2: error: @since is for message fields"),
        BadSchema(
            text: "message A = 1 @since(1) {\n}\n", error: "bad.qkv:1: error: a protocol version in @since must be 2..."
        ),
        BadSchema(text: "message A = 1 @boxed @since(4) {\n}\n", error: "bad.qkv:1: error: expected '{'"),
        BadSchema(text: "struct S @boxed {\n}\n", error: "bad.qkv:1: error: unknown attribute '@boxed'"),
    ]

    @Test("bad schemas fail with file:line", arguments: badSchemas)
    func badSchema(_ bad: BadSchema) {
        do {
            _ = try Schema.parse(files: [(name: "bad.qkv", text: bad.text)])
            Issue.record("parsed: \(bad.text)")
        } catch {
            #expect(error.description.hasPrefix(bad.error), "got: \(error.description)")
        }
    }

    @Test("a @boxed message is an indirect case of Message, after @since or alone; the codec is the same")
    func boxedMessages() throws {
        let text = "message A = 1 @boxed {\n 1 x: u8\n}\nmessage B = 2 @since(4) @boxed {\n}\nmessage C = 3 {\n}\n"
        let schema = try Schema.parse(files: [(name: "a.qkv", text: text)])
        #expect(schema.declarations.map(\.isBoxed) == [true, true, false])
        #expect(schema.declarations.map(\.since) == [nil, 4, nil])
        let source = generate(schema: schema)
        #expect(source.contains("    indirect case a(A)\n    indirect case b(B)\n    case c(C)\n"))
        let plain = generate(
            schema: try Schema.parse(files: [(name: "a.qkv", text: text.replacing(" @boxed", with: ""))]))
        #expect(source.replacing("indirect case", with: "case") == plain)
        // And the real schema's large messages are boxed, so the enum stays small.
        #expect(MemoryLayout<Message>.size <= 112)
    }

    @Test("doc comments directly above a declaration are carried into Swift")
    func docComments() throws {
        let text = "# File header.\n\n# The answer.\nmessage A = 1 {\n  # A field.\n  1 x: u8\n}\n"
        let source = generate(schema: try Schema.parse(files: [(name: "a.qkv", text: text)]))
        #expect(source.contains("/// The answer.\n///\n/// Message type 1; schema name `A`.\npublic struct A"))
        #expect(source.contains("    /// A field.\n    public var x: UInt8"))
        #expect(!source.contains("File header"))
    }
}

struct BadSchema: Sendable, CustomTestStringConvertible {
    var text: String
    var error: String

    var testDescription: String { self.error }
}
