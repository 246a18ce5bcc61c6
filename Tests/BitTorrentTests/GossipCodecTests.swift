import Testing
@testable import BitTorrent
import Values
#if canImport(Glibc)
import Glibc
#endif

private let key = try! GossipKey(bytes: Array("0123456789abcdef0123456789abcdef".utf8))

private func ih(_ n: UInt8) -> InfoHash { InfoHash(bytes: [UInt8](repeating: n, count: 20))! }

private func fullMessage() -> GossipMessage {
    var torrents: [GossipTorrent] = []
    for i in 0..<GossipMessage.maxTorrents {
        torrents.append(GossipTorrent(infoHash: ih(UInt8(i)), complete: i % 2 == 0))
    }
    var members: [GossipMemberEntry] = []
    for i in 0..<GossipCodec.memberCapacity(torrents: GossipMessage.maxTorrents) {
        let address: IPAddress = i % 2 == 0 ? IPAddress("10.1.0.\(i)")! : IPAddress("fd00::\(i + 1)")!
        let status = GossipMemberStatus(rawValue: UInt8(i % 3))!
        members.append(GossipMemberEntry(id: UInt64(i + 1), address: address, peerPort: UInt16(7000 + i),
                                         gossipPort: 6890, status: status, incarnation: UInt32(i),
                                         ageMillis: UInt32(i * 100)))
    }
    return GossipMessage(kind: .ping, sender: 0x0102_0304_0506_0708, peerAddress: IPAddress("10.1.2.3")!,
                         peerPort: 6881, gossipPort: 6890, timestampMillis: 1_700_000_000_123, sequence: 42,
                         incarnation: 7, torrents: torrents, members: members)
}

/// A body with a correct MAC, so the parser (not the MAC check) has to catch what is wrong.
private func sealRaw(_ body: [UInt8]) -> [UInt8] { body + key.mac(body) }

private func header(kind: UInt8 = 1, flags: UInt16 = 0, sender: UInt64 = 9, torrents: UInt8 = 0, members: UInt8 = 0) -> [UInt8] {
    var b: [UInt8] = [1, kind, UInt8(flags >> 8), UInt8(flags & 0xff)]
    b += withUnsafeBytes(of: sender.bigEndian) { Array($0) }
    b += IPAddress("10.0.0.1")!.bytes
    b += [0x1a, 0xe1, 0x1a, 0xea] // ports
    b += [UInt8](repeating: 0, count: 8 + 8 + 4)
    b += [torrents, members]
    return b
}

private func memberBytes(id: UInt64 = 5, status: UInt8 = 0) -> [UInt8] {
    withUnsafeBytes(of: id.bigEndian) { Array($0) } + IPAddress("10.0.0.2")!.bytes + [0, 1, 0, 2, status] + [0, 0, 0, 1] + [0, 0, 0, 5]
}

@Suite("Gossip codec")
struct GossipCodecTests {
    @Test func roundTripAtTheLimitsFitsOneDatagram() throws {
        let m = fullMessage()
        let wire = GossipCodec.seal(m, key: key)
        #expect(wire.count == GossipCodec.encodedSize(torrents: GossipMessage.maxTorrents, members: 17))
        #expect(wire.count <= GossipMessage.maxDatagramSize)
        // Fewer torrents leave room for more members, never past the datagram limit.
        for t in 0...GossipMessage.maxTorrents {
            let cap = GossipCodec.memberCapacity(torrents: t)
            #expect(GossipCodec.encodedSize(torrents: t, members: cap) <= GossipMessage.maxDatagramSize)
            #expect(cap == GossipMessage.maxMembers || GossipCodec.encodedSize(torrents: t, members: cap + 1) > GossipMessage.maxDatagramSize)
        }
        #expect(GossipCodec.memberCapacity(torrents: 1) == 34 && GossipCodec.memberCapacity(torrents: 0) == 35)
        #expect(try GossipCodec.open(wire, key: key) == m)
    }

    @Test func roundTripEmptyLeave() throws {
        let m = GossipMessage(kind: .leave, sender: 1, peerAddress: .unspecified, peerPort: 0, gossipPort: 1,
                              timestampMillis: 0, sequence: UInt64.max, incarnation: UInt32.max)
        let wire = GossipCodec.seal(m, key: key)
        #expect(wire.count == GossipCodec.headerSize + GossipCodec.macSize)
        #expect(try GossipCodec.open(wire, key: key) == m)
    }

    @Test func headerOffsetsMatchTheDocumentedLayout() {
        let wire = GossipCodec.seal(fullMessage(), key: key)
        #expect(wire[0] == 1 && wire[1] == 1)
        #expect(Array(wire[4..<12]) == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(Array(wire[12..<28]) == IPAddress("10.1.2.3")!.bytes)
        #expect(Array(wire[28..<30]) == [0x1a, 0xe1]) // 6881
        #expect(Array(wire[30..<32]) == [0x1a, 0xea]) // 6890
        #expect(Array(wire[40..<48]) == [0, 0, 0, 0, 0, 0, 0, 42])
        #expect(Array(wire[48..<52]) == [0, 0, 0, 7])
        #expect(wire[52] == UInt8(GossipMessage.maxTorrents) && wire[53] == 17)
        #expect(Array(wire[54..<74]) == ih(0).bytes && wire[74] == 1)
    }

    @Test func sealTruncatesOverlongLists() throws {
        var m = fullMessage()
        m.torrents += m.torrents
        m.members += m.members + m.members
        let wire = GossipCodec.seal(m, key: key)
        #expect(wire.count <= GossipMessage.maxDatagramSize)
        let back = try GossipCodec.open(wire, key: key)
        #expect(back.torrents.count == GossipMessage.maxTorrents && back.members.count == 17)
        m.torrents = []
        let back0 = try GossipCodec.open(GossipCodec.seal(m, key: key), key: key)
        #expect(back0.members.count == GossipMessage.maxMembers)
    }

    static let malformed: [(String, [UInt8], GossipWireError)] = [
        ("empty", [], .truncated),
        ("version 2", [2] + [UInt8](repeating: 0, count: 100), .badVersion(2)),
        ("version 0", [0], .badVersion(0)),
        ("header only, no MAC", header(), .truncated),
        ("one byte short", Array(sealRaw(header()).dropLast()), .truncated),
        ("oversized", [1] + [UInt8](repeating: 0, count: 1400), .oversized(1401)),
        ("kind 9", sealRaw(header(kind: 9)), .badKind(9)),
        ("kind 0", sealRaw(header(kind: 0)), .badKind(0)),
        ("flags set", sealRaw(header(flags: 1)), .malformed("flags 1")),
        ("sender 0", sealRaw(header(sender: 0)), .malformed("sender id 0")),
        ("33 torrents", sealRaw(header(torrents: 33)), .badCount),
        ("255 members", sealRaw(header(members: 255)), .badCount),
        ("36 members", sealRaw(header(members: 36)), .badCount),
        ("count says 1 torrent, none there", sealRaw(header(torrents: 1)), .truncated),
        ("count says 1 member, half there", sealRaw(header(members: 1) + Array(memberBytes().prefix(20))), .truncated),
        ("trailing byte", sealRaw(header() + [0]), .trailingBytes),
        ("torrent flag 2", sealRaw(header(torrents: 1) + [UInt8](repeating: 1, count: 20) + [2]), .malformed("torrent flag 2")),
        ("member status 3", sealRaw(header(members: 1) + memberBytes(status: 3)), .badStatus(3)),
        ("member id 0", sealRaw(header(members: 1) + memberBytes(id: 0)), .malformed("member id 0")),
    ]

    @Test(arguments: malformed)
    func malformedDatagramsAreRejected(_ name: String, _ bytes: [UInt8], _ expected: GossipWireError) {
        #expect(throws: expected, "\(name)") { try GossipCodec.open(bytes, key: key) }
    }

    @Test func validHandBuiltBodyParses() throws {
        let m = try GossipCodec.open(sealRaw(header(members: 1) + memberBytes()), key: key)
        #expect(m.sender == 9 && m.members.count == 1 && m.members[0].ageMillis == 5)
    }

    @Test func anyFlippedBitFailsTheMAC() {
        let wire = GossipCodec.seal(fullMessage(), key: key)
        for i in stride(from: 1, to: wire.count, by: 7) { // byte 0 is the version, checked first
            var t = wire
            t[i] ^= 0x10
            #expect(throws: GossipWireError.badMAC) { try GossipCodec.open(t, key: key) }
        }
    }

    @Test func wrongKeyAndInsecureKeyAreBadMAC() throws {
        let wire = GossipCodec.seal(fullMessage(), key: key)
        let other = try GossipKey(bytes: Array("0123456789abcdef0123456789abcdeX".utf8))
        #expect(throws: GossipWireError.badMAC) { try GossipCodec.open(wire, key: other) }
        #expect(throws: GossipWireError.badMAC) { try GossipCodec.open(wire, key: .insecure) }
        let insecure = GossipCodec.seal(fullMessage(), key: .insecure)
        #expect(throws: GossipWireError.badMAC) { try GossipCodec.open(insecure, key: key) }
        #expect(try GossipCodec.open(insecure, key: .insecure) == fullMessage())
    }

    @Test func randomBytesNeverTrap() {
        var rng = SystemRandomNumberGenerator()
        let good = GossipCodec.seal(fullMessage(), key: key)
        for i in 0..<2000 {
            var bytes: [UInt8]
            if i % 2 == 0 {
                bytes = (0..<Int.random(in: 0...1500, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if !bytes.isEmpty, i % 4 == 0 { bytes[0] = 1 }
            } else {
                bytes = Array(good.prefix(Int.random(in: 0...good.count, using: &rng)))
            }
            _ = try? GossipCodec.open(bytes, key: key)
            // Even a correctly MACed body of garbage must only throw.
            if bytes.count >= 54 { _ = try? GossipCodec.open(sealRaw([1] + bytes.dropFirst().prefix(1300)), key: key) }
        }
    }

    @Test func hmacIsSHA256PerRFC4231() throws {
        // RFC 4231's short-key cases use keys under our 16-byte minimum; case 6 (131-byte key) fits.
        let k = try GossipKey(bytes: Array("key-of-sixteen-bytes!".utf8))
        let mac = k.mac(Array("what do ya want for nothing?".utf8))
        #expect(mac.count == 32)
        #expect(k.verify(mac: mac, over: Array("what do ya want for nothing?".utf8)))
        #expect(!k.verify(mac: mac.dropLast(), over: Array("what do ya want for nothing?".utf8)))
        // RFC 4231 test case 6: 131 bytes of 0xaa.
        let k6 = try GossipKey(bytes: [UInt8](repeating: 0xaa, count: 131))
        let m6 = k6.mac(Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8))
        #expect(Hex.encode(m6) == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
    }
}

@Suite("Gossip key")
struct GossipKeyTests {
    private func tempFile(_ contents: [UInt8]) -> String {
        var template = Array("/tmp/starling-gossip-key-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        _ = contents.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        return String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    @Test func fileTrailingWhitespaceIsTrimmedAndHexIsUsedAsIs() throws {
        let hex = "00112233445566778899aabbccddeeff"
        let path = tempFile(Array((hex + " \n\r\n\t").utf8))
        defer { unlink(path) }
        let k = try GossipKey.load(file: path)
        #expect(k.bytes == Array(hex.utf8))
        #expect(!"\(k)".contains(hex))
    }

    @Test func shortKeyIsRefused() {
        let path = tempFile(Array("fifteen-bytes!!\n".utf8))
        defer { unlink(path) }
        #expect(throws: GossipKey.LoadError.tooShort(length: 15)) { try GossipKey.load(file: path) }
    }

    @Test func missingFileIsAnError() {
        #expect(throws: GossipKey.LoadError.self) { try GossipKey.load(file: "/nonexistent/gossip.key") }
    }

    @Test func environmentVariableIsTheAlternative() throws {
        let k = try GossipKey.load(file: nil, environment: ["STARLING_GOSSIP_KEY": "an-environment-key-0001\n"])
        #expect(k?.bytes == Array("an-environment-key-0001".utf8))
        #expect(try GossipKey.load(file: nil, environment: [:]) == nil)
        #expect(throws: GossipKey.LoadError.tooShort(length: 5)) {
            try GossipKey.load(file: nil, environment: ["STARLING_GOSSIP_KEY": "short"])
        }
    }
}

@Suite("IP addresses and CIDR")
struct GossipCIDRTests {
    @Test func ipv4() throws {
        // Parsing refuses host bits (a host written for a network); building a block masks them.
        #expect(throws: CIDR.ParseError.hostBitsSet("10.1.7.9/16", network: "10.1.0.0/16")) { try CIDR(parsing: "10.1.7.9/16") }
        let c = CIDR(network: IPAddress("10.1.7.9")!, prefixLength: 16)
        #expect(c.description == "10.1.0.0/16")
        #expect(c.contains(IPAddress("10.1.255.1")!))
        #expect(!c.contains(IPAddress("10.2.0.1")!))
        #expect(!c.contains(IPAddress("::ffff:10.3.0.1")!) && c.contains(IPAddress("::ffff:10.1.0.1")!))
        #expect(!c.contains(IPAddress("fd00::1")!))
        #expect(c.ipv4Broadcast == IPAddress("10.1.255.255"))
        #expect(try CIDR(parsing: "127.0.0.0/8").ipv4Broadcast == IPAddress("127.255.255.255"))
        #expect(try CIDR(parsing: "192.168.1.128/25").ipv4Broadcast == IPAddress("192.168.1.255"))
        #expect(try CIDR(parsing: "0.0.0.0/0").contains(IPAddress("8.8.8.8")!))
        #expect(try CIDR(parsing: "10.0.0.5").contains(IPAddress("10.0.0.5")!))
        #expect(try !CIDR(parsing: "10.0.0.5").contains(IPAddress("10.0.0.6")!))
    }

    @Test func ipv6() throws {
        let c = try CIDR(parsing: "fd00:1::/32")
        #expect(c.contains(IPAddress("fd00:1:ffff::1")!))
        #expect(!c.contains(IPAddress("fd00:2::1")!))
        #expect(!c.contains(IPAddress("10.0.0.1")!))
        #expect(c.ipv4Broadcast == nil)
        #expect(CIDR(network: IPAddress("fd00::1")!, prefixLength: 127).description == "fd00::/127")
    }

    @Test(arguments: ["", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0/8", "fd00::/129", "10.0.0.0/", "x/8", "10.0.0.0/8/8", "10.0.0.0/0008"])
    func badCIDRs(_ text: String) {
        #expect(throws: CIDR.ParseError.self) { try CIDR(parsing: text) }
    }

    @Test func endpoints() {
        #expect(IPEndpoint(parsing: "10.0.0.1", defaultPort: 6890) == IPEndpoint(ip: IPAddress("10.0.0.1")!, port: 6890))
        #expect(IPEndpoint(parsing: "10.0.0.1:7000", defaultPort: 6890)?.port == 7000)
        #expect(IPEndpoint(parsing: "[fd00::1]:7000", defaultPort: 6890)?.port == 7000)
        #expect(IPEndpoint(parsing: "fd00::1", defaultPort: 6890)?.port == 6890)
        #expect(IPEndpoint(parsing: "10.0.0.1:0", defaultPort: 6890) == nil)
        #expect(IPEndpoint(parsing: "10.0.0.1:70000", defaultPort: 6890) == nil)
        #expect(IPEndpoint(parsing: "host:80", defaultPort: 6890) == nil)
        #expect(IPEndpoint(parsing: "[fd00::1]x", defaultPort: 6890) == nil)
        #expect(IPAddress("10.0.0.1%eth0") == nil)
        #expect(IPAddress("fd00::1")!.description == "fd00::1")
        #expect(IPAddress("10.9.8.7")!.description == "10.9.8.7")
    }
}
