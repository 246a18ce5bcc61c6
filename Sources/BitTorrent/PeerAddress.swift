import NIOCore
import Values

/// A peer's IP and port, comparable and printable.
public struct PeerAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// An operator's `IPEndpoint` (the one parser of written addresses is there).
    public init(_ endpoint: IPEndpoint) {
        host = endpoint.host
        port = Int(endpoint.port)
    }

    public init?(_ address: SocketAddress) {
        guard let ip = address.ipAddress, let port = address.port else { return nil }
        host = ip
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
