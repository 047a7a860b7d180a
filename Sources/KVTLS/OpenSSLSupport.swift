import COpenSSL
import KVCore

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Small helpers over OpenSSL's C API shared by the context, the connection and the issuer.
enum OpenSSL {
    /// Initializes OpenSSL without its clean-up at exit; every public way into KVTLS that calls OpenSSL
    /// calls this first (`OpenSSL.start()`), since OpenSSL's first initialization decides.
    ///
    /// By default OpenSSL frees its global state (providers, algorithm tables, each thread's error
    /// queue) from an `atexit` handler. A process that exits while another thread is in OpenSSL, as
    /// `kvctl` does when its event loops still free a closed connection's `SSL` after the command
    /// returned, then dies of SIGSEGV after its work is done (`kvtls-probe`, `TLSExitTests`). The memory
    /// is the system's to take back at exit.
    private static let started: Void = {
        guard OPENSSL_init_crypto(UInt64(OPENSSL_INIT_NO_ATEXIT), nil) == 1 else {
            preconditionFailure("OpenSSL cannot initialize: \(drainErrors())")
        }
    }()

    /// Initializes OpenSSL once (`started`); cheap after the first call.
    static func start() { started }

    /// Drains this thread's OpenSSL error queue into one line of reasons ("certificate verify failed").
    ///
    /// The queue is per thread and shared by every channel on an event loop, so callers clear it
    /// before each `SSL_*` call and drain it right after a failure.
    static func drainErrors() -> String {
        var reasons: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            let reason: String
            if let text = ERR_reason_error_string(code) {
                reason = String(cString: text)
            } else {
                var buffer = [CChar](repeating: 0, count: 256)
                ERR_error_string_n(code, &buffer, buffer.count)
                reason = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
            if !reasons.contains(reason) { reasons.append(reason) }
        }
        return reasons.isEmpty ? "unknown OpenSSL error" : reasons.joined(separator: "; ")
    }

    /// A read-only memory BIO over `text`; the caller frees it. The bytes are copied.
    static func makeReadBIO(_ text: String) -> OpaquePointer? {
        let bio = BIO_new(BIO_s_mem())
        guard let bio else { return nil }
        var text = text
        let ok = text.withUTF8 { bytes in
            bytes.isEmpty || BIO_write(bio, bytes.baseAddress, Int32(bytes.count)) == Int32(bytes.count)
        }
        if !ok {
            BIO_free(bio)
            return nil
        }
        return bio
    }

    /// Everything written so far to the memory BIO `bio`, as text.
    static func contents(ofMemoryBIO bio: OpaquePointer) -> String {
        var data: UnsafeMutablePointer<CChar>? = nil
        let length = CQKV_BIO_get_mem_data(bio, &data)
        guard let data, length > 0 else { return "" }
        return data.withMemoryRebound(to: UInt8.self, capacity: length) {
            String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self)
        }
    }

    /// Reads a whole file as text, with a message naming the file and the system's reason on failure.
    static func readFile(_ path: String, what: String) throws(TLSError) -> String {
        guard let file = fopen(path, "rb") else {
            let reason = String(cString: strerror(errno))
            throw .invalidConfiguration("cannot read \(what) file \(path): \(reason)")
        }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = fread(&chunk, 1, chunk.count, file)
            if count > 0 { bytes.append(contentsOf: chunk[0..<count]) }
            if count < chunk.count {
                if ferror(file) != 0 {
                    throw .invalidConfiguration("cannot read \(what) file \(path): read error")
                }
                break
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Text of an ASN1 string (IA5 or UTF-8 content).
    static func string(_ asn1: UnsafePointer<ASN1_STRING>?) -> String? {
        guard let asn1, let data = ASN1_STRING_get0_data(asn1) else { return nil }
        let length = Int(ASN1_STRING_length(asn1))
        return String(decoding: UnsafeBufferPointer(start: data, count: length), as: UTF8.self)
    }

    /// An IP address SAN's octets in text form (dotted quad or RFC 5952 IPv6).
    static func ipAddress(_ asn1: UnsafePointer<ASN1_STRING>?) -> String? {
        guard let asn1, let data = ASN1_STRING_get0_data(asn1) else { return nil }
        let length = Int(ASN1_STRING_length(asn1))
        let family: Int32
        switch length {
        case 4: family = AF_INET
        case 16: family = AF_INET6
        default: return nil
        }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        guard inet_ntop(family, data, &text, socklen_t(text.count)) != nil else { return nil }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The common name of `cert`'s subject, if any.
    static func commonName(of cert: OpaquePointer) -> String? {
        guard let subject = X509_get_subject_name(cert) else { return nil }
        let index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1)
        guard index >= 0, let entry = X509_NAME_get_entry(subject, index),
            let data = X509_NAME_ENTRY_get_data(entry)
        else { return nil }
        var utf8: UnsafeMutablePointer<UInt8>? = nil
        let length = ASN1_STRING_to_UTF8(&utf8, data)
        guard length >= 0, let utf8 else { return nil }
        defer { CQKV_OPENSSL_free(utf8) }
        return String(decoding: UnsafeBufferPointer(start: utf8, count: Int(length)), as: UTF8.self)
    }

    /// The subject alternative names of `cert`, by kind.
    static func subjectAlternativeNames(of cert: OpaquePointer) -> (uris: [String], dns: [String], ips: [String]) {
        var uris: [String] = []
        var dns: [String] = []
        var ips: [String] = []
        guard let raw = X509_get_ext_d2i(cert, NID_subject_alt_name, nil, nil) else { return (uris, dns, ips) }
        let names = OpaquePointer(raw)
        defer { GENERAL_NAMES_free(names) }
        for index in 0..<CQKV_sk_GENERAL_NAME_num(names) {
            guard let name = CQKV_sk_GENERAL_NAME_value(names, index) else { continue }
            let value = CQKV_GENERAL_NAME_string(name)
            switch CQKV_GENERAL_NAME_type(name) {
            case CQKV_GEN_URI: if let text = string(value) { uris.append(text) }
            case CQKV_GEN_DNS: if let text = string(value) { dns.append(text) }
            case CQKV_GEN_IPADD: if let text = ipAddress(value) { ips.append(text) }
            default: break
            }
        }
        return (uris, dns, ips)
    }

    /// The QuorumKV role a certificate names in its `urn:quorumkv:role:<role>` URI SAN. A certificate
    /// naming no role, an unknown role, or two different roles has none.
    static func role(fromURIs uris: [String]) -> Role? {
        let roles = uris.filter { $0.hasPrefix(Role.uriPrefix) }.map {
            Role(name: String($0.dropFirst(Role.uriPrefix.count)))
        }
        guard let first = roles.first, let role = first, roles.allSatisfy({ $0 == role }) else { return nil }
        return role
    }
}

extension PeerIdentity {
    /// Reads name, role and SANs from an `X509*`; nil when the certificate carries no QuorumKV role.
    init?(certificate cert: OpaquePointer) {
        let sans = OpenSSL.subjectAlternativeNames(of: cert)
        guard let role = OpenSSL.role(fromURIs: sans.uris) else { return nil }
        self.init(name: OpenSSL.commonName(of: cert) ?? "", role: role, dnsNames: sans.dns, ipAddresses: sans.ips)
    }
}
