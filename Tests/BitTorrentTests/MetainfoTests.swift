import Bencode
import BitTorrent
import Testing
import Values

private func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Fixtures. The expected info-hashes were computed independently of Starling, with
/// Python's hashlib over the bencoded info dictionary:
///   python3 -c 'import hashlib; print(hashlib.sha1(INFO_BYTES).hexdigest())'
enum Fixtures {
    static let singleInfo = "d6:lengthi40000e4:name8:file.bin12:piece lengthi16384e6:pieces60:"
        + String(repeating: "A", count: 20) + String(repeating: "B", count: 20) + String(repeating: "C", count: 20) + "e"
    static let singleInfoHash = "4982d543f15e81996e467c5bf779eb0b82ce0679"

    static let multiInfo = "d5:filesld6:lengthi10e4:pathl3:dir5:a.txteed6:lengthi0e4:pathl5:emptyeed6:lengthi20000e"
        + "4:pathl5:b.bineee4:name6:folder12:piece lengthi16384e6:pieces40:"
        + String(repeating: "D", count: 20) + String(repeating: "E", count: 20) + "7:privatei1ee"
    static let multiInfoHash = "6b08f598c2f3153ac9ef69fe7d8d4e16c0d35ad0"

    /// Same fields as `singleInfo`, keys out of canonical order: the hash is over the raw bytes.
    static let unsortedInfo = "d4:name8:file.bin6:lengthi40000e12:piece lengthi16384e6:pieces60:"
        + String(repeating: "A", count: 20) + String(repeating: "B", count: 20) + String(repeating: "C", count: 20) + "e"
    static let unsortedInfoHash = "6f6471e2ba26dc67c587d6d95e131b6e3873905b"

    static func torrent(info: String, extra: String = "8:announce29:http://10.0.0.1:6969/announce") -> [UInt8] {
        b("d" + extra + "4:info" + info + "e")
    }

    /// A one-file multi-file torrent whose single path is `path` (each component raw bytes).
    static func multi(path: [[UInt8]], name: [UInt8] = b("top")) -> [UInt8] {
        var p: [UInt8] = b("l")
        for c in path { p += b("\(c.count):") + c }
        p += b("e")
        return b("d4:infod5:filesld6:lengthi1e4:path") + p + b("ee4:name\(name.count):") + name
            + b("12:piece lengthi16384e6:pieces20:") + [UInt8](repeating: 7, count: 20) + b("ee")
    }
}

@Suite("Metainfo parsing")
struct MetainfoParseTests {
    @Test("a single-file torrent parses with its known info-hash")
    func singleFile() throws {
        let m = try Metainfo(bytes: Fixtures.torrent(info: Fixtures.singleInfo))
        #expect(m.infoHash.hex == Fixtures.singleInfoHash)
        #expect(m.name == "file.bin")
        #expect(!m.isMultiFile)
        #expect(!m.isPrivate)
        #expect(m.files == [TorrentFile(path: ["file.bin"], length: 40000)])
        #expect(m.totalLength == 40000)
        #expect(m.pieceLength == 16384)
        #expect(m.pieceCount == 3)
        #expect(m.pieceHash(1).bytes == [UInt8](repeating: UInt8(ascii: "B"), count: 20))
        #expect(m.announce == "http://10.0.0.1:6969/announce")
        #expect(m.trackers == ["http://10.0.0.1:6969/announce"])
        #expect(m.layout.pieceCount == 3)
    }

    @Test("a multi-file torrent parses with its known info-hash, files in order")
    func multiFile() throws {
        let m = try Metainfo(bytes: Fixtures.torrent(info: Fixtures.multiInfo))
        #expect(m.infoHash.hex == Fixtures.multiInfoHash)
        #expect(m.name == "folder")
        #expect(m.isMultiFile)
        #expect(m.isPrivate)
        #expect(m.files == [TorrentFile(path: ["dir", "a.txt"], length: 10), TorrentFile(path: ["empty"], length: 0),
                            TorrentFile(path: ["b.bin"], length: 20000)])
        #expect(m.totalLength == 20010)
        #expect(m.pieceCount == 2)
    }

    @Test("the info-hash is over the raw info bytes, even when they are not canonical")
    func rawInfoHash() throws {
        let m = try Metainfo(bytes: Fixtures.torrent(info: Fixtures.unsortedInfo))
        #expect(m.infoHash.hex == Fixtures.unsortedInfoHash)
        #expect(m.infoHash.hex != Fixtures.singleInfoHash)
        #expect(m.name == "file.bin")
    }

    @Test("announce-list tiers come first and trackers are listed once")
    func announceList() throws {
        let extra = "8:announce5:http:13:announce-listll5:http:5:udp:ael5:http:ee7:comment2:hi10:created by3:abc"
        let m = try Metainfo(bytes: Fixtures.torrent(info: Fixtures.singleInfo, extra: extra))
        #expect(m.announceList == [["http:", "udp:a"], ["http:"]])
        #expect(m.trackers == ["http:", "udp:a"])
        #expect(m.comment == "hi")
        #expect(m.createdBy == "abc")
        // No tracker at all is allowed (gossip-only torrents).
        let none = try Metainfo(bytes: Fixtures.torrent(info: Fixtures.singleInfo, extra: ""))
        #expect(none.trackers.isEmpty)
        #expect(none.infoHash.hex == Fixtures.singleInfoHash)
    }

    @Test("the fixture torrents from Python re-encode byte for byte")
    func canonicalFixtures() throws {
        for info in [Fixtures.singleInfo, Fixtures.multiInfo] {
            #expect(try Bencode.decode(b(info)).encoded() == b(info))
        }
    }
}

@Suite("Metainfo refusals")
struct MetainfoRefusalTests {
    static func refusal(_ bytes: [UInt8]) -> String? {
        do {
            _ = try Metainfo(bytes: bytes)
            return nil
        } catch {
            return error.message
        }
    }

    @Test("unsafe paths are refused", arguments: [
        ["/etc", "passwd"], ["..", "x"], ["a", ".."], [".", "x"], ["", "x"], ["a", ""], ["a\u{0}b"],
        ["a/b"], ["a\\b"], ["../../etc/cron.d/evil"],
    ])
    func unsafePath(_ path: [String]) throws {
        let message = try #require(Self.refusal(Fixtures.multi(path: path.map { b($0) })))
        #expect(message.contains("unsafe path"), "\(message)")
    }

    @Test("unsafe names are refused", arguments: ["..", ".", "", "/etc", "a/b", "x\u{0}"])
    func unsafeName(_ name: String) throws {
        let message = try #require(Self.refusal(Fixtures.multi(path: [b("ok")], name: b(name))))
        #expect(message.contains("unsafe path"), "\(message)")
        let single = "d6:lengthi1e4:name\(name.utf8.count):\(name)12:piece lengthi16384e6:pieces20:"
            + String(repeating: "x", count: 20) + "e"
        #expect(Self.refusal(Fixtures.torrent(info: single)) != nil)
    }

    @Test("a safe nested path is accepted")
    func safeNested() throws {
        let m = try Metainfo(bytes: Fixtures.multi(path: [b("a"), b("b c"), b("..d"), b(".hidden")]))
        #expect(m.files[0].path == ["a", "b c", "..d", ".hidden"])
    }

    @Test("a path that is not UTF-8 is refused")
    func nonUTF8() {
        #expect(Self.refusal(Fixtures.multi(path: [[0xff, 0xfe]])) != nil)
    }

    @Test("piece hashes must match the data length")
    func piecesMismatch() throws {
        // 19 bytes: not a whole hash.
        let short = "d6:lengthi1e4:name1:a12:piece lengthi16384e6:pieces19:" + String(repeating: "x", count: 19) + "e"
        #expect(try #require(Self.refusal(Fixtures.torrent(info: short))).contains("multiple of 20"))
        // Two hashes for one piece of data.
        let extra = "d6:lengthi1e4:name1:a12:piece lengthi16384e6:pieces40:" + String(repeating: "x", count: 40) + "e"
        #expect(try #require(Self.refusal(Fixtures.torrent(info: extra))).contains("holds 2 hashes but the files need 1"))
        // One hash for two pieces.
        let missing = "d6:lengthi16385e4:name1:a12:piece lengthi16384e6:pieces20:" + String(repeating: "x", count: 20) + "e"
        #expect(try #require(Self.refusal(Fixtures.torrent(info: missing))).contains("holds 1 hashes but the files need 2"))
    }

    @Test("file lengths whose sum overflows 64 bits are refused")
    func lengthOverflow() {
        // 2 x (2^63 - 1) + 2 wraps to exactly 0 in 64-bit arithmetic, which would match "no pieces".
        let info = "d5:filesld6:lengthi9223372036854775807e4:pathl1:aeed6:lengthi9223372036854775807e4:pathl1:bee"
            + "d6:lengthi2e4:pathl1:ceee4:name1:x12:piece lengthi16384e6:pieces0:e"
        #expect(Self.refusal(Fixtures.torrent(info: info)) != nil)
        let huge = "d6:lengthi9223372036854775807e4:name1:a12:piece lengthi16384e6:pieces0:e"
        #expect(Self.refusal(Fixtures.torrent(info: huge)) != nil)
    }

    @Test("structural problems are refused with a message", arguments: [
        ("le", "top level is not a dictionary"),
        ("d8:announce1:xe", "no 'info' dictionary"),
        ("d4:infoi1ee", "no 'info' dictionary"),
        ("d4:infod6:lengthi1e12:piece lengthi16384e6:pieces20:xxxxxxxxxxxxxxxxxxxxee", "info.name"),
        ("d4:infod6:lengthi1e4:name1:a6:pieces20:xxxxxxxxxxxxxxxxxxxxee", "piece length"),
        ("d4:infod6:lengthi1e4:name1:a12:piece lengthi0e6:pieces20:xxxxxxxxxxxxxxxxxxxxee", "piece length"),
        ("d4:infod6:lengthi1e4:name1:a12:piece lengthi16384eee", "info.pieces"),
        ("d4:infod4:name1:a12:piece lengthi16384e6:pieces0:ee", "neither"),
        ("d4:infod6:lengthi-1e4:name1:a12:piece lengthi16384e6:pieces0:ee", "negative"),
        ("d4:infod5:filesle4:name1:a12:piece lengthi16384e6:pieces0:ee", "info.files is empty"),
        ("d4:infod5:filesld6:lengthi1e4:pathl1:aeed6:lengthi1e4:pathl1:aeee4:name1:x12:piece lengthi16384e6:pieces20:"
            + String(repeating: "x", count: 20) + "ee", "appears twice"),
        ("d4:infod5:filesld6:lengthi1e4:pathleee4:name1:x12:piece lengthi16384e6:pieces20:"
            + String(repeating: "x", count: 20) + "ee", "path is missing or empty"),
        ("d4:infod5:filesld6:lengthi1e4:pathl1:aeee6:lengthi1e4:name1:x12:piece lengthi16384e6:pieces20:"
            + String(repeating: "x", count: 20) + "ee", "both"),
        ("i1e", "not a valid torrent"),
        ("d4:infod", "not a valid torrent: bencode: input ends too early at byte 8"),
    ])
    func structural(_ input: String, _ expected: String) throws {
        let message = try #require(Self.refusal(b(input)))
        #expect(message.contains(expected), "\(message)")
    }

    @Test("an oversized torrent is refused before decoding")
    func oversized() throws {
        let bytes = [UInt8](repeating: UInt8(ascii: "d"), count: Metainfo.maxFileSize + 1)
        #expect(try #require(Self.refusal(bytes)).contains("limit"))
    }
}

@Suite("PieceLayout")
struct PieceLayoutTests {
    let layout = PieceLayout(totalLength: 150_000, pieceLength: 65536)

    @Test("piece count, offsets and a short last piece")
    func pieces() {
        #expect(layout.pieceCount == 3)
        #expect(layout.offset(ofPiece: 2) == 131_072)
        #expect(layout.length(ofPiece: 0) == 65536)
        #expect(layout.length(ofPiece: 2) == 150_000 - 131_072)
        let exact = PieceLayout(totalLength: 131_072, pieceLength: 65536)
        #expect(exact.pieceCount == 2)
        #expect(exact.length(ofPiece: 1) == 65536)
        #expect(PieceLayout(totalLength: 0, pieceLength: 16384).pieceCount == 0)
        #expect(PieceLayout(totalLength: 1, pieceLength: 16384).length(ofPiece: 0) == 1)
    }

    @Test("block counts and the short last block")
    func blocks() {
        #expect(PieceLayout.blockSize == 16384)
        #expect(layout.blockCount(ofPiece: 0) == 4)
        #expect(layout.blockCount(ofPiece: 2) == 2) // 18928 bytes
        #expect(layout.length(ofBlock: 0, inPiece: 2) == 16384)
        #expect(layout.length(ofBlock: 1, inPiece: 2) == 18928 - 16384)
        #expect(layout.length(ofBlock: 3, inPiece: 0) == 16384)
    }

    @Test("request validation", arguments: [
        (0, 0, 16384, true), (0, 49152, 16384, true), (2, 16384, 2544, true), (2, 0, 1, true),
        (0, 1, 16384, true), // unaligned but inside the piece: BEP 3 allows it
        (0, 49153, 16384, false), (2, 16384, 2545, false), (3, 0, 1, false), (-1, 0, 16384, false),
        (0, -1, 16, false), (0, 0, 0, false), (0, 0, 16385, false), (0, 0, -5, false), (0, Int.max - 10, 100, false),
    ])
    func requests(_ piece: Int, _ begin: Int, _ length: Int, _ valid: Bool) {
        #expect(layout.isValidRequest(piece: piece, begin: begin, length: length) == valid)
    }
}

@Suite("Units")
struct UnitsTests {
    @Test("sizes", arguments: [
        ("262144", Int64(262_144)), ("256KiB", 262_144), ("256kib", 262_144), ("256K", 262_144), ("1MiB", 1_048_576),
        ("512KiB", 524_288), ("5MB", 5_000_000), ("1 GiB", 1 << 30), ("1.5KiB", 1536), (" 16KiB ", 16384), ("0", 0),
        ("2gb", 2_000_000_000), ("7b", 7),
    ])
    func sizes(_ text: String, _ expected: Int64) {
        #expect(Units.parseSize(text) == expected)
    }

    @Test("bad sizes", arguments: ["", "abc", "-1", "1.5", "KiB", "10 parsecs", "1e3", "40mbit", "1..2", "0x10",
                                    "99999999999GiB"])
    func badSizes(_ text: String) {
        #expect(Units.parseSize(text) == nil)
    }

    @Test("rates in bytes per second", arguments: [
        ("40mbit", Int64(5_000_000)), ("5MB", 5_000_000), ("5MB/s", 5_000_000), ("0", 0), ("100kbit", 12_500),
        ("1gbit", 125_000_000), ("2MiB", 2_097_152), ("1000", 1000), ("20mbit", 2_500_000),
        ("1bit", 1), // a tiny positive rate must not round to 0, which means unlimited
    ])
    func rates(_ text: String, _ expected: Int64) {
        #expect(Units.parseRate(text) == expected)
    }

    @Test("bad rates", arguments: ["", "fast", "-5MB", "5 furlongs", "mbit", "5mbps"])
    func badRates(_ text: String) {
        #expect(Units.parseRate(text) == nil)
    }

    @Test("formatting")
    func formatting() {
        #expect(Units.formatBytes(512) == "512 B")
        #expect(Units.formatBytes(1536) == "1.5 KiB")
        #expect(Units.formatBytes(1 << 30) == "1.0 GiB")
        #expect(Units.formatRate(5_000_000) == "40.0 Mbit/s")
        #expect(Units.formatRate(100) == "800.0 bit/s")
        #expect(Units.formatETA(bytesLeft: 1000, bytesPerSecond: 100) == "10 s")
        #expect(Units.formatETA(bytesLeft: 1000, bytesPerSecond: 0) == "-")
        // A stalled download: the smoothed rate halves every second and, after a minute or so,
        // the quotient no longer fits an Int (converting it crashed the progress line).
        #expect(Units.formatETA(bytesLeft: 500_000_000, bytesPerSecond: 3.3e-16) == "-")  // 400 MB/s halved 80 times
        #expect(Units.formatETA(bytesLeft: 1, bytesPerSecond: .leastNonzeroMagnitude) == "-")
    }
}

@Suite("Hex, SHA-1, InfoHash, JSON")
struct PrimitivesTests {
    @Test("hex encodes lower case and decodes either case")
    func hex() {
        #expect(Hex.encode([0x00, 0xff, 0xab, 0x10]) == "00ffab10")
        #expect(Hex.decode("00FFab10") == [0x00, 0xff, 0xab, 0x10])
        #expect(Hex.decode("") == [])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
        #expect(Hex.decode("0g") == nil)
    }

    @Test("SHA-1 known vectors (FIPS 180)", arguments: [
        ("abc", "a9993e364706816aba3e25717850c26c9cd0d89d"),
        ("", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "84983e441c3bd26ebaae4aa1f95129e5e54670f1"),
    ])
    func vectors(_ text: String, _ expected: String) {
        #expect(SHA1Hasher.hash(b(text)).hex == expected)
    }

    @Test("streaming SHA-1 of a million 'a' matches, and finalize resets the hasher")
    func streaming() {
        var h = SHA1Hasher()
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 1000)
        for _ in 0..<1000 { h.update(chunk) }
        #expect(h.finalize().hex == "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
        h.update(b("abc"))
        #expect(h.finalize().hex == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(SHA1Hasher.hash(b("xabcx")[1..<4]).hex == "a9993e364706816aba3e25717850c26c9cd0d89d")
    }

    @Test("InfoHash from hex and bytes")
    func infoHash() throws {
        let h = try #require(InfoHash(hex: "4982D543F15E81996E467C5BF779EB0B82CE0679"))
        #expect(h.hex == "4982d543f15e81996e467c5bf779eb0b82ce0679")
        #expect(h.shortHex == "4982d543")
        #expect(InfoHash(bytes: h.bytes) == h)
        #expect(InfoHash(hex: "4982d543") == nil)
        #expect(InfoHash(bytes: [UInt8](repeating: 0, count: 19)) == nil)
    }

    @Test("JSON quoting escapes quotes, backslashes and control characters")
    func json() {
        #expect(JSONText.quote("a\"b\\c\nd\u{1}é") == "\"a\\\"b\\\\c\\nd\\u0001é\"")
    }
}
