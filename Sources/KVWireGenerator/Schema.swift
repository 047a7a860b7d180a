/// A parsed and checked message schema: every declaration of every `.qkv` file, in file-name order
/// then declaration order, which is also the order of the generated Swift.
public struct Schema: Sendable, Hashable {
    public var declarations: [Declaration]

    public init(declarations: [Declaration]) {
        self.declarations = declarations
    }

    /// The declaration named `name` in the schema, if any.
    public func declaration(named name: String) -> Declaration? {
        self.declarations.first { $0.name == name }
    }

    /// The messages, in declaration order.
    public var messages: [Declaration] {
        self.declarations.filter { if case .message = $0.kind { true } else { false } }
    }
}

/// Where a declaration or a field was written, for error messages.
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int

    public init(file: String, line: Int) {
        self.file = file
        self.line = line
    }

    public var description: String { "\(file):\(line)" }
}

/// One `enum`, `struct` or `message` of the schema.
public struct Declaration: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        /// A closed set of values encoded as their raw integer.
        case `enum`(raw: IntegerType, cases: [EnumCase])
        /// A frozen group of fields, encoded inline.
        case `struct`(fields: [Field])
        /// One frame body; fields are only ever appended.
        case message(type: Int, fields: [Field])
    }

    public var name: String
    public var kind: Kind
    /// Written by hand in KVCore: only the codec is generated.
    public var isCore: Bool
    /// The comment lines directly above the declaration, without their `#`.
    public var doc: [String]
    public var location: SourceLocation
    /// For a message, the protocol version that introduced it (`@since(N)`); nil: every version has it.
    public var since: Int?
    /// For a message, whether the generated `Message` enum holds it by reference (`@boxed`): a large
    /// message that is rarely sent, so that the enum every request and answer is carried in stays as
    /// small as the common messages. The wire does not change.
    public var isBoxed: Bool

    public init(
        name: String, kind: Kind, isCore: Bool, doc: [String], location: SourceLocation, since: Int? = nil,
        isBoxed: Bool = false
    ) {
        self.name = name
        self.kind = kind
        self.isCore = isCore
        self.doc = doc
        self.location = location
        self.since = since
        self.isBoxed = isBoxed
    }

    /// The fields of a struct or message; empty for an enum.
    public var fields: [Field] {
        switch self.kind {
        case .enum: []
        case .struct(let fields), .message(_, let fields): fields
        }
    }
}

/// The integer types of the schema, all big-endian on the wire.
public enum IntegerType: String, Sendable, Hashable, CaseIterable {
    case u8, u16, u32, u64

    /// Encoded size in bytes.
    public var byteCount: Int {
        switch self {
        case .u8: 1
        case .u16: 2
        case .u32: 4
        case .u64: 8
        }
    }

    /// The Swift type that holds it.
    public var swiftType: String {
        switch self {
        case .u8: "UInt8"
        case .u16: "UInt16"
        case .u32: "UInt32"
        case .u64: "UInt64"
        }
    }
}

public struct EnumCase: Sendable, Hashable {
    public var name: String
    public var value: UInt64
    public var doc: [String]
    public var location: SourceLocation

    public init(name: String, value: UInt64, doc: [String], location: SourceLocation) {
        self.name = name
        self.value = value
        self.doc = doc
        self.location = location
    }
}

public struct Field: Sendable, Hashable {
    public var number: Int
    public var name: String
    public var type: FieldType
    public var doc: [String]
    public var location: SourceLocation
    /// The protocol version that appended the field (`@since(N)`), nil for a field every version has.
    ///
    /// Such a field is optional in Swift: a decoder whose body ends before it reads nil (an older
    /// peer's message), and an encoder writes nothing for nil, which is how a field is kept from a
    /// peer that did not negotiate its version (`Message.restricted(toProtocol:)`).
    public var since: Int?

    public init(
        number: Int, name: String, type: FieldType, doc: [String], location: SourceLocation, since: Int? = nil
    ) {
        self.number = number
        self.name = name
        self.type = type
        self.doc = doc
        self.location = location
        self.since = since
    }
}

/// The upper bound of a `bytes`, `string` or `list`: a name in KVCore's `Limits`, or a literal.
public enum LimitExpression: Sendable, Hashable {
    case named(String)
    case literal(UInt64)

    /// The Swift expression for the bound.
    public var swift: String {
        switch self {
        case .named(let name): "Limits.\(name)"
        case .literal(let value): "\(value)"
        }
    }
}

public indirect enum FieldType: Sendable, Hashable {
    case bool
    case integer(IntegerType)
    case bytes(LimitExpression)
    case string(LimitExpression)
    case list(FieldType, LimitExpression)
    case optional(FieldType)
    /// An enum or struct declared in the schema.
    case named(String)
}
