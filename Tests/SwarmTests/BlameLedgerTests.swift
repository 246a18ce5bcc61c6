import BitTorrent
import Swarm
import Testing

fileprivate func digest(_ byte: UInt8) -> SHA1Digest { SHA1Hasher.hash([byte]) }

@Suite("Blame ledger")
struct BlameLedgerTests {
    @Test("a piece one peer sent alone proves that peer lied at once")
    func singleSender() {
        var ledger = BlameLedger<String>()
        #expect(ledger.pieceFailed(3, senders: ["a", "a", "a"], digests: [digest(1), digest(2), digest(3)]) == ["a"])
        #expect(!ledger.isSuspect(3))
    }

    @Test("of a mixed piece, only the senders whose blocks differ from the good copy are blamed")
    func exactBlame() {
        var ledger = BlameLedger<String>()
        let good = [digest(1), digest(2), digest(3), digest(4)]
        // Honest "h" sent blocks 0 and 2 right; liar "x" sent blocks 1 and 3 wrong.
        #expect(ledger.pieceFailed(0, senders: ["h", "x", "h", "x"], digests: [good[0], digest(9), good[2], digest(9)]).isEmpty)
        #expect(ledger.isSuspect(0))
        #expect(ledger.pieceVerified(0, digests: good) == ["x"])
        #expect(!ledger.isSuspect(0))
        // Verified again (nothing kept): nobody.
        #expect(ledger.pieceVerified(0, digests: good).isEmpty)
    }

    @Test("several failures of one piece are all judged by its good copy")
    func repeatedFailures() {
        var ledger = BlameLedger<String>()
        let good = [digest(1), digest(2)]
        _ = ledger.pieceFailed(5, senders: ["h", "x"], digests: [good[0], digest(7)])
        _ = ledger.pieceFailed(5, senders: ["y", "h"], digests: [digest(8), good[1]])
        #expect(ledger.pieceVerified(5, digests: good) == ["x", "y"])
    }

    @Test("an honest peer whose blocks match is never blamed, even beside a liar in every piece")
    func honestNeverBlamed() {
        var ledger = BlameLedger<Int>()
        for piece in 0..<50 {
            let good = [digest(UInt8(piece)), digest(UInt8(piece + 100))]
            _ = ledger.pieceFailed(piece, senders: [1, 2], digests: [good[0], digest(255)])
            #expect(ledger.pieceVerified(piece, digests: good) == [2])
        }
    }

    @Test("memory is bounded: beyond maxPieces the oldest failed pieces are forgotten")
    func bounded() {
        var ledger = BlameLedger<String>(maxPieces: 2)
        for piece in 0..<3 { _ = ledger.pieceFailed(piece, senders: ["a", "b"], digests: [digest(0), digest(1)]) }
        #expect(!ledger.isSuspect(0))
        #expect(ledger.isSuspect(1) && ledger.isSuspect(2))
    }

    @Test("mismatched input blames nobody and never traps")
    func malformed() {
        var ledger = BlameLedger<String>()
        #expect(ledger.pieceFailed(0, senders: [], digests: []).isEmpty)
        #expect(ledger.pieceFailed(0, senders: ["a", "b"], digests: [digest(0)]).isEmpty)
        _ = ledger.pieceFailed(1, senders: ["a", "b"], digests: [digest(0), digest(1)])
        #expect(ledger.pieceFailed(1, senders: ["a", "b", "c"], digests: [digest(0), digest(1), digest(2)]).isEmpty)
        #expect(ledger.pieceVerified(1, digests: [digest(0)]).isEmpty)
    }
}
