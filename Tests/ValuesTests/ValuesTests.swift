import Testing
import Values

/// The one parser of each kind of value an operator writes, as the CLI and the node config
/// both use it.
@Suite struct ValuesTests {
    @Test func portRanges() {
        #expect(PortRange.parse("6881-6889") == 6881...6889)
        #expect(PortRange.parse("7000") == 7000...7000)
        #expect(PortRange.parse(" 7000 - 7001 ") == 7000...7001)
        for bad in ["", "0-10", "10-5", "1-65536", "a-b", "1-2-3", "-5"] { #expect(PortRange.parse(bad) == nil, "\(bad)") }
        #expect(PortRange.format(6881...6889) == "6881-6889" && PortRange.format(7000...7000) == "7000")
    }

    @Test func endpoints() {
        #expect(IPEndpoint(parsing: "10.0.0.1:6969")?.description == "10.0.0.1:6969")
        #expect(IPEndpoint(parsing: "[fd00::1]:6969")?.description == "[fd00::1]:6969")
        #expect(IPEndpoint(parsing: "10.0.0.1", defaultPort: 6890)?.port == 6890)
        #expect(IPEndpoint(parsing: "fd00::1", defaultPort: 6890)?.description == "[fd00::1]:6890")
        #expect(IPEndpoint(parsing: "127.0.0.1:0", portZero: true)?.port == 0)
        for bad in ["10.0.0.1", "10.0.0.1:0", "10.0.0.1:65536", "host:80", "[1.2.3.4]:80", "fd00::1:80", "[fd00::1", "10.0.0.1:+80"] {
            #expect(IPEndpoint(parsing: bad) == nil, "\(bad)")
        }
    }

    @Test func networksRefuseHostBits() throws {
        #expect(try CIDR(parsing: "10.1.0.0/16").description == "10.1.0.0/16")
        #expect(try CIDR(parsing: "10.0.0.5").prefixLength == 32)
        #expect(throws: CIDR.ParseError.hostBitsSet("10.1.2.3/16", network: "10.1.0.0/16")) { try CIDR(parsing: "10.1.2.3/16") }
        #expect(throws: CIDR.ParseError.badPrefix("10.0.0.0/33")) { try CIDR(parsing: "10.0.0.0/33") }
        #expect(throws: CIDR.ParseError.badAddress("rack1")) { try CIDR(parsing: "rack1") }
    }

    @Test func trackerURLs() throws {
        let u = try URLAddress(parsing: "http://[::1]:6969/announce?passkey=abc")
        #expect(u.scheme == .http && u.host == "::1" && u.port == 6969 && u.pathAndQuery == "/announce?passkey=abc")
        #expect(try URLAddress(parsing: "http://t.example").pathAndQuery == "/")
        #expect(try URLAddress(parsing: "https://u:p@t.example").port == 443)
        #expect(try URLAddress(parsing: "https://u:p@t.example").userInfo == "u:p")
        #expect(try URLAddress(parsing: "udp://10.0.0.1:80").port == 80)
        #expect(throws: URLAddress.ParseError.badPort) { try URLAddress(parsing: "udp://10.0.0.1/") }
        #expect(throws: URLAddress.ParseError.badPort) { try URLAddress(parsing: "http://h:99999/announce") }
        #expect(throws: URLAddress.ParseError.scheme) { try URLAddress(parsing: "ftp://h/") }
        #expect(throws: URLAddress.ParseError.scheme) { try URLAddress(parsing: "http://h/a b") }
        #expect(throws: URLAddress.ParseError.unclosedBracket) { try URLAddress(parsing: "http://[::1/") }
        #expect(throws: URLAddress.ParseError.badHost) { try URLAddress(parsing: "http:///announce") }
    }

    @Test func ratesAndChanges() {
        #expect(Units.parseRate("40mbit") == 5_000_000)
        #expect(Units.parseRate("5MB") == 5_000_000)
        #expect(Units.parseRate("0") == 0)
        #expect(Units.parseRate("fast") == nil)
        #expect(MaxChange(parsing: "5mbit/10s") == MaxChange(rate: 625_000, interval: 10_000_000_000))
        for bad in ["0/60s", "5mbit", "5mbit/0s", "-5mbit/60s", "5mbit/soon"] { #expect(MaxChange(parsing: bad) == nil, "\(bad)") }
    }

    @Test func defaultsAgree() {
        #expect(!Defaults.portRange.contains(Int(Defaults.gossipPort)), "gossip's UDP port is clear of the peer-wire range")
        #expect(!Defaults.portRange.contains(Int(Defaults.metricsPort)) && !Defaults.portRange.contains(Int(Defaults.adminListen.port)))
        #expect(Defaults.metricsPort != Defaults.adminListen.port)
        #expect(Defaults.adminListen.ip == .loopbackIPv4)
    }
}
