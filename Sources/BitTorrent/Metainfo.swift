import Bencode

/// One file of a torrent: its path components under the torrent's folder, and length.
public struct TorrentFile: Sendable, Hashable {
    public var path: [String]
    public var length: Int64
    public init(path: [String], length: Int64) {
        self.path = path
        self.length = length
    }
}

/// Why a .torrent file was refused.
public struct MetainfoError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A parsed v1 .torrent (BEP 3, BEP 12 announce-list, BEP 27 private flag).
public struct Metainfo: Sendable {
    public var announce: String?
    /// Tiers of tracker URLs (BEP 12); when absent, one tier with `announce`.
    public var announceList: [[String]]
    public var name: String
    public var pieceLength: Int
    /// The concatenated 20-byte SHA-1 of every piece.
    public var pieceHashes: [UInt8]
    /// For a single-file torrent, one file whose path is `[name]`.
    public var files: [TorrentFile]
    public var isMultiFile: Bool
    public var isPrivate: Bool
    public var infoHash: InfoHash
    public var comment: String?
    public var createdBy: String?

    public var totalLength: Int64 { files.reduce(0) { $0 + $1.length } }
    public var pieceCount: Int { pieceHashes.count / 20 }
    public var layout: PieceLayout { PieceLayout(totalLength: totalLength, pieceLength: pieceLength) }

    public func pieceHash(_ index: Int) -> SHA1Digest {
        SHA1Digest(pieceHashes[(index * 20)..<(index * 20 + 20)])!
    }

    /// Every tracker URL, tier by tier, without duplicates.
    public var trackers: [String] {
        var seen = Set<String>()
        return announceList.flatMap { $0 }.filter { seen.insert($0).inserted }
    }

    /// Largest .torrent accepted (a 16 TiB torrent of 256 KiB pieces is about 1.3 MB).
    public static let maxFileSize = 32 << 20

    /// Largest total data length accepted (1 PiB).
    public static let maxTotalLength = Int64(1) << 50

    public init(bytes: [UInt8]) throws(MetainfoError) {
        guard bytes.count <= Self.maxFileSize else {
            throw MetainfoError("torrent file is \(bytes.count) bytes, more than the \(Self.maxFileSize) byte limit")
        }
        let doc: BencodeDocument
        do {
            doc = try Bencode.decodeDocument(bytes)
        } catch {
            throw MetainfoError("not a valid torrent: \(error)")
        }
        guard doc.value.dictionaryEntries != nil else { throw MetainfoError("not a valid torrent: top level is not a dictionary") }
        guard let info = doc.value["info"], info.dictionaryEntries != nil,
              let infoRange = doc.topLevelRanges[Array("info".utf8)] else {
            throw MetainfoError("not a valid torrent: no 'info' dictionary")
        }
        infoHash = InfoHash(SHA1Hasher.hash(bytes[infoRange]))

        announce = doc.value["announce"]?.stringValue
        var tiers: [[String]] = []
        if let list = doc.value["announce-list"]?.listValue {
            for tier in list {
                let urls = (tier.listValue ?? []).compactMap { $0.stringValue }.filter { !$0.isEmpty }
                if !urls.isEmpty { tiers.append(urls) }
            }
        }
        if tiers.isEmpty, let a = announce, !a.isEmpty { tiers = [[a]] }
        announceList = tiers
        comment = doc.value["comment"]?.stringValue
        createdBy = doc.value["created by"]?.stringValue

        guard let name = info["name"]?.stringValue else { throw MetainfoError("info.name is missing or not UTF-8") }
        try Self.checkPathComponent(name, what: "info.name")
        self.name = name

        guard let pl = info["piece length"]?.integerValue, pl > 0, pl <= 1 << 30 else {
            throw MetainfoError("info.'piece length' is missing or out of range")
        }
        pieceLength = Int(pl)
        guard let pieces = info["pieces"]?.bytesValue, pieces.count % 20 == 0 else {
            throw MetainfoError("info.pieces is missing or not a multiple of 20 bytes")
        }
        pieceHashes = pieces
        isPrivate = info["private"]?.integerValue == 1

        if let length = info["length"]?.integerValue {
            guard info["files"] == nil else { throw MetainfoError("info has both 'length' and 'files'") }
            guard length >= 0 else { throw MetainfoError("info.length is negative") }
            files = [TorrentFile(path: [name], length: length)]
            isMultiFile = false
        } else if let list = info["files"]?.listValue {
            guard !list.isEmpty else { throw MetainfoError("info.files is empty") }
            var out: [TorrentFile] = []
            var seenPaths = Set<[String]>()
            for (i, f) in list.enumerated() {
                guard let length = f["length"]?.integerValue, length >= 0 else {
                    throw MetainfoError("info.files[\(i)].length is missing or negative")
                }
                guard let comps = f["path"]?.listValue, !comps.isEmpty else {
                    throw MetainfoError("info.files[\(i)].path is missing or empty")
                }
                var path: [String] = []
                for c in comps {
                    guard let s = c.stringValue else { throw MetainfoError("info.files[\(i)].path is not UTF-8 text") }
                    try Self.checkPathComponent(s, what: "info.files[\(i)].path")
                    path.append(s)
                }
                guard seenPaths.insert(path).inserted else {
                    throw MetainfoError("info.files[\(i)].path \(path.joined(separator: "/")) appears twice")
                }
                out.append(TorrentFile(path: path, length: length))
            }
            files = out
            isMultiFile = true
        } else {
            throw MetainfoError("info has neither 'length' nor 'files'")
        }
        // Sum with an overflow check: lengths near Int64.max could otherwise wrap to a small
        // total that matches a short `pieces` string.
        var total: Int64 = 0
        for f in files {
            let (sum, overflow) = total.addingReportingOverflow(f.length)
            guard !overflow, sum < Self.maxTotalLength else { throw MetainfoError("total length is out of range") }
            total = sum
        }
        let expected = total == 0 ? 0 : Int((total + Int64(pieceLength) - 1) / Int64(pieceLength))
        guard expected == pieceCount else {
            throw MetainfoError("info.pieces holds \(pieceCount) hashes but the files need \(expected)")
        }
    }

    /// Refuses any component that could write outside the torrent's folder.
    static func checkPathComponent(_ c: String, what: String) throws(MetainfoError) {
        if c.isEmpty { throw MetainfoError("unsafe path in \(what): empty component") }
        if c == "." || c == ".." { throw MetainfoError("unsafe path in \(what): '\(c)' component") }
        if c.utf8.contains(0) { throw MetainfoError("unsafe path in \(what): NUL byte") }
        if c.contains("/") || c.contains("\\") {
            throw MetainfoError("unsafe path in \(what): '\(c)' contains a path separator")
        }
    }
}
