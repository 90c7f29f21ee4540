/// An HTTP/1.1 response read from bytes as they arrive: status line, headers, and a body framed
/// by Content-Length, chunked transfer coding, or the end of the connection. Pure; the
/// ``HTTPClient`` feeds it. Every size is bounded by ``maximumBytes``.
struct HTTPResponseParser {
    struct Response: Sendable, Hashable {
        var status: Int
        /// Header names lowercased; a repeated header keeps its last value.
        var headers: [String: String]
        var body: [UInt8]
    }

    /// The largest header block (status line and headers).
    static let maximumHeaderBytes = 16 * 1024
    /// The most header lines kept.
    static let maximumHeaderCount = 64

    /// The most bytes (headers and body, before de-chunking) accepted.
    let maximumBytes: Int
    private(set) var received: [UInt8] = []

    init(maximumBytes: Int) { self.maximumBytes = maximumBytes }

    /// Adds bytes; returns the response once it is complete.
    /// - Throws: ``PortMappingError`` `.responseTooLarge` past the limits, `.httpFailure` for a
    ///   response that is not HTTP/1.x.
    mutating func feed(_ bytes: some Collection<UInt8>) throws -> Response? {
        guard received.count + bytes.count <= maximumBytes else {
            throw PortMappingError(.responseTooLarge, "the HTTP response exceeds \(maximumBytes) bytes; it was not read further")
        }
        received += bytes
        return try parse(atEnd: false)
    }

    /// The connection ended: the response if it is complete (or framed by the end).
    /// - Throws: ``PortMappingError`` `.httpFailure` if it is cut short.
    mutating func finish() throws -> Response {
        guard let response = try parse(atEnd: true) else {
            throw PortMappingError(.httpFailure, "the connection closed in the middle of the HTTP response (\(received.count) bytes)")
        }
        return response
    }

    private func parse(atEnd: Bool) throws -> Response? {
        guard let headerEnd = Self.find([13, 10, 13, 10], in: received[...]) else {
            if received.count > Self.maximumHeaderBytes {
                throw PortMappingError(.responseTooLarge, "HTTP headers exceed \(Self.maximumHeaderBytes) bytes")
            }
            return nil
        }
        guard headerEnd <= Self.maximumHeaderBytes else {
            throw PortMappingError(.responseTooLarge, "HTTP headers exceed \(Self.maximumHeaderBytes) bytes")
        }
        let headerText = String(decoding: received[..<headerEnd], as: UTF8.self)
        var lines = headerText.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusLine = lines.removeFirst().split(separator: " ", maxSplits: 2)
        guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), let status = Int(statusLine[1]), (100...999).contains(status) else {
            throw PortMappingError(.httpFailure, "not an HTTP/1.x response: '\(headerText.prefix(80))'")
        }
        guard lines.count <= Self.maximumHeaderCount else {
            throw PortMappingError(.responseTooLarge, "more than \(Self.maximumHeaderCount) HTTP headers")
        }
        var headers: [String: String] = [:]
        for line in lines where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].trimmingWhitespace().lowercased()] = String(line[line.index(after: colon)...].trimmingWhitespace())
        }
        let body = received[(headerEnd + 4)...]
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            guard let decoded = try Self.dechunk(body) else {
                if atEnd { throw PortMappingError(.httpFailure, "the chunked HTTP body ends early") }
                return nil
            }
            return Response(status: status, headers: headers, body: decoded)
        }
        if let lengthText = headers["content-length"] {
            guard let length = Int(lengthText), length >= 0 else {
                throw PortMappingError(.httpFailure, "Content-Length '\(lengthText)' is not a number")
            }
            guard length <= maximumBytes else {
                throw PortMappingError(.responseTooLarge, "the HTTP body announces \(length) bytes; the limit is \(maximumBytes)")
            }
            guard body.count >= length else {
                if atEnd { throw PortMappingError(.httpFailure, "the HTTP body has \(body.count) of \(length) bytes") }
                return nil
            }
            return Response(status: status, headers: headers, body: Array(body.prefix(length)))
        }
        // No framing: the body runs to the end of the connection (RFC 9112 §6.3).
        return atEnd ? Response(status: status, headers: headers, body: Array(body)) : nil
    }

    /// Decodes a chunked body (RFC 9112 §7.1); `nil` until the last chunk has arrived.
    static func dechunk(_ bytes: ArraySlice<UInt8>) throws -> [UInt8]? {
        var out: [UInt8] = []
        var index = bytes.startIndex
        while true {
            guard let lineEnd = find([13, 10], in: bytes[index...]) else { return nil }
            let sizeText = String(decoding: bytes[index..<lineEnd], as: UTF8.self).split(separator: ";").first.map { $0.trimmingWhitespace() } ?? ""
            guard let size = Int(sizeText, radix: 16), size >= 0, size <= bytes.count else {
                throw PortMappingError(.httpFailure, "bad chunk size '\(sizeText.prefix(20))'")
            }
            let dataStart = lineEnd + 2
            if size == 0 { return out }
            guard bytes.endIndex - dataStart >= size + 2 else { return nil }
            out += bytes[dataStart..<(dataStart + size)]
            index = dataStart + size + 2
        }
    }

    static func find(_ needle: [UInt8], in haystack: ArraySlice<UInt8>) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        var i = haystack.startIndex
        while i <= haystack.endIndex - needle.count {
            if haystack[i] == needle[0], haystack[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        String(drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed())
    }
}
