import NIOCore

/// One HTTP request as the tracker and the node's endpoints need it: no body, only the
/// method, target, keep-alive and authorization.
///
/// Starling parses HTTP itself instead of using NIOHTTP1 so that a request head has a hard
/// size limit (NIOHTTP1 has none we can set) and an announce allocates little.
public struct HTTPRequest: Sendable, Equatable {
    public var method: String
    /// Path and query, e.g. `/announce?info_hash=...`.
    public var target: String
    public var keepAlive: Bool
    /// The `Authorization` header as sent (admin endpoints check a bearer token).
    public var authorization: String? = nil

    public var path: Substring { target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "" }
    public var query: Substring {
        guard let q = target.firstIndex(of: "?") else { return "" }
        return target[target.index(after: q)...]
    }
}

/// Why the decoder refused a request; the handler answers with `status` and closes.
public struct HTTPRequestError: Error, Sendable, Equatable {
    public var status: Int
    public var reason: String
}

/// Splits a byte stream into request heads of at most `maxHeadSize` bytes (the limit that
/// stops a client from sending an endless head). Requests with a body are refused: every
/// tracker request is a GET, and admin requests carry their arguments in the query.
public struct HTTPRequestDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = HTTPRequest
    public let maxHeadSize: Int

    public init(maxHeadSize: Int = 8192) { self.maxHeadSize = maxHeadSize }

    public mutating func decode(buffer: inout ByteBuffer) throws -> HTTPRequest? {
        let view = buffer.readableBytesView
        // Tolerate the blank lines some clients send between pipelined requests (RFC 9112 2.2).
        var skip = 0
        while skip < view.count, view[view.startIndex + skip] == 13 || view[view.startIndex + skip] == 10 { skip += 1 }
        if skip > 0 { buffer.moveReaderIndex(forwardBy: skip) }
        guard let end = Self.headEnd(buffer.readableBytesView) else {
            if buffer.readableBytes > maxHeadSize {
                throw HTTPRequestError(status: 431, reason: "request head larger than \(maxHeadSize) bytes")
            }
            return nil
        }
        guard end <= maxHeadSize else { throw HTTPRequestError(status: 431, reason: "request head larger than \(maxHeadSize) bytes") }
        guard let head = buffer.readBytes(length: end) else { return nil }
        return try Self.parseHead(head)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> HTTPRequest? {
        try decode(buffer: &buffer)
    }

    /// Offset just past the `\r\n\r\n` (or bare `\n\n`) that ends a head.
    static func headEnd(_ v: ByteBufferView) -> Int? {
        var i = v.startIndex
        let end = v.endIndex
        while i < end {
            if v[i] == 10 {
                if i + 1 < end, v[i + 1] == 10 { return i + 2 - v.startIndex }
                if i + 2 < end, v[i + 1] == 13, v[i + 2] == 10 { return i + 3 - v.startIndex }
            }
            i += 1
        }
        return nil
    }

    /// Parses a complete head. Pure, for tests. Byte-level on purpose: this runs per request.
    public static func parseHead(_ head: [UInt8]) throws -> HTTPRequest {
        var lines: [Range<Int>] = []
        var lineStart = 0
        for i in 0..<head.count where head[i] == 10 {
            var e = i
            if e > lineStart, head[e - 1] == 13 { e -= 1 }
            if e > lineStart { lines.append(lineStart..<e) }
            lineStart = i + 1
        }
        if lineStart < head.count { lines.append(lineStart..<head.count) }
        guard let requestLine = lines.first else { throw HTTPRequestError(status: 400, reason: "empty request") }
        let parts = head[requestLine].split(separator: 32, omittingEmptySubsequences: true)
        guard parts.count == 3,
              let method = String(validating: parts[0], as: UTF8.self),
              let target = String(validating: parts[1], as: UTF8.self) else {
            throw HTTPRequestError(status: 400, reason: "malformed request line")
        }
        let http11: Bool
        if parts[2].elementsEqual("HTTP/1.1".utf8) {
            http11 = true
        } else if parts[2].elementsEqual("HTTP/1.0".utf8) {
            http11 = false
        } else {
            throw HTTPRequestError(status: 505, reason: "unsupported HTTP version")
        }
        guard target.utf8.first == UInt8(ascii: "/") else {
            throw HTTPRequestError(status: 400, reason: "request target must be a path")
        }
        var keepAlive = http11
        var authorization: String?
        for range in lines.dropFirst() {
            let line = head[range]
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else {
                throw HTTPRequestError(status: 400, reason: "malformed header line")
            }
            let name = line[line.startIndex..<colon]
            var value = line[(colon + 1)...]
            while let f = value.first, f == 32 || f == 9 { value = value.dropFirst() }
            while let l = value.last, l == 32 || l == 9 { value = value.dropLast() }
            if equalsIgnoringCase(name, "connection") {
                if contains(value, "close") { keepAlive = false } else if contains(value, "keep-alive") { keepAlive = true }
            } else if equalsIgnoringCase(name, "content-length") {
                guard value.elementsEqual("0".utf8) else {
                    throw HTTPRequestError(status: 400, reason: "request bodies are not accepted")
                }
            } else if equalsIgnoringCase(name, "transfer-encoding") {
                throw HTTPRequestError(status: 400, reason: "request bodies are not accepted")
            } else if equalsIgnoringCase(name, "authorization") {
                authorization = String(decoding: value, as: UTF8.self)
            }
        }
        return HTTPRequest(method: method, target: target, keepAlive: keepAlive, authorization: authorization)
    }

    @inline(__always)
    static func lower(_ b: UInt8) -> UInt8 { b >= 65 && b <= 90 ? b | 0x20 : b }

    /// `lowercaseName` must be lower case ASCII.
    static func equalsIgnoringCase(_ bytes: ArraySlice<UInt8>, _ lowercaseName: StaticString) -> Bool {
        guard bytes.count == lowercaseName.utf8CodeUnitCount else { return false }
        return lowercaseName.withUTF8Buffer { name in
            zip(bytes, name).allSatisfy { lower($0) == $1 }
        }
    }

    /// Case-insensitive substring test (`Connection: Keep-Alive, Upgrade`).
    static func contains(_ bytes: ArraySlice<UInt8>, _ lowercaseWord: StaticString) -> Bool {
        lowercaseWord.withUTF8Buffer { word in
            guard bytes.count >= word.count else { return false }
            var i = bytes.startIndex
            while i + word.count <= bytes.endIndex {
                var j = 0
                while j < word.count, lower(bytes[i + j]) == word[j] { j += 1 }
                if j == word.count { return true }
                i += 1
            }
            return false
        }
    }
}

/// An answer from the tracker's routes, before it is framed as HTTP.
public struct HTTPResponse: Sendable, Equatable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]

    public init(status: Int, contentType: String = "text/plain", body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 200: return "OK"
        case 400: return "Bad Request"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 431: return "Request Header Fields Too Large"
        case 503: return "Service Unavailable"
        case 505: return "HTTP Version Not Supported"
        default: return "Error"
        }
    }

    /// Status line, headers and body, in one buffer (one write, one syscall).
    /// `includeBody: false` for HEAD (the headers still give the body's length).
    public func write(into buffer: inout ByteBuffer, keepAlive: Bool, includeBody: Bool = true) {
        buffer.writeString("HTTP/1.1 \(status) \(Self.reasonPhrase(status))\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n")
        buffer.writeString(keepAlive ? "\r\n" : "Connection: close\r\n\r\n")
        if includeBody { buffer.writeBytes(body) }
    }
}
