import NIOCore

/// One HTTP request as the tracker needs it: no body, only the target and keep-alive.
///
/// The tracker parses HTTP itself instead of using NIOHTTP1 so that a request head has a
/// hard size limit (NIOHTTP1 has none we can set) and an announce allocates little.
public struct TrackerHTTPRequest: Sendable, Equatable {
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
public struct TrackerHTTPError: Error, Sendable, Equatable {
    public var status: Int
    public var reason: String
}

/// Splits a byte stream into request heads of at most `maxHeadSize` bytes (the limit that
/// stops a client from sending an endless head). Requests with a body are refused: every
/// tracker request is a GET.
public struct TrackerRequestDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = TrackerHTTPRequest
    public let maxHeadSize: Int

    public init(maxHeadSize: Int = 8192) { self.maxHeadSize = maxHeadSize }

    public mutating func decode(buffer: inout ByteBuffer) throws -> TrackerHTTPRequest? {
        let view = buffer.readableBytesView
        // Tolerate the blank lines some clients send between pipelined requests (RFC 9112 2.2).
        var skip = 0
        while skip < view.count, view[view.startIndex + skip] == 13 || view[view.startIndex + skip] == 10 { skip += 1 }
        if skip > 0 { buffer.moveReaderIndex(forwardBy: skip) }
        guard let end = Self.headEnd(buffer.readableBytesView) else {
            if buffer.readableBytes > maxHeadSize {
                throw TrackerHTTPError(status: 431, reason: "request head larger than \(maxHeadSize) bytes")
            }
            return nil
        }
        guard end <= maxHeadSize else { throw TrackerHTTPError(status: 431, reason: "request head larger than \(maxHeadSize) bytes") }
        guard let head = buffer.readBytes(length: end) else { return nil }
        return try Self.parseHead(head)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> TrackerHTTPRequest? {
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

    /// Parses a complete head. Pure, for tests.
    public static func parseHead(_ head: [UInt8]) throws -> TrackerHTTPRequest {
        var lines = head.split(separator: 10, omittingEmptySubsequences: true).map { line -> ArraySlice<UInt8> in
            line.last == 13 ? line.dropLast() : line
        }
        lines.removeAll { $0.isEmpty }
        guard let requestLine = lines.first else { throw TrackerHTTPError(status: 400, reason: "empty request") }
        let parts = requestLine.split(separator: 32, omittingEmptySubsequences: true)
        guard parts.count == 3,
              let method = String(validating: parts[0], as: UTF8.self),
              let target = String(validating: parts[1], as: UTF8.self),
              let version = String(validating: parts[2], as: UTF8.self) else {
            throw TrackerHTTPError(status: 400, reason: "malformed request line")
        }
        let http11: Bool
        switch version {
        case "HTTP/1.1": http11 = true
        case "HTTP/1.0": http11 = false
        default: throw TrackerHTTPError(status: 505, reason: "unsupported HTTP version")
        }
        guard target.hasPrefix("/") else { throw TrackerHTTPError(status: 400, reason: "request target must be a path") }
        var keepAlive = http11
        var authorization: String?
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else {
                throw TrackerHTTPError(status: 400, reason: "malformed header line")
            }
            let name = String(decoding: line[line.startIndex..<colon], as: UTF8.self).lowercased()
            let value = String(decoding: line[(colon + 1)...], as: UTF8.self)
                .trimmingASCII(" \t").lowercased()
            switch name {
            case "connection":
                if value.contains("close") { keepAlive = false } else if value.contains("keep-alive") { keepAlive = true }
            case "content-length":
                guard value == "0" else { throw TrackerHTTPError(status: 400, reason: "request bodies are not accepted") }
            case "transfer-encoding":
                throw TrackerHTTPError(status: 400, reason: "request bodies are not accepted")
            case "authorization":
                authorization = String(decoding: line[(colon + 1)...], as: UTF8.self).trimmingASCII(" \t")
            default:
                continue
            }
        }
        return TrackerHTTPRequest(method: method, target: target, keepAlive: keepAlive, authorization: authorization)
    }
}

/// An answer from the tracker's routes, before it is framed as HTTP.
public struct TrackerHTTPResponse: Sendable, Equatable {
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
    public func write(into buffer: inout ByteBuffer, keepAlive: Bool) {
        buffer.writeString("HTTP/1.1 \(status) \(Self.reasonPhrase(status))\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n")
        buffer.writeString(keepAlive ? "\r\n" : "Connection: close\r\n\r\n")
        buffer.writeBytes(body)
    }
}

extension String {
    /// Trims the given ASCII characters from both ends (no Foundation).
    fileprivate func trimmingASCII(_ set: String) -> String {
        let chars = Set(set.utf8)
        let u = Array(utf8)
        var lo = 0, hi = u.count
        while lo < hi, chars.contains(u[lo]) { lo += 1 }
        while hi > lo, chars.contains(u[hi - 1]) { hi -= 1 }
        return String(decoding: u[lo..<hi], as: UTF8.self)
    }
}
