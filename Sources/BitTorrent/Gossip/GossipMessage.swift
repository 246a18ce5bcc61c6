import Values
/// A random 64-bit identity a node draws at start; a restarted node is a new member.
public typealias GossipMemberID = UInt64

/// One UDP gossip datagram, decoded (see docs/gossip.md for the byte layout).
///
/// The MAC is not part of the value: `GossipCodec.seal` appends it and `GossipCodec.open`
/// checks and strips it.
public struct GossipMessage: Sendable, Hashable {
    /// The only version this build speaks. A receiver drops any other (counted `bad_version`).
    public static let currentVersion: UInt8 = 1
    /// Hard ceiling for one datagram, MAC included: fits any Ethernet path without fragmentation.
    public static let maxDatagramSize = 1400
    public static let maxTorrents = 32
    /// The member count's ceiling; the real bound is what fits in `maxDatagramSize` beside the
    /// torrents (`GossipCodec.memberCapacity(torrents:)`): 34 with one torrent, 17 with 32.
    public static let maxMembers = 35

    public enum Kind: UInt8, Sendable, Hashable {
        /// Periodic or join gossip; the receiver answers with an `ack`.
        case ping = 1
        /// The answer to a ping; never answered (so two nodes cannot loop).
        case ack = 2
        /// A clean shutdown: receivers drop the sender at once.
        case leave = 3
    }

    public var kind: Kind
    public var sender: GossipMemberID
    /// The sender's peer-wire address; `.unspecified` means "the datagram's source address".
    public var peerAddress: IPAddress
    /// The sender's peer-wire TCP port; 0 when it serves nothing.
    public var peerPort: UInt16
    /// The sender's gossip UDP port (receivers still answer the datagram's source).
    public var gossipPort: UInt16
    /// Sender's wall clock, milliseconds since the Unix epoch (replay window).
    public var timestampMillis: UInt64
    /// Strictly increasing per sender (replay protection).
    public var sequence: UInt64
    /// The sender's SWIM incarnation: raised to refute a suspicion about itself.
    public var incarnation: UInt32
    public var torrents: [GossipTorrent]
    public var members: [GossipMemberEntry]

    public init(kind: Kind, sender: GossipMemberID, peerAddress: IPAddress, peerPort: UInt16, gossipPort: UInt16,
                timestampMillis: UInt64, sequence: UInt64, incarnation: UInt32,
                torrents: [GossipTorrent] = [], members: [GossipMemberEntry] = []) {
        self.kind = kind
        self.sender = sender
        self.peerAddress = peerAddress
        self.peerPort = peerPort
        self.gossipPort = gossipPort
        self.timestampMillis = timestampMillis
        self.sequence = sequence
        self.incarnation = incarnation
        self.torrents = torrents
        self.members = members
    }
}

/// A torrent the sender serves.
public struct GossipTorrent: Sendable, Hashable {
    public var infoHash: InfoHash
    /// The sender has every piece (a seeder).
    public var complete: Bool

    public init(infoHash: InfoHash, complete: Bool) {
        self.infoHash = infoHash
        self.complete = complete
    }
}

/// SWIM member status as carried in samples.
public enum GossipMemberStatus: UInt8, Sendable, Hashable, Comparable {
    case alive = 0
    case suspect = 1
    case dead = 2

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// Another member, as the sender knows it.
public struct GossipMemberEntry: Sendable, Hashable {
    public var id: GossipMemberID
    public var address: IPAddress
    public var peerPort: UInt16
    public var gossipPort: UInt16
    public var status: GossipMemberStatus
    public var incarnation: UInt32
    /// Milliseconds since the sender last heard from this member first-hand (or the freshest
    /// age it was told). Lets receivers age entries consistently, so a dead member cannot be
    /// kept alive by second-hand reports.
    public var ageMillis: UInt32

    public init(id: GossipMemberID, address: IPAddress, peerPort: UInt16, gossipPort: UInt16,
                status: GossipMemberStatus, incarnation: UInt32, ageMillis: UInt32) {
        self.id = id
        self.address = address
        self.peerPort = peerPort
        self.gossipPort = gossipPort
        self.status = status
        self.incarnation = incarnation
        self.ageMillis = ageMillis
    }
}

/// Why a datagram was refused by `GossipCodec.open`.
public enum GossipWireError: Error, Sendable, Hashable {
    /// Longer than `GossipMessage.maxDatagramSize`.
    case oversized(Int)
    /// Shorter than its header, counts or MAC say it must be.
    case truncated
    case badVersion(UInt8)
    case badMAC
    case badKind(UInt8)
    /// A torrent or member count above the limit.
    case badCount
    case badStatus(UInt8)
    case trailingBytes
    /// Sender id 0, or a flag bit this version does not define.
    case malformed(String)
}

/// Binary encoding of `GossipMessage`: big-endian, fixed offsets, HMAC-SHA256 trailer.
///
/// ```
/// 0  version u8 | 1 kind u8 | 2 flags u16 (0) | 4 sender u64 | 12 peer address [16]
/// 28 peer port u16 | 30 gossip port u16 | 32 timestamp ms u64 | 40 sequence u64
/// 48 incarnation u32 | 52 torrent count u8 | 53 member count u8 | 54 torrents (21 each)
/// then members (37 each) | then MAC [32] = HMAC-SHA256(key, every byte before it)
/// ```
public enum GossipCodec {
    public static let headerSize = 54
    public static let torrentSize = 21
    public static let memberSize = 37
    public static let macSize = GossipKey.macSize

    /// Size of an encoded message with these counts, MAC included.
    public static func encodedSize(torrents: Int, members: Int) -> Int {
        headerSize + torrents * torrentSize + members * memberSize + macSize
    }

    /// How many member entries fit in one datagram beside `torrents` torrents.
    public static func memberCapacity(torrents: Int) -> Int {
        let t = min(max(torrents, 0), GossipMessage.maxTorrents)
        return min(GossipMessage.maxMembers, (GossipMessage.maxDatagramSize - encodedSize(torrents: t, members: 0)) / memberSize)
    }

    /// Encodes and authenticates. Lists beyond the limits are truncated (the caller bounds them;
    /// this keeps the output within `maxDatagramSize` whatever it is given).
    public static func seal(_ m: GossipMessage, key: GossipKey) -> [UInt8] {
        let torrents = m.torrents.prefix(GossipMessage.maxTorrents)
        let members = m.members.prefix(memberCapacity(torrents: torrents.count))
        var out: [UInt8] = []
        out.reserveCapacity(encodedSize(torrents: torrents.count, members: members.count))
        out.append(GossipMessage.currentVersion)
        out.append(m.kind.rawValue)
        put(&out, UInt16(0))
        put(&out, m.sender)
        put(&out, m.peerAddress.high)
        put(&out, m.peerAddress.low)
        put(&out, m.peerPort)
        put(&out, m.gossipPort)
        put(&out, m.timestampMillis)
        put(&out, m.sequence)
        put(&out, m.incarnation)
        out.append(UInt8(torrents.count))
        out.append(UInt8(members.count))
        for t in torrents {
            out += t.infoHash.bytes
            out.append(t.complete ? 1 : 0)
        }
        for e in members {
            put(&out, e.id)
            put(&out, e.address.high)
            put(&out, e.address.low)
            put(&out, e.peerPort)
            put(&out, e.gossipPort)
            out.append(e.status.rawValue)
            put(&out, e.incarnation)
            put(&out, e.ageMillis)
        }
        out += key.mac(out)
        return out
    }

    /// Checks size, version and MAC (in that order, so the cheap checks run first and a future
    /// version may change the MAC), then parses strictly. Never traps on any input.
    public static func open(_ datagram: [UInt8], key: GossipKey) throws(GossipWireError) -> GossipMessage {
        guard datagram.count <= GossipMessage.maxDatagramSize else { throw .oversized(datagram.count) }
        guard let version = datagram.first else { throw .truncated }
        guard version == GossipMessage.currentVersion else { throw .badVersion(version) }
        guard datagram.count >= headerSize + macSize else { throw .truncated }
        let bodyEnd = datagram.count - macSize
        guard key.verify(mac: datagram[bodyEnd...], over: datagram[..<bodyEnd]) else { throw .badMAC }
        return try parse(datagram[..<bodyEnd])
    }

    /// Parses an authenticated body (no MAC).
    static func parse(_ body: ArraySlice<UInt8>) throws(GossipWireError) -> GossipMessage {
        var r = Reader(body)
        _ = try r.u8() // version, checked by the caller
        let kindRaw = try r.u8()
        guard let kind = GossipMessage.Kind(rawValue: kindRaw) else { throw .badKind(kindRaw) }
        let flags = try r.u16()
        // Flags are reserved: a sender that sets one means something v1 cannot honour.
        guard flags == 0 else { throw .malformed("flags \(flags)") }
        let sender = try r.u64()
        guard sender != 0 else { throw .malformed("sender id 0") }
        let peerAddress = try r.address()
        let peerPort = try r.u16()
        let gossipPort = try r.u16()
        let timestamp = try r.u64()
        let sequence = try r.u64()
        let incarnation = try r.u32()
        let torrentCount = Int(try r.u8())
        let memberCount = Int(try r.u8())
        guard torrentCount <= GossipMessage.maxTorrents, memberCount <= GossipMessage.maxMembers else { throw .badCount }
        guard r.remaining == torrentCount * torrentSize + memberCount * memberSize else {
            throw r.remaining < torrentCount * torrentSize + memberCount * memberSize ? .truncated : .trailingBytes
        }
        var torrents: [GossipTorrent] = []
        torrents.reserveCapacity(torrentCount)
        for _ in 0..<torrentCount {
            guard let ih = InfoHash(bytes: try r.bytes(20)) else { throw .truncated }
            let flag = try r.u8()
            guard flag <= 1 else { throw .malformed("torrent flag \(flag)") }
            torrents.append(GossipTorrent(infoHash: ih, complete: flag == 1))
        }
        var members: [GossipMemberEntry] = []
        members.reserveCapacity(memberCount)
        for _ in 0..<memberCount {
            let id = try r.u64()
            guard id != 0 else { throw .malformed("member id 0") }
            let address = try r.address()
            let pp = try r.u16()
            let gp = try r.u16()
            let statusRaw = try r.u8()
            guard let status = GossipMemberStatus(rawValue: statusRaw) else { throw .badStatus(statusRaw) }
            let inc = try r.u32()
            let age = try r.u32()
            members.append(GossipMemberEntry(id: id, address: address, peerPort: pp, gossipPort: gp,
                                             status: status, incarnation: inc, ageMillis: age))
        }
        return GossipMessage(kind: kind, sender: sender, peerAddress: peerAddress, peerPort: peerPort,
                             gossipPort: gossipPort, timestampMillis: timestamp, sequence: sequence,
                             incarnation: incarnation, torrents: torrents, members: members)
    }

    private static func put<T: FixedWidthInteger>(_ out: inout [UInt8], _ v: T) {
        withUnsafeBytes(of: v.bigEndian) { out.append(contentsOf: $0) }
    }

    /// A bounds-checked cursor: every read throws `.truncated` instead of trapping.
    private struct Reader {
        let data: ArraySlice<UInt8>
        var pos: Int

        init(_ data: ArraySlice<UInt8>) {
            self.data = data
            pos = data.startIndex
        }

        var remaining: Int { data.endIndex - pos }

        mutating func bytes(_ n: Int) throws(GossipWireError) -> ArraySlice<UInt8> {
            guard n >= 0, remaining >= n else { throw .truncated }
            defer { pos += n }
            return data[pos..<pos + n]
        }

        mutating func u8() throws(GossipWireError) -> UInt8 { try bytes(1).first! }

        /// Big-endian unsigned integer of `n` (1...8) bytes.
        mutating func uint(_ n: Int) throws(GossipWireError) -> UInt64 {
            guard remaining >= n else { throw .truncated }
            var v: UInt64 = 0
            for i in pos..<pos + n { v = v << 8 | UInt64(data[i]) }
            pos += n
            return v
        }

        mutating func u16() throws(GossipWireError) -> UInt16 { UInt16(truncatingIfNeeded: try uint(2)) }
        mutating func u32() throws(GossipWireError) -> UInt32 { UInt32(truncatingIfNeeded: try uint(4)) }
        mutating func u64() throws(GossipWireError) -> UInt64 { try uint(8) }

        mutating func address() throws(GossipWireError) -> IPAddress {
            let h = try uint(8)
            return IPAddress(high: h, low: try uint(8))
        }
    }
}
