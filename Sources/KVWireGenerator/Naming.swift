/// How schema names become Swift names. Documented in `proto-spec/SCHEMA.md` ("Names"); change both together.
public enum Naming {
    /// Schema names that would shadow a Swift or runtime name, and the Swift name used instead.
    public static let renamedTypes: [String: String] = [
        "Error": "ErrorMessage"
    ]

    /// Names the schema may not declare: the hand-written KVWire runtime, NIO and the standard library use them.
    public static let forbiddenNames: Set<String> = [
        "Any", "Array", "Bool", "ByteBuffer", "ByteBufferAllocator", "Dictionary", "ErrorMessage", "Frame",
        "FrameDecoder", "FrameEncoder", "Int", "Limits", "Message", "MessageType", "Never", "Optional",
        "Protocol", "Result", "Self", "Set", "String", "Type", "WireError", "WireProtocol",
    ]

    /// Swift keywords that must be written in backticks when declared.
    static let keywords: Set<String> = [
        "associatedtype", "class", "deinit", "enum", "extension", "fileprivate", "func", "import", "init",
        "inout", "internal", "let", "open", "operator", "private", "precedencegroup", "protocol", "public",
        "rethrows", "static", "struct", "subscript", "typealias", "var", "break", "case", "catch", "continue",
        "default", "defer", "do", "else", "fallthrough", "for", "guard", "if", "in", "repeat", "return", "throw",
        "switch", "where", "while", "as", "false", "is", "nil", "self", "super", "throws", "true", "try", "await",
        "any", "some", "consume", "copy", "borrowing", "consuming",
    ]

    /// The Swift type name of a schema declaration.
    public static func swiftTypeName(_ schemaName: String) -> String {
        renamedTypes[schemaName] ?? schemaName
    }

    /// The `Message`/`MessageType` case of a message: its schema name with the leading capitals lowered
    /// (`Hello` → `hello`, `PutRequest` → `putRequest`, `Error` → `error`).
    public static func caseName(_ schemaName: String) -> String {
        let characters = Array(schemaName)
        var upperCount = 0
        while upperCount < characters.count && characters[upperCount].isUppercase { upperCount += 1 }
        // In "TTLRequest" the R starts the next word and stays upper-case.
        let lowerCount =
            upperCount > 1 && upperCount < characters.count ? upperCount - 1 : upperCount
        return characters[..<lowerCount].map { $0.lowercased() }.joined() + String(characters[lowerCount...])
    }

    /// `name`, in backticks when it is a keyword.
    static func escaped(_ name: String) -> String {
        keywords.contains(name) ? "`\(name)`" : name
    }
}
