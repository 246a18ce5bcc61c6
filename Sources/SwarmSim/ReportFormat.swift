import Foundation

extension Simulation.Report {
    private func f(_ v: Double?, _ digits: Int = 2) -> String { v.map { String(format: "%.\(digits)f", $0) } ?? "-" }

    public var ratioToTMin: Double? { makespan.map { $0 / tMin } }

    /// The summary lines `../shared/swarmlab` prints, with the simulator's own costs.
    public func summary(rate: String, wallSeconds: Double, peakRSSMiB: Double) -> String {
        let mib = Double(fileBytes) / 1_048_576
        return """
            starling-sim run: hosts=\(hosts) (1 seeder + \(hosts - 1) peers) file=\(String(format: "%g", mib)) MiB rate=\(rate)
            makespan             \(makespan.map { f($0) + " s  (last host verified)" } ?? "- (not every host completed)")
            median / p90         \(f(median)) s / \(f(p90)) s
            T_min (Kumar-Ross)   \(f(tMin)) s   makespan/T_min = \(f(ratioToTMin))
            seeder uploaded      \(f(seederUploadXFile)) x file
            all complete         \(allComplete ? "yes" : "no") (\(completeHosts)/\(honestPeers) honest peers)\(crashes > 0 ? ", \(crashes) crashed and restarted" : "")
            \(siteInXFile.isEmpty ? "" : "site uplinks in     " + siteInXFile.map { f($0) }.joined(separator: " / ") + " x file (max \(f(maxSiteInXFile)))\n")\
            simulator            \(f(wallSeconds, 1)) s wall, \(f(virtualSeconds, 1)) s simulated, peak RSS \(f(peakRSSMiB, 0)) MiB
            """
    }

    /// swarmlab's JSON field names, plus the simulator's wall time and peak RSS.
    public func json(rate: String, wallSeconds: Double, peakRSSMiB: Double) throws -> String {
        var fields: [String: Any] = [
            "hosts": hosts, "size_mib": Double(fileBytes) / 1_048_576, "rate": rate,
            "makespan_s": makespan ?? NSNull(), "t_min_s": tMin, "ratio_to_t_min": ratioToTMin ?? NSNull(),
            "seeder_upload_x_file": seederUploadXFile, "median_s": median ?? NSNull(), "p90_s": p90 ?? NSNull(),
            "all_complete": allComplete, "sim_wall_s": wallSeconds, "sim_peak_rss_mib": peakRSSMiB,
            "crashes": crashes,
        ]
        if !siteInXFile.isEmpty {
            fields["max_site_in_x_file"] = maxSiteInXFile
            fields["sites_detail"] = siteInXFile.indices.map { ["site": $0, "in_x_file": siteInXFile[$0], "out_x_file": siteOutXFile[$0]] }
        }
        let data = try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys, .prettyPrinted])
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}
