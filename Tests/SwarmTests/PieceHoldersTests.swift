import BitTorrent
import Testing
@testable import Swarm

@Suite struct PieceHoldersTests {
    /// Random joins, announcements, replaced bitfields, departures and verified pieces across
    /// more slots than one word holds: every answer matches the peers' own bitfields.
    @Test func agreesWithThePeersBitfieldsThroughEveryChange() {
        let pieces = 150
        var random = SplitMix64(seed: 7)
        var holders = PieceHolders(pieceCount: pieces)
        var fields: [Int: Bitfield] = [:]
        var have = Bitfield(count: pieces)
        for _ in 0..<20_000 {
            let slot = Int.random(in: 1...130, using: &random)
            switch Int.random(in: 0..<100, using: &random) {
            case 0..<60:
                if fields[slot] == nil {
                    holders.joined(slot: slot, acrossSites: false)
                    fields[slot] = Bitfield(count: pieces)
                }
                let piece = Int.random(in: 0..<pieces, using: &random)
                holders.peerHas(piece: piece, slot: slot, weLack: !have[piece])
                fields[slot]!.set(piece)
            case 60..<65:
                guard let old = fields[slot] else { continue }
                var bits = Bitfield(count: pieces)
                for p in 0..<pieces where Bool.random(using: &random) { bits.set(p) }
                holders.peerLost(old, slot: slot)
                holders.peerHas(bits, slot: slot, have: have)
                fields[slot] = bits
            case 65..<70:
                guard let old = fields.removeValue(forKey: slot) else { continue }
                holders.peerLost(old, slot: slot)
            default:
                let piece = Int.random(in: 0..<pieces, using: &random)
                guard !have[piece] else { continue }
                holders.weVerified(piece: piece)
                have.set(piece)
            }
        }
        #expect(fields.count > 64)
        for slot in 1...130 {
            let bits = fields[slot] ?? Bitfield(count: pieces)
            for p in 0..<pieces { #expect(holders.contains(piece: p, slot: slot) == bits[p]) }
            #expect(holders.wanted(slot: slot) == bits.subtracting(have).setCount)
            #expect(holders.isSeed(slot: slot) == bits.isComplete)
        }
    }

    @Test func aPeerWithEveryPieceIsASeed() {
        var holders = PieceHolders(pieceCount: 3)
        holders.joined(slot: 70, acrossSites: true)
        holders.peerHas(Bitfield(count: 3, allSet: true), slot: 70, have: Bitfield(count: 3))
        #expect(holders.isSeed(slot: 70))
        #expect(holders.isAcrossSites(slot: 70))
        #expect(holders.wanted(slot: 70) == 3)
        holders.weVerified(piece: 1)
        #expect(holders.wanted(slot: 70) == 2)
        #expect(!holders.isSeed(slot: 5))
    }
}
