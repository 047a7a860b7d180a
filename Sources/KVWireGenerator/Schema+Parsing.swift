import Foundation

extension Schema {
    /// Parses and checks schema sources. Files are taken in file-name order whatever order they come in,
    /// so that the generated Swift does not depend on how a directory lists.
    public static func parse(files: [(name: String, text: String)]) throws(SchemaError) -> Schema {
        var declarations: [Declaration] = []
        for file in files.sorted(by: { $0.name < $1.name }) {
            var parser = try SchemaParser(file: file.name, text: file.text)
            declarations += try parser.parseFile()
        }
        let schema = Schema(declarations: declarations)
        try schema.check()
        return schema
    }

    /// Reads every `*.qkv` file of `directory` and parses them. Locations name files as `directory/file`.
    public static func load(directory: String) throws(SchemaError) -> Schema {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".qkv") }
        } catch {
            throw SchemaError("cannot list \(directory): \(error)", at: nil)
        }
        guard !names.isEmpty else { throw SchemaError("no .qkv files in \(directory)", at: nil) }
        var files: [(name: String, text: String)] = []
        for name in names {
            let path = directory.hasSuffix("/") ? directory + name : directory + "/" + name
            do {
                files.append((name: path, text: try String(contentsOfFile: path, encoding: .utf8)))
            } catch {
                throw SchemaError("cannot read \(path): \(error)", at: nil)
            }
        }
        return try parse(files: files)
    }

    /// Checks what the grammar cannot: unique names and numbers, fields numbered 1, 2, 3… in order,
    /// references to declared enums and structs, no struct containing itself, no reserved names.
    func check() throws(SchemaError) {
        var byName: [String: Declaration] = [:]
        var byType: [Int: Declaration] = [:]
        for declaration in self.declarations {
            if let previous = byName[declaration.name] {
                throw SchemaError(
                    "'\(declaration.name)' is already declared at \(previous.location)", at: declaration.location
                )
            }
            byName[declaration.name] = declaration
            if Naming.forbiddenNames.contains(declaration.name) {
                throw SchemaError(
                    "'\(declaration.name)' is reserved in the generated Swift (see SCHEMA.md, Names)",
                    at: declaration.location
                )
            }
            guard let first = declaration.name.first, first.isUppercase else {
                throw SchemaError("type names start with an upper-case letter", at: declaration.location)
            }
            switch declaration.kind {
            case .enum(let raw, let cases):
                guard !cases.isEmpty else {
                    throw SchemaError("an enum needs at least one case", at: declaration.location)
                }
                var names: Set<String> = []
                var values: [UInt64: String] = [:]
                let valueMax: UInt64 = raw == .u8 ? UInt64(UInt8.max) : UInt64(UInt16.max)
                for enumCase in cases {
                    guard names.insert(enumCase.name).inserted else {
                        throw SchemaError("duplicate case '\(enumCase.name)'", at: enumCase.location)
                    }
                    guard enumCase.value <= valueMax else {
                        throw SchemaError(
                            "value \(enumCase.value) does not fit in \(raw.rawValue)", at: enumCase.location)
                    }
                    if let other = values[enumCase.value] {
                        throw SchemaError(
                            "value \(enumCase.value) is already used by '\(other)'", at: enumCase.location)
                    }
                    values[enumCase.value] = enumCase.name
                }
            case .struct(let fields):
                try self.checkFields(fields, of: declaration)
                if let field = fields.first(where: { $0.since != nil }) {
                    throw SchemaError(
                        "@since is for message fields: a struct is frozen and has no end to stop at",
                        at: field.location)
                }
            case .message(let type, let fields):
                if let previous = byType[type] {
                    throw SchemaError(
                        "message type \(type) is already used by '\(previous.name)' (\(previous.location))",
                        at: declaration.location
                    )
                }
                byType[type] = declaration
                try self.checkFields(fields, of: declaration)
            }
        }
        for declaration in self.declarations {
            for field in declaration.fields {
                for name in field.type.referencedNames {
                    guard let target = byName[name] else {
                        throw SchemaError("unknown type '\(name)'", at: field.location)
                    }
                    if case .message = target.kind {
                        throw SchemaError(
                            "'\(name)' is a message; fields may only hold enums and structs", at: field.location
                        )
                    }
                }
            }
        }
        for declaration in self.declarations {
            if case .struct = declaration.kind {
                try self.checkNoCycle(from: declaration, path: [declaration.name], byName: byName)
            }
        }
    }

    private func checkFields(_ fields: [Field], of declaration: Declaration) throws(SchemaError) {
        var names: Set<String> = []
        for (index, field) in fields.enumerated() {
            guard field.number == index + 1 else {
                throw SchemaError(
                    "field '\(field.name)' is numbered \(field.number), expected \(index + 1): fields are numbered 1, 2, 3… in order",
                    at: field.location
                )
            }
            guard names.insert(field.name).inserted else {
                throw SchemaError("duplicate field '\(field.name)'", at: field.location)
            }
            guard let first = field.name.first, first.isLowercase else {
                throw SchemaError("field names start with a lower-case letter", at: field.location)
            }
        }
        try self.checkSince(fields)
    }

    /// Fields with `@since(N)` come last, in order of version: a decoder reads such a field only while
    /// the body goes on, so every field after one must be optional the same way.
    private func checkSince(_ fields: [Field]) throws(SchemaError) {
        var previous: Int?
        for field in fields {
            if let since = field.since {
                if let previous, since < previous {
                    throw SchemaError(
                        "field '\(field.name)' is @since(\(since)) after a field @since(\(previous))",
                        at: field.location)
                }
                if case .optional = field.type {
                    throw SchemaError(
                        "a @since field is optional already (absent for older peers): write its type without optional<>",
                        at: field.location)
                }
                previous = since
            } else if previous != nil {
                throw SchemaError(
                    "field '\(field.name)' has no @since but follows a @since field: such fields come last",
                    at: field.location)
            }
        }
    }

    private func checkNoCycle(
        from declaration: Declaration, path: [String], byName: [String: Declaration]
    ) throws(SchemaError) {
        for field in declaration.fields {
            for name in field.type.inlineNames {
                if name == path.first {
                    throw SchemaError(
                        "struct '\(path[0])' contains itself (\((path + [name]).joined(separator: " → ")))",
                        at: byName[path[0]]!.location
                    )
                }
                guard !path.contains(name), let next = byName[name], case .struct = next.kind else { continue }
                try self.checkNoCycle(from: next, path: path + [name], byName: byName)
            }
        }
    }
}

extension FieldType {
    /// Every declared type this type mentions.
    var referencedNames: [String] {
        switch self {
        case .bool, .integer, .bytes, .string: []
        case .list(let element, _): element.referencedNames
        case .optional(let wrapped): wrapped.referencedNames
        case .named(let name): [name]
        }
    }

    /// Declared types held inline (not behind a list, whose count may be zero).
    var inlineNames: [String] {
        switch self {
        case .bool, .integer, .bytes, .string, .list: []
        case .optional(let wrapped): wrapped.inlineNames
        case .named(let name): [name]
        }
    }
}
