import Testing
@testable import StarlingNode

/// A hostile tracker's answers must not grow the candidates the engine keeps without bound.
@Suite struct CandidateBudgetTests {
    static func addresses(_ range: Range<Int>) -> [PeerAddress] {
        range.map { PeerAddress(host: "10.\($0 >> 16 & 0xff).\($0 >> 8 & 0xff).\($0 & 0xff)", port: 6881) }
    }

    @Test func manyAnswersOfFakePeersAdmitAtMostTheLimit() {
        var budget = CandidateBudget()
        var handed = Set<PeerAddress>()
        // 27 answers of 200 distinct peers each, as the decoder caps them: 5,400 offered.
        for answer in 0..<27 {
            handed.formUnion(budget.admit(Self.addresses(answer * 200..<(answer + 1) * 200)))
        }
        #expect(handed.count == CandidateBudget.defaultLimit)
        #expect(budget.admitted.count == CandidateBudget.defaultLimit)
    }

    @Test func admittedAddressesStayUsableOnceFull() {
        var budget = CandidateBudget(limit: 3)
        #expect(budget.admit(Self.addresses(0..<5)) == Self.addresses(0..<3))
        // A known peer offered again still goes to the engine (it may have been dropped there); a new one does not.
        #expect(budget.admit(Self.addresses(2..<6)) == Self.addresses(2..<3))
    }
}
