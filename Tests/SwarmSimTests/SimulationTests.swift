import BitTorrent
import Swarm
@testable import SwarmSim
import Testing

@Suite("Fleet simulator")
struct SimulationTests {
    func scenario(hosts: Int, mib: Int64, mbit: Double) -> Scenario {
        var s = Scenario()
        s.hosts = hosts
        s.fileBytes = mib << 20
        s.rate = mbit * 1e6 / 8
        return s
    }

    @Test("a small swarm completes near the bound, the seed sending each byte about once")
    func smallSwarmCompletes() {
        let r = Simulation(scenario(hosts: 8, mib: 8, mbit: 100)).run()
        #expect(r.allComplete)
        #expect(r.completeHosts == 7)
        let ratio = r.ratioToTMin ?? .infinity
        #expect(ratio >= 1 && ratio < 2, "makespan/T_min \(ratio)")
        #expect(r.seederUploadXFile >= 1 && r.seederUploadXFile < 1.5)
    }

    @Test("the same scenario and seed give the same run; another seed another one")
    func deterministic() {
        var s = scenario(hosts: 6, mib: 4, mbit: 50)
        let a = Simulation(s).run(), b = Simulation(s).run()
        #expect(a == b)
        s.seed = 2
        #expect(Simulation(s).run().makespan != a.makespan)
    }

    @Test("nothing beats the bound: a peer's link caps its download")
    func boundHolds() {
        let r = Simulation(scenario(hosts: 2, mib: 4, mbit: 100)).run()
        #expect(r.allComplete)
        // One peer, one seed: the file at 100 Mbit/s plus header overhead.
        #expect(r.makespan! >= r.tMin * Simulation.frameOverhead)
        #expect(r.makespan! < r.tMin * 1.3)
    }

    @Test("liars are banned and every honest host completes")
    func liarsBanned() {
        var s = scenario(hosts: 10, mib: 4, mbit: 100)
        s.liars = 0.2
        let r = Simulation(s).run()
        #expect(r.allComplete)
        #expect(r.completeHosts == 7)
    }

    @Test("the seed may leave after the first complete copy: the peers finish from each other")
    func seederLeaves() {
        var s = scenario(hosts: 8, mib: 4, mbit: 100)
        s.killSeederAfterCompleteOf = 1
        let r = Simulation(s).run()
        #expect(r.allComplete)
    }
}
