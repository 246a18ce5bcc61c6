import BitTorrent

/// Exact blame for pieces that fail their hash check (libtorrent's "smart ban").
///
/// A failed piece proves that one of its senders lied, not which: striking every sender
/// bans the honest seed beside a liar. So the digest of each block of a failed piece is
/// kept with its sender, and once the piece verifies, a sender whose kept block differs
/// from the good copy is proven to have lied. A piece that one peer sent alone is proof
/// at once. Pure: the engine hashes the blocks and bans whom this returns.
public struct BlameLedger<Peer: Hashable & Sendable>: Sendable {
    struct Entry: Sendable, Equatable {
        var peer: Peer
        var digest: SHA1Digest
    }

    /// Failed pieces whose blocks are kept, oldest first; beyond the limit the oldest go.
    public let maxPieces: Int
    private var blocks: [Int: [[Entry]]] = [:]
    private var order: [Int] = []

    public init(maxPieces: Int = 256) {
        self.maxPieces = max(1, maxPieces)
    }

    /// True when a piece's good copy must be hashed block by block (it failed before).
    public func isSuspect(_ piece: Int) -> Bool { blocks[piece] != nil }

    /// A piece failed: `senders[b]` sent block `b`, whose SHA-1 is `digests[b]`. Returns the
    /// peers proven to have lied already: the only sender of the piece.
    public mutating func pieceFailed(_ piece: Int, senders: [Peer], digests: [SHA1Digest]) -> Set<Peer> {
        guard !senders.isEmpty, senders.count == digests.count else { return [] }
        if let only = senders.first, senders.allSatisfy({ $0 == only }) { return [only] }
        var kept = blocks[piece] ?? Array(repeating: [], count: senders.count)
        guard kept.count == senders.count else { return [] }
        for b in senders.indices {
            let entry = Entry(peer: senders[b], digest: digests[b])
            if !kept[b].contains(entry) { kept[b].append(entry) }
        }
        if blocks[piece] == nil {
            order.append(piece)
            if order.count > maxPieces { blocks[order.removeFirst()] = nil }
        }
        blocks[piece] = kept
        return []
    }

    /// The piece verified with these block digests: returns every peer that sent a block
    /// of an earlier copy that differs from it.
    public mutating func pieceVerified(_ piece: Int, digests: [SHA1Digest]) -> Set<Peer> {
        guard let kept = blocks.removeValue(forKey: piece) else { return [] }
        order.removeAll { $0 == piece }
        var liars: Set<Peer> = []
        for (b, entries) in kept.enumerated() where b < digests.count {
            for e in entries where e.digest != digests[b] { liars.insert(e.peer) }
        }
        return liars
    }
}
