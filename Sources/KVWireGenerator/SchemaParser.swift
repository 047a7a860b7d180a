/// Parses `.qkv` schema text (the language of `proto-spec/SCHEMA.md`) into declarations.
///
/// The grammar is small enough for a hand-written tokenizer and recursive descent; every error names
/// the file and line so that a typo in the spec points at itself.
struct SchemaParser {
    private enum TokenKind: Hashable {
        case identifier(String)
        case number(UInt64)
        case symbol(Character)
        case attribute(String)
        case end
    }

    private struct Token {
        var kind: TokenKind
        var line: Int
    }

    private let file: String
    private var tokens: [Token] = []
    private var position = 0
    /// Comment text of lines holding nothing but a comment, by line number.
    private var commentLines: [Int: String] = [:]

    init(file: String, text: String) throws(SchemaError) {
        self.file = file
        try self.tokenize(text)
    }

    mutating func parseFile() throws(SchemaError) -> [Declaration] {
        var declarations: [Declaration] = []
        while true {
            let token = self.peek()
            switch token.kind {
            case .end:
                return declarations
            case .identifier("enum"):
                declarations.append(try self.parseEnum())
            case .identifier("struct"):
                declarations.append(try self.parseStruct())
            case .identifier("message"):
                declarations.append(try self.parseMessage())
            default:
                throw self.error("expected 'enum', 'struct' or 'message', found \(Self.describe(token.kind))", token)
            }
        }
    }

    // MARK: Declarations

    private mutating func parseEnum() throws(SchemaError) -> Declaration {
        let keyword = self.advance()
        let name = try self.expectIdentifier("an enum name")
        try self.expectSymbol(":")
        let rawToken = self.peek()
        let rawName = try self.expectIdentifier("u8 or u16")
        guard let raw = IntegerType(rawValue: rawName), raw == .u8 || raw == .u16 else {
            throw self.error("an enum's raw type must be u8 or u16, found '\(rawName)'", rawToken)
        }
        let isCore = try self.parseFlagAttribute("core")
        try self.expectSymbol("{")
        var cases: [EnumCase] = []
        while !self.consumeSymbol("}") {
            let caseToken = self.peek()
            let caseName = try self.expectIdentifier("a case name or '}'")
            try self.expectSymbol("=")
            let value = try self.expectNumber("the case's value")
            cases.append(
                EnumCase(
                    name: caseName, value: value, doc: self.doc(before: caseToken), location: self.location(caseToken))
            )
        }
        return Declaration(
            name: name, kind: .enum(raw: raw, cases: cases), isCore: isCore, doc: self.doc(before: keyword),
            location: self.location(keyword)
        )
    }

    private mutating func parseStruct() throws(SchemaError) -> Declaration {
        let keyword = self.advance()
        let name = try self.expectIdentifier("a struct name")
        let isCore = try self.parseFlagAttribute("core")
        let fields = try self.parseFields()
        return Declaration(
            name: name, kind: .struct(fields: fields), isCore: isCore, doc: self.doc(before: keyword),
            location: self.location(keyword)
        )
    }

    private mutating func parseMessage() throws(SchemaError) -> Declaration {
        let keyword = self.advance()
        let name = try self.expectIdentifier("a message name")
        try self.expectSymbol("=")
        let numberToken = self.peek()
        let number = try self.expectNumber("the message type number")
        guard (1...255).contains(number) else {
            throw self.error("a message type number must be 1...255, found \(number)", numberToken)
        }
        let since = try self.parseSinceAttribute(orBoxed: true)
        let isBoxed = try self.parseFlagAttribute("boxed")
        let fields = try self.parseFields()
        return Declaration(
            name: name, kind: .message(type: Int(number), fields: fields), isCore: false,
            doc: self.doc(before: keyword), location: self.location(keyword), since: since, isBoxed: isBoxed
        )
    }

    /// An optional `@since(N)`: the protocol version that introduced a message or appended a field.
    /// With `orBoxed`, a `@boxed` may come instead (a message's attributes).
    private mutating func parseSinceAttribute(orBoxed: Bool = false) throws(SchemaError) -> Int? {
        let token = self.peek()
        guard case .attribute(let attribute) = token.kind else { return nil }
        if orBoxed && attribute == "boxed" { return nil }
        guard attribute == "since" else { throw self.error("unknown attribute '@\(attribute)'", token) }
        self.position += 1
        try self.expectSymbol("(")
        let versionToken = self.peek()
        let version = try self.expectNumber("a protocol version")
        guard (2...UInt64(UInt16.max)).contains(version) else {
            throw self.error("a protocol version in @since must be 2...\(UInt16.max), found \(version)", versionToken)
        }
        try self.expectSymbol(")")
        return Int(version)
    }

    /// An optional attribute without arguments, `@name` (`@core` on an enum or struct, `@boxed` on a
    /// message after its `@since`): whether it is there. Any other attribute is an error.
    private mutating func parseFlagAttribute(_ name: String) throws(SchemaError) -> Bool {
        let token = self.peek()
        guard case .attribute(let attribute) = token.kind else { return false }
        guard attribute == name else { throw self.error("unknown attribute '@\(attribute)'", token) }
        self.position += 1
        return true
    }

    private mutating func parseFields() throws(SchemaError) -> [Field] {
        try self.expectSymbol("{")
        var fields: [Field] = []
        while !self.consumeSymbol("}") {
            let numberToken = self.peek()
            let number = try self.expectNumber("a field number or '}'")
            let name = try self.expectIdentifier("a field name")
            try self.expectSymbol(":")
            let type = try self.parseType()
            let since = try self.parseSinceAttribute()
            fields.append(
                Field(
                    number: Int(clamping: number), name: name, type: type, doc: self.doc(before: numberToken),
                    location: self.location(numberToken), since: since
                )
            )
        }
        return fields
    }

    private mutating func parseType() throws(SchemaError) -> FieldType {
        let token = self.peek()
        let name = try self.expectIdentifier("a type")
        switch name {
        case "bool":
            return .bool
        case "u8", "u16", "u32", "u64":
            return .integer(IntegerType(rawValue: name)!)
        case "bytes":
            return .bytes(try self.parseLimit())
        case "string":
            return .string(try self.parseLimit())
        case "list":
            try self.expectSymbol("<")
            let element = try self.parseType()
            try self.expectSymbol(">")
            return .list(element, try self.parseLimit())
        case "optional":
            try self.expectSymbol("<")
            let wrapped = try self.parseType()
            try self.expectSymbol(">")
            if case .optional = wrapped { throw self.error("optional<optional<T>> is not allowed", token) }
            return .optional(wrapped)
        default:
            guard name.first!.isUppercase else {
                throw self.error("unknown type '\(name)' (declared types start with an upper-case letter)", token)
            }
            return .named(name)
        }
    }

    private mutating func parseLimit() throws(SchemaError) -> LimitExpression {
        try self.expectSymbol("(")
        let token = self.advance()
        let limit: LimitExpression
        switch token.kind {
        case .identifier(let name): limit = .named(name)
        case .number(let value):
            guard value > 0, value <= UInt64(UInt32.max) else {
                throw self.error("a limit must be 1...\(UInt32.max), found \(value)", token)
            }
            limit = .literal(value)
        default:
            throw self.error(
                "expected a limit (a name in Limits or a number), found \(Self.describe(token.kind))", token)
        }
        try self.expectSymbol(")")
        return limit
    }

    // MARK: Tokens

    private func peek() -> Token { self.tokens[self.position] }

    private mutating func advance() -> Token {
        let token = self.tokens[self.position]
        if token.kind != .end { self.position += 1 }
        return token
    }

    private mutating func expectIdentifier(_ what: String) throws(SchemaError) -> String {
        let token = self.advance()
        guard case .identifier(let name) = token.kind else {
            throw self.error("expected \(what), found \(Self.describe(token.kind))", token)
        }
        return name
    }

    private mutating func expectNumber(_ what: String) throws(SchemaError) -> UInt64 {
        let token = self.advance()
        guard case .number(let value) = token.kind else {
            throw self.error("expected \(what), found \(Self.describe(token.kind))", token)
        }
        return value
    }

    private mutating func expectSymbol(_ symbol: Character) throws(SchemaError) {
        let token = self.advance()
        guard token.kind == .symbol(symbol) else {
            throw self.error("expected '\(symbol)', found \(Self.describe(token.kind))", token)
        }
    }

    private mutating func consumeSymbol(_ symbol: Character) -> Bool {
        guard self.peek().kind == .symbol(symbol) else { return false }
        self.position += 1
        return true
    }

    private func location(_ token: Token) -> SourceLocation {
        SourceLocation(file: self.file, line: token.line)
    }

    private func error(_ message: String, _ token: Token) -> SchemaError {
        SchemaError(message, at: self.location(token))
    }

    /// The comment-only lines directly above `token`'s line, top to bottom.
    private func doc(before token: Token) -> [String] {
        var lines: [String] = []
        var line = token.line - 1
        while let text = self.commentLines[line] {
            lines.append(text)
            line -= 1
        }
        return lines.reversed()
    }

    private static func describe(_ kind: TokenKind) -> String {
        switch kind {
        case .identifier(let name): "'\(name)'"
        case .number(let value): "'\(value)'"
        case .symbol(let symbol): "'\(symbol)'"
        case .attribute(let name): "'@\(name)'"
        case .end: "end of file"
        }
    }

    private mutating func tokenize(_ text: String) throws(SchemaError) {
        var lineNumber = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let characters = Array(line)
            var index = 0
            var sawToken = false
            while index < characters.count {
                let character = characters[index]
                if character == " " || character == "\t" || character == "\r" {
                    index += 1
                } else if character == "#" {
                    if !sawToken {
                        var comment = String(characters[(index + 1)...])
                        if comment.hasPrefix(" ") { comment.removeFirst() }
                        while comment.last?.isWhitespace == true { comment.removeLast() }
                        self.commentLines[lineNumber] = comment
                    }
                    break
                } else if character.isLetter || character == "_" || character == "@" {
                    let start = index
                    index += 1
                    while index < characters.count
                        && (characters[index].isLetter || characters[index].isNumber || characters[index] == "_")
                    {
                        index += 1
                    }
                    let word = String(characters[start..<index])
                    if character == "@" {
                        guard word.count > 1 else {
                            throw SchemaError(
                                "'@' must be followed by an attribute name", at: .init(file: file, line: lineNumber))
                        }
                        self.tokens.append(Token(kind: .attribute(String(word.dropFirst())), line: lineNumber))
                    } else {
                        guard word.allSatisfy(\.isASCII) else {
                            throw SchemaError("names must be ASCII: '\(word)'", at: .init(file: file, line: lineNumber))
                        }
                        self.tokens.append(Token(kind: .identifier(word), line: lineNumber))
                    }
                    sawToken = true
                } else if character.isASCII && character.isNumber {
                    let start = index
                    while index < characters.count && (characters[index].isLetter || characters[index].isNumber) {
                        index += 1
                    }
                    let literal = String(characters[start..<index])
                    let value: UInt64? =
                        literal.hasPrefix("0x") ? UInt64(literal.dropFirst(2), radix: 16) : UInt64(literal, radix: 10)
                    guard let value else {
                        throw SchemaError("invalid number '\(literal)'", at: .init(file: file, line: lineNumber))
                    }
                    self.tokens.append(Token(kind: .number(value), line: lineNumber))
                    sawToken = true
                } else if "{}<>():=".contains(character) {
                    self.tokens.append(Token(kind: .symbol(character), line: lineNumber))
                    index += 1
                    sawToken = true
                } else {
                    throw SchemaError("unexpected character '\(character)'", at: .init(file: file, line: lineNumber))
                }
            }
        }
        self.tokens.append(Token(kind: .end, line: lineNumber))
    }
}
