import Swarm

extension Simulation {
    /// One second of the run: completions so far and the share of link capacity used.
    public struct Sample: Sendable {
        public var second: Int
        public var complete: Int
        public var originUp: Double
        /// Blocks the origin had not sent before, as a share of its uplink, counted when the
        /// kernel takes them (so above 1 while its socket buffers fill).
        public var originFresh: Double
        /// Mean over all peers of their uplinks' use, and over the downloading ones of their
        /// downlinks' (above 1 in a second in which hosts completed: it divides by those
        /// still downloading at its end).
        public var peersUp: Double
        public var peersDown: Double
        /// Means over the downloading peers: peers each uploads to (unchoked and interested),
        /// requests queued at it, blocks it has asked for and not received.
        public var unchoked: Double
        public var queued: Double
        public var outstanding: Double
        /// Peers' uplink and downlink use: 10th, 50th and 90th percentile over the downloading peers.
        public var upPercentiles: [Double]
        public var downPercentiles: [Double]
    }

    public struct Report: Sendable, Equatable {
        public var hosts: Int
        public var fileBytes: Int64
        public var makespan: Double?
        public var median: Double?
        public var p90: Double?
        public var tMin: Double
        public var seederUploadXFile: Double
        public var allComplete: Bool
        public var completeHosts: Int
        /// Peers that are not liars: the ones that must complete.
        public var honestPeers: Int
        public var virtualSeconds: Double
        /// Per site (when there are sites): what crossed its uplink in and out, x file.
        public var siteInXFile: [Double] = []
        public var siteOutXFile: [Double] = []
        public var crashes = 0

        public var maxSiteInXFile: Double? { siteInXFile.max() }
    }
}

extension Fleet {
    // MARK: report

    private func percentiles(_ values: [Double]) -> [Double] {
        let v = values.sorted()
        return v.isEmpty ? [0, 0, 0] : [0.1, 0.5, 0.9].map { v[Int(Double(v.count - 1) * $0)] }
    }

    mutating func takeSample() {
        let capacity = scenario.rate
        let peers = Double(max(1, hosts.count - 1))
        let active = hosts.dropFirst().filter { $0.alive && $0.doneAt == nil }
        let downloading = Double(max(1, active.count))
        func mean(_ f: (PeerState) -> Int) -> Double {
            Double(active.reduce(0) { sum, h in sum + h.state.peers.map(f).reduce(0, +) }) / downloading
        }
        timeline.append(Simulation.Sample(second: Int(now / 1_000_000_000), complete: completed,
                               originUp: sample.origin / capacity, originFresh: sample.fresh * Self.frameOverhead / capacity, peersUp: sample.peers / capacity / peers,
                               peersDown: (sample.origin + sample.peers) / capacity / downloading,
                               unchoked: mean { !$0.amChoking && $0.peerInterested ? 1 : 0 },
                               queued: mean { $0.incoming.count }, outstanding: mean { $0.outstanding.count },
                               upPercentiles: percentiles(active.map { hostSecond[$0.index].up / capacity }),
                               downPercentiles: percentiles(active.map { hostSecond[$0.index].down / capacity })))
        sample = (0, 0, 0)
        for i in hostSecond.indices { hostSecond[i] = (0, 0) }
    }

    func stragglers() -> [String] {
        hosts.filter { $0.alive && $0.doneAt == nil }.map { h in
            let p = h.state.peers.values
            return "host \(h.index): \(h.state.have.setCount)/\(layout.pieceCount) pieces, \(p.count) peers "
                + "(\(p.filter(\.isSeed).count) seeds, \(p.filter { !$0.peerChoking }.count) unchoking us, "
                + "\(p.filter(\.amInterested).count) interesting, \(p.reduce(0) { $0 + $1.outstanding.count }) requests out), "
                + "\(h.dial.count) addresses known, \(h.dial.inProgress) dialling, unchecked \(h.state.uncheckedBytes)"
        }
    }

    func report() -> Simulation.Report {
        let peers = hosts.dropFirst()
        let honest = peers.filter { !$0.liar }
        let times = honest.map { $0.doneAt.map { Double($0) / 1e9 } ?? .infinity }.sorted()
        let all = !times.contains(.infinity)
        func percentile(_ p: Double) -> Double? {
            guard !times.isEmpty else { return nil }
            let k = Double(times.count - 1) * p / 100
            let lo = Int(k.rounded(.down)), hi = Int(k.rounded(.up))
            if times[hi] == .infinity { return nil }
            return times[lo] + (times[hi] - times[lo]) * (k - Double(lo))
        }
        return Simulation.Report(hosts: scenario.hosts, fileBytes: scenario.fileBytes, makespan: all ? times.last : nil,
                      median: percentile(50), p90: percentile(90), tMin: scenario.tMin,
                      seederUploadXFile: Double(hosts[0].uploaded) / Double(scenario.fileBytes),
                      allComplete: all, completeHosts: honest.filter { $0.doneAt != nil }.count, honestPeers: honest.count,
                      virtualSeconds: Double(now) / 1e9,
                      siteInXFile: scenario.sites > 1 ? siteBytes.map { $0.in / Double(scenario.fileBytes) } : [],
                      siteOutXFile: scenario.sites > 1 ? siteBytes.map { $0.out / Double(scenario.fileBytes) } : [],
                      crashes: crashes)
    }
}
