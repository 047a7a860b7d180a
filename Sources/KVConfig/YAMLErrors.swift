/// A YAML file's decoding error in one line an operator can act on: where in the file (`nodes[1].id`)
/// and what was wrong there, instead of Swift's `DecodingError` with its debug description. Used for
/// `cluster.yaml` and the node file.
public enum YAMLErrors {
    public static func describe(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        switch error {
        case .typeMismatch(let type, let context):
            return "\(place(context.codingPath)): expected \(kind(type))\(found(context))"
        case .valueNotFound(let type, let context):
            return "\(place(context.codingPath)): expected \(kind(type)), found nothing"
        case .keyNotFound(let key, let context):
            return "\(place(context.codingPath + [key])) is missing"
        case .dataCorrupted(let context):
            return "\(place(context.codingPath)): \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }

    /// `nodes[1].id`; "the file" for the top.
    static func place(_ path: [any CodingKey]) -> String {
        var text = ""
        for key in path {
            if let index = key.intValue {
                text += "[\(index)]"
            } else {
                text += (text.isEmpty ? "" : ".") + key.stringValue
            }
        }
        return text.isEmpty ? "the file" : "'\(text)'"
    }

    /// What a setting of `type` is, in an operator's words.
    static func kind(_ type: Any.Type) -> String {
        switch type {
        case is any BinaryInteger.Type: return "a whole number (in range)"
        case is any BinaryFloatingPoint.Type: return "a number"
        case is Bool.Type: return "true or false"
        case is String.Type: return "text"
        default:
            let name = "\(type)"
            // Yams names its own node kinds when the file's shape is wrong.
            if name.hasPrefix("Array") || name.hasPrefix("Sequence") { return "a list" }
            if name.hasPrefix("Dictionary") || name.hasPrefix("Mapping") { return "a mapping" }
            return "a single value"
        }
    }

    /// ", found a list" from Yams's "Expected to decode X but found Sequence instead.".
    private static func found(_ context: DecodingError.Context) -> String {
        let parts = context.debugDescription.split(separator: "but found ", maxSplits: 1)
        guard parts.count == 2 else { return "" }
        switch parts[1].split(separator: " ").first ?? "" {
        case "Sequence": return ", found a list"
        case "Mapping": return ", found a mapping"
        default: return ""
        }
    }
}
