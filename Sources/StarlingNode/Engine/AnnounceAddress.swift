import BitTorrent
import Values
#if canImport(Glibc)
import Glibc
#endif

/// The address `seed` and `peer` announce when `--ip` is left out (they then listen on all
/// addresses). The choice is pure (`choose`); `routeSource` and `interfaces` ask the kernel.
public enum AnnounceAddress {
    /// One address of a network interface, as `getifaddrs` lists it.
    public struct Interface: Sendable, Equatable {
        public var name: String
        public var address: IPAddress
        public var isUp: Bool
        public var isLoopback: Bool
        public init(name: String, address: IPAddress, isUp: Bool = true, isLoopback: Bool = false) {
            self.name = name
            self.address = address
            self.isUp = isUp
            self.isLoopback = isLoopback
        }
    }

    /// The address and why it was chosen, for the log.
    public struct Choice: Sendable, Equatable, CustomStringConvertible {
        public var address: IPAddress
        public var reason: String
        public var description: String { "\(address) (\(reason))" }
    }

    /// The first of: the source address the kernel would use towards a tracker (in announce
    /// order), then towards a `--peer`; else the first non-loopback IPv4 address of an
    /// interface that is up, inside `within` (the gossip subnet) when given; else the first
    /// such IPv6 address that is not link-local. nil when the host has none of these.
    /// `route(host, port)` is `routeSource` in production.
    public static func choose(trackers: [String], peers: [PeerAddress] = [], within: CIDR? = nil,
                              interfaces: [Interface], route: (String, Int) -> IPAddress?) -> Choice? {
        var unroutable: [String] = []
        for url in trackers {
            guard let (host, port) = hostAndPort(ofTracker: url) else { continue }
            if let source = route(host, port), !source.isUnspecified {
                return Choice(address: source, reason: "the route to tracker \(host)")
            }
            unroutable.append(host)
        }
        for peer in peers {
            if let source = route(peer.host, peer.port), !source.isUnspecified {
                return Choice(address: source, reason: "the route to --peer \(peer.host)")
            }
            unroutable.append(peer.host)
        }
        let why = unroutable.isEmpty ? "no tracker" : "no route to \(unroutable.joined(separator: ", "))"
        let usable = interfaces.filter { $0.isUp && !$0.isLoopback && !$0.address.isUnspecified
            && (within?.contains($0.address) ?? true) }
        let scope = within.map { " in \($0)" } ?? ""
        if let v4 = usable.first(where: { $0.address.isIPv4 }) {
            return Choice(address: v4.address, reason: "\(why); the first non-loopback IPv4 address\(scope), of \(v4.name)")
        }
        if let v6 = usable.first(where: { !$0.address.isIPv4 && !isLinkLocal($0.address) }) {
            return Choice(address: v6.address, reason: "\(why); no IPv4 address\(scope), the first IPv6 one, of \(v6.name)")
        }
        return nil
    }

    /// Host and port of an `http://host[:port]/...` tracker URL (IPv6 in brackets); port 80
    /// when none is given.
    public static func hostAndPort(ofTracker url: String) -> (String, Int)? {
        (try? URLAddress(parsing: url)).map { ($0.host, $0.port) }
    }

    /// The source address the kernel picks for traffic to host:port: a UDP socket is
    /// connected there (which sends nothing) and read back with getsockname. nil when the
    /// host does not resolve or no route leads there.
    public static func routeSource(host: String, port: Int) -> IPAddress? {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &list) == 0, let first = list else { return nil }
        defer { freeaddrinfo(first) }
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let ai = cursor {
            cursor = ai.pointee.ai_next
            let fd = socket(ai.pointee.ai_family, Int32(SOCK_DGRAM.rawValue), 0)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            guard connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 else { continue }
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let ok = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) == 0 }
            }
            if ok, let address = ipAddress(of: &storage) { return address }
        }
        return nil
    }

    /// Every address of every interface, in the kernel's order.
    public static func interfaces() -> [Interface] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return [] }
        defer { freeifaddrs(first) }
        var result: [Interface] = []
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let ifa = cursor {
            cursor = ifa.pointee.ifa_next
            guard let sa = ifa.pointee.ifa_addr else { continue }
            let family = Int32(sa.pointee.sa_family)
            guard family == AF_INET || family == AF_INET6 else { continue }
            var storage = sockaddr_storage()
            withUnsafeMutableBytes(of: &storage) { dst in
                let size = family == AF_INET ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size
                dst.copyMemory(from: UnsafeRawBufferPointer(start: sa, count: size))
            }
            guard let address = ipAddress(of: &storage) else { continue }
            let flags = ifa.pointee.ifa_flags
            result.append(Interface(name: String(cString: ifa.pointee.ifa_name), address: address,
                                    isUp: flags & UInt32(IFF_UP) != 0,
                                    isLoopback: flags & UInt32(IFF_LOOPBACK) != 0))
        }
        return result
    }

    private static func isLinkLocal(_ a: IPAddress) -> Bool { a.high >> 54 == 0x3fa } // fe80::/10

    private static func ipAddress(of storage: inout sockaddr_storage) -> IPAddress? {
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafeBytes(of: &storage) { raw in
                let sin = raw.load(as: sockaddr_in.self)
                return IPAddress(bytes: withUnsafeBytes(of: sin.sin_addr.s_addr) { Array($0) })
            }
        case AF_INET6:
            return withUnsafeBytes(of: &storage) { raw in
                let sin6 = raw.load(as: sockaddr_in6.self)
                return IPAddress(bytes: withUnsafeBytes(of: sin6.sin6_addr) { Array($0) })
            }
        default:
            return nil
        }
    }
}
